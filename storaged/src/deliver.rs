//! Delivery: from the bytes smtpd sent through a pipe (or a file: an upload, `moxctl`) to a
//! durable message in the inbox of every local recipient, acknowledged only after it is on
//! disk.
//!
//! Steps: resolve recipients → write the bytes into a file only storaged holds and hard-link
//! one per extra recipient → one database transaction for all recipients → group flush
//! (fdatasync) → answer. Small messages go into that transaction too and their files are
//! synced later ([`crate::inline`]); larger ones are synced while the transaction and flush
//! run, their records marked pending until both are done ([`deliver_durably`]).

use ipc::sync::lock;
use std::fs::File;
use std::sync::Arc;

use sled::Transactional;
use sled::transaction::ConflictableTransactionError as TxError;

use crate::db::record::{self, Flags, Message};
use crate::db::{Db, keys, now, tx};
use crate::error::{Result, StoreError};
use crate::files::Files;

/// What happened to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered {
        account: String,
        mailbox: u64,
        uid: u32,
    },
    UnknownAddress,
}

pub use crate::files::Source;

/// How a delivery is filed beyond its bytes.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    /// Header fields written before the message (smtpd's Authentication-Results).
    pub prepend: Vec<u8>,
    /// Into the Junk mailbox instead of the Inbox (a DMARC quarantine policy).
    pub junk: bool,
    /// To every recipient or to none: an SMTP client was told at RCPT that each was accepted,
    /// and one reply covers them all, so an address removed since then fails the whole
    /// delivery (temporarily: the client's retry hears 550 for it at RCPT).
    pub all_or_nothing: bool,
}

/// Delivers the first `size` bytes of `src` to `recipients`, durably. Several recipients of
/// one account get one copy.
pub fn deliver(
    db: &Db,
    files: &Files,
    src: &File,
    size: u64,
    recipients: &[String],
) -> Result<Vec<Outcome>> {
    deliver_with(db, files, src, size, recipients, &Placement::default())
}

/// Like [`deliver`], with `placement`; durable when it returns (a plain database flush).
pub fn deliver_with(
    db: &Db,
    files: &Files,
    src: &File,
    size: u64,
    recipients: &[String],
    placement: &Placement,
) -> Result<Vec<Outcome>> {
    deliver_durably(
        db,
        files,
        Source::File(src, size),
        recipients,
        placement,
        &|| db.flush(),
    )
}

