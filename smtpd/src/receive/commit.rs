//! Committing a received message: the queue first (if that fails nothing was delivered, and
//! the client may simply retry), then storaged's delivery, then the queued copy released or
//! discarded by how the delivery went. Returns the reply the client hears.

use ipc::msg::queue::{self, QueueId, QueueService};
use ipc::msg::store::{self, DeliveryId, RecipientResult, StoreService};
use ipc::rpc::Call;

use super::sink::{Sink, abort_queue, abort_store};
use super::{Peers, Plan};
use crate::reply::Reply;
use crate::session::Transaction;

/// What the inbound checks add to a local delivery: header fields to prepend, and whether it
/// goes to Junk.
pub(super) type Placement = (Vec<u8>, bool);

/// Commits the message in `sinks` (already fully written) to its destinations.
pub(super) async fn commit(
    peers: &Peers<'_>,
    tx: &Transaction,
    plan: Plan,
    sinks: Vec<Sink>,
    head: &[u8],
    placement: Placement,
    id: &str,
) -> Reply {
    let mut queued = None;
    let mut store_id = None;
    for sink in sinks {
        match sink {
            Sink::Store {
                id: delivery,
                pipe,
                storaged,
            } => {
                // Closing the pipe tells storaged the message is complete.
                drop(pipe);
                store_id = Some((delivery, storaged));
            }
            Sink::Queue { id: file_id, file } => {
                let envelope = queue::SubmittedEnvelope {
                    from: tx.from.as_ref().map(|a| a.to_string()).unwrap_or_default(),
                    recipients: plan.remote.clone(),
                    smtputf8: tx.params.smtputf8,
                    eight_bit: tx.params.eight_bit,
                    requiretls: tx.params.requiretls,
                };
                let held = store_id.is_some();
                match enqueue(peers, (file_id, file), envelope, head, held).await {
                    Ok(q) => queued = Some(q),
                    Err(reply) => {
                        abort_committed_store(&store_id).await;
                        return reply;
                    }
                }
            }
        }
    }
    if let Some((delivery, storaged)) = store_id {
        let reply = deliver(&storaged, delivery, plan.local, placement, id).await;
        if let Some(q) = queued
            && let Some(refusal) = settle_queued(peers, q, &reply).await
        {
            return refusal;
        }
        if reply.is_error() || queued.is_none() {
            return reply;
        }
    }
    match queued {
        Some(q) => Reply::new(250, "2.0.0", format!("{id} queued as {q}")),
        None => Reply::new(250, "2.0.0", format!("{id} delivered")),
    }
}

/// DKIM-signs the queue file and hands it to queued. With local recipients too (`held`), the
/// queued copy is held until they have theirs: if that fails, it is discarded, and the
/// client's retry sends no second copy out. On failure the caller gives back storaged's
/// delivery; the queue file is given back here where queued does not already drop it.
async fn enqueue(
    peers: &Peers<'_>,
    (file_id, file): (queue::FileId, tokio::fs::File),
    envelope: queue::SubmittedEnvelope,
    head: &[u8],
    held: bool,
) -> Result<QueueId, Reply> {
    // Only an authenticated session relays; its ticket names the account.
    let Some(ticket) = peers.ticket else {
        tracing::warn!("a message to relay without a session ticket");
        abort_queue(peers, file_id).await;
        return Err(Reply::new(
            451,
            "4.3.0",
            "the message could not be queued; try again later",
        ));
    };
    let prepend = match crate::submission::dkim_sign(file, head, peers.keyd.as_ref(), ticket).await
    {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!("DKIM signing failed: {e}");
            abort_queue(peers, file_id).await;
            return Err(Reply::new(
                451,
                "4.7.0",
                "the message could not be signed; try again later",
            ));
        }
    };
    let request = queue::Enqueue {
        file: file_id,
        ticket,
        envelope,
        prepend: prepend.into_bytes(),
        held,
    };
    match call_queued(peers, request, "queued is not running").await {
        Ok(Ok(id)) => Ok(id),
        Ok(Err(queue::Refused::OverLimit {
            setting,
            limit,
            retry_after_secs,
        })) => Err(Reply::new(
            451,
            "4.7.0",
            format!(
                "sending limit reached: {setting} = {limit}; try again in {} minutes",
                retry_after_secs.div_ceil(60)
            ),
        )),
        Ok(Err(queue::Refused::InsufficientStorage { message })) => {
            tracing::warn!("queueing: {message}");
            Err(Reply::insufficient_storage())
        }
        Ok(Err(queue::Refused::Failed { message, .. })) | Err(message) => {
            tracing::warn!("queueing: {message}");
            Err(Reply::new(
                451,
                "4.3.0",
                "the message could not be queued; try again later",
            ))
        }
    }
}

