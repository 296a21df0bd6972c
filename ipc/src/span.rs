//! The tracing spans every role's log lines carry, so that a line says who wrote it and for
//! whom without a hand-built prefix: one per role instance ([`role`]), one per network
//! connection ([`connection`]), one per link a role serves ([`link`]) and one per request on it
//! ([`request`]). The supervisor's log format prints their fields after the message
//! (`… done role=smtpd peer=192.0.2.1:4711 session=18c4f2a9b3e01`).
//!
//! tokio does not carry the current span into a spawned task, a blocking task or a thread: role
//! code spawns with `.in_current_span()` (from [`tracing::Instrument`]), [`spawn_blocking`] or
//! [`in_current_span`], so that the role's name reaches every line, also in single-process mode
//! where every role is a task of one process.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::Span;

use crate::topology::Role;

/// The target of these spans. Log filters always enable it (see the supervisor's `logs`), so
/// a line keeps its context whatever filter an operator sets (`moxctl loglevel smtpd=debug`).
pub const TARGET: &str = "moxd::span";

/// The span of one role instance (`role=submission`): a role process enters it for its whole
/// life, single-process mode runs each role's task in its own.
pub fn role(role: Role) -> Span {
    // ERROR level, like the others here: a span is context, and must be enabled whenever any
    // line inside it is.
    tracing::error_span!(target: TARGET, "role", role = %role)
}

/// The span of one network connection: the client's address and the session's id.
pub fn connection(peer: SocketAddr, session: Id) -> Span {
    tracing::error_span!(target: TARGET, "conn", peer = %peer, session = %session)
}

/// The span of one link a role serves (`link=smtpd→storaged`): the link's name says which
/// role is calling.
pub fn link(name: &str) -> Span {
    tracing::error_span!(target: TARGET, "link", link = %name)
}

/// The span of one request served on a link, inside that link's span: its frame id, and a
/// `request` field for the request's name, which the serving loop (`serve::accept_links`)
/// records from the request's type ([`crate::rpc::Named`]), so that every line of the request
/// says what was asked (`… link=smtpd→storaged id=7 request=Deliver`).
pub fn request(id: u64) -> Span {
    tracing::error_span!(target: TARGET, "request", request = tracing::field::Empty, id)
}

/// Runs `f` on tokio's blocking pool inside the current span.
pub fn spawn_blocking<F, R>(f: F) -> tokio::task::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    tokio::task::spawn_blocking(in_current_span(f))
}

/// Wraps `f` (for a thread or the blocking pool) to run inside the span current now.
pub fn in_current_span<F, R>(f: F) -> impl FnOnce() -> R + Send + 'static
where
    F: FnOnce() -> R + Send + 'static,
{
    let span = Span::current();
    move || span.in_scope(f)
}

/// Ids of connections (and of smtpd's messages): unique within a role instance, and across
/// its restarts, since they count up from the clock.
#[derive(Debug)]
pub struct Ids(AtomicU64);

impl Ids {
    pub fn new() -> Ids {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        Ids(AtomicU64::new(now))
    }

    pub fn next(&self) -> Id {
        Id(self.0.fetch_add(1, Ordering::Relaxed))
    }
}

impl Default for Ids {
    fn default() -> Ids {
        Ids::new()
    }
}

/// One id from [`Ids`], shown in hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Id(pub u64);

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_count_up_and_print_in_hex() {
        let ids = Ids::new();
        let (a, b) = (ids.next(), ids.next());
        assert_eq!(b.0, a.0 + 1);
        assert_eq!(Id(0x1f).to_string(), "1f");
    }
}