/// Delivers and returns once the message files and the database records are durable,
/// `flush` making the records durable (storaged's group commit).
///
/// The files are synced while the database flushes, not before: the records are written
/// marked as pending (the `pending` tree, in the same transaction), and the marks are taken
/// away once both are durable. A crash in between can leave a durable record whose file is
/// not: [`crate::verify::settle_pending`] checks every marked file at start and takes back the
/// records of those that did not survive — deliveries no client was told had succeeded.
pub fn deliver_durably(
    db: &Db,
    files: &Files,
    src: Source<'_>,
    recipients: &[String],
    placement: &Placement,
    flush: &(dyn Fn() -> Result<()> + Sync),
) -> Result<Vec<Outcome>> {
    let mailbox_name = if placement.junk { "Junk" } else { "Inbox" };
    let mut outcomes = Vec::with_capacity(recipients.len());
    let mut targets: Vec<(String, u64)> = Vec::new();
    for rcpt in recipients {
        match db.resolve(rcpt)? {
            None => outcomes.push(None),
            Some(account) => {
                let index = match targets.iter().position(|(a, _)| *a == account) {
                    Some(i) => i,
                    None => {
                        let found = match db.mailbox_by_name(&account, mailbox_name)? {
                            Some(m) => Some(m),
                            // An account without Junk gets quarantined mail in its Inbox.
                            None => db.mailbox_by_name(&account, "Inbox")?,
                        };
                        let (inbox, _) = found
                            .ok_or_else(|| StoreError::NoMailbox(format!("{account}/Inbox")))?;
                        targets.push((account, inbox));
                        targets.len() - 1
                    }
                };
                outcomes.push(Some(index));
            }
        }
    }
    if placement.all_or_nothing
        && let Some(i) = outcomes.iter().position(Option::is_none)
    {
        return Err(StoreError::RecipientGone(recipients[i].clone()));
    }
    if targets.is_empty() {
        return Ok(outcomes
            .into_iter()
            .map(|_| Outcome::UnknownAddress)
            .collect());
    }
    let ids = targets
        .iter()
        .map(|_| db.new_id())
        .collect::<Result<Vec<u64>>>()?;
    let size = src.len() + placement.prepend.len() as u64;
    if let Source::Bytes(bytes) = src
        && size <= crate::inline::INLINE_LIMIT as u64
    {
        let whole = [placement.prepend.as_slice(), bytes].concat();
        return deliver_inline(db, files, &targets, &ids, &whole, outcomes, flush);
    }
    // The files are written before any record can refer to them (a reader may open them at
    // once); a message in memory is parsed from there, one in a file from the head kept.
    let (head, unsynced) = match src {
        Source::Bytes(bytes) => {
            let whole = [placement.prepend.as_slice(), bytes].concat();
            let unsynced = files.store_bytes_unsynced(&whole, &ids)?;
            (whole, unsynced)
        }
        Source::File(file, size) => files.store_unsynced(file, size, &ids, &placement.prepend)?,
    };
    // The files sync from now on, while the message is parsed, its records written (marked
    // pending) and flushed; both are durable once both are done.
    // If no thread can be had, the files are synced first (the plain order).
    let unsynced = std::sync::Mutex::new(Some(unsynced));
    let outcome = std::thread::scope(|s| {
        let sync_now = || {
            let taken = lock(&unsynced).take();
            taken.map_or(Ok(()), crate::files::Unsynced::sync)
        };
        let sync = match std::thread::Builder::new().spawn_scoped(s, sync_now) {
            Ok(handle) => Some(handle),
            Err(_) => {
                if let Err(e) = sync_now() {
                    return (Err(e), Ok(()));
                }
                None
            }
        };
        let recorded = record(db, files, &targets, &ids, size, &head, Marks::Pending);
        let flushed = match &recorded {
            Ok(_) => flush(),
            Err(_) => Ok(()),
        };
        let synced = sync.map_or(Ok(()), |handle| {
            handle.join().unwrap_or_else(|_| {
                Err(StoreError::File {
                    path: "message file".into(),
                    source: std::io::Error::other("sync thread panicked"),
                })
            })
        });
        (recorded, flushed.and(synced))
    });
    let uids = match outcome {
        (Ok(uids), Ok(())) => uids,
        (Err(e), _) => {
            files.remove_new(&ids);
            return Err(e);
        }
        (Ok(uids), Err(e)) => {
            // Not durable, so not delivered: take the records back, then the files. If a
            // record cannot be taken back, files and marks stay: the check at start finishes
            // the job.
            if take_back(db, &targets, &uids) {
                files.remove_new(&ids);
                db.settle(&ids);
                let _ = flush();
            }
            return Err(e);
        }
    };
    db.settle(&ids);
    Ok(delivered(outcomes, &targets, &uids))
}

/// Removes the records `uids` just appended to `targets`; false if one could not be.
fn take_back(db: &Db, targets: &[(String, u64)], uids: &[u32]) -> bool {
    let mut undone = true;
    for ((_, mailbox), uid) in targets.iter().zip(uids) {
        if let Err(undo) = db.remove_uid(*mailbox, *uid) {
            tracing::error!("taking back message {uid} of mailbox {mailbox}: {undo}");
            undone = false;
        }
    }
    undone
}

