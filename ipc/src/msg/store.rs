//! The store service offered by storaged: delivery into mailboxes (for smtpd and queued), and
//! the administration of domains, accounts and addresses (forwarded by the supervisor from
//! moxctl over the control channel). The mailbox API for imapd and httpd, scoped by session
//! tickets, is not defined yet.
//!
//! storaged decides what a caller may do from the link a request arrives on: delivery requests
//! are served only on links from smtpd and queued.

use serde::{Deserialize, Serialize};

use crate::rpc::Service;

/// Marker for the service storaged offers to its peers.
#[derive(Debug)]
pub enum StoreService {}

impl Service for StoreService {
    const NAME: &'static str = "store";
    type Request = Request;
    type Response = Response;
    type Event = Event;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// smtpd, submission, queued → storaged: may `address` receive mail here? (asked at RCPT time)
    CheckRecipient { address: String },
    /// smtpd, submission, queued → storaged: a new delivery to write one message into; the write
    /// end of a pipe comes with the response (closing it ends the message).
    OpenDelivery,
    /// smtpd, submission, queued → storaged: deliver the bytes written into delivery `id` to
    /// `recipients`, after the header fields in `prepend` (Authentication-Results), into Junk when
    /// `junk`; answered only once the message is durable.
    Deliver {
        id: u64,
        recipients: Vec<String>,
        prepend: Vec<u8>,
        junk: bool,
    },
    /// smtpd, submission, queued → storaged: forget delivery `id`.
    AbortDelivery { id: u64 },
    /// authd → storaged: the account a login name (an account name or one of its addresses)
    /// belongs to.
    ResolveLogin { username: String },
    /// authd → storaged: `ticket` may act for `account` on links from `role` until `expires`
    /// (seconds since the epoch).
    RegisterTicket {
        ticket: crate::msg::auth::Ticket,
        account: String,
        role: crate::topology::Role,
        expires: i64,
    },
    /// authd → storaged: `ticket` is no longer valid.
    RevokeTicket { ticket: crate::msg::auth::Ticket },
    /// imapd, httpd → storaged: an operation on behalf of the session of `ticket` (issued by
    /// authd to the calling role); it reaches only that session's account.
    Session {
        ticket: crate::msg::auth::Ticket,
        op: SessionOp,
    },
    /// submission → storaged: the account `address` belongs to (as a recipient would
    /// reach it), to check that a sender uses an address of its own.
    SenderAccount { address: String },
    /// authd → storaged: every ticket of `account` is no longer valid (its password changed or
    /// its credentials were removed): sessions opened with the old password end.
    RevokeAccountTickets { account: String },
    /// keyd → storaged: does the submission session of `ticket` (authd registered it for
    /// submission, and it has not expired) own `address`? Answered with [`Response::Owns`];
    /// the only question keyd's link may ask.
    SessionOwnsAddress {
        ticket: crate::msg::auth::Ticket,
        address: String,
    },
    /// queued → storaged: the account of the live submission session of `ticket` (which
    /// account's sending limits a message counts against); `Login(None)` when there is none.
    SubmissionAccount { ticket: crate::msg::auth::Ticket },
}

