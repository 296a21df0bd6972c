//! One function per mailbox-API operation, as mini-redis has one file per command, each
//! answering with the type its request names. `session::in_session` runs them (on a blocking
//! thread, under the pause lock, so a backup sees no half-applied operation); they are grouped
//! by what they touch:
//! mailboxes ([`mailbox`]), reads of messages ([`read`]) and changes to messages ([`write`]).
//! [`wire`] turns store records into catalogue types.

mod mailbox;
mod read;
mod wire;
mod write;

use ipc::Handle;

use crate::db::record::Mailbox;
use crate::error::StoreError;
use crate::service::Store;

/// An operation's answer with its descriptors, and the message files to unlink once the change
/// is durable.
pub(crate) type Outcome<T> = ((T, Vec<Handle>), Vec<u64>);

/// An answer that carries no descriptors and leaves no files to unlink.
fn done<T>(reply: T) -> Result<Outcome<T>, StoreError> {
    Ok(((reply, Vec::new()), Vec::new()))
}

impl Store {
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
