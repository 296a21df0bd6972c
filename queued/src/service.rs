//! queued's requests: temporary files for smtpd to write messages into, and enqueueing them
//! durably under the sending limits of the account storaged names for the submission's
//! session ticket (never an account the submitter names); the administrative listing.
//!
//! New messages are refused for lack of space (`InsufficientStorage`, SMTP's `452 4.3.1`)
//! while the queue directory's free space is under the floor (`[storage] min_free`): when a
//! file is asked for, and when a message is enqueued (its copy must leave the floor free; a
//! copy that failed is measured again, so a full disk answers the same way).
//!
//! The writer of an open file can make it grow after it was handed out, up to its own
//! RLIMIT_FSIZE (smtpd's: the largest message with the header fields smtpd adds, see
//! `ipc::FileSize::Message`), so each open file counts at that size (or its own, if larger)
//! against `[storage] max_open_per_peer`: a link gets a new file only if that leaves the sum
//! within the cap, or if it holds none (one message of the largest size always fits). So what
//! one link's open files can hold stays within the cap, whatever its writer does.

use ipc::sync::lock;
use std::collections::HashMap;
use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ipc::Role;
use ipc::context::PeerSlot;
use ipc::msg::auth::Ticket;
use ipc::msg::queue::{
    self as msg, Admin, AdminReply, FileId, QueueId, QueueService, Refused, Request,
};
use ipc::msg::store::{self, StoreService};
use ipc::rpc::{Answer, Call, Incoming};
use ipc::space::FreeSpace;

use tracing::Instrument;

use crate::store::{Queue, Record};

/// Temporary files one role may hold open.
const MAX_OPEN: usize = 1024;
/// How long queued waits for storaged to name a ticket's account.
const ASK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug)]
pub struct Queued {
    queue: Queue,
    limits: crate::limits::Limits,
    /// Names the account of a submission's session ticket.
    storaged: PeerSlot<StoreService>,
    open: Mutex<HashMap<(Role, u64), File>>,
    held: Mutex<Held>,
    next_file: AtomicU64,
    next_id: AtomicU64,
    /// The queue directory's free space against the floor.
    space: FreeSpace,
    /// Bytes the open files of one link may hold together.
    max_open_per_peer: u64,
    /// The size each open file counts at: the largest its writer can make it.
    file_limit: u64,
}

/// How long a held message waits for its submitter (a DATA takes at most 10 minutes, the
/// local delivery after it seconds); then it is discarded.
pub const HELD_LIMIT: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Held messages by submitter, with what they took from the sending limits and since when;
/// and per role, how many of its links closed (a message enqueued held on a link that closed
/// meanwhile is discarded at once).
#[derive(Debug, Default)]
struct Held {
    messages: HashMap<(Role, u64), (crate::limits::Admitted, std::time::Instant)>,
    links_closed: HashMap<Role, u64>,
}

impl Held {
    /// Takes the held messages `pick` chooses (by key and time held since) off the books.
    fn take(
        &mut self,
        pick: impl Fn(&(Role, u64), &std::time::Instant) -> bool,
    ) -> Vec<(u64, crate::limits::Admitted)> {
        let keys: Vec<(Role, u64)> = self
            .messages
            .iter()
            .filter(|(k, (_, since))| pick(k, since))
            .map(|(k, _)| *k)
            .collect();
        keys.into_iter()
            .filter_map(|k| self.messages.remove(&k).map(|(a, _)| (k.1, a)))
            .collect()
    }
}

fn failed(temporary: bool, message: impl Into<String>) -> Refused {
    Refused::Failed {
        temporary,
        message: message.into(),
    }
}

fn no_space(message: impl Into<String>) -> Refused {
    let message = message.into();
    tracing::warn!("refused for lack of space: {message}");
    Refused::InsufficientStorage { message }
}

impl Queued {
    pub fn new(
        queue: Queue,
        limits: crate::limits::Limits,
        space: FreeSpace,
        max_open_per_peer: u64,
        file_limit: u64,
        storaged: PeerSlot<StoreService>,
    ) -> Arc<Queued> {
        let next_id = queue.max_id() + 1;
        Arc::new(Queued {
            queue,
            limits,
            storaged,
            open: Mutex::default(),
            held: Mutex::default(),
            next_file: AtomicU64::new(1),
            next_id: AtomicU64::new(next_id),
            space,
            max_open_per_peer,
            file_limit,
        })
    }

