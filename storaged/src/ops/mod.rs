//! One function per mailbox-API operation, as mini-redis has one file per command. The
//! dispatcher here takes the pause lock once (so a backup sees no half-applied operation) and
//! hands each `SessionOp` to its handler; the handlers are grouped by what they touch:
//! mailboxes ([`mailbox`]), reads of messages ([`read`]) and changes to messages ([`write`]).
//! [`wire`] turns store records into catalogue types.

mod mailbox;
mod read;
mod wire;
mod write;

use ipc::msg::store::{SessionOp, SessionReply};
use ipc::sync::read;
use ipc::{Handle, Role};

use crate::db::record::Mailbox;
use crate::error::StoreError;
use crate::service::Store;

/// An operation's answer with its descriptors, and the message files to unlink once the change
/// is durable.
pub(crate) type Outcome = ((SessionReply, Vec<Handle>), Vec<u64>);

/// An answer that carries no descriptors and leaves no files to unlink.
fn done(reply: SessionReply) -> Result<Outcome, StoreError> {
    Ok(((reply, Vec::new()), Vec::new()))
}

impl Store {
    /// The blocking part of a session operation: runs `op` for `account` on `peer`'s link and
    /// also returns message files to unlink once the change is durable.
    pub(crate) fn run_op(
        &self,
        peer: Role,
        account: &str,
        op: SessionOp,
    ) -> Result<Outcome, StoreError> {
        let _changing = read(&self.pause);
        match op {
            SessionOp::ListMailboxes => self.list_mailboxes(account),
            SessionOp::CreateMailbox { name } => self.create_mailbox(account, &name),
            SessionOp::RenameMailbox { from, to } => self.rename_mailbox(account, &from, &to),
            SessionOp::DeleteMailbox { name } => self.delete_mailbox(account, &name),
            SessionOp::Subscribe { name, subscribed } => self.subscribe(account, &name, subscribed),
            SessionOp::Select { name } => self.select(account, &name),
            SessionOp::Fetch {
                mailbox,
                uids,
                after,
            } => self.fetch(account, mailbox.0, &uids, after.map(|u| u.0)),
            SessionOp::Open { mailbox, uid } => self.open(account, mailbox.0, uid.0),
            SessionOp::OpenUpload => self.open_upload(peer),
            SessionOp::Append {
                name,
                upload,
                flags,
                keywords,
                internal_date,
            } => self.append(
                peer,
                account,
                &name,
                write::Upload {
                    upload,
                    flags,
                    keywords,
                    internal_date,
                },
            ),
            SessionOp::Store {
                mailbox,
                uids,
                change,
                flags,
                keywords,
                unchanged_since,
            } => self.store_flags(
                account,
                mailbox.0,
                &uids,
                write::FlagUpdate {
                    change,
                    flags,
                    keywords,
                    unchanged_since: unchanged_since.map(|m| m.0),
                },
            ),
            SessionOp::Copy { from, uids, to } => self.copy(account, from.0, &uids, &to),
            SessionOp::Move { from, uids, to } => self.move_to(account, from.0, &uids, &to),
            SessionOp::Expunge { mailbox, uids } => self.expunge(account, mailbox.0, uids),
            SessionOp::Search { mailbox, criteria } => self.search(account, mailbox.0, &criteria),
            // Watching is answered before the blocking part (it needs the event link); this arm
            // only keeps the match whole.
            SessionOp::Watch => done(SessionReply::Done),
            SessionOp::Changes { mailbox, since } => self.changes(account, mailbox.0, since.0),
        }
    }

    /// A mailbox of `account` by id; another account's is "no such mailbox", as if absent.
    fn owned(&self, account: &str, id: u64) -> Result<Mailbox, StoreError> {
        match self.db.mailbox(id)? {
            Some(m) if m.account == account => Ok(m),
            _ => Err(StoreError::NoMailbox(id.to_string())),
        }
    }

    /// A mailbox of `account` by name, checked for syntax first.
    fn named(&self, account: &str, name: &str) -> Result<(u64, Mailbox), StoreError> {
        let name = crate::mailboxes::check_name(name)?;
        self.db
            .mailbox_by_name(account, &name)?
            .ok_or(StoreError::NoMailbox(name))
    }
}
