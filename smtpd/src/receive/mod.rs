//! Receiving a message (after 354): the bytes stream through the DATA reader into a pipe
//! storaged reads as they come, behind our Received line; storaged then delivers the message to
//! every local recipient and answers once it is durable. Only then does the client hear 250.

use std::time::SystemTime;

use ipc::msg::key::KeyService;
use ipc::msg::queue::{self, QueueService};
use ipc::msg::store::{self, RecipientResult, StoreService};
use tokio::io::AsyncWriteExt;

use crate::data::{DataError, DataReader};
use crate::io::{Conn, ConnError};
use crate::reply::Reply;
use crate::session::{Session, Transaction};

/// Bytes collected before they are written to the destinations.
const CHUNK: usize = 64 * 1024;

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

/// An open destination of the message bytes.
enum Sink {
    /// A pipe storaged reads as the bytes come; closing it ends the message.
    Store {
        id: u64,
        pipe: tokio::net::unix::pipe::Sender,
        /// The link the delivery was opened on: its commit or abort goes there, never to a
        /// storaged started since (which knows nothing of it).
        storaged: ipc::Client<StoreService>,
    },
    /// A file in queued's queue directory.
    Queue { id: u64, file: tokio::fs::File },
}

impl Sink {
    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Store { pipe, .. } => pipe.write_all(bytes).await,
            Sink::Queue { file, .. } => file.write_all(bytes).await,
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Store { pipe, .. } => pipe.flush().await,
            Sink::Queue { file, .. } => file.flush().await,
        }
    }
}

/// The largest header block accepted (it is held in memory, checked and cleaned).
const HEAD: usize = 64 * 1024;

