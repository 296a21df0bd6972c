//! Operations that read messages: fetch metadata, open a message file, search, changes since a
//! modseq. Each first checks that the mailbox belongs to the session's account.

use ipc::Handle;
use ipc::msg::store::{ChangesSince, Criteria, MessageMeta, Messages, ModSeq, Uid};

use super::wire::{meta, wire_flags};
use super::{Outcome, done};
use crate::error::StoreError;
use crate::service::Store;

/// Encoded size a page of fetched metadata stays under (frames carry at most 64 KiB).
const PAGE_BYTES: usize = 48 * 1024;

impl Store {
    /// Metadata of the messages in `uids` after `after`, one page at a time: `more` names the
    /// last uid sent when the page filled up, so the caller asks again from there.
    pub(crate) fn fetch(
        &self,
        account: &str,
        mailbox: u64,
        uids: &crate::messages::UidSet,
        after: Option<u32>,
    ) -> Result<Outcome<Messages>, StoreError> {
        self.owned(account, mailbox)?;
        let mut messages = Vec::new();
        let mut bytes = 0;
        let mut more = None;
        for (uid, m) in self.db.message_records(mailbox)? {
            if after.is_some_and(|a| uid <= a) || !crate::messages::contains(uids, uid) {
                continue;
            }
            let meta = meta(uid, m);
            let size = ipc::codec::encode(&meta)
                .map(|b| b.len())
                .unwrap_or(PAGE_BYTES);
            if bytes + size > PAGE_BYTES && !messages.is_empty() {
                more = messages.last().map(|m: &MessageMeta| m.uid);
                break;
            }
            bytes += size;
            messages.push(meta);
        }
        done(Messages { messages, more })
    }

    /// Opens message `uid` for reading; the descriptor travels with the answer.
    pub(crate) fn open(
        &self,
        account: &str,
        mailbox: u64,
        uid: u32,
    ) -> Result<Outcome<u64>, StoreError> {
        self.owned(account, mailbox)?;
        let m = self
            .db
            .message_records(mailbox)?
            .into_iter()
            .find(|(u, _)| *u == uid)
            .ok_or_else(|| StoreError::Invalid {
                what: "uid",
                why: format!("no message {uid}"),
            })?
            .1;
        let file = self.files.open_read(m.file)?;
        Ok(((m.size, vec![Handle::from(file)]), Vec::new()))
    }

    pub(crate) fn search(
        &self,
        account: &str,
        mailbox: u64,
        criteria: &Criteria,
    ) -> Result<Outcome<Vec<Uid>>, StoreError> {
        self.owned(account, mailbox)?;
        let found = crate::search::search(&self.db, &self.files, mailbox, criteria)?;
        done(found.into_iter().map(Uid).collect())
    }

    /// Flag changes and expunges since modseq `since`, for CONDSTORE/QRESYNC resynchronisation.
    pub(crate) fn changes(
        &self,
        account: &str,
        mailbox: u64,
        since: u64,
    ) -> Result<Outcome<ChangesSince>, StoreError> {
        self.owned(account, mailbox)?;
        let c = self.db.changes_since(mailbox, since)?;
        done(ChangesSince {
            changed: c.changed.into_iter().map(wire_flags).collect(),
            vanished: c.vanished.into_iter().map(Uid).collect(),
            highest_modseq: ModSeq(c.highest_modseq),
        })
    }
}
