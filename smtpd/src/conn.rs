//! One SMTP connection from greeting to QUIT: the session decides, this carries out its steps
//! (lookups at storaged, SASL at authd, TLS with keyd's keys, the message into storaged).

use ipc::sync::lock;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::Instrument;

use ipc::config::SmtpSettings;
use ipc::msg::store::{self, RecipientStatus};
use rustls::ServerConfig;
use tokio::net::TcpStream;

use crate::address::Address;
use crate::command::{self, MAX_LINE};
use crate::io::{Conn, ConnError, Line};
use crate::links::Links;
use crate::reply::Reply;
use crate::session::{Config, Recipient, Session, Step};

/// What every connection of the role shares.
pub struct Shared {
    pub settings: SmtpSettings,
    pub tls: Option<Arc<ServerConfig>>,
    pub peers: Links,
    /// Open connections per client address (IPv4, or IPv6 /64).
    pub open: Mutex<HashMap<IpAddr, u32>>,
    /// Ids of connections and messages, unique across restarts.
    pub ids: ipc::span::Ids,
    /// SPF/DKIM/DMARC/iprev for mail on port 25.
    pub checker: Option<crate::inbound::Checker>,
    /// Local addresses storaged confirmed lately (a storaged round trip less per RCPT on a
    /// busy MX). Only confirmations are kept, for [`KNOWN_FOR`]: an address removed meanwhile
    /// fails the delivery with 451 (storaged delivers all or nothing) and the retry hears 550;
    /// a refusal is never cached, so a new address works at once.
    pub known_local: Mutex<HashMap<String, std::time::Instant>>,
}

/// How long a confirmed local address is believed.
const KNOWN_FOR: Duration = Duration::from_secs(5);
/// Addresses kept at most (then the list starts over).
const KNOWN_MAX: usize = 10_000;

/// The local account localserve delivers everything to.
pub const LOCALSERVE_ACCOUNT: &str = "mox@localhost";

/// Counts a connection against its address's limit for as long as it lives.
struct Slot<'a> {
    shared: &'a Shared,
    key: IpAddr,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut open = lock(&self.shared.open);
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Serves one connection until QUIT, an error, a timeout or shutdown. Runs inside the
/// connection's span (`ipc::span::connection`), which names the peer in every line.
pub async fn serve(
    shared: Arc<Shared>,
    config: Arc<Config>,
    tcp: TcpStream,
    peer: SocketAddr,
    implicit_tls: bool,
) {
    let _ = tcp.set_nodelay(true);
    let key = ip_key(peer.ip());
    let admitted = {
        let mut open = lock(&shared.open);
        let n = open.entry(key).or_insert(0);
        *n += 1;
        *n <= shared.settings.connections_per_ip
    };
    let _slot = Slot {
        shared: &shared,
        key,
    };
    let mut conn = Conn::new(tcp, peer, Duration::from_secs(shared.settings.timeout_secs));
    if implicit_tls {
        let Some(tls) = shared.tls.clone() else {
            tracing::warn!("no TLS certificates; closing");
            return;
        };
        if let Err(e) = conn.start_tls(tls).await {
            tracing::info!("{e}");
            return;
        }
    }
    if !admitted {
        tracing::info!("too many connections from its address; refused");
        conn.queue(&Reply::new(
            421,
            "4.7.0",
            format!(
                "{} too many connections from your address; try again later",
                config.hostname
            ),
        ));
        conn.close().await;
        return;
    }
    let mut session = Session::new(config, implicit_tls);
    let mut ticket = None;
    // Port 25: the reverse-DNS lookup of the client starts now.
    let checks = match (&shared.checker, &session.config.mode) {
        (Some(checker), crate::Mode::Mx) => Some(checker.connected(peer.ip())),
        _ => None,
    };
    let result = run(
        &shared,
        &mut conn,
        &mut session,
        &mut ticket,
        checks.as_ref(),
    )
    .await;
    match &result {
        Ok(()) | Err(ConnError::Closed) => tracing::debug!("done"),
        Err(e) => tracing::info!("{e}"),
    }
    if let Err(ConnError::Timeout(_)) = result {
        conn.queue(&Reply::new(
            421,
            "4.4.2",
            format!("{} timeout; closing", session.config.hostname),
        ));
    }
    if let (Some(ticket), Some(authd)) = (ticket, shared.peers.authd()) {
        let _ = authd.ask(ipc::msg::auth::Logout { ticket }).await;
    }
    conn.close().await;
}

