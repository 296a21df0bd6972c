//! Receiving a message (after 354): the bytes stream through the DATA reader into a pipe
//! storaged reads as they come, behind our Received line; storaged then delivers the message to
//! every local recipient and answers once it is durable. Only then does the client hear 250.
//!
//! The steps are one module each: [`sink`] opens and gives back the destinations, [`stream`]
//! reads DATA into them holding back the header block, [`commit`] queues, delivers and settles;
//! [`trace`] writes our Received line. This file runs them in order and decides between them
//! (the submission From check, the inbound verdict).

mod commit;
mod sink;
mod stream;
mod trace;

use ipc::msg::key::KeyService;
use ipc::msg::queue::QueueService;
use ipc::msg::store::StoreService;

use crate::io::{Conn, ConnError};
use crate::reply::Reply;
use crate::session::{Session, Transaction};

/// What the client is told after the message, and what to log.
pub struct Outcome {
    pub reply: Reply,
    pub size: u64,
}

/// Where the message goes: local recipients (as storaged knows them) through storaged, the
/// others into queued's queue, DKIM-signed for the sender's domain.
pub struct Plan {
    pub local: Vec<String>,
    pub remote: Vec<String>,
}

/// The roles a message passes through.
pub struct Peers<'a> {
    pub storaged: Option<ipc::Client<StoreService>>,
    pub queued: Option<ipc::Client<QueueService>>,
    pub keyd: Option<ipc::Client<KeyService>>,
    /// The submission session's ticket: keyd and queued take the sender's account from it.
    pub ticket: Option<ipc::msg::auth::Ticket>,
    pub localserve: bool,
    /// Inbound checks (MX only).
    pub checker: Option<&'a crate::inbound::Checker>,
    /// This message's checks, started at MAIL FROM (MX only).
    pub checks: Option<crate::inbound::MessageChecks>,
    /// The delivery opened at storaged when the first local recipient was accepted.
    pub opened: Option<crate::ahead::OpenedAhead>,
}

/// Opens the destinations, reads the message into them, and commits it: the 354 goes out once
/// they are open; the reply only once every destination has it durably.
pub async fn receive(
    conn: &mut Conn,
    session: &Session,
    tx: &Transaction,
    plan: Plan,
    peers: Peers<'_>,
    id: &str,
) -> Result<Outcome, ConnError> {
    let mut peers = peers;
    // Port 25: the checks begun at MAIL FROM go on while the message arrives.
    let mut checks = match peers.checks.take() {
        Some(c) if session.account.is_none() && !plan.local.is_empty() => Some(c),
        _ => None,
    };
    let mut opened_ahead = peers.opened.take();
    let mut sinks = match sink::open(&plan, &peers, &mut opened_ahead).await {
        Ok(sinks) => sinks,
        Err(outcome) => return Ok(outcome),
    };
    conn.queue(&Reply::plain(
        354,
        "start mail input; end with <CRLF>.<CRLF>",
    ));
    if let Err(e) = conn.flush().await {
        sink::abort(&peers, sinks).await;
        return Err(e);
    }
    let received = trace::received_line(conn, session, tx, id);
    let streamed = match stream::stream(conn, session, &received, &mut sinks, checks.as_mut()).await
    {
        Ok(streamed) => streamed,
        Err(e) => {
            sink::abort(&peers, sinks).await;
            return Err(e);
        }
    };
    let size = streamed.size;
    let refuse = |reply: Reply| Outcome { reply, size };
    if let Some(reply) = streamed.refusal(session.config.max_size) {
        sink::abort(&peers, sinks).await;
        return Ok(refuse(reply));
    }
    let head = streamed.head;
    if let Some(account) = &session.account
        && let Err(reply) =
            crate::submission::check_from(&head, account, peers.storaged.as_ref(), peers.localserve)
                .await
    {
        sink::abort(&peers, sinks).await;
        return Ok(refuse(reply));
    }
    // Port 25: SPF, DKIM, DMARC, iprev, finished now the whole message went past.
    let mut placement = (Vec::new(), false);
    if let Some(checker) = peers.checker
        && let Some(checks) = checks
    {
        let verdict = checker.check(checks).await;
        if let Some(reply) = verdict.reject {
            tracing::info!("{reply}");
            sink::abort(&peers, sinks).await;
            return Ok(refuse(reply));
        }
        placement = (verdict.header.into_bytes(), verdict.junk);
    }
    let reply = commit::commit(&peers, tx, plan, sinks, &head, placement, id).await;
    Ok(refuse(reply))
}