/// How long one message's DATA may take in all (RFC 5321 §4.5.3.2.6 suggests 10 minutes for
/// the server's wait for the terminating dot).
const DATA_LIMIT: std::time::Duration = std::time::Duration::from_secs(10 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Head {
    Collecting,
    Written,
    TooLarge,
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
    let max = session.config.max_size;
    let mut peers = peers;
    // Port 25: the checks begun at MAIL FROM go on while the message arrives.
    let mut checks = match peers.checks.take() {
        Some(c) if session.account.is_none() && !plan.local.is_empty() => Some(c),
        _ => None,
    };
    let unavailable = |what: &str| Outcome {
        reply: Reply::new(
            451,
            "4.3.0",
            format!("the {what} is not available; try again later"),
        ),
        size: 0,
    };
    let mut sinks = Vec::new();
    let opened_ahead = peers.opened.take();
    if !plan.local.is_empty() {
        let ahead = match opened_ahead {
            Some(ahead) => ahead.take().await,
            None => Err(crate::ahead::NotOpened::Unavailable),
        };
        // Opened ahead on a link still up, or else opened now (space may be back).
        let opened = match ahead {
            Ok(opened) if !opened.storaged.is_closed() => Ok(opened),
            _ => match &peers.storaged {
                Some(s) => crate::ahead::open(s).await,
                None => Err(crate::ahead::NotOpened::Unavailable),
            },
        };
        let crate::ahead::Opened { id, pipe, storaged } = match opened {
            Ok(opened) => opened,
            Err(crate::ahead::NotOpened::NoSpace(why)) => {
                tracing::warn!("storaged opened no delivery: {why}");
                return Ok(Outcome {
                    reply: Reply::insufficient_storage(),
                    size: 0,
                });
            }
            Err(crate::ahead::NotOpened::Unavailable) => {
                return Ok(unavailable("message store"));
            }
        };
        match tokio::net::unix::pipe::Sender::from_owned_fd(pipe) {
            Ok(pipe) => sinks.push(Sink::Store { id, pipe, storaged }),
            Err(e) => {
                tracing::warn!("storaged's delivery pipe: {e}");
                abort_store(&storaged, id).await;
                return Ok(unavailable("message store"));
            }
        }
    }
    if !plan.remote.is_empty() {
        let opened = match &peers.queued {
            Some(q) => q.call(&queue::Request::OpenMessage, Vec::new()).await.ok(),
            None => None,
        };
        match opened {
            Some((queue::Response::Opened { file }, mut fds)) if fds.len() == 1 => {
                sinks.push(Sink::Queue {
                    id: file,
                    file: file_of(fds.remove(0)),
                })
            }
            Some((queue::Response::InsufficientStorage { message }, _)) => {
                tracing::warn!("queued opened no message file: {message}");
                abort(&peers, sinks).await;
                return Ok(Outcome {
                    reply: Reply::insufficient_storage(),
                    size: 0,
                });
            }
            other => {
                tracing::warn!("queued gave no message file: {other:?}");
                abort(&peers, sinks).await;
                return Ok(unavailable("queue"));
            }
        }
    }
    conn.queue(&Reply::plain(
        354,
        "start mail input; end with <CRLF>.<CRLF>",
    ));
    if let Err(e) = conn.flush().await {
        abort(&peers, sinks).await;
        return Err(e);
    }
    let mut write_failed: Option<std::io::Error> = None;
    let received = received_line(conn, session, tx, id);
    let mut reader = DataReader::new(max);
    let mut chunk = Vec::with_capacity(CHUNK + 4096);
    // The header block is held back (up to HEAD) until it is complete: it is checked and
    // cleaned of forged Authentication-Results before anything is written.
    let mut head: Vec<u8> = Vec::new();
    let mut head_state = Head::Collecting;
    let deadline = tokio::time::Instant::now() + DATA_LIMIT;
    loop {
        let (used, done) = reader.feed(&conn.input, &mut chunk);
        conn.input.drain(..used);
        let mut out: Vec<u8> = Vec::new();
        if head_state == Head::Collecting {
            head.extend_from_slice(&chunk);
            chunk.clear();
            let found = crate::header::block_end(&head);
            if found.is_some() || head.len() >= HEAD || done {
                head_state = match found {
                    Some(end) if end <= HEAD => Head::Written,
                    // A message of header fields only.
                    None if done && head.len() <= HEAD => Head::Written,
                    _ => Head::TooLarge,
                };
                let end = found.unwrap_or(head.len());
                let rest = head.split_off(end.min(head.len()));
                if let Some(c) = &mut checks {
                    c.header_block(&head);
                    c.body(&rest);
                }
                head = crate::header::sanitize(&head, &session.config.hostname);
                out.extend_from_slice(received.as_bytes());
                out.extend_from_slice(&head);
                out.extend_from_slice(&rest);
            }
        } else if chunk.len() >= CHUNK || done {
            out = std::mem::take(&mut chunk);
            if let Some(c) = &mut checks {
                c.body(&out);
            }
        }
        if !out.is_empty() {
            for sink in &mut sinks {
                // A pipe waits for its reader: never longer than the message may take.
                if write_failed.is_none()
                    && let Err(e) = tokio::time::timeout_at(deadline, sink.write_all(&out))
                        .await
                        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
                {
                    write_failed = Some(e);
                }
            }
        }
        if done {
            break;
        }
        let more = tokio::time::timeout_at(deadline, conn.fill_up_to(CHUNK)).await;
        let failed = match more {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some(ConnError::Timeout(DATA_LIMIT)),
        };
        if let Some(e) = failed {
            abort(&peers, sinks).await;
            return Err(e);
        }
    }
    // An idle connection keeps no 64 KiB buffer.
    conn.input.shrink_to(16 * 1024);
    for sink in &mut sinks {
        if write_failed.is_none()
            && let Err(e) = sink.flush().await
        {
            write_failed = Some(e);
        }
    }
    let size = reader.size();
    let refuse = |reply: Reply| Outcome { reply, size };
    if let Some(e) = reader.error() {
        abort(&peers, sinks).await;
        return Ok(refuse(match e {
            DataError::BareLf | DataError::BareCr => Reply::new(
                554,
                "5.6.0",
                "message refused: a bare CR or LF in it; lines must end with CRLF",
            ),
            DataError::LineTooLong => Reply::new(
                554,
                "5.6.0",
                "message refused: a line longer than 998 octets",
            ),
            DataError::TooLarge => Reply::new(
                552,
                "5.3.4",
                format!("the message is larger than the limit of {max} octets"),
            ),
        }));
    }
    if head_state == Head::TooLarge {
        abort(&peers, sinks).await;
        return Ok(refuse(Reply::new(
            552,
            "5.3.4",
            format!("message refused: its header block is larger than {HEAD} octets"),
        )));
    }
    if let Some(e) = write_failed {
        tracing::error!("writing a message for storaged or queued: {e}");
        abort(&peers, sinks).await;
        return Ok(refuse(Reply::new(
            451,
            "4.3.0",
            "local error writing the message; try again later",
        )));
    }
    if let Some(account) = &session.account
        && let Err(reply) =
            crate::submission::check_from(&head, account, peers.storaged.as_ref(), peers.localserve)
                .await
    {
        abort(&peers, sinks).await;
        return Ok(refuse(reply));
    }
    // Port 25: SPF, DKIM, DMARC, iprev, finished now the whole message went past.
    let mut placement = (Vec::new(), false);
    if let Some(checker) = peers.checker
        && let Some(checks) = checks
    {
        let verdict = checker.check(checks).await;
        if let Some(reply) = verdict.reject {
            tracing::info!("{id}: {reply}");
            abort(&peers, sinks).await;
            return Ok(refuse(reply));
        }
        placement = (verdict.header.into_bytes(), verdict.junk);
    }
    // The queue first: if it fails nothing was delivered, and the client may simply retry.
    let mut queued = None;
    let mut store_id = None;
    for sink in sinks {
        match sink {
            Sink::Store { id, pipe, storaged } => {
                // Closing the pipe tells storaged the message is complete.
                drop(pipe);
                store_id = Some((id, storaged));
            }
            Sink::Queue { id: file_id, file } => {
                // Only an authenticated session relays; its ticket names the account.
                let Some(ticket) = peers.ticket else {
                    tracing::warn!("{id}: a message to relay without a session ticket");
                    abort_queue(&peers, file_id).await;
                    abort_committed_store(&store_id).await;
                    return Ok(refuse(Reply::new(
                        451,
                        "4.3.0",
                        "the message could not be queued; try again later",
                    )));
                };
                let envelope = queue::SubmittedEnvelope {
                    from: tx.from.as_ref().map(|a| a.to_string()).unwrap_or_default(),
                    recipients: plan.remote.clone(),
                    smtputf8: tx.params.smtputf8,
                    eight_bit: tx.params.eight_bit,
                    requiretls: tx.params.requiretls,
                };
                let prepend =
                    match crate::submission::dkim_sign(file, &head, peers.keyd.as_ref(), ticket)
                        .await
                    {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::warn!("{id}: DKIM signing failed: {e}");
                            abort_queue(&peers, file_id).await;
                            abort_committed_store(&store_id).await;
                            return Ok(refuse(Reply::new(
                                451,
                                "4.7.0",
                                "the message could not be signed; try again later",
                            )));
                        }
                    };
                // With local recipients too, the queued copy is held until they have theirs:
                // if that fails, it is discarded, and the client's retry sends no second copy
                // out.
                let request = queue::Request::Enqueue {
                    file: file_id,
                    ticket,
                    envelope,
                    prepend: prepend.into_bytes(),
                    held: store_id.is_some(),
                };
                let answer = call_queued(&peers, &request, "queued is not running").await;
                match answer {
                    Ok((queue::Response::Queued { id }, _)) => queued = Some(id),
                    Ok((
                        queue::Response::OverLimit {
                            setting,
                            limit,
                            retry_after_secs,
                        },
                        _,
                    )) => {
                        abort_committed_store(&store_id).await;
                        return Ok(refuse(Reply::new(
                            451,
                            "4.7.0",
                            format!(
                                "sending limit reached: {setting} = {limit}; try again in {} minutes",
                                retry_after_secs.div_ceil(60)
                            ),
                        )));
                    }
                    Ok((queue::Response::InsufficientStorage { message }, _)) => {
                        tracing::warn!("queueing {id}: {message}");
                        abort_committed_store(&store_id).await;
                        return Ok(refuse(Reply::insufficient_storage()));
                    }
                    other => {
                        tracing::warn!("queueing {id}: {other:?}");
                        abort_committed_store(&store_id).await;
                        return Ok(refuse(Reply::new(
                            451,
                            "4.3.0",
                            "the message could not be queued; try again later",
                        )));
                    }
                }
            }
        }
    }
    if let Some((delivery, storaged)) = store_id {
        let reply = deliver(&storaged, delivery, plan.local, placement, id).await;
        if let Some(q) = queued {
            let (request, what) = if reply.is_error() {
                (queue::Request::Discard { id: q }, "discarding")
            } else {
                (queue::Request::Release { id: q }, "releasing")
            };
            let answer = call_queued(&peers, &request, "queued went away").await;
            match answer {
                Ok((queue::Response::Done, _)) => {}
                other => {
                    tracing::error!("{id}: {what} queued message {q}: {other:?}");
                    if !reply.is_error() {
                        // Delivered here, but the copy for other domains is stuck held (and
                        // discarded later): the client must send again.
                        return Ok(refuse(Reply::new(
                            451,
                            "4.3.0",
                            "the message could not be queued for its other recipients; try again later",
                        )));
                    }
                }
            }
        }
        if reply.is_error() || queued.is_none() {
            return Ok(refuse(reply));
        }
    }
    Ok(refuse(match queued {
        Some(q) => Reply::new(250, "2.0.0", format!("{id} queued as {q}")),
        None => Reply::new(250, "2.0.0", format!("{id} delivered")),
    }))
}