/// Each recipient's outcome: its target's account, mailbox and new UID, or unknown.
fn delivered(
    outcomes: Vec<Option<usize>>,
    targets: &[(String, u64)],
    uids: &[u32],
) -> Vec<Outcome> {
    outcomes
        .into_iter()
        .map(|o| match o {
            None => Outcome::UnknownAddress,
            Some(i) => Outcome::Delivered {
                account: targets[i].0.clone(),
                mailbox: targets[i].1,
                uid: uids[i],
            },
        })
        .collect()
}

/// A small message (see [`crate::inline`]): its files written but not synced, its bytes
/// written with its records, and both durable with one flush.
fn deliver_inline(
    db: &Db,
    files: &Files,
    targets: &[(String, u64)],
    ids: &[u64],
    whole: &[u8],
    outcomes: Vec<Option<usize>>,
    flush: &(dyn Fn() -> Result<()> + Sync),
) -> Result<Vec<Outcome>> {
    // Synced by the checkpointer (or written again from the bodies at start).
    let _unsynced = files.store_bytes_unsynced(whole, ids)?;
    let size = whole.len() as u64;
    let uids = match record(db, files, targets, ids, size, whole, Marks::Bodies(whole)) {
        Ok(uids) => uids,
        Err(e) => {
            files.remove_new(ids);
            return Err(e);
        }
    };
    if let Err(e) = flush() {
        // Not durable, so not delivered (as in `deliver_durably`); the checkpointer drops the
        // bodies of records that are gone.
        if take_back(db, targets, &uids) {
            files.remove_new(ids);
        }
        return Err(e);
    }
    db.checkpoint.poke();
    Ok(delivered(outcomes, targets, &uids))
}

impl Db {
    /// Appends messages to mailboxes in one transaction: assigns UIDs and modseqs, updates
    /// UIDNEXT, HIGHESTMODSEQ and the counts. Returns the UIDs in order.
    pub fn append_messages(&self, entries: &[(u64, Message)]) -> Result<Vec<u32>> {
        self.append_messages_marked(entries, Marks::None)
    }

    /// Like [`Db::append_messages`]; with `pending`, each message's file is marked as not yet
    /// known to be durable (see [`deliver_durably`]).
    pub fn append_messages_pending(
        &self,
        entries: &[(u64, Message)],
        pending: bool,
    ) -> Result<Vec<u32>> {
        let marks = if pending { Marks::Pending } else { Marks::None };
        self.append_messages_marked(entries, marks)
    }

    /// Like [`Db::append_messages`], marking each message's file as `marks` says.
    pub(crate) fn append_messages_marked(
        &self,
        entries: &[(u64, Message)],
        marks: Marks<'_>,
    ) -> Result<Vec<u32>> {
        let marked = match marks {
            Marks::Bodies(_) => &self.bodies,
            Marks::None | Marks::Pending => &self.pending,
        };
        let trees = (
            &self.accounts,
            &self.mailboxes,
            &self.messages,
            &self.feed,
            marked,
        );
        let uids = trees.transaction(|(accounts, mailboxes, messages, feed, marked)| {
            let mut uids = Vec::with_capacity(entries.len());
            for (mailbox_id, message) in entries {
                let key = keys::mailbox(*mailbox_id);
                let mut mailbox = tx::mailbox(mailboxes, *mailbox_id)?;
                let mut account = tx::account(accounts, &mailbox.account)?;
                account.modseq += 1;
                let mut message = message.clone();
                message.modseq = account.modseq;
                let uid = mailbox.uidnext;
                mailbox.uidnext = uid.checked_add(1).ok_or_else(|| {
                    TxError::Abort(StoreError::Invalid {
                        what: "mailbox",
                        why: format!("{} has used up its UIDs", mailbox.name),
                    })
                })?;
                mailbox.highest_modseq = account.modseq;
                mailbox.counts.add(&message);
                messages.insert(
                    &keys::message(*mailbox_id, uid),
                    record::encode(&message).map_err(TxError::Abort)?,
                )?;
                mailboxes.insert(&key, record::encode(&mailbox).map_err(TxError::Abort)?)?;
                accounts.insert(
                    mailbox.account.as_bytes(),
                    record::encode(&account).map_err(TxError::Abort)?,
                )?;
                let change = record::FeedRecord::New {
                    mailbox: *mailbox_id,
                    uid,
                };
                feed.insert(
                    keys::feed(&mailbox.account, account.modseq),
                    record::encode(&change).map_err(TxError::Abort)?,
                )?;
                let mark = match marks {
                    Marks::None => None,
                    Marks::Pending => Some(record::encode(&PendingFile {
                        mailbox: *mailbox_id,
                        uid,
                        size: message.size,
                    })),
                    Marks::Bodies(bytes) => Some(record::encode(&crate::inline::Body {
                        mailbox: *mailbox_id,
                        uid,
                        bytes: bytes.to_vec(),
                    })),
                };
                if let Some(mark) = mark {
                    marked.insert(&message.file.to_be_bytes(), mark.map_err(TxError::Abort)?)?;
                }
                uids.push(uid);
            }
            Ok(uids)
        })?;
        Ok(uids)
    }
}

