//! Who may have keyd sign as whom (DESIGN.md §15). The submission process asks on behalf of an
//! authenticated session: keyd signs only for a From: address that session owns, and asks
//! storaged — which knows the accounts and the sessions authd registered — rather than taking
//! the asking process's word. queued has no session (it will sign its own DSNs): it may sign
//! only as `postmaster@` or `mailer-daemon@` of the key's own domain.

use ipc::sync::read;
use std::sync::RwLock;
use std::time::{Duration, SystemTime};

use ipc::Role;
use ipc::context::PeerSlot;
use ipc::msg::auth::Ticket;
use ipc::msg::key::{DkimRequest, Refused};
use ipc::msg::store::{self, StoreService};

use crate::dkim_sign::{DkimError, Prepared};
use crate::from_address::Sender;
use crate::keys::KeyStore;

/// How long keyd waits for storaged's answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// The local parts queued may sign as.
const SYSTEM_SENDERS: &[&str] = &["postmaster", "mailer-daemon"];

/// What keyd needs to bound its DKIM signatures.
#[derive(Debug, Clone)]
pub struct DkimPolicy {
    /// The link to storaged, for its one question.
    pub storaged: PeerSlot<StoreService>,
    /// Seconds from `t=` to `x=`.
    pub validity_secs: u64,
}

impl DkimPolicy {
    pub fn new(storaged: PeerSlot<StoreService>, settings: &ipc::config::DkimSettings) -> Self {
        DkimPolicy {
            storaged,
            validity_secs: settings.validity_secs(),
        }
    }

    /// Checks and signs `request` from `peer` (a role that may ask for DKIM signatures);
    /// the answer is the complete field or the reason for refusing.
    pub async fn sign(
        &self,
        keys: &RwLock<KeyStore>,
        peer: Role,
        request: DkimRequest,
    ) -> Result<String, Refused> {
        let what = format!(
            "a DKIM signature for {} (selector {})",
            request.domain, request.selector
        );
        match self.check_and_sign(keys, peer, request).await {
            Ok(field) => Ok(field),
            Err(e) => {
                tracing::warn!("{what}: {e}; refused");
                Err(Refused(e.to_string()))
            }
        }
    }

    async fn check_and_sign(
        &self,
        keys: &RwLock<KeyStore>,
        peer: Role,
        request: DkimRequest,
    ) -> Result<String, DkimError> {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let prepared: Prepared = {
            let keys = read(keys);
            crate::dkim_sign::prepare(&keys, &request, now, self.validity_secs)?
        };
        self.authorize(peer, request.ticket, &prepared.from, &prepared.domain)
            .await?;
        // RSA takes a millisecond or more: off the async workers.
        ipc::span::spawn_blocking(move || prepared.sign())
            .await
            .map_err(|e| DkimError::Signing(e.to_string()))?
    }

    /// May `peer`, for the session of `ticket`, sign as `from` with a key of `domain`?
    async fn authorize(
        &self,
        peer: Role,
        ticket: Option<Ticket>,
        from: &Sender,
        domain: &str,
    ) -> Result<(), DkimError> {
        match peer {
            Role::Submission => {
                let ticket = ticket.ok_or(DkimError::NoTicket)?;
                self.session_owns(ticket, from.address()).await
            }
            Role::Queued if ticket.is_none() => {
                let local = from.local.to_ascii_lowercase();
                if from.domain == domain && SYSTEM_SENDERS.contains(&local.as_str()) {
                    Ok(())
                } else {
                    Err(DkimError::NotASystemSender(from.address()))
                }
            }
            _ => Err(DkimError::NotASystemSender(from.address())),
        }
    }

    /// storaged's answer: does the submission session of `ticket` own `address`?
    async fn session_owns(&self, ticket: Ticket, address: String) -> Result<(), DkimError> {
        let storaged = self
            .storaged
            .current()
            .ok_or_else(|| DkimError::Unavailable("storaged is not reachable".into()))?;
        let request = store::SessionOwnsAddress {
            ticket,
            address: address.clone(),
        };
        match tokio::time::timeout(ASK_TIMEOUT, storaged.ask(request)).await {
            Ok(Ok(Ok(true))) => Ok(()),
            Ok(Ok(Ok(false))) => Err(DkimError::NotOwned(address)),
            Ok(Ok(Err(refused))) => Err(DkimError::Unavailable(format!("storaged: {refused}"))),
            Ok(Err(e)) => Err(DkimError::Unavailable(format!("storaged: {e}"))),
            Err(_) => Err(DkimError::Unavailable("storaged did not answer".into())),
        }
    }
}
