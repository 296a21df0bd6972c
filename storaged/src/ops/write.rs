//! Operations that change messages: upload and append, flag changes, copy, move, expunge. The
//! message files a change frees are returned for unlinking once the change is durable.

use ipc::Role;
use ipc::msg::store::{self as msg, Appended, Copied, FlagChange, Stored, Uid};

use super::wire::wire_flags;
use super::{Outcome, done};
use crate::db::now;
use crate::db::record::Message;
use crate::error::StoreError;
use crate::messages::{Change, check_keyword};
use crate::service::Store;

impl Store {
    /// Opens a temporary file that `peer` fills and then names in `Append`.
    pub(crate) fn open_upload(&self, peer: Role) -> Result<Outcome<u64>, StoreError> {
        let (id, fd) = self.open_temp(peer).map_err(|r| match r {
            crate::service::Refused::InsufficientStorage { message } => {
                StoreError::NoSpace(message)
            }
            other => StoreError::Failed(other.to_string()),
        })?;
        Ok(((id, vec![fd]), Vec::new()))
    }

    /// Files `peer`'s upload into mailbox `name`. The stored file is removed again if analysis
    /// or the database append fails, so a refused append leaves nothing behind.
    pub(crate) fn append(
        &self,
        peer: Role,
        account: &str,
        up: msg::Append,
    ) -> Result<Outcome<Appended>, StoreError> {
        let name = up.name.as_str();
        for k in &up.keywords {
            check_keyword(k)?;
        }
        if up.keywords.len() > crate::messages::MAX_KEYWORDS {
            return Err(StoreError::Invalid {
                what: "keywords",
                why: "too many".into(),
            });
        }
        let (id, m) = self.named(account, name)?;
        let upload = up.upload;
        let file = self
            .take_temp(peer, upload)
            .ok_or_else(|| StoreError::Invalid {
                what: "upload",
                why: format!("no upload {upload}"),
            })?;
        let size = file
            .metadata()
            .map_err(|e| StoreError::File {
                path: "(upload)".into(),
                source: e,
            })?
            .len();
        if size > crate::service::MAX_MESSAGE_SIZE {
            return Err(StoreError::Invalid {
                what: "message",
                why: format!("{size} bytes is too large"),
            });
        }
        let file_id = self.db.new_id()?;
        let head = self.files.store(&file, size, &[file_id])?;
        let (envelope, structure) =
            match crate::structure::analyze(&self.files, file_id, size, &head) {
                Ok(x) => x,
                Err(e) => {
                    let _ = self.files.remove(file_id);
                    return Err(e);
                }
            };
        let message = Message {
            file: file_id,
            size,
            modseq: 0,
            flags: up.flags,
            keywords: up.keywords,
            internal_date: up.internal_date.unwrap_or_else(now),
            envelope,
            structure,
        };
        let uid = match self.db.append_messages(&[(id, message)]) {
            Ok(uids) => uids[0],
            Err(e) => {
                let _ = self.files.remove(file_id);
                return Err(e);
            }
        };
        done(Appended {
            uidvalidity: m.uidvalidity,
            uid: Uid(uid),
        })
    }

    pub(crate) fn store_flags(
        &self,
        account: &str,
        update: msg::StoreFlags,
    ) -> Result<Outcome<Stored>, StoreError> {
        let (mailbox, uids) = (update.mailbox.0, &update.uids);
        self.owned(account, mailbox)?;
        let change = match update.change {
            FlagChange::Add => Change::Add,
            FlagChange::Remove => Change::Remove,
            FlagChange::Replace => Change::Replace,
        };
        let r = self.db.store_flags(
            mailbox,
            uids,
            change,
            update.flags,
            &update.keywords,
            update.unchanged_since.map(|m| m.0),
        )?;
        done(Stored {
            updated: r.updated.into_iter().map(wire_flags).collect(),
            modified: r.modified.into_iter().map(Uid).collect(),
        })
    }

    pub(crate) fn copy(
        &self,
        account: &str,
        from: u64,
        uids: &crate::messages::UidSet,
        to: &str,
    ) -> Result<Outcome<Copied>, StoreError> {
        self.owned(account, from)?;
        let (to, _) = self.named(account, to)?;
        let (pairs, uidvalidity) = self.db.copy_messages(&self.files, from, uids, to)?;
        done(Copied {
            uidvalidity,
            pairs: uid_pairs(pairs),
        })
    }

    /// Moves messages; the answer is the same `Copied` a copy gives (old and new uids).
    pub(crate) fn move_to(
        &self,
        account: &str,
        from: u64,
        uids: &crate::messages::UidSet,
        to: &str,
    ) -> Result<Outcome<Copied>, StoreError> {
        self.owned(account, from)?;
        let (to, _) = self.named(account, to)?;
        let moved = self.db.move_messages(&self.files, from, uids, to)?;
        let reply = Copied {
            uidvalidity: moved.uidvalidity,
            pairs: uid_pairs(moved.pairs),
        };
        Ok(((reply, Vec::new()), moved.unlink))
    }

    /// Expunges the messages flagged `\Deleted` (only those in `uids`, if given).
    pub(crate) fn expunge(
        &self,
        account: &str,
        mailbox: u64,
        uids: Option<crate::messages::UidSet>,
    ) -> Result<Outcome<Vec<Uid>>, StoreError> {
        self.owned(account, mailbox)?;
        let (gone, unlink) = self.db.expunge(mailbox, uids.as_ref())?;
        let gone = gone.into_iter().map(Uid).collect();
        Ok(((gone, Vec::new()), unlink))
    }
}

/// (source UID, new UID) pairs as the catalogue names them.
fn uid_pairs(pairs: Vec<(u32, u32)>) -> Vec<(Uid, Uid)> {
    pairs.into_iter().map(|(a, b)| (Uid(a), Uid(b))).collect()
}