    pub async fn handle(self: Arc<Self>, peer: Role, incoming: Incoming<QueueService>) {
        let Incoming {
            request,
            reply,
            fds,
        } = incoming;
        fds.into_iter().for_each(sandbox::fdpass::discard);
        let answer = if peer != Role::Submission {
            tracing::warn!("refused a request: not permitted on this link");
            request.refuse(failed(false, "not permitted on this link"))
        } else {
            self.answer(peer, request).await
        };
        if let Err(e) = reply.send(answer).await {
            tracing::warn!("answering: {e}");
        }
    }

    async fn answer(self: Arc<Self>, peer: Role, request: Request) -> Answer<QueueService> {
        match request {
            Request::OpenMessage(_) => match self.open_message(peer) {
                Ok((file, fd)) => msg::OpenMessage::reply(&Ok(file), vec![fd]),
                Err(refused) => msg::OpenMessage::reply(&Err(refused), Vec::new()),
            },
            Request::Abort(msg::Abort { file }) => {
                self.abort(peer, file);
                msg::Abort::reply(&Ok(()), Vec::new())
            }
            Request::Release(msg::Release { id }) => {
                msg::Release::reply(&self.release(peer, id.0).await, Vec::new())
            }
            Request::Discard(msg::Discard { id }) => {
                let Some((admitted, _)) = lock(&self.held).messages.remove(&(peer, id.0)) else {
                    let refused = failed(false, format!("no held message {id}"));
                    return msg::Discard::reply(&Err(refused), Vec::new());
                };
                self.clone().discard(id.0, admitted).await;
                msg::Discard::reply(&Ok(()), Vec::new())
            }
            Request::Enqueue(enqueue) => {
                msg::Enqueue::reply(&self.enqueue(peer, enqueue).await, Vec::new())
            }
        }
    }

    /// Forgets temporary file `file` of `peer`.
    fn abort(&self, peer: Role, file: FileId) {
        lock(&self.open).remove(&(peer, file.0));
    }

    /// A temporary file for `peer` to write a message into.
    fn open_message(&self, peer: Role) -> Result<(FileId, ipc::Handle), Refused> {
        {
            if lock(&self.open).keys().filter(|(p, _)| *p == peer).count() >= MAX_OPEN {
                return Err(failed(true, "too many open messages"));
            }
            if let Err(short) = self.space.check(0) {
                return Err(no_space(short.to_string()));
            }
            let (files, held) = self.open_bytes(peer);
            if files > 0 && held.saturating_add(self.file_limit) > self.max_open_per_peer {
                let why = format!(
                    "{peer}'s {files} open messages may hold {held} bytes; one more would \
                         pass what it may hold ({}, each counting at least {})",
                    self.max_open_per_peer, self.file_limit
                );
                return Err(no_space(why));
            }
            let file = match self.queue.temp_file() {
                Ok(f) => f,
                Err(e) => return Err(failed(true, e)),
            };
            let theirs = match file.try_clone() {
                Ok(f) => ipc::Handle::from(f),
                Err(e) => return Err(failed(true, e.to_string())),
            };
            let id = self.next_file.fetch_add(1, Ordering::Relaxed);
            lock(&self.open).insert((peer, id), file);
            Ok((FileId(id), theirs))
        }
    }

    /// Lets held message `id` of `peer` go.
    async fn release(self: Arc<Self>, peer: Role, id: u64) -> Result<(), Refused> {
        {
            let Some((admitted, _)) = lock(&self.held).messages.remove(&(peer, id)) else {
                return Err(failed(false, format!("no held message {id}")));
            };
            let this = self.clone();
            match ipc::span::spawn_blocking(move || this.queue.release(id)).await {
                Ok(Ok(())) => {
                    drop(admitted);
                    tracing::info!("released {id}");
                    Ok(())
                }
                Ok(Err(e)) => {
                    // Its state on disk is unknown: it stays held, and goes at start.
                    tracing::error!("releasing {id}: {e}");
                    Err(failed(true, e))
                }
                Err(e) => Err(failed(true, format!("release task: {e}"))),
            }
        }
    }