/// Gives back the storaged delivery whose pipe was already closed for the commit, if any.
async fn abort_committed_store(store: &Option<(u64, ipc::Client<StoreService>)>) {
    if let Some((id, storaged)) = store {
        abort_store(storaged, *id).await;
    }
}

/// One request to queued, `missing` if it is not running.
async fn call_queued(
    peers: &Peers<'_>,
    request: &queue::Request,
    missing: &str,
) -> Result<(queue::Response, Vec<ipc::Handle>), String> {
    match &peers.queued {
        Some(q) => q.call(request, Vec::new()).await.map_err(|e| e.to_string()),
        None => Err(missing.into()),
    }
}

async fn abort_queue(peers: &Peers<'_>, file: u64) {
    if let Some(q) = &peers.queued {
        let _ = q.call(&queue::Request::Abort { file }, Vec::new()).await;
    }
}

fn file_of(fd: std::os::fd::OwnedFd) -> tokio::fs::File {
    tokio::fs::File::from_std(std::fs::File::from(fd))
}

/// Gives back every destination opened for a message that will not be committed.
async fn abort(peers: &Peers<'_>, sinks: Vec<Sink>) {
    for sink in sinks {
        match sink {
            Sink::Store { id, storaged, .. } => abort_store(&storaged, id).await,
            Sink::Queue { id, .. } => abort_queue(peers, id).await,
        }
    }
}

