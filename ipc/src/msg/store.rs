//! The store service offered by storaged: delivery into mailboxes (for smtpd and queued), and
//! the administration of domains, accounts and addresses (forwarded by the supervisor from
//! moxctl over the control channel). The mailbox API for imapd and httpd, scoped by session
//! tickets, is not defined yet.
//!
//! storaged decides what a caller may do from the link a request arrives on: delivery requests
//! are served only on links from smtpd and queued.

use serde::{Deserialize, Serialize};

pub use crate::msg::types::{AccountId, DeliveryId, Flags, MailboxId, ModSeq, Uid, UidSet};
use crate::rpc::Service;

/// Marker for the service storaged offers to its peers.
#[derive(Debug)]
pub enum StoreService {}

impl Service for StoreService {
    const NAME: &'static str = "store";
    type Request = Request;
    type Event = Event;
}

crate::requests! {
    /// A request to storaged (see each request's type for who may send it).
    pub enum Request for StoreService, refused: Refused {
        /// smtpd, submission, queued → storaged: may `address` receive mail here? (asked at
        /// RCPT time)
        CheckRecipient { address: String } -> RecipientStatus,
        /// smtpd, submission, queued → storaged: a new delivery to write one message into; the
        /// write end of a pipe comes with the answer (closing it ends the message).
        OpenDelivery {} -> DeliveryId,
        /// smtpd, submission, queued → storaged: deliver the bytes written into delivery `id`
        /// to `recipients`, after the header fields in `prepend` (Authentication-Results), into
        /// Junk when `junk`; answered only once the message is durable, one result per
        /// recipient, in order.
        Deliver {
            id: DeliveryId,
            recipients: Vec<String>,
            prepend: Vec<u8>,
            junk: bool,
        } -> Vec<RecipientResult>,
        /// smtpd, submission, queued → storaged: forget delivery `id`.
        AbortDelivery { id: DeliveryId } -> (),
        /// authd → storaged: the account a login name (an account name or one of its
        /// addresses) belongs to.
        ResolveLogin { username: String } -> Option<AccountId>,
        /// authd → storaged: `ticket` may act for `account` on links from `role` until
        /// `expires` (seconds since the epoch).
        RegisterTicket {
            ticket: crate::msg::auth::Ticket,
            account: AccountId,
            role: crate::topology::Role,
            expires: i64,
        } -> (),
        /// authd → storaged: `ticket` is no longer valid.
        RevokeTicket { ticket: crate::msg::auth::Ticket } -> (),
        /// imapd, httpd → storaged: an operation on behalf of the session of `ticket` (issued
        /// by authd to the calling role); it reaches only that session's account. Descriptors
        /// come with the answer where the operation says so.
        Session {
            ticket: crate::msg::auth::Ticket,
            op: SessionOp,
        } -> SessionReply,
        /// submission → storaged: the account `address` belongs to (as a recipient would
        /// reach it), to check that a sender uses an address of its own.
        SenderAccount { address: String } -> Option<AccountId>,
        /// authd → storaged: every ticket of `account` is no longer valid (its password changed
        /// or its credentials were removed): sessions opened with the old password end.
        RevokeAccountTickets { account: AccountId } -> (),
        /// keyd → storaged: does the submission session of `ticket` (authd registered it for
        /// submission, and it has not expired) own `address`? The only question keyd's link
        /// may ask.
        SessionOwnsAddress {
            ticket: crate::msg::auth::Ticket,
            address: String,
        } -> bool,
        /// queued → storaged: the account of the live submission session of `ticket` (which
        /// account's sending limits a message counts against); `None` when there is none.
        SubmissionAccount { ticket: crate::msg::auth::Ticket } -> Option<AccountId>,
    }
}

/// Why storaged did not do what was asked, as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refused {
    /// The request failed: retrying may work or not, as the failure says.
    Failed(Failure),
    /// Not now, for lack of space: free space is under the configured floor, a write found the
    /// disk full, or the calling link holds as many bytes of open deliveries as it may (SMTP's
    /// `452 4.3.1`). Nothing of the delivery was kept.
    InsufficientStorage { message: String },
}

impl Refused {
    /// A refusal that trying again later may overcome (SMTP 451).
    pub fn temporary(message: impl Into<String>) -> Refused {
        Refused::Failed(Failure {
            temporary: true,
            message: message.into(),
        })
    }

    /// A refusal that trying again will not change (SMTP 554).
    pub fn permanent(message: impl Into<String>) -> Refused {
        Refused::Failed(Failure {
            temporary: false,
            message: message.into(),
        })
    }
}

impl From<Failure> for Refused {
    fn from(failure: Failure) -> Refused {
        Refused::Failed(failure)
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Failed(failure) => f.write_str(&failure.message),
            Refused::InsufficientStorage { message } => f.write_str(message),
        }
    }
}