    /// Queues the message `peer` wrote, once it is durable.
    async fn enqueue(
        self: Arc<Self>,
        peer: Role,
        msg::Enqueue {
            file,
            ticket,
            envelope,
            prepend,
            held,
        }: msg::Enqueue,
    ) -> Result<QueueId, Refused> {
        let file = file.0;
        {
            let generation = lock(&self.held)
                .links_closed
                .get(&peer)
                .copied()
                .unwrap_or(0);
            let Some(mut src) = lock(&self.open).remove(&(peer, file)) else {
                return Err(failed(false, format!("no open message {file}")));
            };
            if envelope.recipients.is_empty() {
                return Err(failed(false, "no recipients"));
            }
            // Its copy must leave the floor free.
            let need = src.metadata().map_or(0, |m| m.len()) + prepend.len() as u64;
            if let Err(short) = self.space.check(need) {
                return Err(no_space(short.to_string()));
            }
            let account = match self.account_of(ticket).await {
                Ok(account) => account,
                Err(refused) => return Err(refused),
            };
            let envelope = envelope.for_account(account);
            let admitted = match self
                .limits
                .admit(&envelope.account, &envelope.recipients, now())
            {
                Ok(a) => a,
                Err(over) => {
                    tracing::warn!(
                        "{} reached {} = {}: message refused",
                        envelope.account,
                        over.setting,
                        over.limit
                    );
                    return Err(Refused::OverLimit {
                        setting: over.setting.to_string(),
                        limit: over.limit,
                        retry_after_secs: over.retry_after_secs,
                    });
                }
            };
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let this = self.clone();
            let done = ipc::span::spawn_blocking(move || {
                let mut record = Record {
                    envelope,
                    prepend,
                    size: 0,
                    queued_at: now(),
                    attempts: 0,
                    last_error: None,
                    held,
                };
                if let Err(e) = this.queue.enqueue(id, &mut src, &mut record) {
                    this.limits.rollback(&admitted);
                    return Err(e);
                }
                if let Err(e) = this.limits.save(&admitted) {
                    tracing::error!("saving the sending ledger: {e}");
                }
                Ok::<_, String>((record, admitted))
            })
            .await;
            match done {
                Ok(Ok((record, admitted))) => {
                    if record.held {
                        let mut held = lock(&self.held);
                        let now_closed = held.links_closed.get(&peer).copied().unwrap_or(0);
                        if now_closed == generation {
                            held.messages
                                .insert((peer, id), (admitted, std::time::Instant::now()));
                        } else {
                            // The link it came on is gone: nobody will release it.
                            drop(held);
                            tokio::spawn(self.clone().discard(id, admitted).in_current_span());
                        }
                    }
                    tracing::info!(
                        "queued {id}: {} octets from <{}> for {} recipient(s)",
                        record.size,
                        record.envelope.from,
                        record.envelope.recipients.len()
                    );
                    Ok(QueueId(id))
                }
                Ok(Err(e)) => {
                    tracing::error!("queueing: {e}");
                    // A full disk, if a fresh reading finds the copy (taken back) no
                    // longer fits above the floor.
                    self.space.forget();
                    match self.space.check(need) {
                        Err(short) => Err(no_space(format!("{short} ({e})"))),
                        Ok(()) => Err(failed(true, e)),
                    }
                }
                Err(e) => Err(failed(true, format!("queueing task: {e}"))),
            }
        }
    }

    /// How many files `peer` holds open, and the bytes they may hold: each at the size its
    /// writer can make it, or its own if larger (a writer without the file limit: a role run
    /// unsandboxed, or a test).
    fn open_bytes(&self, peer: Role) -> (u64, u64) {
        lock(&self.open)
            .iter()
            .filter(|((p, _), _)| *p == peer)
            .fold((0, 0), |(files, bytes), (_, f)| {
                let len = f.metadata().map_or(0, |m| m.len());
                (files + 1, bytes + len.max(self.file_limit))
            })
    }

    /// The account of the submission session of `ticket`, as storaged knows it; a temporary
    /// refusal when storaged does not know the ticket (expired, revoked, forged) or cannot say.
    async fn account_of(&self, ticket: Ticket) -> Result<store::AccountId, Refused> {
        let storaged = self
            .storaged
            .current()
            .ok_or_else(|| failed(true, "storaged is not reachable"))?;
        let request = store::SubmissionAccount { ticket };
        match tokio::time::timeout(ASK_TIMEOUT, storaged.ask(request)).await {
            Ok(Ok(Ok(Some(account)))) => Ok(account),
            Ok(Ok(Ok(None))) => {
                tracing::warn!(
                    "submission enqueued a message for an unknown or expired session ticket; refused"
                );
                Err(failed(true, "the session ticket is not valid"))
            }
            Ok(Ok(Err(refused))) => Err(failed(true, format!("storaged: {refused}"))),
            Ok(Err(e)) => Err(failed(true, format!("storaged: {e}"))),
            Err(_) => Err(failed(true, "storaged did not answer")),
        }
    }

