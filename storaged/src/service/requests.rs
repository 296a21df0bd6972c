//! The dispatch of storaged's requests: who may ask what (decided by the link the request came
//! on, never by the message), then one handler per request. Mailbox-session operations go on
//! to `session_op`; the delivery path (open, deliver, abort) is here because it holds the
//! open-delivery table.

use std::sync::Arc;

use ipc::msg::auth::Ticket;
use ipc::msg::store::{RecipientStatus, Request, Response, StoreService};
use ipc::rpc::EventSender;
use ipc::{Handle, Role};

use super::{Open, Refusal, Session, Store, blocking, lock, permanent, temporary};
use crate::deliver;
use crate::spool::{SpoolError, Spooled};

/// A handler's answer: the response and the descriptors sent with it.
type Answer = Result<(Response, Vec<Handle>), Refusal>;

impl Store {
    /// Checks that `peer` may make `request`, then answers it.
    pub(super) async fn answer(
        self: Arc<Self>,
        peer: Role,
        request: Request,
        events: EventSender<StoreService>,
    ) -> Answer {
        if !permitted(peer, &request) {
            let name = format!("{request:?}");
            let variant = name.split([' ', '(', '{']).next().unwrap_or("?");
            tracing::warn!("refused {variant}: not permitted on this link");
            return Err(permanent(format!("{peer} may not make this request")).into());
        }
        match request {
            Request::Session { ticket, op } => {
                Ok(self.clone().session_op(peer, ticket, op, events).await)
            }
            Request::ResolveLogin { username } => {
                let store = self.clone();
                let account = blocking(move || store.db.login_account(&username)).await?;
                Ok((Response::Login(account), Vec::new()))
            }
            Request::RegisterTicket {
                ticket,
                account,
                role,
                expires,
            } => {
                let session = Session {
                    account,
                    role,
                    expires,
                };
                self.register_ticket(ticket, session);
                done()
            }
            Request::RevokeTicket { ticket } => {
                self.revoke_ticket(&ticket);
                done()
            }
            Request::RevokeAccountTickets { account } => {
                self.revoke_account_tickets(&account);
                done()
            }
            Request::SessionOwnsAddress { ticket, address } => Ok((
                self.clone().session_owns_address(ticket, address).await?,
                Vec::new(),
            )),
            Request::SubmissionAccount { ticket } => {
                Ok((self.submission_account(&ticket), Vec::new()))
            }
            Request::CheckRecipient { address } => self.check_recipient(address).await,
            Request::SenderAccount { address } => {
                let store = self.clone();
                let account = blocking(move || store.db.resolve(&address)).await?;
                Ok((Response::Login(account), Vec::new()))
            }
            Request::OpenDelivery => {
                let (id, fd) = self.open_pipe(peer)?;
                Ok((Response::DeliveryOpened { id }, vec![fd]))
            }
            Request::AbortDelivery { id } => {
                lock(&self.open).remove(&(peer, id));
                done()
            }
            Request::Deliver {
                id,
                recipients,
                prepend,
                junk,
            } => {
                let placement = deliver::Placement {
                    prepend,
                    junk,
                    all_or_nothing: true,
                };
                self.commit_delivery(peer, id, recipients, placement).await
            }
        }
    }

    /// Records a session authd authenticated, dropping expired ones on the way.
    fn register_ticket(&self, ticket: Ticket, session: Session) {
        let mut tickets = lock(&self.tickets);
        let now = crate::db::now();
        tickets.retain(|_, s| s.expires > now);
        tickets.insert(ticket, session);
    }

    /// Ends one session and whatever it was watching.
    fn revoke_ticket(&self, ticket: &Ticket) {
        lock(&self.tickets).remove(ticket);
        self.feed.unwatch(ticket);
    }

    /// Whether mail for `address` is taken; a local recipient is also refused for lack of
    /// space here, so that smtpd can answer RCPT with `452` before any data is sent.
    async fn check_recipient(self: Arc<Self>, address: String) -> Answer {
        let store = self.clone();
        let status = blocking(move || store.db.recipient_status(&address)).await?;
        if status == RecipientStatus::Local {
            self.room(0)?;
        }
        Ok((Response::Recipient(status), Vec::new()))
    }

    /// Commits the open delivery `id` of `peer` to `recipients`: the pipe is drained (or the
    /// upload file measured), then the message is filed all-or-nothing.
    async fn commit_delivery(
        self: Arc<Self>,
        peer: Role,
        id: u64,
        recipients: Vec<String>,
        placement: deliver::Placement,
    ) -> Answer {
        let open = lock(&self.open)
            .remove(&(peer, id))
            // Temporary: storaged may have restarted since it was opened.
            .ok_or_else(|| temporary(format!("no open delivery {id}")))?;
        // The peer's share stays taken until the delivery is done.
        let (spooled, _share) = match open {
            Open::Pipe(pump) => pump.finish().await.map_err(|e| {
                tracing::warn!("delivery {id} of {peer}: {e}");
                match e {
                    SpoolError::NoSpace(m) => Refusal::NoSpace(m),
                    SpoolError::Failed(m) => Refusal::Failed(temporary(m)),
                }
            })?,
            Open::File(file) => {
                let len = file.metadata().map_err(|e| temporary(e.to_string()))?.len();
                (Spooled::File(file, len), self.peer_budget(peer).none())
            }
        };
        let results = self.deliver(spooled, recipients, placement).await?;
        Ok((
            Response::Delivered(results.into_iter().map(|(_, r)| r).collect()),
            Vec::new(),
        ))
    }
}

/// Whether `peer`'s link may carry `request`: each request belongs to the roles whose job
/// needs it, so a compromised role reaches only its own part of the store.
fn permitted(peer: Role, request: &Request) -> bool {
    match request {
        Request::SenderAccount { .. } => peer == Role::Submission,
        Request::CheckRecipient { .. }
        | Request::OpenDelivery
        | Request::Deliver { .. }
        | Request::AbortDelivery { .. } => {
            matches!(peer, Role::Smtpd | Role::Submission | Role::Queued)
        }
        Request::ResolveLogin { .. }
        | Request::RegisterTicket { .. }
        | Request::RevokeTicket { .. }
        | Request::RevokeAccountTickets { .. } => peer == Role::Authd,
        Request::Session { .. } => matches!(peer, Role::Imapd | Role::Httpd),
        Request::SessionOwnsAddress { .. } => peer == Role::Keyd,
        Request::SubmissionAccount { .. } => peer == Role::Queued,
    }
}

/// The answer of a request that only changes state here.
fn done() -> Answer {
    Ok((Response::Done, Vec::new()))
}
