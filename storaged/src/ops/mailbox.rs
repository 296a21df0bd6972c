//! Operations on an account's mailboxes: list, create, rename, delete, subscribe, select.

use ipc::msg::store::{MailboxId, MailboxInfo, Selected, UidSet};

use super::{Outcome, done};
use crate::error::StoreError;
use crate::service::Store;

impl Store {
    pub(crate) fn list_mailboxes(
        &self,
        account: &str,
    ) -> Result<Outcome<Vec<MailboxInfo>>, StoreError> {
        done(self.db.mailbox_list(account)?)
    }

    pub(crate) fn create_mailbox(
        &self,
        account: &str,
        name: &str,
    ) -> Result<Outcome<()>, StoreError> {
        self.db.create_mailbox(account, name)?;
        done(())
    }

    /// Renames `from` to `to`. INBOX is special (RFC 9051 §6.3.6): renaming it moves its
    /// messages to a new mailbox of that name and leaves INBOX, empty, in place.
    pub(crate) fn rename_mailbox(
        &self,
        account: &str,
        from: &str,
        to: &str,
    ) -> Result<Outcome<()>, StoreError> {
        if crate::mailboxes::check_name(from)? == "Inbox" {
            let (inbox, _) = self.named(account, "Inbox")?;
            let target = self.db.create_mailbox(account, to)?;
            let moved = self
                .db
                .move_messages(&self.files, inbox, &UidSet::all(), target)?;
            return Ok((((), Vec::new()), moved.unlink));
        }
        self.db.rename_mailbox(account, from, to)?;
        done(())
    }

    /// Deletes a mailbox; its message files are unlinked once the deletion is durable.
    pub(crate) fn delete_mailbox(
        &self,
        account: &str,
        name: &str,
    ) -> Result<Outcome<()>, StoreError> {
        let files = self.db.delete_mailbox(account, name)?;
        Ok((((), Vec::new()), files))
    }

    pub(crate) fn subscribe(
        &self,
        account: &str,
        name: &str,
        subscribed: bool,
    ) -> Result<Outcome<()>, StoreError> {
        self.db.subscribe(account, name, subscribed)?;
        done(())
    }

    pub(crate) fn select(
        &self,
        account: &str,
        name: &str,
    ) -> Result<Outcome<Selected>, StoreError> {
        let (id, m) = self.named(account, name)?;
        done(Selected {
            id: MailboxId(id),
            info: crate::accounts::mailbox_info(m),
        })
    }
}