    /// A link from `peer` closed: its temporary files are gone with it, and the messages it
    /// held (their clients were not told they were accepted) are discarded. The bookkeeping is
    /// done before this returns, so a new link of the same role is never mistaken for the old.
    pub fn link_closed(self: &Arc<Self>, peer: Role) {
        lock(&self.open).retain(|(p, _), _| *p != peer);
        let orphans = {
            let mut held = lock(&self.held);
            *held.links_closed.entry(peer).or_insert(0) += 1;
            held.take(|(p, _), _| *p == peer)
        };
        self.discard_all(orphans, &format!("{peer} went away before releasing it"));
    }

    /// Discards held messages older than [`HELD_LIMIT`] (their submitter lost track of them).
    pub fn expire_held(self: &Arc<Self>) {
        let expired = lock(&self.held).take(|_, since| since.elapsed() > HELD_LIMIT);
        self.discard_all(expired, "never released");
    }

    fn discard_all(self: &Arc<Self>, messages: Vec<(u64, crate::limits::Admitted)>, why: &str) {
        for (id, admitted) in messages {
            tracing::warn!("discarding held message {id}: {why}");
            tokio::spawn(self.clone().discard(id, admitted).in_current_span());
        }
    }

    /// Removes held message `id` and gives its recipients back to the sending limits.
    async fn discard(self: Arc<Self>, id: u64, admitted: crate::limits::Admitted) {
        let this = self.clone();
        let removed = ipc::span::spawn_blocking(move || {
            let removed = this.queue.remove(id);
            if removed.is_ok() {
                this.limits.rollback(&admitted);
                if let Err(e) = this.limits.save(&admitted) {
                    tracing::error!("saving the sending ledger: {e}");
                }
            }
            removed
        })
        .await;
        match removed {
            Ok(Ok(())) => tracing::info!("discarded held message {id}"),
            Ok(Err(e)) => tracing::error!("discarding {id}: {e} (removed at the next start)"),
            Err(e) => tracing::error!("discarding {id}: {e}"),
        }
    }

    pub async fn admin(self: Arc<Self>, call: ipc::AdminCall) {
        use ipc::msg::control::{AdminReply as Reply, RoleAdmin};
        let ipc::AdminCall {
            request,
            fds,
            reply,
        } = call;
        fds.into_iter().for_each(sandbox::fdpass::discard);
        let RoleAdmin::Queue(Admin::List) = request else {
            let _ = reply.send(Err("not a queued request".into()));
            return;
        };
        let this = self.clone();
        let result = ipc::span::spawn_blocking(move || this.queue.list())
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r)
            .map(|list| Reply::Queue(AdminReply::List(list)));
        let _ = reply.send(result);
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::atomic::AtomicU64;

    use ipc::config::MinFree;

    use super::*;

    /// queued over a temporary directory whose file system reports `free` bytes (set by the
    /// test) under a floor of 1 MiB; one link may hold `share` bytes in open files, each
    /// counting at least `file_limit`.
    fn queued_with(
        share: u64,
        file_limit: u64,
    ) -> (Arc<Queued>, Arc<AtomicU64>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let free = Arc::new(AtomicU64::new(1 << 30));
        let f = free.clone();
        let space = FreeSpace::with_reader(
            MinFree::Bytes(1 << 20),
            Box::new(move || Ok((f.load(Ordering::SeqCst), 1 << 40))),
        );
        let queue = Queue::open(dir.path()).unwrap();
        let limits = crate::limits::Limits::open(dir.path(), 1000, 1000).unwrap();
        (
            Queued::new(
                queue,
                limits,
                space,
                share,
                file_limit,
                storaged_naming("a"),
            ),
            free,
            dir,
        )
    }

    /// A storaged stand-in that names `account` for every submission ticket.
    fn storaged_naming(account: &'static str) -> PeerSlot<StoreService> {
        let (ours, theirs) = ipc::Link::memory_pair("queued→storaged", "storaged←queued");
        let (incoming_tx, incoming) = tokio::sync::mpsc::unbounded_channel();
        incoming_tx.send((Role::Queued, theirs)).unwrap();
        std::mem::forget(incoming_tx);
        tokio::spawn(ipc::serve::accept_links::<StoreService, _, _, _>(
            incoming,
            tokio_util::sync::CancellationToken::new(),
            tokio_util::task::TaskTracker::new(),
            ipc::Reporter::detached(),
            move |_peer, incoming: Incoming<StoreService>| async move {
                let answer = match incoming.request {
                    store::Request::SubmissionAccount(_) => {
                        let account = Some(store::AccountId::from(account));
                        store::SubmissionAccount::reply(&Ok(account), Vec::new())
                    }
                    other => panic!("queued asked storaged {other:?}"),
                };
                incoming.reply.send(answer).await.unwrap();
            },
            |_| {},
        ));
        let peers = ipc::grant::QueuedPeers::default();
        ipc::PeerLinks::connect(&peers, Role::Storaged, ours).unwrap();
        peers.storaged.clone()
    }

