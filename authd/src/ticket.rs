//! Session tickets: what a successful login turns into.
//!
//! A ticket is a random 128-bit identifier (from the OS CSPRNG) bound to an account, the channel
//! (network role and connection) it was issued to, and an expiry. authd registers it with
//! storaged, which serves that account's data only against it; logout, connection close or expiry
//! revokes it. The identifier is a bearer secret: its `Debug` output is redacted.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::crypto;
use crate::error::CryptoError;

/// A ticket's random identifier.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TicketId([u8; 16]);

impl fmt::Debug for TicketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TicketId(<redacted>)")
    }
}

impl TicketId {
    /// A fresh identifier from the OS random source.
    pub fn generate() -> Result<Self, CryptoError> {
        Ok(TicketId(crypto::random()?))
    }

    /// The identifier with these bytes (as received from a peer).
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        TicketId(bytes)
    }

    /// The identifier's bytes (to send to a peer).
    pub fn to_bytes(self) -> [u8; 16] {
        self.0
    }
}

/// A session ticket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// The random identifier.
    pub id: TicketId,
    /// The account the session may act for.
    pub account: String,
    /// The channel it was issued to (network role and connection label).
    pub channel: String,
    /// When it stops being valid.
    pub expires: SystemTime,
}

impl Ticket {
    /// Issues a ticket valid for `lifetime` from `now` (an unrepresentable expiry makes a ticket
    /// that is already expired, never an eternal one).
    pub fn issue(
        account: &str,
        channel: &str,
        lifetime: Duration,
        now: SystemTime,
    ) -> Result<Ticket, CryptoError> {
        Ok(Ticket {
            id: TicketId::generate()?,
            account: account.to_owned(),
            channel: channel.to_owned(),
            expires: now.checked_add(lifetime).unwrap_or(now),
        })
    }

    /// Whether the ticket has expired at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        now >= self.expires
    }
}

/// The tickets authd has issued and not yet revoked.
#[derive(Debug, Default)]
pub struct Tickets {
    live: HashMap<TicketId, Ticket>,
}

impl Tickets {
    /// No tickets.
    pub fn new() -> Self {
        Self::default()
    }

    /// Issues and remembers a ticket.
    pub fn issue(
        &mut self,
        account: &str,
        channel: &str,
        lifetime: Duration,
        now: SystemTime,
    ) -> Result<&Ticket, CryptoError> {
        let ticket = Ticket::issue(account, channel, lifetime, now)?;
        Ok(self.live.entry(ticket.id).or_insert(ticket))
    }

    /// The ticket with this id, if it exists and has not expired.
    pub fn valid(&self, id: &TicketId, now: SystemTime) -> Option<&Ticket> {
        self.live.get(id).filter(|t| !t.is_expired(now))
    }

    /// Revokes one ticket (logout); returns it if it existed.
    pub fn revoke(&mut self, id: &TicketId) -> Option<Ticket> {
        self.live.remove(id)
    }

    /// Revokes every ticket of `account` (its password changed, its credentials were removed).
    pub fn revoke_account(&mut self, account: &str) -> Vec<Ticket> {
        self.extract(|t| t.account == account)
    }

    /// Revokes every ticket of a channel (connection closed, role restarted).
    pub fn revoke_channel(&mut self, channel: &str) -> Vec<Ticket> {
        self.extract(|t| t.channel == channel)
    }

    /// Removes expired tickets and returns them (to be revoked at storaged too).
    pub fn remove_expired(&mut self, now: SystemTime) -> Vec<Ticket> {
        self.extract(|t| t.is_expired(now))
    }

    /// The number of live tickets.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Whether there are no live tickets.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    fn extract(&mut self, mut which: impl FnMut(&Ticket) -> bool) -> Vec<Ticket> {
        let ids: Vec<TicketId> = self
            .live
            .values()
            .filter(|t| which(t))
            .map(|t| t.id)
            .collect();
        ids.iter().filter_map(|id| self.live.remove(id)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    #[test]
    fn issues_distinct_random_ids() {
        let a = Ticket::issue("alice", "imapd", Duration::from_secs(60), at(0)).unwrap();
        let b = Ticket::issue("alice", "imapd", Duration::from_secs(60), at(0)).unwrap();
        assert_ne!(a.id, b.id);
        assert_ne!(a.id.to_bytes(), [0; 16]);
        assert_eq!(TicketId::from_bytes(a.id.to_bytes()), a.id);
    }

    #[test]
    fn expires_at_the_end_of_its_lifetime() {
        let t = Ticket::issue("alice", "imapd", Duration::from_secs(60), at(0)).unwrap();
        assert!(!t.is_expired(at(59)));
        assert!(t.is_expired(at(60)));
        let forever = Ticket::issue("a", "c", Duration::MAX, at(0)).unwrap();
        assert!(
            forever.is_expired(at(0)),
            "an overflowing lifetime is not eternal"
        );
    }

    #[test]
    fn redacts_the_id_in_debug_output() {
        let t = Ticket::issue("alice", "imapd", Duration::from_secs(60), at(0)).unwrap();
        let shown = format!("{t:?}");
        assert!(
            shown.contains("TicketId(<redacted>)") && shown.contains("alice"),
            "{shown}"
        );
        let byte = t.id.to_bytes()[0];
        assert!(!shown.contains(&format!("[{byte}, ")), "{shown}");
    }

    #[test]
    fn tracks_revokes_and_expires_tickets() {
        let mut book = Tickets::new();
        let a = book
            .issue("alice", "imapd#1", Duration::from_secs(60), at(0))
            .unwrap()
            .id;
        let b = book
            .issue("bob", "imapd#2", Duration::from_secs(60), at(0))
            .unwrap()
            .id;
        let c = book
            .issue("carol", "imapd#2", Duration::from_secs(10), at(0))
            .unwrap()
            .id;
        assert_eq!(book.valid(&a, at(1)).unwrap().account, "alice");
        assert!(
            book.valid(&c, at(10)).is_none(),
            "expired tickets are not valid"
        );

        assert_eq!(book.remove_expired(at(10)).len(), 1);
        assert_eq!(book.revoke_channel("imapd#2").len(), 1);
        assert!(book.valid(&b, at(1)).is_none());
        assert_eq!(book.revoke(&a).unwrap().account, "alice");
        assert!(book.revoke(&a).is_none());
        assert!(book.is_empty());
    }
}
