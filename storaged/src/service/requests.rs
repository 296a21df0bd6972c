//! The dispatch of storaged's requests: who may ask what (decided by the link the request came
//! on, never by the message), then one handler per request. The mailbox API's requests go to
//! `session_request`, which runs each in its session (`session::in_session`); the delivery
//! path (open, deliver, abort) is here because it holds the open-delivery table.

use std::sync::Arc;

use ipc::msg::auth::Ticket;
use ipc::msg::store::{
    self as msg, DeliveryId, RecipientResult, RecipientStatus, Request, StoreService,
};
use ipc::rpc::{Answer, Call, EventSender, Named};

use ipc::{Handle, Role};

use super::{Open, Refused, Session, Store, blocking, lock, permanent, temporary};
use crate::deliver;
#[cfg(unix)]
use crate::spool::SpoolError;
use crate::spool::Spooled;

impl Store {
    /// Checks that `peer` may make `request`, then answers it, as the type the request names.
    pub(super) async fn answer(
        self: Arc<Self>,
        peer: Role,
        request: Request,
        events: EventSender<StoreService>,
    ) -> Answer<StoreService> {
        if !permitted(peer, &request) {
            tracing::warn!("refused {}: not permitted on this link", request.name());
            return request.refuse(permanent(format!("{peer} may not make this request")).into());
        }
        match request {
            Request::ResolveLogin(msg::ResolveLogin { username }) => {
                let store = self.clone();
                let account = blocking(move || store.db.login_account(&username)).await;
                msg::ResolveLogin::reply(&account.map(|a| a.map(Into::into)), Vec::new())
            }
            Request::RegisterTicket(msg::RegisterTicket {
                ticket,
                account,
                role,
                expires,
            }) => {
                let session = Session {
                    account: account.into_string(),
                    role,
                    expires,
                };
                self.register_ticket(ticket, session);
                msg::RegisterTicket::reply(&Ok(()), Vec::new())
            }
            Request::RevokeTicket(msg::RevokeTicket { ticket }) => {
                self.revoke_ticket(&ticket);
                msg::RevokeTicket::reply(&Ok(()), Vec::new())
            }
            Request::RevokeAccountTickets(msg::RevokeAccountTickets { account }) => {
                self.revoke_account_tickets(account.as_str());
                msg::RevokeAccountTickets::reply(&Ok(()), Vec::new())
            }
            Request::SessionOwnsAddress(msg::SessionOwnsAddress { ticket, address }) => {
                let owns = self.clone().session_owns_address(ticket, address).await;
                msg::SessionOwnsAddress::reply(&owns, Vec::new())
            }
            Request::SubmissionAccount(msg::SubmissionAccount { ticket }) => {
                let account = self.submission_account(&ticket).map(Into::into);
                msg::SubmissionAccount::reply(&Ok(account), Vec::new())
            }
            Request::CheckRecipient(msg::CheckRecipient { address }) => {
                msg::CheckRecipient::reply(&self.check_recipient(address).await, Vec::new())
            }
            Request::SenderAccount(msg::SenderAccount { address }) => {
                let store = self.clone();
                let account = blocking(move || store.db.resolve(&address)).await;
                msg::SenderAccount::reply(&account.map(|a| a.map(Into::into)), Vec::new())
            }
            Request::OpenDelivery(msg::OpenDelivery {}) => match self.open_delivery(peer) {
                Ok((id, fd)) => msg::OpenDelivery::reply(&Ok(DeliveryId(id)), vec![fd]),
                Err(refused) => msg::OpenDelivery::reply(&Err(refused), Vec::new()),
            },
            Request::AbortDelivery(msg::AbortDelivery { id }) => {
                lock(&self.open).remove(&(peer, id.0));
                msg::AbortDelivery::reply(&Ok(()), Vec::new())
            }
            Request::Deliver(msg::Deliver {
                id,
                recipients,
                prepend,
                junk,
            }) => {
                let placement = deliver::Placement {
                    prepend,
                    junk,
                    all_or_nothing: true,
                };
                let results = self.commit_delivery(peer, id, recipients, placement).await;
                msg::Deliver::reply(&results, Vec::new())
            }
            request => self.clone().session_request(peer, request, events).await,
        }
    }