async fn run(
    shared: &Shared,
    conn: &mut Conn,
    session: &mut Session,
    ticket: &mut Option<ipc::msg::auth::Ticket>,
    connection_checks: Option<&crate::inbound::ConnectionChecks>,
) -> Result<(), ConnError> {
    if session.tls {
        session.mechanisms = mechanisms(shared, conn).await;
    }
    conn.queue(&session.greeting());
    // The checks of the current transaction (port 25), from its MAIL FROM on.
    let mut message_checks: Option<crate::inbound::MessageChecks> = None;
    // A delivery at storaged, opened when a transaction first has a local recipient. Unused
    // (RSET, a refused MAIL), it is kept for the connection's next transaction, so a client
    // repeating RCPT and RSET costs storaged one open delivery, not one each time; it is given
    // back when the connection ends.
    let mut opened: Option<crate::ahead::OpenedAhead> = None;
    loop {
        if opened.is_none()
            && let Some(tx) = &session.tx
            && !tx.local.is_empty()
        {
            opened = shared
                .peers
                .storaged
                .current()
                .map(crate::ahead::OpenedAhead::start);
        }
        match (&session.tx, &shared.checker, connection_checks) {
            (None, _, _) => message_checks = None,
            (Some(tx), Some(checker), Some(c))
                if message_checks.is_none() && session.account.is_none() =>
            {
                message_checks = Some(checker.start(
                    c,
                    session.helo.clone().unwrap_or_default().0,
                    tx.from.as_ref().map(|a| a.to_string()).unwrap_or_default(),
                ));
            }
            _ => {}
        }
        // Replies wait while pipelined commands are buffered; flush before waiting for more.
        if !conn.has_line() {
            conn.flush().await?;
        }
        let step = match conn.line(MAX_LINE).await? {
            Line::Ok(line) => match command::parse(&line) {
                Ok(cmd) => session.command(cmd),
                Err(reply) => session.bad_command(reply),
            },
            Line::TooLong => session.bad_command(Reply::new(500, "5.5.2", "line too long")),
        };
        let reply = match step {
            Step::Reply(reply) => reply,
            Step::StartTls(reply) => {
                let Some(tls) = shared.tls.clone() else {
                    conn.queue(&Reply::new(454, "4.7.0", "TLS not available"));
                    continue;
                };
                conn.queue(&reply);
                conn.flush().await?;
                // Anything pipelined after STARTTLS is dropped unread (RFC 3207 §4.2).
                conn.start_tls(tls).await?;
                session.tls_started();
                session.mechanisms = mechanisms(shared, conn).await;
                continue;
            }
            Step::CheckRecipient(to) => match recipient(shared, &to).await {
                Ok(found) => session.recipient(to, found),
                Err(reply) => reply,
            },
            Step::CheckSender(from) => {
                let owner = match &from {
                    Some(addr) => sender_account(shared, session, addr).await,
                    None => Ok(None),
                };
                match owner {
                    Ok(owner) => session.sender(owner.as_deref()),
                    Err(reply) => {
                        session.transaction_done();
                        reply
                    }
                }
            }
            Step::Auth { mechanism, initial } => {
                let Some(authd) = shared.peers.authd() else {
                    conn.queue(&Reply::new(
                        454,
                        "4.7.0",
                        "authentication is not available right now",
                    ));
                    continue;
                };
                match crate::auth::relay(conn, &authd, mechanism, initial).await? {
                    crate::auth::Authenticated::Yes { account, ticket: t } => {
                        tracing::info!("authenticated as {account}");
                        session.authenticated(account.into_string());
                        *ticket = Some(t);
                        Reply::new(235, "2.7.0", "authentication successful")
                    }
                    crate::auth::Authenticated::No(reply) => session.error(reply),
                }
            }
            Step::Data(_) => {
                let checks = message_checks.take();
                data(shared, conn, session, *ticket, checks, opened.take()).await?
            }
        };
        if reply.is_error() {
            let delay = session.delay();
            if !delay.is_zero() {
                conn.flush().await?;
                tokio::time::sleep(delay).await;
            }
        }
        conn.queue(&reply);
        if reply.closes() {
            return Ok(());
        }
    }
}

async fn mechanisms(shared: &Shared, conn: &Conn) -> Vec<String> {
    match shared.peers.authd() {
        Some(authd) => crate::auth::mechanisms(&authd, conn.channel_binding().is_some()).await,
        None => Vec::new(),
    }
}

