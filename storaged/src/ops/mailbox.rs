//! Operations on an account's mailboxes: list, create, rename, delete, subscribe, select.

use ipc::msg::store::SessionReply;
use ipc::msg::store::{MailboxId, UidSet};

use super::{Outcome, done};
use crate::error::StoreError;
use crate::service::Store;

impl Store {
    pub(super) fn list_mailboxes(&self, account: &str) -> Result<Outcome, StoreError> {
        done(SessionReply::Mailboxes(self.db.mailbox_list(account)?))
    }

    pub(super) fn create_mailbox(&self, account: &str, name: &str) -> Result<Outcome, StoreError> {
        self.db.create_mailbox(account, name)?;
        done(SessionReply::Done)
    }

    /// Renames `from` to `to`. INBOX is special (RFC 9051 §6.3.6): renaming it moves its
    /// messages to a new mailbox of that name and leaves INBOX, empty, in place.
    pub(super) fn rename_mailbox(
        &self,
        account: &str,
        from: &str,
        to: &str,
    ) -> Result<Outcome, StoreError> {
        if crate::mailboxes::check_name(from)? == "Inbox" {
            let (inbox, _) = self.named(account, "Inbox")?;
            let target = self.db.create_mailbox(account, to)?;
            let moved = self
                .db
                .move_messages(&self.files, inbox, &UidSet::all(), target)?;
            return Ok(((SessionReply::Done, Vec::new()), moved.unlink));
        }
        self.db.rename_mailbox(account, from, to)?;
        done(SessionReply::Done)
    }

    /// Deletes a mailbox; its message files are unlinked once the deletion is durable.
    pub(super) fn delete_mailbox(&self, account: &str, name: &str) -> Result<Outcome, StoreError> {
        let files = self.db.delete_mailbox(account, name)?;
        Ok(((SessionReply::Done, Vec::new()), files))
    }

    pub(super) fn subscribe(
        &self,
        account: &str,
        name: &str,
        subscribed: bool,
    ) -> Result<Outcome, StoreError> {
        self.db.subscribe(account, name, subscribed)?;
        done(SessionReply::Done)
    }

    pub(super) fn select(&self, account: &str, name: &str) -> Result<Outcome, StoreError> {
        let (id, m) = self.named(account, name)?;
        done(SessionReply::Selected {
            id: MailboxId(id),
            info: crate::accounts::mailbox_info(m),
        })
    }
}
