//! The domain's small types, shared by the services: each one says what a number or a string
//! is, so that a mailbox id cannot be passed where a delivery id belongs. On the wire each is
//! exactly the value it wraps (`#[serde(transparent)]` or `into`/`try_from` the plain value).

use std::fmt;

use serde::{Deserialize, Serialize};

/// An account, named as storaged files it: by its name (`moxctl account add NAME …`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AccountId(String);

impl AccountId {
    pub fn new(name: impl Into<String>) -> AccountId {
        AccountId(name.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// Read as the name it is (an account is compared, printed and looked up by name).
impl std::ops::Deref for AccountId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for AccountId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for AccountId {
    fn from(name: &str) -> AccountId {
        AccountId(name.to_owned())
    }
}

impl From<String> for AccountId {
    fn from(name: String) -> AccountId {
        AccountId(name)
    }
}

impl PartialEq<str> for AccountId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for AccountId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// Declares a number that names one kind of thing.
macro_rules! id {
    ($(#[$meta:meta])* $Name:ident($Inner:ty)) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $Name(pub $Inner);

        impl fmt::Display for $Name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

id!(
    /// A mailbox at storaged, as `Select` returned it; never reused.
    MailboxId(u64)
);
id!(
    /// A message's IMAP UID in its mailbox (RFC 9051 §2.3.1.1).
    Uid(u32)
);
id!(
    /// A modification sequence number (CONDSTORE, RFC 7162): every change of an account gets
    /// the next one.
    ModSeq(u64)
);
id!(
    /// A delivery storaged opened for one caller (`OpenDelivery`), until it is delivered or
    /// aborted.
    DeliveryId(u64)
);

impl Uid {
    /// IMAP's `*` in a range: the largest UID in use.
    pub const MAX: Uid = Uid(u32::MAX);
}

/// A set of UIDs as inclusive ranges, `Uid::MAX` standing for `*` (IMAP's sequence sets over
/// UIDs, RFC 9051 §9 `sequence-set`). A range may be given high to low, as IMAP allows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UidSet(Vec<(Uid, Uid)>);

impl UidSet {
    pub fn new(ranges: impl IntoIterator<Item = (Uid, Uid)>) -> UidSet {
        UidSet(ranges.into_iter().collect())
    }

    /// The set of one UID.
    pub fn one(uid: Uid) -> UidSet {
        UidSet(vec![(uid, uid)])
    }

    /// Every UID (`1:*`).
    pub fn all() -> UidSet {
        UidSet(vec![(Uid(1), Uid::MAX)])
    }

    /// The ranges, each low to high.
    pub fn ranges(&self) -> impl Iterator<Item = (Uid, Uid)> + '_ {
        self.0.iter().map(|&(a, b)| (a.min(b), a.max(b)))
    }

    pub fn contains(&self, uid: Uid) -> bool {
        self.ranges().any(|(low, high)| low <= uid && uid <= high)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Ranges written as plain numbers (`[(1, 5), (9, u32::MAX)]`).
impl<const N: usize> From<[(u32, u32); N]> for UidSet {
    fn from(ranges: [(u32, u32); N]) -> UidSet {
        UidSet::new(ranges.into_iter().map(|(a, b)| (Uid(a), Uid(b))))
    }
}

/// The system flags of a message (RFC 9051 §2.3.2), as a set. On the wire and on disk one
/// byte, a bit per flag; a byte with any other bit set does not decode.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Flags(u8);

impl Flags {
    pub const NONE: Flags = Flags(0);
    pub const SEEN: Flags = Flags(1);
    pub const ANSWERED: Flags = Flags(2);
    pub const FLAGGED: Flags = Flags(4);
    pub const DELETED: Flags = Flags(8);
    pub const DRAFT: Flags = Flags(16);
    const ALL: u8 = 31;

    /// Each flag with its IMAP name, in bit order.
    pub const NAMES: [(Flags, &'static str); 5] = [
        (Flags::SEEN, "\\Seen"),
        (Flags::ANSWERED, "\\Answered"),
        (Flags::FLAGGED, "\\Flagged"),
        (Flags::DELETED, "\\Deleted"),
        (Flags::DRAFT, "\\Draft"),
    ];

    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether any flag of `other` is in the set.
    pub fn intersects(self, other: Flags) -> bool {
        self.0 & other.0 != 0
    }

    pub fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    pub fn difference(self, other: Flags) -> Flags {
        Flags(self.0 & !other.0)
    }

    /// The flag named `name` (`\Seen`, case-insensitive), if it is a system flag this set holds.
    pub fn named(name: &str) -> Option<Flags> {
        Flags::NAMES
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(name))
            .map(|&(f, _)| f)
    }

    /// The IMAP names of the flags in the set, in bit order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Flags::NAMES
            .into_iter()
            .filter(move |&(f, _)| self.contains(f))
            .map(|(_, n)| n)
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, other: Flags) -> Flags {
        self.union(other)
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

impl From<Flags> for u8 {
    fn from(flags: Flags) -> u8 {
        flags.0
    }
}

/// A flag byte with a bit that names no flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown flag bits {0:#04x}")]
pub struct UnknownFlags(pub u8);

impl TryFrom<u8> for Flags {
    type Error = UnknownFlags;
    fn try_from(bits: u8) -> Result<Flags, UnknownFlags> {
        if bits & !Flags::ALL == 0 {
            Ok(Flags(bits))
        } else {
            Err(UnknownFlags(bits & !Flags::ALL))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    #[test]
    fn each_type_is_its_plain_value_on_the_wire() {
        assert_eq!(
            codec::encode(&AccountId::from("jøran")).unwrap(),
            codec::encode("jøran").unwrap()
        );
        assert_eq!(
            codec::encode(&MailboxId(300)).unwrap(),
            codec::encode(&300u64).unwrap()
        );
        assert_eq!(
            codec::encode(&UidSet::new([(Uid(1), Uid::MAX)])).unwrap(),
            codec::encode(&vec![(1u32, u32::MAX)]).unwrap()
        );
        assert_eq!(
            codec::encode(&(Flags::SEEN | Flags::DRAFT)).unwrap(),
            vec![17]
        );
    }

    #[test]
    fn a_flag_byte_with_an_unknown_bit_does_not_decode() {
        assert_eq!(
            codec::decode::<Flags>(&[31]).unwrap(),
            Flags::try_from(31).unwrap()
        );
        assert!(codec::decode::<Flags>(&[32]).is_err());
        assert!(codec::decode::<Flags>(&[255]).is_err());
        assert_eq!(Flags::try_from(0x41), Err(UnknownFlags(0x40)));
    }

    #[test]
    fn flags_by_name() {
        let f = Flags::named("\\seen").unwrap() | Flags::DELETED;
        assert_eq!(f.names().collect::<Vec<_>>(), ["\\Seen", "\\Deleted"]);
        assert_eq!(format!("{f:?}"), r#"{"\\Seen", "\\Deleted"}"#);
        assert!(f.difference(Flags::SEEN).contains(Flags::DELETED));
        assert!(!f.difference(Flags::SEEN).contains(Flags::SEEN));
        assert_eq!(Flags::named("\\Recent"), None);
    }

    #[test]
    fn uid_sets_take_ranges_either_way_round() {
        let set = UidSet::new([(Uid(9), Uid(5)), (Uid(20), Uid::MAX)]);
        assert!(set.contains(Uid(5)) && set.contains(Uid(9)) && set.contains(Uid(4_000_000)));
        assert!(!set.contains(Uid(4)) && !set.contains(Uid(10)));
        assert!(UidSet::all().contains(Uid(1)) && !UidSet::default().contains(Uid(1)));
    }
}
