//! storaged's requests: what each peer may ask (decided by the link, never by the message;
//! `requests`), open deliveries per peer, and the administrative requests forwarded from moxctl
//! (`admin`).
//!
//! Mail is refused for lack of space (answered `InsufficientStorage`, SMTP's `452 4.3.1`) at
//! each step while the data directory's free space is under the floor (`[storage] min_free`):
//! a recipient's check, the opening of a delivery, and its commit, which also fails so when a
//! write finds the disk full or the peer's open deliveries hold their share
//! (`[storage] max_open_per_peer`). Such a failure keeps nothing of the delivery.

use ipc::sync::{lock, read};
use std::collections::HashMap;
use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ipc::msg::auth::Ticket;
use ipc::msg::store::{Failure, RecipientResult, StoreService};
use ipc::rpc::Incoming;
use ipc::space::FreeSpace;
use ipc::{Handle, Role};

use crate::db::Db;
use crate::deliver::{self, Flusher, Outcome};
use crate::error::StoreError;
use crate::files::Files;
use crate::spool::{Budget, Spooled};

mod admin;
mod requests;

/// Largest message accepted, in bytes.
pub const MAX_MESSAGE_SIZE: u64 = 100 * 1024 * 1024;
/// Open deliveries one peer may hold at once (each holds a pipe's read end here; smtpd keeps
/// at most one per connection that reached RCPT).
const MAX_OPEN_DELIVERIES: usize = 1024;

/// Everything storaged's handlers share.
#[derive(Debug)]
pub struct Store {
    pub db: Db,
    pub files: Files,
    pub flusher: Flusher,
    open: Mutex<HashMap<(Role, u64), Open>>,
    next_delivery: AtomicU64,
    /// Memory the open deliveries' pipes may fill.
    #[cfg(unix)]
    spool_budget: Arc<Budget>,
    /// The data directory's free space against the floor.
    space: Arc<FreeSpace>,
    /// Bytes the open deliveries of one peer may hold, and each peer's budget of them.
    max_open_per_peer: u64,
    peer_budgets: Mutex<HashMap<Role, Arc<Budget>>>,
    /// Sessions authd has authenticated: the account each may act for, from which role, until
    /// when. Kept in memory: a restart of storaged ends every session.
    tickets: Mutex<HashMap<Ticket, Session>>,
    /// Who watches which account's changes.
    pub feed: Arc<crate::feed::Feed>,
    /// Held shared by every change, exclusively by a backup snapshot.
    pub(crate) pause: std::sync::RwLock<()>,
}

/// An open delivery or upload.
#[derive(Debug)]
enum Open {
    /// A temporary file the peer writes into (IMAP APPEND; SMTP deliveries on Windows).
    File(File),
    /// A pipe the peer writes into, read as the bytes come (SMTP deliveries on Unix).
    #[cfg(unix)]
    Pipe(crate::spool::Pump),
}

/// What a session ticket grants.
#[derive(Debug, Clone)]
pub struct Session {
    pub account: String,
    pub role: Role,
    pub expires: i64,
}

/// Why a request was refused: a failure, or a lack of space (answered apart, so that smtpd
/// can say `452 4.3.1`).
/// Why a request was not carried out, as storaged answers it.
pub(crate) use ipc::msg::store::Refused;

