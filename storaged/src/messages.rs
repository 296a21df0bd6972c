//! Message operations within mailboxes: flags and keywords with CONDSTORE semantics, expunge
//! with QRESYNC tombstones, copy and move, and changes since a modseq. Every change bumps the
//! account's modseq; counts are updated in the same transaction.

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError as TxError, TransactionalTree};

use crate::db::record::{self, Account, FeedRecord, Flags, Mailbox, Message};
use crate::db::{Db, keys, tx};
use crate::error::{Result, StoreError};
use crate::files::Files;

pub use ipc::msg::types::UidSet;

/// Whether `uid` is in `set`.
pub fn contains(set: &UidSet, uid: u32) -> bool {
    set.contains(ipc::msg::types::Uid(uid))
}

/// How a STORE changes flags and keywords.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Add,
    Remove,
    Replace,
}

/// A message's state after a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Updated {
    pub uid: u32,
    pub modseq: u64,
    pub flags: Flags,
    pub keywords: Vec<String>,
}

/// What a STORE did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreResult {
    pub updated: Vec<Updated>,
    /// UIDs not changed because they were modified after `unchanged_since` (CONDSTORE).
    pub modified: Vec<u32>,
}

/// What a move did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// (source UID, new UID) pairs.
    pub pairs: Vec<(u32, u32)>,
    /// The destination's UIDVALIDITY.
    pub uidvalidity: u32,
    /// Files of the source entries, to unlink once durable.
    pub unlink: Vec<u64>,
}

/// Changes since a modseq (QRESYNC).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub changed: Vec<Updated>,
    pub vanished: Vec<u32>,
    pub highest_modseq: u64,
}

impl Db {
    /// Changes the flags and keywords of the messages of `uids`. With `unchanged_since`, a
    /// message modified later is left alone and reported in `modified` (RFC 7162).
    pub fn store_flags(
        &self,
        mailbox: u64,
        uids: &UidSet,
        change: Change,
        flags: Flags,
        keywords: &[String],
        unchanged_since: Option<u64>,
    ) -> Result<StoreResult> {
        for k in keywords {
            check_keyword(k)?;
        }
        if keywords.len() > MAX_KEYWORDS {
            return Err(StoreError::Invalid {
                what: "keywords",
                why: format!("at most {MAX_KEYWORDS} per request"),
            });
        }
        let targets: Vec<u32> = self.uids_in(mailbox, uids)?;
        let result = (&self.accounts, &self.mailboxes, &self.messages, &self.feed).transaction(
            |(accounts, mailboxes, messages, feed)| {
                let (mut mb, mut account) = load(accounts, mailboxes, mailbox)?;
                let mut result = StoreResult::default();
                for uid in &targets {
                    let key = keys::message(mailbox, *uid);
                    let Some(v) = messages.get(key)? else {
                        continue;
                    };
                    let mut m: Message = record::decode("messages", &v).map_err(TxError::Abort)?;
                    if unchanged_since.is_some_and(|since| m.modseq > since) {
                        result.modified.push(*uid);
                        continue;
                    }
                    let (new_flags, mut new_keywords) =
                        apply(change, m.flags, &m.keywords, flags, keywords);
                    new_keywords.truncate(MAX_KEYWORDS);
                    if (new_flags, &new_keywords) == (m.flags, &m.keywords) {
                        continue;
                    }
                    mb.counts.remove(&m);
                    account.modseq += 1;
                    m.flags = new_flags;
                    m.keywords = new_keywords;
                    m.modseq = account.modseq;
                    mb.counts.add(&m);
                    mb.highest_modseq = account.modseq;
                    messages.insert(&key, record::encode(&m).map_err(TxError::Abort)?)?;
                    let change = FeedRecord::Flags {
                        mailbox,
                        uid: *uid,
                        flags: m.flags,
                        keywords: m.keywords.clone(),
                    };
                    feed.insert(
                        keys::feed(&mb.account, m.modseq),
                        record::encode(&change).map_err(TxError::Abort)?,
                    )?;
                    result.updated.push(Updated {
                        uid: *uid,
                        modseq: m.modseq,
                        flags: m.flags,
                        keywords: m.keywords,
                    });
                }
                save(accounts, mailboxes, mailbox, &mb, &account)?;
                Ok(result)
            },
        )?;
        Ok(result)
    }

