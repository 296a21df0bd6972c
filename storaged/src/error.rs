//! Errors of storaged.

/// What went wrong in the store. Variants the network roles turn into protocol replies carry
/// enough to do so (e.g. an unknown address becomes `550 5.1.1`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled refused an operation (a corrupt or unsupported state, a collection it lost).
    #[error("database: {0}")]
    Db(#[source] sled::Error),
    /// sled could not read or write its files (its log, a snapshot): it keeps this error and
    /// fails every later write, so the database is failed (see `db::failure`).
    #[error("database: {0}")]
    DbIo(#[source] std::io::Error),
    /// A record could not be encoded (larger than a record may be).
    #[error("encoding a record: {0}")]
    Encode(#[source] bincode::error::EncodeError),
    /// Blocking work on another thread ended without an answer (it panicked or was cancelled).
    #[error("the {what} task failed: {source}")]
    Task {
        what: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    /// A flush failed earlier in this process: nothing more is made durable until storaged
    /// has restarted (see `db::failure`).
    #[error("the database failed earlier ({0}); storaged is restarting")]
    Failed(String),
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
    /// The file system is full (a write failed with ENOSPC), or its free space is under the
    /// configured floor: nothing of what was asked was kept; try again later.
    #[error("{0}")]
    NoSpace(String),
}

impl StoreError {
    /// Whether this failure is for lack of space (SMTP's `452 4.3.1`, not `451`).
    pub fn is_no_space(&self) -> bool {
        match self {
            StoreError::NoSpace(_) => true,
            StoreError::File { source, .. } | StoreError::DbIo(source) => {
                ipc::space::is_full(source)
            }
            _ => false,
        }
    }
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Io(io) => StoreError::DbIo(io),
            e => StoreError::Db(e),
        }
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
