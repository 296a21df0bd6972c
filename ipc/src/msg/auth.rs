//! The auth service offered by authd: SASL exchanges relayed verbatim by the network roles
//! (smtpd, imapd, httpd), brute-force throttling, and session tickets. authd alone checks
//! passwords; on success it registers a ticket with storaged and hands it to the caller.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::msg::types::AccountId;
use crate::rpc::Service;
use crate::secret::SecretBytes;

/// Marker for the service authd offers to its peers.
#[derive(Debug)]
pub enum AuthService {}

impl Service for AuthService {
    const NAME: &'static str = "auth";
    type Request = Request;
    type Event = Event;
}

/// A session ticket: 128 random bits naming an authenticated session at storaged.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ticket(pub [u8; 16]);

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ticket(<redacted>)")
    }
}

crate::requests! {
    /// A request to authd.
    pub enum Request for AuthService, refused: Failure {
        /// submission, imapd, httpd → authd: the mechanisms to advertise on a connection with
        /// or without TLS channel binding, strongest first.
        Mechanisms { channel_binding: bool } -> Vec<String>,
        /// submission, imapd, httpd → authd: start an exchange with the client's mechanism and
        /// optional initial response (SASL-IR), on a connection from `remote`.
        Start {
            mechanism: String,
            /// May carry the password (PLAIN): redacted in logs, zeroed when dropped.
            initial_response: Option<SecretBytes>,
            /// The TLS exporter (RFC 9266) when the connection is TLS (not a credential: the
            /// client sends the same bytes inside its SCRAM message).
            channel_binding: Option<Vec<u8>>,
            remote: IpAddr,
        } -> Progress,
        /// submission, imapd, httpd → authd: the client's next message in exchange `exchange`.
        Step {
            exchange: u64,
            /// May carry the password (LOGIN): redacted in logs, zeroed when dropped.
            response: SecretBytes,
        } -> Progress,
        /// submission, imapd, httpd → authd: the client aborted or went away.
        Abort { exchange: u64 } -> (),
        /// submission, imapd, httpd → authd: the session of `ticket` ended; revoke it.
        Logout { ticket: Ticket } -> (),
    }
}

/// How an exchange goes on (the answer to `Start` and `Step`); a failure ends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Progress {
    /// authd → caller: send `challenge` to the client and relay its answer with `Step`.
    Continue { exchange: u64, challenge: Vec<u8> },
    /// authd → caller: authenticated. `additional` goes to the client with the success
    /// (SCRAM's server signature).
    Success {
        account: AccountId,
        ticket: Ticket,
        additional: Option<Vec<u8>>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Failure {
    /// Wrong credentials (SMTP 535 5.7.8, IMAP NO [AUTHENTICATIONFAILED]). Also the answer when
    /// a limit refused the attempt: telling it apart would tell a guesser when a guess was
    /// right, so only authd's log says so.
    Credentials,
    /// The client's messages were malformed or named an unknown mechanism (SMTP 501/504).
    Malformed(String),
    /// authd could not do its part; try again later (SMTP 454 4.7.0).
    Temporary(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {}

/// Administration of authd, forwarded by the supervisor from moxctl. The password travels as
/// an attached descriptor (a pipe or anonymous file), so no other process ever holds it in a
/// message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Admin {
    /// moxctl → authd: set `account`'s password to the bytes of the attached descriptor.
    SetPassword { account: AccountId },
    /// moxctl → authd: forget `account`'s credentials.
    RemoveCredentials { account: AccountId },
}

/// authd's answer to an [`Admin`] request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminReply {
    Done(String),
}