    /// Removes messages flagged `\Deleted` (only those in `uids`, if given), leaving a tombstone
    /// per UID. Returns the expunged UIDs and the files to unlink once durable.
    pub fn expunge(&self, mailbox: u64, uids: Option<&UidSet>) -> Result<(Vec<u32>, Vec<u64>)> {
        self.remove_messages(mailbox, |uid, m| {
            m.flags.contains(Flags::DELETED) && uids.is_none_or(|set| contains(set, uid))
        })
    }

    /// Copies the messages of `uids` to mailbox `to` (hard links, flags kept). Returns
    /// (source UID, new UID) pairs and the destination's UIDVALIDITY (for COPYUID).
    pub fn copy_messages(
        &self,
        files: &Files,
        from: u64,
        uids: &UidSet,
        to: u64,
    ) -> Result<(Vec<(u32, u32)>, u32)> {
        let sources = self
            .message_records(from)?
            .into_iter()
            .filter(|(uid, _)| contains(uids, *uid))
            .collect::<Vec<_>>();
        let dest = self
            .mailbox(to)?
            .ok_or_else(|| StoreError::NoMailbox(to.to_string()))?;
        let source = self
            .mailbox(from)?
            .ok_or_else(|| StoreError::NoMailbox(from.to_string()))?;
        if source.account != dest.account {
            return Err(StoreError::Invalid {
                what: "copy",
                why: "mailboxes of different accounts".into(),
            });
        }
        let mut entries = Vec::with_capacity(sources.len());
        for (_, m) in &sources {
            let file = self.new_id()?;
            // The new name must not refer to bytes only a body holds.
            crate::inline::make_durable(self, files, m.file)?;
            files.link(m.file, file)?;
            let mut copy = m.clone();
            copy.file = file;
            entries.push((to, copy));
        }
        let new_uids = match self.append_messages(&entries) {
            Ok(u) => u,
            Err(e) => {
                for (_, m) in &entries {
                    let _ = files.remove(m.file);
                }
                return Err(e);
            }
        };
        let pairs = sources.iter().map(|(uid, _)| *uid).zip(new_uids).collect();
        Ok((pairs, dest.uidvalidity))
    }

    /// Moves messages: copy, then remove from the source whatever their flags (RFC 6851).
    pub fn move_messages(&self, files: &Files, from: u64, uids: &UidSet, to: u64) -> Result<Moved> {
        let (pairs, uidvalidity) = self.copy_messages(files, from, uids, to)?;
        let moved: Vec<u32> = pairs.iter().map(|(src, _)| *src).collect();
        let (_, unlink) = self.remove_messages(from, |uid, _| moved.contains(&uid))?;
        Ok(Moved {
            pairs,
            uidvalidity,
            unlink,
        })
    }

    /// Messages changed and UIDs expunged after `since` (CONDSTORE/QRESYNC).
    pub fn changes_since(&self, mailbox: u64, since: u64) -> Result<Changes> {
        let mb = self
            .mailbox(mailbox)?
            .ok_or_else(|| StoreError::NoMailbox(mailbox.to_string()))?;
        let changed = self
            .message_records(mailbox)?
            .into_iter()
            .filter(|(_, m)| m.modseq > since)
            .map(|(uid, m)| Updated {
                uid,
                modseq: m.modseq,
                flags: m.flags,
                keywords: m.keywords,
            })
            .collect();
        let mut vanished = Vec::new();
        for e in self.tombstones.scan_prefix(keys::mailbox(mailbox)) {
            let (k, v) = e?;
            if keys::u64_of("tombstones", &v)? > since {
                vanished.push(keys::split_message("tombstones", &k)?.1);
            }
        }
        Ok(Changes {
            changed,
            vanished,
            highest_modseq: mb.highest_modseq,
        })
    }

