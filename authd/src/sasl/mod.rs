//! Server-side SASL as sans-IO state machines: bytes in, a [`Step`] out.
//!
//! Network roles relay the client's messages verbatim (after removing their protocol's base64)
//! and send back what [`start`] and [`Session::step`] return. Mechanisms: PLAIN (RFC 4616),
//! LOGIN, CRAM-MD5 (RFC 2195), SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802, RFC 7677) and their
//! -PLUS variants with `tls-exporter` channel binding (RFC 9266), whose bytes the caller takes
//! from its TLS connection and puts in [`SaslContext::channel_binding`].
//!
//! Every wrong input ends the exchange with a [`Step::Failure`], never a panic. An unknown user
//! takes the same path as a wrong password: it is checked against decoy credentials and fails as
//! [`AuthFailure::BadCredentials`]. So does an attempt that a limit refuses
//! ([`CredentialLookup::refusal`], asked once the username is known and before any check): it
//! gets the same challenges and fails at the same step, without its password being tested.
//!
//! Which mechanisms a connection may use (e.g. PLAIN only after STARTTLS) is the protocol role's
//! decision; [`advertised`] only knows whether channel binding is available.

mod cram;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod password;
mod scram;
mod scram_msg;

#[cfg(test)]
mod refusal_tests;
#[cfg(test)]
mod scram_tests;
#[cfg(test)]
mod tests;

use std::fmt;

use crate::credentials::CredentialLookup;
use crate::crypto::ScramHash;
use crate::error::CryptoError;
pub use crate::error::SaslError;

/// The longest client message any mechanism accepts.
pub const MAX_MESSAGE_LEN: usize = 4096;

/// A SASL mechanism authd implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// PLAIN (RFC 4616).
    Plain,
    /// LOGIN (draft-murchison-sasl-login).
    Login,
    /// CRAM-MD5 (RFC 2195).
    CramMd5,
    /// SCRAM-SHA-1 (RFC 5802).
    ScramSha1,
    /// SCRAM-SHA-1-PLUS with `tls-exporter` channel binding.
    ScramSha1Plus,
    /// SCRAM-SHA-256 (RFC 7677).
    ScramSha256,
    /// SCRAM-SHA-256-PLUS with `tls-exporter` channel binding.
    ScramSha256Plus,
}

/// All mechanisms, strongest first (the order to advertise them in).
const ALL: [Mechanism; 7] = [
    Mechanism::ScramSha256Plus,
    Mechanism::ScramSha1Plus,
    Mechanism::ScramSha256,
    Mechanism::ScramSha1,
    Mechanism::CramMd5,
    Mechanism::Plain,
    Mechanism::Login,
];

impl Mechanism {
    /// The mechanism with this (case-insensitive) name.
    pub fn parse(name: &str) -> Option<Mechanism> {
        ALL.into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }

    /// The registered name, e.g. `SCRAM-SHA-256-PLUS`.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::CramMd5 => "CRAM-MD5",
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::ScramSha1Plus => "SCRAM-SHA-1-PLUS",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
        }
    }

    /// Whether the mechanism needs channel binding data (the -PLUS variants).
    pub fn needs_channel_binding(self) -> bool {
        matches!(self, Mechanism::ScramSha1Plus | Mechanism::ScramSha256Plus)
    }

    fn scram_hash(self) -> Option<ScramHash> {
        match self {
            Mechanism::ScramSha1 | Mechanism::ScramSha1Plus => Some(ScramHash::Sha1),
            Mechanism::ScramSha256 | Mechanism::ScramSha256Plus => Some(ScramHash::Sha256),
            Mechanism::Plain | Mechanism::Login | Mechanism::CramMd5 => None,
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The mechanisms to advertise, strongest first; -PLUS only with channel binding data.
pub fn advertised(channel_binding: bool) -> Vec<Mechanism> {
    ALL.into_iter()
        .filter(|m| channel_binding || !m.needs_channel_binding())
        .collect()
}

/// What authd knows about the connection an exchange runs on.
#[derive(Clone)]
pub struct SaslContext {
    /// The server's host name (in CRAM-MD5 challenges).
    pub hostname: String,
    /// The TLS exporter value (RFC 9266 `tls-exporter`), if the connection is TLS.
    pub channel_binding: Option<Vec<u8>>,
}

impl fmt::Debug for SaslContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslContext")
            .field("hostname", &self.hostname)
            .field(
                "channel_binding",
                &self.channel_binding.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// What to tell the client after a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this challenge (raw bytes: base64 is the protocol's job) and wait for a response.
    Continue(Vec<u8>),
    /// Authenticated. `additional` is data to send with the success (SCRAM's `v=`); protocols
    /// that cannot carry it send it as one more challenge and expect an empty response.
    Success {
        /// The account authenticated.
        account: String,
        /// Additional data with success, if any.
        additional: Option<Vec<u8>>,
    },
    /// The exchange failed and is over.
    Failure(AuthFailure),
}

/// Why an exchange failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// Wrong password, unknown user, or an attempt a limit refused (indistinguishable to the
    /// client by design).
    BadCredentials {
        /// The username the client gave.
        username: String,
        /// The account it named, if it names one: failures count against the account, whatever
        /// name or address was typed.
        account: Option<String>,
        /// Why a limit refused the attempt before anything was verified (for the log; such an
        /// attempt is not counted as another failure).
        refused: Option<String>,
    },
    /// The client's messages were malformed or asked for something unsupported; no password
    /// was tested.
    Malformed(SaslError),
    /// authd could not do its part (random source, …); not the client's fault.
    Internal(String),
}

impl AuthFailure {
    /// Bad credentials for `username`, naming `account` if the name resolved to one.
    pub(crate) fn bad(username: &str, account: Option<&str>, refused: Option<String>) -> Self {
        AuthFailure::BadCredentials {
            username: username.to_owned(),
            account: account.map(str::to_owned),
            refused,
        }
    }
}

impl From<SaslError> for AuthFailure {
    fn from(e: SaslError) -> Self {
        AuthFailure::Malformed(e)
    }
}

impl From<CryptoError> for AuthFailure {
    fn from(e: CryptoError) -> Self {
        AuthFailure::Internal(e.to_string())
    }
}

impl From<AuthFailure> for Step {
    fn from(f: AuthFailure) -> Self {
        Step::Failure(f)
    }
}

impl From<SaslError> for Step {
    fn from(e: SaslError) -> Self {
        Step::Failure(AuthFailure::Malformed(e))
    }
}

/// One exchange in progress.
#[derive(Debug)]
pub struct Session {
    mechanism: Mechanism,
    state: State,
}

#[derive(Debug)]
enum State {
    Plain,
    Login(password::Login),
    CramMd5(cram::CramMd5),
    Scram(scram::Scram),
    Done,
}

/// Starts an exchange; `initial_response` is the client's optional first message (SASL-IR;
/// `Some(b"")` is an empty one, distinct from none).
pub fn start(
    mechanism: Mechanism,
    ctx: &SaslContext,
    initial_response: Option<&[u8]>,
    creds: &dyn CredentialLookup,
) -> (Session, Step) {
    let state = match mechanism {
        Mechanism::Plain => State::Plain,
        Mechanism::Login => State::Login(password::Login::new()),
        Mechanism::CramMd5 => {
            if initial_response.is_some() {
                return done(mechanism, SaslError::UnexpectedInitialResponse.into());
            }
            return match cram::CramMd5::start(&ctx.hostname) {
                Ok((state, challenge)) => (
                    Session {
                        mechanism,
                        state: State::CramMd5(state),
                    },
                    Step::Continue(challenge),
                ),
                Err(e) => done(mechanism, AuthFailure::from(e).into()),
            };
        }
        Mechanism::ScramSha1
        | Mechanism::ScramSha1Plus
        | Mechanism::ScramSha256
        | Mechanism::ScramSha256Plus => State::Scram(scram::Scram::new(mechanism, ctx)),
    };
    let mut session = Session { mechanism, state };
    let step = match initial_response {
        Some(response) => session.step(response, creds),
        None => session.first_challenge(),
    };
    (session, step)
}

impl Session {
    /// Feeds the client's next message.
    pub fn step(&mut self, input: &[u8], creds: &dyn CredentialLookup) -> Step {
        let state = std::mem::replace(&mut self.state, State::Done);
        if input.len() > MAX_MESSAGE_LEN {
            return SaslError::TooLong.into();
        }
        let (next, step) = match state {
            State::Plain => (None, password::plain(input, creds)),
            State::Login(login) => {
                let (next, step) = login.step(input, creds);
                (next.map(State::Login), step)
            }
            State::CramMd5(cram) => (None, cram.step(input, creds)),
            State::Scram(scram) => {
                let (next, step) = scram.step(input, creds);
                (next.map(State::Scram), step)
            }
            State::Done => (None, SaslError::ExchangeOver.into()),
        };
        if let (Some(next), Step::Continue(_)) = (next, &step) {
            self.state = next;
        }
        step
    }

    /// The mechanism of this exchange.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Whether the exchange has ended (successfully or not).
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// The challenge sent when the client gave no initial response.
    fn first_challenge(&mut self) -> Step {
        match &self.state {
            State::Login(_) => Step::Continue(password::USERNAME_CHALLENGE.to_vec()),
            // PLAIN and SCRAM start with the client: an empty challenge asks for its message.
            _ => Step::Continue(Vec::new()),
        }
    }
}

fn done(mechanism: Mechanism, step: Step) -> (Session, Step) {
    let session = Session {
        mechanism,
        state: State::Done,
    };
    (session, step)
}