/// Mailbox operations of a session. Mailboxes are named by name or by the id `Select` returned;
/// UID sets are inclusive ranges with `u32::MAX` for `*`.
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
        mailbox: u64,
        uids: Vec<(u32, u32)>,
        after: Option<u32>,
    },
    /// A read-only descriptor of one message's bytes.
    Open {
        mailbox: u64,
        uid: u32,
    },
    /// A writable temporary file for a message to append; its fd comes with the answer.
    OpenUpload,
    /// Appends the upload to mailbox `name`.
    Append {
        name: String,
        upload: u64,
        flags: u8,
        keywords: Vec<String>,
        internal_date: Option<i64>,
    },
    /// Changes flags (bits: seen 1, answered 2, flagged 4, deleted 8, draft 16) and keywords;
    /// with `unchanged_since`, CONDSTORE semantics.
    Store {
        mailbox: u64,
        uids: Vec<(u32, u32)>,
        change: FlagChange,
        flags: u8,
        keywords: Vec<String>,
        unchanged_since: Option<u64>,
    },
    Copy {
        from: u64,
        uids: Vec<(u32, u32)>,
        to: String,
    },
    Move {
        from: u64,
        uids: Vec<(u32, u32)>,
        to: String,
    },
    /// Removes `\Deleted` messages (only those in `uids`, if given).
    Expunge {
        mailbox: u64,
        uids: Option<Vec<(u32, u32)>>,
    },
    /// Changed messages and vanished UIDs since `since` (CONDSTORE/QRESYNC).
    Changes {
        mailbox: u64,
        since: u64,
    },
    /// The UIDs of the messages matching `criteria`.
    Search {
        mailbox: u64,
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
    Uids(Vec<(u32, u32)>),
    /// System flag bits all set (`set`) or all clear.
    Flags {
        flags: u8,
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
    ModSeq(u64),
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
    pub uid: u32,
    pub modseq: u64,
    pub flags: u8,
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
    pub uid: u32,
    pub modseq: u64,
    pub flags: u8,
    pub keywords: Vec<String>,
}

/// storaged's answer to a [`SessionOp`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionReply {
    Done,
    Mailboxes(Vec<MailboxInfo>),
    Selected {
        id: u64,
        info: MailboxInfo,
    },
    Messages {
        messages: Vec<MessageMeta>,
        more: Option<u32>,
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
        uid: u32,
    },
    Stored {
        updated: Vec<MessageFlags>,
        modified: Vec<u32>,
    },
    /// (source UID, new UID) pairs, for COPYUID.
    Copied {
        uidvalidity: u32,
        pairs: Vec<(u32, u32)>,
    },
    Expunged(Vec<u32>),
    /// Search results, in UID order.
    Uids(Vec<u32>),
    Changes {
        changed: Vec<MessageFlags>,
        vanished: Vec<u32>,
        highest_modseq: u64,
    },
    /// The ticket is unknown, expired, or not for this role: log in again.
    InvalidTicket,
    /// The operation failed (no such mailbox, invalid name, …): an IMAP NO.
    Refused(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// storaged → caller: the answer to `CheckRecipient`.
    Recipient(RecipientStatus),
    /// storaged → caller: a delivery was opened; its writable fd is attached.
    DeliveryOpened { id: u64 },
    /// storaged → caller: one result per recipient, in order; all delivered ones are durable.
    Delivered(Vec<RecipientResult>),
    /// storaged → caller: done (AbortDelivery, RegisterTicket, RevokeTicket).
    Done,
    /// storaged → authd, submission, queued: the account of a login name, sender address or
    /// session ticket, if any.
    Login(Option<String>),
    /// storaged → imapd, httpd: the answer to a `Session` request (fds as it says).
    Session(SessionReply),
    /// storaged → caller: the request failed as a whole.
    Failed(Failure),
    /// storaged → smtpd, submission, queued: not now, for lack of space: free space is under the
    /// configured floor, a write found the disk full, or the calling link holds as many bytes
    /// of open deliveries as it may (SMTP's `452 4.3.1`). Nothing of the delivery was kept.
    InsufficientStorage { message: String },
    /// storaged → keyd: the answer to `SessionOwnsAddress`.
    Owns(bool),
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
        account: String,
        modseq: u64,
        change: Change,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// A message arrived (delivery, append, copy, move).
    New { mailbox: u64, uid: u32 },
    /// A message's flags or keywords changed.
    Flags {
        mailbox: u64,
        uid: u32,
        flags: u8,
        keywords: Vec<String>,
    },
    /// Messages were expunged (or moved away).
    Expunged { mailbox: u64, uids: Vec<u32> },
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
    AddAccount { name: String, address: String },
    /// moxctl → storaged: remove an account with its addresses, mailboxes and messages.
    RemoveAccount { name: String },
    /// moxctl → storaged: every account with its addresses.
    ListAccounts,
    /// moxctl → storaged: another address (or `@domain` catch-all) for an account.
    AddAddress { address: String, account: String },
    /// moxctl → storaged: remove an address (not an account's last).
    RemoveAddress { address: String },
    /// moxctl → storaged: deliver the message read from the attached fd to `recipients`.
    Deliver { recipients: Vec<String> },
    /// moxctl → storaged: check the database against the message files.
    VerifyData,
    /// moxctl → storaged: the mailboxes of an account with their counts.
    ListMailboxes { account: String },
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
    pub uidnext: u32,
    pub highest_modseq: u64,
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
    pub name: String,
    pub addresses: Vec<String>,
}
