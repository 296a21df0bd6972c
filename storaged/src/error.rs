//! Errors of storaged.

/// What went wrong in the store. Variants the network roles turn into protocol replies carry
/// enough to do so (e.g. an unknown address becomes `550 5.1.1`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(String),
    #[error("corrupt record in {tree}: {why}")]
    Corrupt { tree: &'static str, why: String },
    #[error("database schema version {found}, this build knows {known}")]
    Schema { found: u32, known: u32 },
    #[error("message file {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no such account `{0}`")]
    NoAccount(String),
    #[error("account `{0}` exists already")]
    AccountExists(String),
    #[error("no such domain `{0}`")]
    NoDomain(String),
    #[error("domain `{0}` exists already")]
    DomainExists(String),
    #[error("domain `{0}` still has addresses; remove them first")]
    DomainInUse(String),
    #[error("address `{0}` is taken by account `{1}`")]
    AddressTaken(String, String),
    #[error("no such address `{0}`")]
    NoAddress(String),
    #[error("invalid {what}: {why}")]
    Invalid { what: &'static str, why: String },
    #[error("no such mailbox `{0}`")]
    NoMailbox(String),
    /// A delivery for which every recipient must exist (SMTP told the client each was
    /// accepted) found one gone: nothing was delivered.
    #[error("recipient <{0}> no longer exists; nothing delivered")]
    RecipientGone(String),
    /// Something changed between a scan and the transaction based on it; try again.
    #[error("concurrent change; try again")]
    Conflict,
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Db(e.to_string())
    }
}

impl From<sled::transaction::TransactionError<StoreError>> for StoreError {
    fn from(e: sled::transaction::TransactionError<StoreError>) -> Self {
        match e {
            sled::transaction::TransactionError::Abort(e) => e,
            sled::transaction::TransactionError::Storage(e) => e.into(),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