    /// Answers a request of the mailbox API (the caller's link may make it).
    async fn session_request(
        self: Arc<Self>,
        peer: Role,
        request: Request,
        events: EventSender<StoreService>,
    ) -> Answer<StoreService> {
        /// A session operation's answer: one that does not fit a frame is refused instead.
        fn sent<C: Call<Service = StoreService, Answer = Result<T, Refused>>, T>(
            (answer, fds): (Result<T, Refused>, Vec<Handle>),
        ) -> Answer<StoreService>
        where
            Result<T, Refused>: serde::Serialize,
        {
            C::reply_or(&answer, fds, || {
                Err(Refused::No(
                    "the answer is too large for one message; ask for fewer items".into(),
                ))
            })
        }
        let me = self.clone();
        match request {
            Request::ListMailboxes(msg::ListMailboxes { ticket }) => sent::<msg::ListMailboxes, _>(
                me.in_session(peer, ticket, |s, a| s.list_mailboxes(a))
                    .await,
            ),
            Request::CreateMailbox(msg::CreateMailbox { ticket, name }) => {
                sent::<msg::CreateMailbox, _>(
                    me.in_session(peer, ticket, move |s, a| s.create_mailbox(a, &name))
                        .await,
                )
            }
            Request::RenameMailbox(msg::RenameMailbox { ticket, from, to }) => {
                sent::<msg::RenameMailbox, _>(
                    me.in_session(peer, ticket, move |s, a| s.rename_mailbox(a, &from, &to))
                        .await,
                )
            }
            Request::DeleteMailbox(msg::DeleteMailbox { ticket, name }) => {
                sent::<msg::DeleteMailbox, _>(
                    me.in_session(peer, ticket, move |s, a| s.delete_mailbox(a, &name))
                        .await,
                )
            }
            Request::Subscribe(msg::Subscribe {
                ticket,
                name,
                subscribed,
            }) => sent::<msg::Subscribe, _>(
                me.in_session(peer, ticket, move |s, a| s.subscribe(a, &name, subscribed))
                    .await,
            ),
            Request::Select(msg::Select { ticket, name }) => sent::<msg::Select, _>(
                me.in_session(peer, ticket, move |s, a| s.select(a, &name))
                    .await,
            ),
            Request::Fetch(msg::Fetch {
                ticket,
                mailbox,
                uids,
                after,
            }) => sent::<msg::Fetch, _>(
                me.in_session(peer, ticket, move |s, a| {
                    s.fetch(a, mailbox.0, &uids, after.map(|u| u.0))
                })
                .await,
            ),
            Request::Open(msg::Open {
                ticket,
                mailbox,
                uid,
            }) => sent::<msg::Open, _>(
                me.in_session(peer, ticket, move |s, a| s.open(a, mailbox.0, uid.0))
                    .await,
            ),
            Request::OpenUpload(msg::OpenUpload { ticket }) => sent::<msg::OpenUpload, _>(
                me.in_session(peer, ticket, move |s, _| s.open_upload(peer))
                    .await,
            ),
            Request::Append(append) => sent::<msg::Append, _>(
                me.in_session(peer, append.ticket, move |s, a| s.append(peer, a, append))
                    .await,
            ),
            Request::StoreFlags(update) => sent::<msg::StoreFlags, _>(
                me.in_session(peer, update.ticket, move |s, a| s.store_flags(a, update))
                    .await,
            ),
            Request::Copy(msg::Copy {
                ticket,
                from,
                uids,
                to,
            }) => sent::<msg::Copy, _>(
                me.in_session(peer, ticket, move |s, a| s.copy(a, from.0, &uids, &to))
                    .await,
            ),
            Request::Move(msg::Move {
                ticket,
                from,
                uids,
                to,
            }) => sent::<msg::Move, _>(
                me.in_session(peer, ticket, move |s, a| s.move_to(a, from.0, &uids, &to))
                    .await,
            ),
            Request::Expunge(msg::Expunge {
                ticket,
                mailbox,
                uids,
            }) => sent::<msg::Expunge, _>(
                me.in_session(peer, ticket, move |s, a| s.expunge(a, mailbox.0, uids))
                    .await,
            ),
            Request::Changes(msg::Changes {
                ticket,
                mailbox,
                since,
            }) => sent::<msg::Changes, _>(
                me.in_session(peer, ticket, move |s, a| s.changes(a, mailbox.0, since.0))
                    .await,
            ),
            Request::Search(msg::Search {
                ticket,
                mailbox,
                criteria,
            }) => sent::<msg::Search, _>(
                me.in_session(peer, ticket, move |s, a| s.search(a, mailbox.0, &criteria))
                    .await,
            ),
            Request::Watch(msg::Watch { ticket }) => {
                msg::Watch::reply(&self.watch(peer, ticket, events), Vec::new())
            }
            other => other.refuse(Refused::permanent("not a session request")),
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
    async fn check_recipient(self: Arc<Self>, address: String) -> Result<RecipientStatus, Refused> {
        let store = self.clone();
        let status = blocking(move || store.db.recipient_status(&address)).await?;
        if status == RecipientStatus::Local {
            self.room(0)?;
        }
        Ok(status)
    }

    /// Commits the open delivery `id` of `peer` to `recipients`: the pipe is drained (or the
    /// file measured: an upload's, or a delivery's on Windows), then the message is filed all-or-nothing.
    async fn commit_delivery(
        self: Arc<Self>,
        peer: Role,
        id: DeliveryId,
        recipients: Vec<String>,
        placement: deliver::Placement,
    ) -> Result<Vec<RecipientResult>, Refused> {
        let open = lock(&self.open)
            .remove(&(peer, id.0))
            // Temporary: storaged may have restarted since it was opened.
            .ok_or_else(|| temporary(format!("no open delivery {id}")))?;
        // The peer's share stays taken until the delivery is done.
        let (spooled, _share) = match open {
            #[cfg(unix)]
            Open::Pipe(pump) => pump.finish().await.map_err(|e| {
                tracing::warn!("delivery {id} of {peer}: {e}");
                match e {
                    SpoolError::NoSpace(message) => Refused::InsufficientStorage { message },
                    SpoolError::Failed(m) => temporary(m).into(),
                }
            })?,
            Open::File(file) => {
                let len = file.metadata().map_err(|e| temporary(e.to_string()))?.len();
                (Spooled::File(file, len), self.peer_budget(peer).none())
            }
        };
        let results = self.deliver(spooled, recipients, placement).await?;
        Ok(results.into_iter().map(|(_, r)| r).collect())
    }
}

/// Whether `peer`'s link may carry `request`: each request belongs to the roles whose job
/// needs it, so a compromised role reaches only its own part of the store.
fn permitted(peer: Role, request: &Request) -> bool {
    match request {
        Request::SenderAccount(_) => peer == Role::Submission,
        Request::CheckRecipient(_)
        | Request::OpenDelivery(_)
        | Request::Deliver(_)
        | Request::AbortDelivery(_) => {
            matches!(peer, Role::Smtpd | Role::Submission | Role::Queued)
        }
        Request::ResolveLogin(_)
        | Request::RegisterTicket(_)
        | Request::RevokeTicket(_)
        | Request::RevokeAccountTickets(_) => peer == Role::Authd,
        Request::ListMailboxes(_)
        | Request::CreateMailbox(_)
        | Request::RenameMailbox(_)
        | Request::DeleteMailbox(_)
        | Request::Subscribe(_)
        | Request::Select(_)
        | Request::Fetch(_)
        | Request::Open(_)
        | Request::OpenUpload(_)
        | Request::Append(_)
        | Request::StoreFlags(_)
        | Request::Copy(_)
        | Request::Move(_)
        | Request::Expunge(_)
        | Request::Changes(_)
        | Request::Search(_)
        | Request::Watch(_) => matches!(peer, Role::Imapd | Role::Httpd),
        Request::SessionOwnsAddress(_) => peer == Role::Keyd,
        Request::SubmissionAccount(_) => peer == Role::Queued,
    }
}