    fn queued(share: u64) -> (Arc<Queued>, Arc<AtomicU64>, tempfile::TempDir) {
        queued_with(share, 1000)
    }

    /// Asks for a file and writes `len` bytes into it; returns its id.
    async fn open_with(q: &Arc<Queued>, len: usize) -> Result<FileId, Refused> {
        let (file, fd) = q.open_message(Role::Submission)?;
        File::from(fd).write_all(&vec![b'x'; len]).unwrap();
        Ok(file)
    }

    fn enqueue(file: FileId) -> msg::Enqueue {
        msg::Enqueue {
            file,
            ticket: ipc::msg::auth::Ticket([1; 16]),
            envelope: ipc::msg::queue::SubmittedEnvelope {
                from: "a@example.org".into(),
                recipients: vec!["b@example.com".into()],
                smtputf8: false,
                eight_bit: false,
                requiretls: false,
            },
            prepend: Vec::new(),
            held: false,
        }
    }

    #[tokio::test]
    async fn under_the_floor_no_file_is_given_and_nothing_is_queued() {
        let (q, free, _dir) = queued(1 << 30);
        let file = open_with(&q, 1000).await.unwrap();
        // Space fell to just over the floor: the message (1000 bytes) would go under it.
        // (A reading far above the floor is reused for a second: forget it, as a second would.)
        free.store((1 << 20) + 500, Ordering::SeqCst);
        q.space.forget();
        let answer = q.clone().enqueue(Role::Submission, enqueue(file)).await;
        assert!(
            matches!(&answer, Err(Refused::InsufficientStorage { message }) if message.starts_with("insufficient system storage")),
            "{answer:?}"
        );
        assert!(q.queue.list().unwrap().is_empty());
        free.store((1 << 20) - 1, Ordering::SeqCst);
        q.space.forget();
        assert!(matches!(
            open_with(&q, 0).await,
            Err(Refused::InsufficientStorage { .. })
        ));
        free.store(1 << 30, Ordering::SeqCst);
        q.space.forget();
        let file = open_with(&q, 1000).await.unwrap();
        let answer = q.clone().enqueue(Role::Submission, enqueue(file)).await;
        assert!(answer.is_ok(), "{answer:?}");
    }

    #[tokio::test]
    async fn a_link_whose_open_files_hold_its_share_gets_no_new_one() {
        let (q, _, _dir) = queued(10_000);
        let big = open_with(&q, 12_000).await.unwrap();
        let answer = open_with(&q, 0).await.unwrap_err();
        assert!(
            matches!(&answer, Refused::InsufficientStorage { message } if message.contains("12000 bytes")),
            "{answer:?}"
        );
        q.abort(Role::Submission, big);
        open_with(&q, 100).await.unwrap();
    }

    /// The writer can grow a file after it was handed out (up to its RLIMIT_FSIZE), so empty
    /// files count at that size: the link cannot gather more files than the cap holds when
    /// each is filled to the limit.
    #[tokio::test]
    async fn every_open_file_counts_at_the_size_its_writer_may_make_it() {
        let (q, _, _dir) = queued_with(10_000, 4_000);
        let files = [
            open_with(&q, 0).await.unwrap(),
            open_with(&q, 0).await.unwrap(),
        ];
        let answer = open_with(&q, 0).await.unwrap_err();
        assert!(
            matches!(&answer, Refused::InsufficientStorage { message } if message.contains("2 open messages may hold 8000 bytes")),
            "{answer:?}"
        );
        q.abort(Role::Submission, files[0]);
        open_with(&q, 0).await.unwrap();
    }

    /// A cap smaller than one file of the largest size still lets one message through at a
    /// time.
    #[tokio::test]
    async fn a_link_holding_no_file_always_gets_one() {
        let (q, _, _dir) = queued_with(1_000, 4_000);
        let file = open_with(&q, 0).await.unwrap();
        assert!(open_with(&q, 0).await.is_err());
        q.abort(Role::Submission, file);
        open_with(&q, 0).await.unwrap();
    }
}