/// How the files of appended messages are marked.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Marks<'a> {
    /// Durable before the records are.
    None,
    /// Being synced while the records are written (see [`deliver_durably`]).
    Pending,
    /// Not synced: these bytes go into the database with the records (see [`crate::inline`]).
    Bodies(&'a [u8]),
}

/// Parses the message (from its first file) and writes one record per target, its file marked
/// as `marks` says.
fn record(
    db: &Db,
    files: &Files,
    targets: &[(String, u64)],
    ids: &[u64],
    size: u64,
    head: &[u8],
    marks: Marks<'_>,
) -> Result<Vec<u32>> {
    let (envelope, structure) = crate::structure::analyze(files, ids[0], size, head)?;
    let date = now();
    let entries: Vec<(u64, Message)> = targets
        .iter()
        .zip(ids)
        .map(|((_, mailbox), file)| {
            (
                *mailbox,
                Message {
                    file: *file,
                    size,
                    modseq: 0,
                    flags: Flags::default(),
                    keywords: Vec::new(),
                    internal_date: date,
                    envelope: envelope.clone(),
                    structure: structure.clone(),
                },
            )
        })
        .collect();
    // sled's log may have failed on a thread of its own since the last flush: then this write
    // is the first to hear of it.
    db.append_messages_marked(&entries, marks)
        .inspect_err(|e| db.notice(e))
}

/// A message file whose record was written before the file was known to be durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingFile {
    pub mailbox: u64,
    pub uid: u32,
    pub size: u64,
}

impl Db {
    /// Takes away the pending marks of files `ids`, now durable (persisted by a later flush; a
    /// crash before that only makes the start check them once more).
    pub fn settle(&self, ids: &[u64]) {
        for id in ids {
            if let Err(e) = self.pending.remove(id.to_be_bytes()) {
                tracing::error!("settling message file {id}: {e}");
            }
        }
    }

    /// Every pending mark: (file id, mark).
    pub fn pending_files(&self) -> Result<Vec<(u64, PendingFile)>> {
        let mut out = Vec::new();
        for e in self.pending.iter() {
            let (k, v) = e?;
            out.push((keys::u64_of("pending", &k)?, record::decode("pending", &v)?));
        }
        Ok(out)
    }
}

/// Group commit: every caller waits for a flush that started after its change was committed;
/// callers arriving during a flush share the next one. The first caller to find no flush
/// running does it itself, on its own (blocking) thread, so a lone delivery pays no thread
/// hand-off; the others sleep until a flush that covers them has ended.
#[derive(Clone)]
pub struct Flusher(Arc<FlushShared>);

impl std::fmt::Debug for Flusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Flusher")
    }
}

struct FlushShared {
    db: Db,
    feed: Arc<crate::feed::Feed>,
    state: std::sync::Mutex<FlushState>,
    done: std::sync::Condvar,
}