/// Mailbox operations of a session. Mailboxes are named by name or by the id `Select` returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionOp {
    ListMailboxes,
    CreateMailbox {
        name: String,
    },
    RenameMailbox {
        from: String,
        to: String,
    },
    DeleteMailbox {
        name: String,
    },
    Subscribe {
        name: String,
        subscribed: bool,
    },
    /// The mailbox's id, state and counts.
    Select {
        name: String,
    },
    /// Metadata of the messages in `uids`, resuming after UID `after`; answered in pages that
    /// fit a frame.
    Fetch {
        mailbox: MailboxId,
        uids: UidSet,
        after: Option<Uid>,
    },
    /// A read-only descriptor of one message's bytes.
    Open {
        mailbox: MailboxId,
        uid: Uid,
    },
    /// A writable temporary file for a message to append; its fd comes with the answer.
    OpenUpload,
    /// Appends the upload to mailbox `name`.
    Append {
        name: String,
        upload: u64,
        flags: Flags,
        keywords: Vec<String>,
        internal_date: Option<i64>,
    },
    /// Changes flags and keywords; with `unchanged_since`, CONDSTORE semantics.
    Store {
        mailbox: MailboxId,
        uids: UidSet,
        change: FlagChange,
        flags: Flags,
        keywords: Vec<String>,
        unchanged_since: Option<ModSeq>,
    },
    Copy {
        from: MailboxId,
        uids: UidSet,
        to: String,
    },
    Move {
        from: MailboxId,
        uids: UidSet,
        to: String,
    },
    /// Removes `\Deleted` messages (only those in `uids`, if given).
    Expunge {
        mailbox: MailboxId,
        uids: Option<UidSet>,
    },
    /// Changed messages and vanished UIDs since `since` (CONDSTORE/QRESYNC).
    Changes {
        mailbox: MailboxId,
        since: ModSeq,
    },
    /// The UIDs of the messages matching `criteria`.
    Search {
        mailbox: MailboxId,
        criteria: Search,
    },
    /// From now on, push this account's changes to the calling link as [`Event`]s, in modseq
    /// order, once they are durable; until the ticket is revoked.
    Watch,
}

/// Search criteria as a postfix program (operands first, then `And(n)`, `Or`, `Not`), so that
/// no nesting is needed on the wire: a deeply nested value could exhaust the decoder's stack.
/// An empty program matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Search(pub Vec<SearchTerm>);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SearchTerm {
    All,
    Uids(UidSet),
    /// The system flags all set (`set`) or all clear.
    Flags {
        flags: Flags,
        set: bool,
    },
    Keyword {
        keyword: String,
        set: bool,
    },
    /// Internal date on or after / before (seconds since the epoch).
    Since(i64),
    Before(i64),
    Larger(u64),
    Smaller(u64),
    /// Messages modified at or after this modseq (CONDSTORE).
    ModSeq(ModSeq),
    /// A header field containing `contains` (case-insensitive).
    Header {
        field: String,
        contains: String,
    },
    /// The decoded text of the body.
    Body(String),
    /// Headers and decoded body text.
    Text(String),
    /// All of the last `n` results.
    And(u16),
    /// Either of the last two results.
    Or,
    Not,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlagChange {
    Add,
    Remove,
    Replace,
}

/// A message's metadata, as IMAP FETCH needs it without opening the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageMeta {
    pub uid: Uid,
    pub modseq: ModSeq,
    pub flags: Flags,
    pub keywords: Vec<String>,
    pub internal_date: i64,
    pub size: u64,
    /// The envelope fields: date, subject, from, sender, reply-to, to, cc, bcc, in-reply-to,
    /// message-id; addresses as `(name, local, domain)`.
    pub envelope: Envelope,
    /// MIME parts in pre-order, each naming its parent; empty if the message was not parsed.
    pub structure: Vec<BodyPart>,
}

/// One MIME part of a message (IMAP BODYSTRUCTURE), with byte offsets into the message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BodyPart {
    pub parent: Option<u32>,
    pub content_type: String,
    pub subtype: String,
    pub params: Vec<(String, String)>,
    pub id: Option<String>,
    pub description: Option<String>,
    pub encoding: Option<String>,
    pub disposition: Option<(String, Vec<(String, String)>)>,
    pub language: Vec<String>,
    pub location: Option<String>,
    pub header_start: u64,
    pub body_start: u64,
    pub end: u64,
    pub lines: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub date: Option<String>,
    pub subject: Option<String>,
    pub from: Vec<(Option<String>, String, String)>,
    pub sender: Vec<(Option<String>, String, String)>,
    pub reply_to: Vec<(Option<String>, String, String)>,
    pub to: Vec<(Option<String>, String, String)>,
    pub cc: Vec<(Option<String>, String, String)>,
    pub bcc: Vec<(Option<String>, String, String)>,
    pub in_reply_to: Option<String>,
    pub message_id: Option<String>,
}

