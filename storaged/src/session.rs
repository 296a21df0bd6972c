//! The mailbox API for imapd and httpd. Every request names a session ticket that authd
//! registered for the calling role; the ticket decides the account, and every mailbox a request
//! names must belong to it. A request with another account's mailbox, an expired or unknown
//! ticket, or a ticket issued to another role reaches nothing.

//!
//! This file owns the asynchronous frame of an operation (ticket check, the blocking task,
//! waiting for durability, unlinking freed files); the operations themselves are in `ops`.

use std::sync::Arc;

use ipc::msg::auth::Ticket;
use ipc::msg::store::StoreService;
use ipc::msg::store::{Refused, SessionOp, SessionReply};
use ipc::rpc::EventSender;
use ipc::{Handle, Role};

use crate::error::StoreError;
use crate::service::Store;

impl Store {
    /// Carries out `op` for the session of `ticket` on `peer`'s link.
    pub(crate) async fn session_op(
        self: Arc<Self>,
        peer: Role,
        ticket: Ticket,
        op: SessionOp,
        events: EventSender<StoreService>,
    ) -> (Result<SessionReply, Refused>, Vec<Handle>) {
        let Some(session) = self.session(peer, &ticket) else {
            return (Ok(SessionReply::InvalidTicket), Vec::new());
        };
        let account = session.account;
        if op == SessionOp::Watch {
            let link = events.link_name().to_string();
            self.feed.watch(&account, ticket, events, &link);
            return (Ok(SessionReply::Done), Vec::new());
        }
        let store = self.clone();
        let result = match ipc::span::spawn_blocking(move || store.run_op(peer, &account, op)).await
        {
            Ok(r) => r,
            Err(source) => Err(StoreError::Task {
                what: "store",
                source,
            }),
        };
        let (reply, fds, unlink) = match result {
            Ok(((reply, fds), unlink)) => (reply, fds, unlink),
            Err(e) => {
                self.db.notice(&e);
                return (refusal(e), Vec::new());
            }
        };
        // Reads wait too: a session must never see a UID or modseq that a crash could still
        // take back. The group flusher makes this cheap when nothing is pending.
        if let Err(e) = self.flusher.flush().await {
            return (refusal(e), Vec::new());
        }
        for id in unlink {
            if let Err(e) = self.files.remove(id) {
                tracing::error!("unlinking message file {id:x}: {e}");
            }
        }
        (Ok(reply), fds)
    }
}

/// A failed operation's answer: storage faults are logged and reported as temporary without
/// detail; anything else (bad names, missing mailboxes) is the client's to see.
fn refusal(e: StoreError) -> Result<SessionReply, Refused> {
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
            Err(Refused::temporary("storage error"))
        }
        other => Ok(SessionReply::Refused(other.to_string())),
    }
}
