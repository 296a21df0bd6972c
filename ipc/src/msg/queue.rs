//! The queue service offered by queued: the outbound queue. smtpd's submission side writes a
//! message into a temporary file queued hands out, then enqueues it with its envelope; queued
//! copies it into its own queue directory and answers only once message and envelope are
//! durable. Sending it out (MX lookup, TLS policy, retries, DSNs) is the queued issue's work.

use serde::{Deserialize, Serialize};

use crate::msg::types::AccountId;
use crate::rpc::Service;

/// Marker for the service queued offers to its peers.
#[derive(Debug)]
pub enum QueueService {}

impl Service for QueueService {
    const NAME: &'static str = "queue";
    type Request = Request;
    type Event = Event;
}

crate::requests! {
    /// A request to queued.
    pub enum Request for QueueService, refused: Refused {
        /// submission → queued: an empty temporary file (read-write fd attached to the answer).
        OpenMessage {} -> FileId,
        /// submission → queued: queue what was written into `file` for `envelope`'s
        /// recipients, with `prepend` (DKIM-Signature fields made after the body was known)
        /// before it; answered once durable in the queue. The message counts against the
        /// sending limits of the account whose submission session `ticket` names: queued asks
        /// storaged, never the submitter, which account that is.
        Enqueue {
            file: FileId,
            ticket: crate::msg::auth::Ticket,
            envelope: SubmittedEnvelope,
            prepend: Vec<u8>,
            /// Queued but held, not to be sent, until the same link says [`Release`] (or
            /// [`Discard`]): the submission also delivers to local recipients and answers its
            /// client only once both are done. A held message whose link closes, or that
            /// queued finds at start, is discarded: its client was not told it was accepted.
            held: bool,
        } -> QueueId,
        /// submission → queued: forget temporary file `file`.
        Abort { file: FileId } -> (),
        /// submission → queued: held message `id` may be sent (durable when answered).
        Release { id: QueueId } -> (),
        /// submission → queued: remove held message `id` (its submission failed elsewhere).
        Discard { id: QueueId } -> (),
    }
}

/// A temporary file queued handed out for one message, until it is queued or aborted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FileId(pub u64);

/// A message in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct QueueId(pub u64);

impl std::fmt::Display for QueueId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

/// Why queued did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refused {
    /// Refused; `temporary` says whether trying later may work.
    Failed { temporary: bool, message: String },
    /// The account reached a sending limit; `setting` names it.
    OverLimit {
        setting: String,
        limit: u32,
        retry_after_secs: u64,
    },
    /// Not now, for lack of space: free space is under the configured floor, a write found the
    /// disk full, or the link holds as many bytes of open messages as it may (SMTP's
    /// `452 4.3.1`). Nothing of the message was kept.
    InsufficientStorage { message: String },
}

/// Who a message is from and for, as the submitter states it (the account comes from the
/// session ticket beside it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmittedEnvelope {
    /// The reverse path; empty for `<>`.
    pub from: String,
    pub recipients: Vec<String>,
    /// SMTPUTF8 was given (the next hop must support it).
    pub smtputf8: bool,
    /// BODY=8BITMIME was given.
    pub eight_bit: bool,
    /// REQUIRETLS (RFC 8689): only over verified TLS.
    pub requiretls: bool,
}

impl SubmittedEnvelope {
    /// The envelope queued keeps, for the account the ticket resolved to.
    pub fn for_account(self, account: AccountId) -> Envelope {
        Envelope {
            from: self.from,
            recipients: self.recipients,
            account,
            smtputf8: self.smtputf8,
            eight_bit: self.eight_bit,
            requiretls: self.requiretls,
        }
    }
}

/// Who a queued message is from and for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The reverse path; empty for `<>`.
    pub from: String,
    pub recipients: Vec<String>,
    /// The account that submitted it (for per-account limits and DSNs), as storaged named it
    /// for the submission's session ticket.
    pub account: AccountId,
    /// SMTPUTF8 was given (the next hop must support it).
    pub smtputf8: bool,
    /// BODY=8BITMIME was given.
    pub eight_bit: bool,
    /// REQUIRETLS (RFC 8689): only over verified TLS.
    pub requiretls: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {}

/// Administration of queued, forwarded by the supervisor from moxctl.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Admin {
    /// moxctl → queued: every queued message.
    List,
}

/// queued's answer to an [`Admin`] request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminReply {
    List(Vec<QueueEntry>),
}

/// One queued message as `moxctl queue list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueEntry {
    pub id: QueueId,
    pub envelope: Envelope,
    pub size: u64,
    /// Seconds since the epoch.
    pub queued_at: i64,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// Held until its submission's local delivery is done (see [`Enqueue`]).
    pub held: bool,
}
