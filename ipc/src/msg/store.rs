//! The store service offered by storaged: delivery into mailboxes (for smtpd and queued), and
//! the administration of domains, accounts and addresses (forwarded by the supervisor from
//! moxctl over the control channel), and the mailbox API of imapd and httpd: one request per
//! operation, each naming the session ticket authd issued, answered with its own type.
//!
//! storaged decides what a caller may do from the link a request arrives on: delivery requests
//! are served only on links from smtpd and queued, session requests only on links from imapd
//! and httpd, and those only for the account of a ticket issued to that role.

use serde::{Deserialize, Serialize};

use crate::msg::auth::Ticket;
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
        // imapd, httpd → storaged, for the session of `ticket` (issued by authd to the calling
        // role), reaching only that session's account. Mailboxes are named by name or by the
        // id `Select` returned. A ticket that is unknown, expired or another role's is
        // refused with `InvalidTicket`; what IMAP answers NO to, with `No`.
        /// The account's mailboxes.
        ListMailboxes { ticket: Ticket } -> Vec<MailboxInfo>,
        CreateMailbox { ticket: Ticket, name: String } -> (),
        /// Renaming INBOX moves its messages into a new mailbox and leaves INBOX empty.
        RenameMailbox { ticket: Ticket, from: String, to: String } -> (),
        DeleteMailbox { ticket: Ticket, name: String } -> (),
        Subscribe { ticket: Ticket, name: String, subscribed: bool } -> (),
        /// The mailbox's id, state and counts.
        Select { ticket: Ticket, name: String } -> Selected,
        /// Metadata of the messages in `uids`, resuming after UID `after`; answered in pages
        /// that fit a frame.
        Fetch {
            ticket: Ticket,
            mailbox: MailboxId,
            uids: UidSet,
            after: Option<Uid>,
        } -> Messages,
        /// A read-only descriptor of one message's bytes comes with the answer, its size.
        Open { ticket: Ticket, mailbox: MailboxId, uid: Uid } -> u64,
        /// A writable temporary file for a message to append comes with the answer, its id.
        OpenUpload { ticket: Ticket } -> u64,
        /// Appends the upload to mailbox `name`.
        Append {
            ticket: Ticket,
            name: String,
            upload: u64,
            flags: Flags,
            keywords: Vec<String>,
            internal_date: Option<i64>,
        } -> Appended,
        /// Changes flags and keywords; with `unchanged_since`, CONDSTORE semantics.
        StoreFlags {
            ticket: Ticket,
            mailbox: MailboxId,
            uids: UidSet,
            change: FlagChange,
            flags: Flags,
            keywords: Vec<String>,
            unchanged_since: Option<ModSeq>,
        } -> Stored,
        /// Copies messages; (source UID, new UID) pairs for COPYUID.
        Copy { ticket: Ticket, from: MailboxId, uids: UidSet, to: String } -> Copied,
        /// Moves messages; answered as a copy.
        Move { ticket: Ticket, from: MailboxId, uids: UidSet, to: String } -> Copied,
        /// Removes `\Deleted` messages (only those in `uids`, if given); the UIDs removed.
        Expunge {
            ticket: Ticket,
            mailbox: MailboxId,
            uids: Option<UidSet>,
        } -> Vec<Uid>,
        /// Changed messages and vanished UIDs since `since` (CONDSTORE/QRESYNC).
        Changes { ticket: Ticket, mailbox: MailboxId, since: ModSeq } -> ChangesSince,
        /// The UIDs of the messages matching `criteria`, in UID order.
        Search { ticket: Ticket, mailbox: MailboxId, criteria: Criteria } -> Vec<Uid>,
        /// From now on, push this account's changes to the calling link as [`Event`]s, in
        /// modseq order, once they are durable; until the ticket is revoked.
        Watch { ticket: Ticket } -> (),
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
    /// The session's ticket is unknown, expired, or not for this role: log in again.
    InvalidTicket,
    /// The operation is not possible (no such mailbox, invalid name, …): IMAP's NO.
    No(String),
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
            Refused::InvalidTicket => f.write_str("the session is not valid; log in again"),
            Refused::No(why) => f.write_str(why),
        }
    }
}

/// Search criteria as a postfix program (operands first, then `And(n)`, `Or`, `Not`), so that
/// no nesting is needed on the wire: a deeply nested value could exhaust the decoder's stack.
/// An empty program matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Criteria(pub Vec<SearchTerm>);

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
    /// Index of the enclosing multipart in the list; `None` for the whole message.
    pub parent: Option<u32>,
    /// Lower-cased type and subtype, e.g. `text` / `plain`.
    pub content_type: String,
    pub subtype: String,
    pub params: Vec<(String, String)>,
    pub id: Option<String>,
    pub description: Option<String>,
    pub encoding: Option<String>,
    pub disposition: Option<(String, Vec<(String, String)>)>,
    pub language: Vec<String>,
    pub location: Option<String>,
    /// Byte offsets in the message: where the part's header starts, its body starts, it ends.
    pub header_start: u64,
    pub body_start: u64,
    pub end: u64,
    /// Lines in the body.
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

/// The answer to [`Select`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selected {
    pub id: MailboxId,
    pub info: MailboxInfo,
}

/// A page of the answer to [`Fetch`]: `more` names the last UID sent when the page filled up,
/// to ask again from there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Messages {
    pub messages: Vec<MessageMeta>,
    pub more: Option<Uid>,
}

/// The answer to [`Append`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appended {
    pub uidvalidity: u32,
    pub uid: Uid,
}

/// The answer to [`StoreFlags`]: the messages changed, and those CONDSTORE left alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    pub updated: Vec<MessageFlags>,
    pub modified: Vec<Uid>,
}

/// The answer to [`Copy`] and [`Move`]: (source UID, new UID) pairs, for COPYUID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Copied {
    pub uidvalidity: u32,
    pub pairs: Vec<(Uid, Uid)>,
}

/// The answer to [`Changes`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangesSince {
    pub changed: Vec<MessageFlags>,
    pub vanished: Vec<Uid>,
    pub highest_modseq: ModSeq,
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