/// Releases the held queued copy `q` once the local delivery succeeded (`reply`), or discards
/// it when that failed. Returns the client's refusal when a successful delivery leaves the
/// copy for other domains stuck.
async fn settle_queued(peers: &Peers<'_>, q: QueueId, reply: &Reply) -> Option<Reply> {
    let (settled, what) = if reply.is_error() {
        let discarded = call_queued(peers, queue::Discard { id: q }, "queued went away").await;
        (discarded, "discarding")
    } else {
        let released = call_queued(peers, queue::Release { id: q }, "queued went away").await;
        (released, "releasing")
    };
    match settled {
        Ok(Ok(())) => None,
        other => {
            tracing::error!("{what} queued message {q}: {other:?}");
            // Delivered here, but the copy for other domains is stuck held (and discarded
            // later): the client must send again.
            (!reply.is_error()).then(|| {
                Reply::new(
                    451,
                    "4.3.0",
                    "the message could not be queued for its other recipients; try again later",
                )
            })
        }
    }
}

/// Gives back the storaged delivery whose pipe was already closed for the commit, if any.
async fn abort_committed_store(store: &Option<(DeliveryId, ipc::Client<StoreService>)>) {
    if let Some((id, storaged)) = store {
        abort_store(storaged, *id).await;
    }
}

/// One request to queued, `missing` if it is not running.
async fn call_queued<C: Call<Service = QueueService>>(
    peers: &Peers<'_>,
    request: C,
    missing: &str,
) -> Result<C::Answer, String> {
    match &peers.queued {
        Some(q) => q.ask(request).await.map_err(|e| e.to_string()),
        None => Err(missing.into()),
    }
}

/// Commits delivery `delivery` to `recipients` at storaged.
async fn deliver(
    storaged: &ipc::Client<StoreService>,
    delivery: DeliveryId,
    recipients: Vec<String>,
    (prepend, junk): Placement,
    id: &str,
) -> Reply {
    let count = recipients.len();
    let answer = storaged
        .ask(store::Deliver {
            id: delivery,
            recipients,
            prepend,
            junk,
        })
        .await;
    match answer {
        // All or nothing: a recipient removed since RCPT fails the whole delivery (451), and
        // the client's retry hears 550 for it at RCPT.
        Ok(Ok(results))
            if results.len() == count
                && results.iter().all(|r| *r == RecipientResult::Delivered) =>
        {
            Reply::new(250, "2.0.0", format!("{id} delivered"))
        }
        Ok(Err(store::Refused::InsufficientStorage { message })) => {
            tracing::warn!("not delivered: {message}");
            Reply::insufficient_storage()
        }
        Ok(Err(store::Refused::Failed(f))) if f.temporary => Reply::new(
            451,
            "4.3.0",
            format!("not delivered: {}; try again later", f.message),
        ),
        Ok(Err(store::Refused::Failed(f))) => {
            Reply::new(554, "5.3.0", format!("not delivered: {}", f.message))
        }
        // Answers to the mailbox API, never to a delivery.
        Ok(Err(refused @ (store::Refused::InvalidTicket | store::Refused::No(_)))) => Reply::new(
            451,
            "4.3.0",
            format!("not delivered: {refused}; try again later"),
        ),
        Ok(Ok(results)) => Reply::new(
            451,
            "4.3.0",
            format!(
                "the store delivered to {} of {count} recipients; try again later",
                results
                    .iter()
                    .filter(|r| **r == RecipientResult::Delivered)
                    .count()
            ),
        ),
        Err(e) => Reply::new(
            451,
            "4.3.0",
            format!("the message store failed: {e}; try again later"),
        ),
    }
}