impl Store {
    pub fn new(
        db: Db,
        files: Files,
        flusher: Flusher,
        feed: Arc<crate::feed::Feed>,
        space: Arc<FreeSpace>,
        max_open_per_peer: u64,
    ) -> Arc<Store> {
        Arc::new(Store {
            db,
            files,
            flusher,
            open: Mutex::default(),
            // Unique across restarts: an id a role got from an earlier instance never names
            // another delivery here.
            next_delivery: AtomicU64::new(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64),
            ),
            #[cfg(unix)]
            spool_budget: Budget::new(crate::spool::MEMORY_BUDGET),
            space,
            max_open_per_peer,
            peer_budgets: Mutex::default(),
            tickets: Mutex::default(),
            feed,
            pause: std::sync::RwLock::new(()),
        })
    }

    /// Answers one request from `peer`.
    pub async fn handle(self: Arc<Self>, peer: Role, incoming: Incoming<StoreService>) {
        let Incoming {
            request,
            reply,
            fds,
        } = incoming;
        let events = reply.events();
        // No store request takes descriptors.
        fds.into_iter().for_each(sandbox::fdpass::discard);
        let answer = self.clone().answer(peer, request, events).await;
        if let Err(e) = reply.send(answer).await {
            tracing::warn!("answering: {e}");
        }
    }

    /// A new temporary file for `peer` to write into; returns its id and the peer's handle.
    pub(crate) fn open_temp(&self, peer: Role) -> Result<(u64, Handle), Refused> {
        self.room(0)?;
        self.register(peer, || {
            let file = self
                .files
                .temp_file()
                .map_err(|e| temporary(e.to_string()))?;
            let theirs = Handle::from(file.try_clone().map_err(|e| temporary(e.to_string()))?);
            Ok((Open::File(file), theirs))
        })
    }

    /// A new delivery for `peer` to write into; returns its id and the peer's handle. On Unix
    /// it is a pipe read as the bytes come; on Windows, which passes no pipes between roles,
    /// the temporary file an upload gets, measured at the commit (see [`crate::spool`]).
    pub(crate) fn open_delivery(&self, peer: Role) -> Result<(u64, Handle), Refused> {
        #[cfg(unix)]
        {
            self.open_pipe(peer)
        }
        #[cfg(windows)]
        {
            self.open_temp(peer)
        }
    }

    /// A new delivery pipe for `peer` to write into: ours is read as the bytes come (see
    /// [`crate::spool`]), the write end is returned.
    #[cfg(unix)]
    fn open_pipe(&self, peer: Role) -> Result<(u64, Handle), Refused> {
        self.room(0)?;
        let limits = crate::spool::Limits {
            files: self.files.clone(),
            memory: self.spool_budget.clone(),
            peer: self.peer_budget(peer),
            space: self.space.clone(),
            max: MAX_MESSAGE_SIZE,
        };
        self.register(peer, || {
            let (ours, theirs) = crate::spool::pipe().map_err(|e| temporary(e.to_string()))?;
            let pump =
                crate::spool::Pump::start(ours, limits).map_err(|e| temporary(e.to_string()))?;
            Ok((Open::Pipe(pump), theirs))
        })
    }

    /// The budget of bytes `peer`'s open deliveries share.
    fn peer_budget(&self, peer: Role) -> Arc<Budget> {
        lock(&self.peer_budgets)
            .entry(peer)
            .or_insert_with(|| Budget::new(self.max_open_per_peer))
            .clone()
    }

    /// Whether `need` more bytes leave the floor free; refused for lack of space if not.
    fn room(&self, need: u64) -> Result<(), Refused> {
        self.space.check(need).map_err(|short| {
            tracing::warn!("refusing mail: {short}");
            Refused::InsufficientStorage {
                message: short.to_string(),
            }
        })
    }

    /// Files what `make` opens as a new delivery of `peer`, within its limit; returns the id
    /// and the peer's descriptor.
    fn register(
        &self,
        peer: Role,
        make: impl FnOnce() -> Result<(Open, Handle), Failure>,
    ) -> Result<(u64, Handle), Refused> {
        let mut open = lock(&self.open);
        if open.keys().filter(|(p, _)| *p == peer).count() >= MAX_OPEN_DELIVERIES {
            return Err(temporary("too many open deliveries").into());
        }
        let (ours, theirs) = make()?;
        let id = self.next_delivery.fetch_add(1, Ordering::Relaxed);
        open.insert((peer, id), ours);
        Ok((id, theirs))
    }

    /// Takes back the temporary file `id` of `peer`.
    pub(crate) fn take_temp(&self, peer: Role, id: u64) -> Option<File> {
        let mut open = lock(&self.open);
        match open.remove(&(peer, id)) {
            Some(Open::File(file)) => Some(file),
            #[cfg(unix)]
            Some(other) => {
                open.insert((peer, id), other);
                None
            }
            None => None,
        }
    }

    /// Delivers `spooled` and waits until it is durable.
    async fn deliver(
        self: Arc<Self>,
        spooled: Spooled,
        recipients: Vec<String>,
        placement: deliver::Placement,
    ) -> Result<Vec<(String, RecipientResult)>, Refused> {
        let size = spooled.len();
        if size > MAX_MESSAGE_SIZE || placement.prepend.len() > 64 * 1024 {
            return Err(permanent(format!(
                "message of {size} bytes exceeds {MAX_MESSAGE_SIZE}, or its prepended fields 64 KiB"
            ))
            .into());
        }
        // Its file (one, hard-linked per recipient) must leave the floor free.
        self.room(size + placement.prepend.len() as u64)?;
        let store = self.clone();
        let rcpts = recipients.clone();
        // Delivery and its flush on one blocking thread: a lone delivery leads its own group
        // commit with no hand-off between threads.
        let outcomes = blocking(move || {
            let outcomes = {
                let _changing = read(&store.pause);
                let flusher = store.flusher.clone();
                let source = match &spooled {
                    Spooled::Memory { bytes, .. } => deliver::Source::Bytes(bytes),
                    Spooled::File(file, len) => deliver::Source::File(file, *len),
                };
                deliver::deliver_durably(
                    &store.db,
                    &store.files,
                    source,
                    &rcpts,
                    &placement,
                    &move || flusher.flush_blocking(),
                )?
            };
            Ok(outcomes)
        })
        .await
        .inspect_err(|r| {
            if matches!(r, Refused::InsufficientStorage { .. }) {
                // The disk filled in a way the checks did not see: measure afresh.
                self.space.forget();
            }
        })?;
        Ok(recipients
            .into_iter()
            .zip(outcomes)
            .map(|(r, o)| {
                let result = match o {
                    Outcome::Delivered { .. } => RecipientResult::Delivered,
                    Outcome::UnknownAddress => RecipientResult::UnknownAddress,
                };
                (r, result)
            })
            .collect())
    }

    /// Ends every session of `peer` (its link closed: the role exited with all connections).
    pub fn end_sessions(&self, peer: Role) {
        lock(&self.open).retain(|(p, _), _| *p != peer);
        let mut tickets = lock(&self.tickets);
        let ended: Vec<Ticket> = tickets
            .iter()
            .filter(|(_, s)| s.role == peer)
            .map(|(t, _)| *t)
            .collect();
        for t in &ended {
            tickets.remove(t);
            self.feed.unwatch(t);
        }
        if !ended.is_empty() {
            tracing::info!("{} sessions ended with the link", ended.len());
        }
    }

    /// The session `ticket` grants to a caller on `peer`'s link, if valid (the mailbox API for
    /// imapd and httpd checks every request with this).
    pub fn session(&self, peer: Role, ticket: &Ticket) -> Option<Session> {
        let tickets = lock(&self.tickets);
        tickets
            .get(ticket)
            .filter(|s| s.role == peer && s.expires > crate::db::now())
            .cloned()
    }
}

/// Runs blocking store work off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Refused> {
    match ipc::span::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) if e.is_no_space() => {
            tracing::warn!("{e}");
            Err(Refused::InsufficientStorage {
                message: format!("insufficient system storage: {e}"),
            })
        }
        Ok(Err(e)) => {
            match e {
                StoreError::RecipientGone(_) => tracing::info!("{e}"),
                _ => tracing::error!("{e}"),
            }
            Err(temporary(e.to_string()).into())
        }
        Err(e) => Err(temporary(format!("store task: {e}")).into()),
    }
}

fn temporary(message: impl Into<String>) -> Failure {
    Failure {
        temporary: true,
        message: message.into(),
    }
}

fn permanent(message: impl Into<String>) -> Failure {
    Failure {
        temporary: false,
        message: message.into(),
    }
}
