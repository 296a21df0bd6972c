//! Reads inside a sled transaction that every writer shares: a record the change needs must
//! exist, or the whole transaction aborts with an error that names it.

use sled::transaction::{ConflictableTransactionError as TxError, TransactionalTree};

use super::keys;
use super::record::{self, Account, Mailbox};
use crate::error::StoreError;

/// What a transaction body returns: sled's conflict/abort error around the store's own.
pub type TxResult<T> = Result<T, TxError<StoreError>>;

/// The mailbox with this id.
pub fn mailbox(mailboxes: &TransactionalTree, id: u64) -> TxResult<Mailbox> {
    match mailboxes.get(keys::mailbox(id))? {
        Some(v) => record::decode("mailboxes", &v).map_err(TxError::Abort),
        None => Err(TxError::Abort(StoreError::NoMailbox(id.to_string()))),
    }
}

/// The account with this name.
pub fn account(accounts: &TransactionalTree, name: &str) -> TxResult<Account> {
    match accounts.get(name)? {
        Some(v) => record::decode("accounts", &v).map_err(TxError::Abort),
        None => Err(TxError::Abort(StoreError::NoAccount(name.into()))),
    }
}

/// The account, its modseq bumped and written back: a concurrent removal of the account, which
/// compares modseqs before it commits, notices whatever this transaction adds to it.
pub fn touch_account(accounts: &TransactionalTree, name: &str) -> TxResult<Account> {
    let mut owner = account(accounts, name)?;
    owner.modseq += 1;
    accounts.insert(
        name.as_bytes(),
        record::encode(&owner).map_err(TxError::Abort)?,
    )?;
    Ok(owner)
}
