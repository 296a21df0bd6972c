//! Questions about a submission session's identity, answered from the tickets authd registered
//! (DESIGN.md §15: identity comes from tickets and links, never from a name a peer writes):
//! keyd asks whether a session owns the From: address it is to sign for, queued which
//! account a submitted message counts against. A ticket that is unknown, expired, or was not
//! issued to the submission role answers "no" / "none".

use std::sync::Arc;

use ipc::Role;
use ipc::msg::auth::Ticket;

use crate::service::{Refused, Store, blocking};

impl Store {
    /// keyd → storaged: does the submission session of `ticket` own `address` (as delivery
    /// would reach it: an address of the account, its `+tag` form, or a catch-all)?
    pub(crate) async fn session_owns_address(
        self: Arc<Self>,
        ticket: Ticket,
        address: String,
    ) -> Result<bool, Refused> {
        let Some(session) = self.session(Role::Submission, &ticket) else {
            tracing::warn!("keyd asked about {address} for an unknown or expired ticket");
            return Ok(false);
        };
        let store = self.clone();
        let asked = address.clone();
        let owner = blocking(move || store.db.resolve(&asked)).await?;
        let owns = owner.as_deref() == Some(session.account.as_str());
        if !owns {
            tracing::warn!(
                "keyd asked whether {} owns {address}: it does not",
                session.account
            );
        }
        Ok(owns)
    }

    /// queued → storaged: the account of the live submission session of `ticket`.
    pub(crate) fn submission_account(&self, ticket: &Ticket) -> Option<String> {
        let account = self.session(Role::Submission, ticket).map(|s| s.account);
        if account.is_none() {
            tracing::warn!("queued asked for the account of an unknown or expired ticket");
        }
        account
    }
}
