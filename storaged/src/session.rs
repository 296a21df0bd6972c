//! The mailbox API for imapd and httpd. Every request names a session ticket that authd
//! registered for the calling role; the ticket decides the account, and every mailbox a request
//! names must belong to it. A request with another account's mailbox, an expired or unknown
//! ticket, or a ticket issued to another role reaches nothing.

//!
//! This file owns the asynchronous frame of an operation (ticket check, the blocking task,
//! waiting for durability, unlinking freed files); the operations themselves are in `ops`.

use std::sync::Arc;

use ipc::msg::auth::Ticket;
use ipc::msg::store::{Refused, StoreService};
use ipc::rpc::EventSender;
use ipc::sync::read;
use ipc::{Handle, Role};

use crate::error::StoreError;
use crate::ops::Outcome;
use crate::service::Store;

impl Store {
    /// Carries out `op` for the account of the session of `ticket` on `peer`'s link: on a
    /// blocking thread, under the pause lock; answered once what it changed is durable.
    pub(crate) async fn in_session<T: Send + 'static>(
        self: Arc<Self>,
        peer: Role,
        ticket: Ticket,
        op: impl FnOnce(&Store, &str) -> Result<Outcome<T>, StoreError> + Send + 'static,
    ) -> (Result<T, Refused>, Vec<Handle>) {
        let Some(session) = self.session(peer, &ticket) else {
            return (Err(Refused::InvalidTicket), Vec::new());
        };
        let account = session.account;
        let store = self.clone();
        let run = move || {
            let _changing = read(&store.pause);
            op(&store, &account)
        };
        let result = match ipc::span::spawn_blocking(run).await {
            Ok(r) => r,
            Err(source) => Err(StoreError::Task {
                what: "store",
                source,
            }),
        };
        let ((reply, fds), unlink) = match result {
            Ok(outcome) => outcome,
            Err(e) => {
                self.db.notice(&e);
                return (Err(refusal(e)), Vec::new());
            }
        };
        // Reads wait too: a session must never see a UID or modseq that a crash could still
        // take back. The group flusher makes this cheap when nothing is pending.
        if let Err(e) = self.flusher.flush().await {
            return (Err(refusal(e)), Vec::new());
        }
        for id in unlink {
            if let Err(e) = self.files.remove(id) {
                tracing::error!("unlinking message file {id:x}: {e}");
            }
        }
        (Ok(reply), fds)
    }

    /// From now on pushes the changes of the session's account to `events`' link.
    pub(crate) fn watch(
        &self,
        peer: Role,
        ticket: Ticket,
        events: EventSender<StoreService>,
    ) -> Result<(), Refused> {
        let session = self.session(peer, &ticket).ok_or(Refused::InvalidTicket)?;
        let link = events.link_name().to_string();
        self.feed.watch(&session.account, ticket, events, &link);
        Ok(())
    }
}

/// A failed operation's answer: storage faults are logged and reported as temporary without
/// detail; anything else (bad names, missing mailboxes) is the client's to see.
fn refusal(e: StoreError) -> Refused {
    match e {
        StoreError::Db(_)
        | StoreError::DbIo(_)
        | StoreError::Encode(_)
        | StoreError::Task { .. }
        | StoreError::Failed(_)
        | StoreError::Corrupt { .. }
        | StoreError::File { .. }
        | StoreError::Schema { .. } => {
            tracing::error!("{e}");
            Refused::temporary("storage error")
        }
        other => Refused::No(other.to_string()),
    }
}
