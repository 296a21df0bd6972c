//! Delivery: from a temporary file written by smtpd or queued to a durable message in the inbox
//! of every local recipient, acknowledged only after it is on disk.
//!
//! Steps: resolve recipients → copy the bytes into a file only storaged holds (fsync) and
//! hard-link one per extra recipient (fsync the directories) → one database transaction for all
//! recipients → group flush (fsync) → answer.

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

/// Delivers the first `size` bytes of `src` to `recipients`; everything but the final flush.
/// Several recipients of one account get one copy.
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

pub fn deliver(
    db: &Db,
    files: &Files,
    src: &File,
    size: u64,
    recipients: &[String],
) -> Result<Vec<Outcome>> {
    deliver_with(db, files, src, size, recipients, &Placement::default())
}

/// Like [`deliver`], with `placement`.
pub fn deliver_with(
    db: &Db,
    files: &Files,
    src: &File,
    size: u64,
    recipients: &[String],
    placement: &Placement,
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
    let (head, unsynced) = files.store_unsynced(src, size, &ids, &placement.prepend)?;
    let size = size + placement.prepend.len() as u64;
    // The message is parsed (from the page cache) while its file is synced; the database
    // refers to it only once both are done.
    let (synced, analyzed) = std::thread::scope(|s| {
        let sync = s.spawn(|| unsynced.sync());
        let analyzed = crate::structure::analyze(files, ids[0], &head);
        let synced = sync.join().unwrap_or_else(|_| {
            Err(StoreError::File {
                path: "message file".into(),
                source: std::io::Error::other("sync thread panicked"),
            })
        });
        (synced, analyzed)
    });
    let (envelope, structure) = match synced.and(analyzed) {
        Ok(parsed) => parsed,
        Err(e) => {
            files.remove_new(&ids);
            return Err(e);
        }
    };
    let date = now();
    let entries: Vec<(u64, Message)> = targets
        .iter()
        .zip(&ids)
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
    let uids = match db.append_messages(&entries) {
        Ok(uids) => uids,
        Err(e) => {
            for id in &ids {
                let _ = files.remove(*id);
            }
            return Err(e);
        }
    };
    Ok(outcomes
        .into_iter()
        .map(|o| match o {
            None => Outcome::UnknownAddress,
            Some(i) => Outcome::Delivered {
                account: targets[i].0.clone(),
                mailbox: targets[i].1,
                uid: uids[i],
            },
        })
        .collect())
}

impl Db {
    /// Appends messages to mailboxes in one transaction: assigns UIDs and modseqs, updates
    /// UIDNEXT, HIGHESTMODSEQ and the counts. Returns the UIDs in order.
    pub fn append_messages(&self, entries: &[(u64, Message)]) -> Result<Vec<u32>> {
        let uids = (&self.accounts, &self.mailboxes, &self.messages, &self.feed).transaction(
            |(accounts, mailboxes, messages, feed)| {
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
                    uids.push(uid);
                }
                Ok(uids)
            },
        )?;
        Ok(uids)
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
    flushing: bool,
    /// The outcome of the last finished flush (a later successful flush covers earlier
    /// changes as well, so its success is every waiter's).
    last: Result<(), String>,
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
                last: Ok(()),
            }),
            done: std::sync::Condvar::new(),
        }))
    }

    /// Returns once everything committed before this call is durable.
    pub async fn flush(&self) -> Result<()> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.flush_blocking())
            .await
            .map_err(|e| StoreError::Db(format!("flush task: {e}")))?
    }

    /// [`Flusher::flush`] for a thread that may block.
    pub fn flush_blocking(&self) -> Result<()> {
        let shared = &self.0;
        let lock = || shared.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut state = lock();
        state.requested += 1;
        let ticket = state.requested;
        loop {
            if state.covered >= ticket {
                return state.last.clone().map_err(StoreError::Db);
            }
            if state.flushing {
                state = shared.done.wait(state).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            // Lead: this flush covers every ticket handed out so far (their changes were
            // committed before they asked).
            state.flushing = true;
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
            state = lock();
            state.flushing = false;
            state.covered = upto;
            state.last = outcome.map_err(|e| e.to_string());
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