/// Gives delivery `id` back to the storaged that opened it (if that one is gone, so is the
/// delivery).
async fn abort_store(storaged: &ipc::Client<StoreService>, id: u64) {
    if !storaged.is_closed() {
        let _ = storaged
            .call(&store::Request::AbortDelivery { id }, Vec::new())
            .await;
    }
}

/// Commits delivery `delivery` to `recipients` at storaged.
async fn deliver(
    storaged: &ipc::Client<StoreService>,
    delivery: u64,
    recipients: Vec<String>,
    (prepend, junk): (Vec<u8>, bool),
    id: &str,
) -> Reply {
    let count = recipients.len();
    let answer = storaged
        .call(
            &store::Request::Deliver {
                id: delivery,
                recipients,
                prepend,
                junk,
            },
            Vec::new(),
        )
        .await;
    match answer {
        // All or nothing: a recipient removed since RCPT fails the whole delivery (451), and
        // the client's retry hears 550 for it at RCPT.
        Ok((store::Response::Delivered(results), _))
            if results.len() == count
                && results.iter().all(|r| *r == RecipientResult::Delivered) =>
        {
            Reply::new(250, "2.0.0", format!("{id} delivered"))
        }
        Ok((store::Response::InsufficientStorage { message }, _)) => {
            tracing::warn!("{id}: not delivered: {message}");
            Reply::insufficient_storage()
        }
        Ok((store::Response::Failed(f), _)) if f.temporary => Reply::new(
            451,
            "4.3.0",
            format!("not delivered: {}; try again later", f.message),
        ),
        Ok((store::Response::Failed(f), _)) => {
            Reply::new(554, "5.3.0", format!("not delivered: {}", f.message))
        }
        Ok((other, _)) => Reply::new(
            451,
            "4.3.0",
            format!("unexpected answer from the store: {other:?}"),
        ),
        Err(e) => Reply::new(
            451,
            "4.3.0",
            format!("the message store failed: {e}; try again later"),
        ),
    }
}

/// The trace field for this hop (RFC 5321 §4.4; protocol names per RFC 3848 and RFC 6531).
fn received_line(conn: &Conn, session: &Session, tx: &Transaction, id: &str) -> String {
    let (helo, ehlo) = session.helo.clone().unwrap_or_default();
    let helo: String = helo
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    let mut proto = String::from(match (tx.params.smtputf8, ehlo) {
        (true, _) => "UTF8SMTP",
        (false, true) => "ESMTP",
        (false, false) => "SMTP",
    });
    if conn.is_tls() {
        proto.push('S');
    }
    if session.account.is_some() {
        proto.push('A');
    }
    let tls = conn
        .tls_summary()
        .map(|t| format!("\r\n\t(using {t})"))
        .unwrap_or_default();
    let rcpt = match (tx.local.as_slice(), tx.remote.as_slice()) {
        ([one], []) | ([], [one]) => format!("\r\n\tfor <{one}>"),
        _ => String::new(),
    };
    format!(
        "Received: from {helo} ([{}])\r\n\tby {} (moxd) with {proto} id {id}{tls}{rcpt};\r\n\t{}\r\n",
        conn.peer.ip(),
        session.config.hostname,
        rfc5322_date(SystemTime::now())
    )
}

/// `Sun, 22 Nov 2026 15:29:20 +0000`.
pub fn rfc5322_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    // Civil from days (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let name = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(month - 1) as usize];
    format!(
        "{weekday}, {day} {name} {year} {:02}:{:02}:{:02} +0000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn dates() {
        assert_eq!(
            super::rfc5322_date(UNIX_EPOCH),
            "Thu, 1 Jan 1970 00:00:00 +0000"
        );
        assert_eq!(
            super::rfc5322_date(UNIX_EPOCH + Duration::from_secs(1_795_360_160)),
            "Sun, 22 Nov 2026 15:09:20 +0000"
        );
    }
}