/// Where mail for `to` goes.
async fn recipient(shared: &Shared, to: &Address) -> Result<Recipient, Reply> {
    if shared.settings.localserve {
        return localserve_recipient(to);
    }
    let storaged = shared.peers.storaged.current().ok_or_else(|| {
        Reply::new(
            451,
            "4.3.0",
            "the message store is not available; try again later",
        )
    })?;
    let address = to.to_string();
    let known = {
        let known = lock(&shared.known_local);
        known
            .get(&address)
            .is_some_and(|since| since.elapsed() < KNOWN_FOR)
    };
    if known {
        return Ok(Recipient::Local);
    }
    let request = store::CheckRecipient {
        address: address.clone(),
    };
    match storaged.ask(request).await {
        Ok(Ok(status)) => Ok(match status {
            RecipientStatus::Local => {
                let mut known = lock(&shared.known_local);
                if known.len() >= KNOWN_MAX {
                    known.clear();
                }
                known.insert(address, std::time::Instant::now());
                Recipient::Local
            }
            RecipientStatus::Unknown => Recipient::Unknown,
            RecipientStatus::NotLocal => Recipient::Remote,
        }),
        Ok(Err(store::Refused::InsufficientStorage { message })) => {
            tracing::warn!("recipient {address} refused for now: {message}");
            Err(Reply::insufficient_storage())
        }
        other => {
            tracing::warn!("checking a recipient at storaged: {other:?}");
            Err(Reply::new(
                451,
                "4.3.0",
                "cannot check the recipient now; try again later",
            ))
        }
    }
}

/// localserve takes mail for any address, except a few local parts that make errors on
/// purpose, so that client developers can see how their program handles them.
fn localserve_recipient(to: &Address) -> Result<Recipient, Reply> {
    let local = to.local.to_ascii_lowercase();
    match local.as_str() {
        "tempfail" => Err(Reply::new(
            451,
            "4.0.0",
            "localserve: temporary failure, as asked by the address",
        )),
        "permfail" => Err(Reply::new(
            550,
            "5.0.0",
            "localserve: permanent failure, as asked by the address",
        )),
        "unknown" => Ok(Recipient::Unknown),
        _ => Ok(Recipient::Local),
    }
}

/// The account `from` belongs to; in localserve, any sender is the user's own.
async fn sender_account(
    shared: &Shared,
    session: &Session,
    from: &Address,
) -> Result<Option<String>, Reply> {
    if shared.settings.localserve {
        return Ok(session.account.clone());
    }
    let storaged = shared.peers.storaged.current().ok_or_else(|| {
        Reply::new(
            451,
            "4.3.0",
            "the message store is not available; try again later",
        )
    })?;
    let request = store::SenderAccount {
        address: from.to_string(),
    };
    match storaged.ask(request).await {
        Ok(Ok(account)) => Ok(account.map(store::AccountId::into_string)),
        other => {
            tracing::warn!("checking a sender at storaged: {other:?}");
            Err(Reply::new(
                451,
                "4.3.0",
                "cannot check the sender now; try again later",
            ))
        }
    }
}

/// DATA: the message into storaged and/or queued, then the one reply for it.
async fn data(
    shared: &Shared,
    conn: &mut Conn,
    session: &mut Session,
    ticket: Option<ipc::msg::auth::Ticket>,
    checks: Option<crate::inbound::MessageChecks>,
    opened: Option<crate::ahead::OpenedAhead>,
) -> Result<Reply, ConnError> {
    let Some(tx) = session.tx.clone() else {
        return Ok(Reply::new(503, "5.5.1", "MAIL and RCPT first"));
    };
    let plan = crate::receive::Plan {
        local: if shared.settings.localserve && !tx.local.is_empty() {
            vec![LOCALSERVE_ACCOUNT.to_string()]
        } else {
            tx.local.iter().map(|a| a.to_string()).collect()
        },
        remote: tx.remote.iter().map(|a| a.to_string()).collect(),
    };
    let peers = crate::receive::Peers {
        storaged: shared.peers.storaged.current(),
        queued: shared.peers.queued(),
        keyd: shared.peers.keyd.current(),
        ticket,
        localserve: shared.settings.localserve,
        checker: shared.checker.as_ref(),
        checks,
        opened,
    };
    let id = shared.ids.next().to_string();
    // The message's span: its id in every line about it.
    let span = tracing::error_span!(target: ipc::span::TARGET, "message", msg = %id);
    let outcome = crate::receive::receive(conn, session, &tx, plan, peers, &id)
        .instrument(span.clone())
        .await;
    session.transaction_done();
    let outcome = outcome?;
    span.in_scope(|| {
        tracing::info!(
            "message from <{}> to {} local and {} remote recipient(s), {} octets: {}",
            tx.from.as_ref().map(|a| a.to_string()).unwrap_or_default(),
            tx.local.len(),
            tx.remote.len(),
            outcome.size,
            outcome.reply
        )
    });
    Ok(if outcome.reply.is_error() {
        // A recipient may be why (removed since it was confirmed): ask storaged afresh.
        let mut known = lock(&shared.known_local);
        for a in &tx.local {
            known.remove(&a.to_string());
        }
        drop(known);
        session.error(outcome.reply)
    } else {
        session.delivered();
        outcome.reply
    })
}
