//! The records stored in the database and their encoding on disk.
//!
//! Encoded with bincode 2.0.1 (the version pinned for the wire codec, used here through its own
//! configuration: the disk format must not change when the wire codec does). Every record type is
//! versioned through the schema version in the `meta` tree; a change here needs a schema bump
//! and an upgrade path.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};

/// A mail domain served here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Domain {
    /// Splits `user+tag@domain` into `user`: deliveries to `user+anything` reach `user`.
    pub localpart_separator: Option<char>,
    pub created: i64,
}

/// An account: owns addresses and mailboxes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub created: i64,
    /// The account's modification sequence: bumped by every change to its messages.
    pub modseq: u64,
}

/// The special-use attributes of RFC 6154 that moxd creates with every account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SpecialUse {
    Inbox,
    Sent,
    Drafts,
    Trash,
    Junk,
    Archive,
}

impl SpecialUse {
    pub const ALL: [SpecialUse; 6] = [
        SpecialUse::Inbox,
        SpecialUse::Sent,
        SpecialUse::Drafts,
        SpecialUse::Trash,
        SpecialUse::Junk,
        SpecialUse::Archive,
    ];

    /// The name of the mailbox created for it.
    pub fn default_name(self) -> &'static str {
        match self {
            SpecialUse::Inbox => "Inbox",
            SpecialUse::Sent => "Sent",
            SpecialUse::Drafts => "Drafts",
            SpecialUse::Trash => "Trash",
            SpecialUse::Junk => "Junk",
            SpecialUse::Archive => "Archive",
        }
    }
}

/// Message counts of a mailbox, kept in step with its messages by every operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub total: u32,
    pub unseen: u32,
    pub deleted: u32,
    pub size: u64,
}

impl Counts {
    pub fn add(&mut self, m: &Message) {
        self.total += 1;
        self.unseen += u32::from(!m.flags.contains(Flags::SEEN));
        self.deleted += u32::from(m.flags.contains(Flags::DELETED));
        self.size += m.size;
    }

    pub fn remove(&mut self, m: &Message) {
        self.total = self.total.saturating_sub(1);
        self.unseen = self
            .unseen
            .saturating_sub(u32::from(!m.flags.contains(Flags::SEEN)));
        self.deleted = self
            .deleted
            .saturating_sub(u32::from(m.flags.contains(Flags::DELETED)));
        self.size = self.size.saturating_sub(m.size);
    }
}

/// A mailbox of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mailbox {
    pub account: String,
    /// `/`-separated hierarchy name; never a filesystem path.
    pub name: String,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highest_modseq: u64,
    pub special_use: Option<SpecialUse>,
    pub subscribed: bool,
    pub counts: Counts,
}

/// A change waiting to be announced to watchers once durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FeedRecord {
    New {
        mailbox: u64,
        uid: u32,
    },
    Flags {
        mailbox: u64,
        uid: u32,
        flags: Flags,
        keywords: Vec<String>,
    },
    Expunged {
        mailbox: u64,
        uids: Vec<u32>,
    },
}

/// The system flags of a message (one byte on disk, as on the wire).
pub use ipc::msg::types::Flags;

/// A message in a mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The immutable file holding its bytes (one per mailbox entry).
    pub file: u64,
    pub size: u64,
    pub modseq: u64,
    pub flags: Flags,
    pub keywords: Vec<String>,
    /// Seconds since the epoch.
    pub internal_date: i64,
    pub envelope: Envelope,
    /// MIME parts in pre-order (empty when the message could not be parsed).
    pub structure: Vec<BodyPart>,
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_little_endian()
        .with_variable_int_encoding()
        .with_limit::<{ 16 * 1024 * 1024 }>()
}

/// Encodes a record for storage.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    bincode::serde::encode_to_vec(value, config()).map_err(StoreError::Encode)
}

/// Decodes a stored record of `tree`; trailing bytes or garbage mean corruption.
pub fn decode<T: DeserializeOwned>(tree: &'static str, bytes: &[u8]) -> Result<T> {
    let (value, used) =
        bincode::serde::decode_from_slice(bytes, config()).map_err(|e| StoreError::Corrupt {
            tree,
            why: e.to_string(),
        })?;
    if used != bytes.len() {
        return Err(StoreError::Corrupt {
            tree,
            why: format!("{} trailing bytes", bytes.len() - used),
        });
    }
    Ok(value)
}

/// Header values as they appear in the message (unfolded), addresses parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub date: Option<String>,
    pub subject: Option<String>,
    pub from: Vec<EnvelopeAddress>,
    pub sender: Vec<EnvelopeAddress>,
    pub reply_to: Vec<EnvelopeAddress>,
    pub to: Vec<EnvelopeAddress>,
    pub cc: Vec<EnvelopeAddress>,
    pub bcc: Vec<EnvelopeAddress>,
    pub in_reply_to: Option<String>,
    pub message_id: Option<String>,
}

/// One address: display name, local part and domain (IMAP's `adl` is always NIL today).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeAddress {
    pub name: Option<String>,
    pub local: String,
    pub domain: String,
}

/// One MIME part: the catalogue's type, stored as it is sent (the same bytes on disk).
pub use ipc::msg::store::BodyPart;

/// A message's bytes held in the database until its file is durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Body {
    /// The record that refers to the file.
    pub mailbox: u64,
    pub uid: u32,
    pub bytes: Vec<u8>,
}