/// A message's flags after a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageFlags {
    pub uid: Uid,
    pub modseq: ModSeq,
    pub flags: Flags,
    pub keywords: Vec<String>,
}

/// storaged's answer to a [`SessionOp`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionReply {
    Done,
    Mailboxes(Vec<MailboxInfo>),
    Selected {
        id: MailboxId,
        info: MailboxInfo,
    },
    Messages {
        messages: Vec<MessageMeta>,
        more: Option<Uid>,
    },
    /// The message's fd comes with it.
    Opened {
        size: u64,
    },
    /// The upload's writable fd comes with it.
    UploadOpened {
        upload: u64,
    },
    Appended {
        uidvalidity: u32,
        uid: Uid,
    },
    Stored {
        updated: Vec<MessageFlags>,
        modified: Vec<Uid>,
    },
    /// (source UID, new UID) pairs, for COPYUID.
    Copied {
        uidvalidity: u32,
        pairs: Vec<(Uid, Uid)>,
    },
    Expunged(Vec<Uid>),
    /// Search results, in UID order.
    Uids(Vec<Uid>),
    Changes {
        changed: Vec<MessageFlags>,
        vanished: Vec<Uid>,
        highest_modseq: ModSeq,
    },
    /// The ticket is unknown, expired, or not for this role: log in again.
    InvalidTicket,
    /// The operation failed (no such mailbox, invalid name, …): an IMAP NO.
    Refused(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecipientStatus {
    Local,
    /// A local domain without that address.
    Unknown,
    /// Not one of the domains of this server.
    NotLocal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecipientResult {
    Delivered,
    /// No account has this address: SMTP's `550 5.1.1`.
    UnknownAddress,
}

/// A failure with the hint a protocol role needs to answer its client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Retrying later may work (SMTP 451) or not (SMTP 554).
    pub temporary: bool,
    pub message: String,
}

/// storaged → imapd, httpd: a durable change of an account someone on the link watches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    Changed {
        account: AccountId,
        modseq: ModSeq,
        change: Change,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// A message arrived (delivery, append, copy, move).
    New { mailbox: MailboxId, uid: Uid },
    /// A message's flags or keywords changed.
    Flags {
        mailbox: MailboxId,
        uid: Uid,
        flags: Flags,
        keywords: Vec<String>,
    },
    /// Messages were expunged (or moved away).
    Expunged { mailbox: MailboxId, uids: Vec<Uid> },
}

/// Administration of storaged, forwarded by the supervisor from moxctl.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Admin {
    /// moxctl → storaged: serve mail for `domain`; `separator` splits `user+tag` local parts.
    AddDomain {
        domain: String,
        separator: Option<char>,
    },
    /// moxctl → storaged: stop serving `domain` (refused while addresses use it).
    RemoveDomain { domain: String },
    /// moxctl → storaged: every domain.
    ListDomains,
    /// moxctl → storaged: a new account with its first address and the default mailboxes.
    AddAccount { name: AccountId, address: String },
    /// moxctl → storaged: remove an account with its addresses, mailboxes and messages.
    RemoveAccount { name: AccountId },
    /// moxctl → storaged: every account with its addresses.
    ListAccounts,
    /// moxctl → storaged: another address (or `@domain` catch-all) for an account.
    AddAddress { address: String, account: AccountId },
    /// moxctl → storaged: remove an address (not an account's last).
    RemoveAddress { address: String },
    /// moxctl → storaged: deliver the message read from the attached fd to `recipients`.
    Deliver { recipients: Vec<String> },
    /// moxctl → storaged: check the database against the message files.
    VerifyData,
    /// moxctl → storaged: the mailboxes of an account with their counts.
    ListMailboxes { account: AccountId },
    /// moxctl → storaged: write a consistent snapshot (database and message files) as a tar
    /// archive into the attached descriptor.
    Backup,
}

/// storaged's answer to an [`Admin`] request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminReply {
    Done(String),
    Domains(Vec<DomainInfo>),
    Accounts(Vec<AccountInfo>),
    Delivered(Vec<(String, RecipientResult)>),
    /// One line per inconsistency; empty when the data is consistent.
    Problems(Vec<String>),
    Mailboxes(Vec<MailboxInfo>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxInfo {
    pub name: String,
    pub subscribed: bool,
    pub special_use: Option<String>,
    pub uidvalidity: u32,
    pub uidnext: Uid,
    pub highest_modseq: ModSeq,
    pub total: u32,
    pub unseen: u32,
    pub deleted: u32,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainInfo {
    pub domain: String,
    pub separator: Option<char>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountInfo {
    pub name: AccountId,
    pub addresses: Vec<String>,
}