struct FlushState {
    /// Tickets handed out: each caller takes the next.
    requested: u64,
    /// Every ticket up to this one is covered by a finished flush.
    covered: u64,
    /// A panic (the build aborts on panic) cannot leave this set. A flush that fails sets the
    /// database's failure latch (`Db::flush`): every caller waiting then, and every later one,
    /// gets an error, never a success (see `crate::db::failure`).
    flushing: bool,
    /// Flushes led so far: each one `fdatasync`s the database log once (measured by the
    /// benchmark: deliveries per flush is how well group commit batches).
    flushes: u64,
}

impl Flusher {
    /// A flusher that after each flush publishes the changes it made durable to `feed`'s
    /// watchers.
    pub fn start(db: Db, feed: Arc<crate::feed::Feed>) -> Flusher {
        Flusher(Arc::new(FlushShared {
            db,
            feed,
            state: std::sync::Mutex::new(FlushState {
                requested: 0,
                covered: 0,
                flushing: false,
                flushes: 0,
            }),
            done: std::sync::Condvar::new(),
        }))
    }

    /// Returns once everything committed before this call is durable.
    pub async fn flush(&self) -> Result<()> {
        let this = self.clone();
        ipc::span::spawn_blocking(move || this.flush_blocking())
            .await
            .map_err(|source| StoreError::Task {
                what: "flush",
                source,
            })?
    }

    /// How many flushes of the database this flusher has made (every caller it served shared
    /// one of them).
    pub fn flushes(&self) -> u64 {
        lock(&self.0.state).flushes
    }

    /// [`Flusher::flush`] for a thread that may block.
    pub fn flush_blocking(&self) -> Result<()> {
        let shared = &self.0;
        let state_now = || lock(&shared.state);
        let mut state = state_now();
        state.requested += 1;
        let ticket = state.requested;
        loop {
            if let Some(why) = shared.db.failure.why() {
                return Err(StoreError::Failed(why.to_string()));
            }
            if state.covered >= ticket {
                return Ok(());
            }
            if state.flushing {
                state = shared.done.wait(state).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            // Lead: this flush covers every ticket handed out so far (their changes were
            // committed before they asked).
            state.flushing = true;
            state.flushes += 1;
            let upto = state.requested;
            drop(state);
            let outcome = (|| {
                let mark = crate::feed::Feed::watermark(&shared.db)?;
                shared.db.flush()?;
                if let Err(e) = shared.feed.publish(&shared.db, &mark) {
                    tracing::error!("publishing changes: {e}");
                }
                Ok::<_, StoreError>(())
            })();
            state = state_now();
            state.flushing = false;
            match outcome {
                Ok(()) => state.covered = upto,
                // Those it covered hear of the failure from the latch on their next turn of the
                // loop. (A failed flush set it already; this is for the watermark's read.)
                Err(e) => shared.db.failure.trip(&e.to_string()),
            }
            shared.done.notify_all();
        }
    }
}

#[cfg(test)]
mod flusher_tests {
    use std::sync::Arc;

    use super::Flusher;

    /// Many threads at once: every one returns, and a change each made before asking is in
    /// the flushed database (checked by reopening a copy of what is on disk is beyond a unit
    /// test; what is checked here is that no caller is lost or left waiting).
    #[test]
    fn concurrent_callers_all_return() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(dir.path()).unwrap();
        let feed = Arc::new(crate::feed::Feed::default());
        let flusher = Flusher::start(db.clone(), feed);
        std::thread::scope(|s| {
            for t in 0..8u64 {
                let (flusher, db) = (flusher.clone(), db.clone());
                s.spawn(move || {
                    for i in 0..50u64 {
                        db.meta
                            .insert(format!("t{t}-{i}"), &i.to_be_bytes())
                            .unwrap();
                        flusher.flush_blocking().unwrap();
                    }
                });
            }
        });
        let state = flusher.0.state.lock().unwrap();
        assert_eq!((state.requested, state.covered), (400, 400));
        assert!(!state.flushing);
    }
}