    /// The UIDs of `mailbox` within `set`, in order.
    pub fn uids_in(&self, mailbox: u64, set: &UidSet) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        for e in self.messages.scan_prefix(keys::mailbox(mailbox)) {
            let (k, _) = e?;
            let (_, uid) = keys::split_message("messages", &k)?;
            if contains(set, uid) {
                out.push(uid);
            }
        }
        Ok(out)
    }

    /// Removes message `uid` of `mailbox` (as an expunge would), returning its file ids for
    /// the caller to remove.
    pub fn remove_uid(&self, mailbox: u64, uid: u32) -> Result<Vec<u64>> {
        Ok(self.remove_messages(mailbox, |u, _| u == uid)?.1)
    }

    fn remove_messages(
        &self,
        mailbox: u64,
        which: impl Fn(u32, &Message) -> bool,
    ) -> Result<(Vec<u32>, Vec<u64>)> {
        let victims: Vec<u32> = self
            .message_records(mailbox)?
            .into_iter()
            .filter(|(uid, m)| which(*uid, m))
            .map(|(uid, _)| uid)
            .collect();
        if victims.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let files = (
            &self.accounts,
            &self.mailboxes,
            &self.messages,
            &self.tombstones,
            &self.feed,
        )
            .transaction(|(accounts, mailboxes, messages, tombstones, feed)| {
                let (mut mb, mut account) = load(accounts, mailboxes, mailbox)?;
                account.modseq += 1;
                let mut files = Vec::new();
                for uid in &victims {
                    let key = keys::message(mailbox, *uid);
                    let Some(v) = messages.remove(&key)? else {
                        continue;
                    };
                    let m: Message = record::decode("messages", &v).map_err(TxError::Abort)?;
                    mb.counts.remove(&m);
                    files.push(m.file);
                    tombstones.insert(&key, &account.modseq.to_be_bytes())?;
                }
                mb.highest_modseq = account.modseq;
                save(accounts, mailboxes, mailbox, &mb, &account)?;
                let change = FeedRecord::Expunged {
                    mailbox,
                    uids: victims.clone(),
                };
                feed.insert(
                    keys::feed(&mb.account, account.modseq),
                    record::encode(&change).map_err(TxError::Abort)?,
                )?;
                Ok(files)
            })?;
        Ok((victims, files))
    }
}

fn load(
    accounts: &TransactionalTree,
    mailboxes: &TransactionalTree,
    mailbox: u64,
) -> Result<(Mailbox, Account), TxError<StoreError>> {
    let mb = tx::mailbox(mailboxes, mailbox)?;
    let account = tx::account(accounts, &mb.account)?;
    Ok((mb, account))
}

fn save(
    accounts: &TransactionalTree,
    mailboxes: &TransactionalTree,
    mailbox: u64,
    mb: &Mailbox,
    account: &Account,
) -> Result<(), TxError<StoreError>> {
    mailboxes.insert(
        &keys::mailbox(mailbox),
        record::encode(mb).map_err(TxError::Abort)?,
    )?;
    accounts.insert(
        mb.account.as_bytes(),
        record::encode(account).map_err(TxError::Abort)?,
    )?;
    Ok(())
}

fn apply(
    change: Change,
    old: Flags,
    old_kw: &[String],
    flags: Flags,
    keywords: &[String],
) -> (Flags, Vec<String>) {
    let mut kw: Vec<String> = match change {
        Change::Replace => keywords.to_vec(),
        Change::Add => old_kw.iter().chain(keywords).cloned().collect(),
        Change::Remove => old_kw
            .iter()
            .filter(|k| !keywords.iter().any(|r| r.eq_ignore_ascii_case(k)))
            .cloned()
            .collect(),
    };
    kw.sort_by_key(|k| k.to_ascii_lowercase());
    kw.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
    let flags = match change {
        Change::Replace => flags,
        Change::Add => old.union(flags),
        Change::Remove => old.difference(flags),
    };
    (flags, kw)
}

/// Most keywords one message carries (they travel with its metadata).
pub const MAX_KEYWORDS: usize = 64;

/// Keywords are IMAP atoms: printable ASCII without specials, not starting with `\`.
pub fn check_keyword(k: &str) -> Result<()> {
    let ok = !k.is_empty()
        && k.len() <= 100
        && !k.starts_with('\\')
        && k.bytes()
            .all(|b| b.is_ascii_graphic() && !b"(){%*\"]\\".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid {
            what: "keyword",
            why: format!("`{}`", k.escape_debug()),
        })
    }
}
