//! authd's error types, one enum per cause: cryptography, persistence, and SASL exchanges.

use std::path::PathBuf;

/// A cryptographic operation could not run (never "the password was wrong").
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The operating system's random source failed.
    #[error("the OS random source failed: {0}")]
    Random(getrandom::Error),
    /// HMAC refused its key (cannot happen for HMAC; carried instead of unwrapped).
    #[error("HMAC refused its key")]
    HmacKey,
    /// argon2 refused its parameters or input.
    #[error("argon2: {0}")]
    Argon2(String),
}

/// Reading or writing authd's files (credential store, throttle state) failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file system operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done ("write", "rename", "fsync", …).
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file exists but is not in a format this build reads.
    #[error("{}: {problem}", path.display())]
    Format {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        problem: FormatProblem,
    },
    /// A value could not be encoded for writing.
    #[error("cannot encode {what}: {reason}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The codec's message.
        reason: String,
    },
    /// The request itself is invalid (an empty account name or password).
    #[error("refused: {0}")]
    Refused(&'static str),
    /// Deriving credentials failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// Why a file's contents were refused.
#[derive(Debug, thiserror::Error)]
pub enum FormatProblem {
    /// The magic bytes at the start are not the expected ones.
    #[error("not a moxd {expected} file")]
    BadMagic {
        /// The kind of file expected.
        expected: &'static str,
    },
    /// The format version is not the one this build reads.
    #[error("format version {found} is not supported (this build reads {supported})")]
    Version {
        /// The version in the file.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The payload does not decode.
    #[error("undecodable contents: {0}")]
    Decode(String),
    /// Bytes follow the payload.
    #[error("{0} unexpected bytes after the contents")]
    Trailing(usize),
}

/// Why a SASL exchange was refused as malformed or unsupported (not a wrong password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// A client message is longer than any valid one.
    #[error("message too long")]
    TooLong,
    /// A client message is not UTF-8.
    #[error("message is not UTF-8")]
    NotUtf8,
    /// The client sent an initial response to a mechanism that starts with a challenge.
    #[error("this mechanism takes no initial response")]
    UnexpectedInitialResponse,
    /// A step arrived after the exchange had ended.
    #[error("the exchange is over")]
    ExchangeOver,
    /// A message does not follow the mechanism's syntax.
    #[error("malformed message: {0}")]
    Syntax(&'static str),
    /// The username is empty or badly escaped.
    #[error("invalid username")]
    BadUsername,
    /// The password is empty.
    #[error("empty password")]
    EmptyPassword,
    /// The client asked to act as another identity (authzid), which is not supported.
    #[error("authorization identity must be empty or equal to the authentication identity")]
    AuthzidMismatch,
    /// A base64 field does not decode.
    #[error("invalid base64 in {0}")]
    BadBase64(&'static str),
    /// The client asked for a mandatory SCRAM extension (`m=`), none of which are supported.
    #[error("extensions not supported")]
    MandatoryExtension,
    /// The client claimed the server lacks channel binding (`y`) although it offers it: a
    /// downgrade (RFC 5802 §6).
    #[error("server does support channel binding")]
    ChannelBindingDowngrade,
    /// The gs2 flag does not fit the chosen mechanism (`p=` with a non-PLUS mechanism, or `n`/`y`
    /// with a PLUS mechanism).
    #[error("channel binding flag does not match the mechanism")]
    ChannelBindingMismatchedFlag,
    /// The client asked for a channel binding type other than `tls-exporter`.
    #[error("unsupported channel binding type")]
    UnsupportedChannelBindingType,
    /// A PLUS mechanism was chosen on a connection with no channel binding data (no TLS).
    #[error("channel binding is not available on this connection")]
    ChannelBindingUnavailable,
    /// The channel binding data in the client's final message does not match.
    #[error("channel bindings don't match")]
    ChannelBindingsDontMatch,
    /// The nonce in the client's final message is not the one the server sent.
    #[error("nonce mismatch")]
    NonceMismatch,
    /// The SCRAM proof has the wrong length for the hash.
    #[error("proof has the wrong length")]
    ProofLength,
    /// The CRAM-MD5 digest is not 32 hex digits.
    #[error("digest must be 32 hex digits")]
    BadDigest,
}
