//! The destinations of a message's bytes, opened before the 354 and given back when the
//! message will not be committed: a pipe into storaged for local recipients, a file in queued's
//! queue for the others.

use ipc::msg::queue;
use ipc::msg::store::{self, StoreService};
use tokio::io::AsyncWriteExt;

use super::{Outcome, Peers, Plan};
use crate::reply::Reply;

/// An open destination of the message bytes.
pub(super) enum Sink {
    /// A pipe storaged reads as the bytes come; closing it ends the message.
    Store {
        id: ipc::msg::store::DeliveryId,
        pipe: tokio::net::unix::pipe::Sender,
        /// The link the delivery was opened on: its commit or abort goes there, never to a
        /// storaged started since (which knows nothing of it).
        storaged: ipc::Client<StoreService>,
    },
    /// A file in queued's queue directory.
    Queue {
        id: queue::FileId,
        file: tokio::fs::File,
    },
}

impl Sink {
    pub(super) async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Store { pipe, .. } => pipe.write_all(bytes).await,
            Sink::Queue { file, .. } => file.write_all(bytes).await,
        }
    }

    pub(super) async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Store { pipe, .. } => pipe.flush().await,
            Sink::Queue { file, .. } => file.flush().await,
        }
    }
}

/// Opens a destination for each kind of recipient in `plan`, storaged's first. Fails with the
/// client's answer (after giving back whatever was opened) when a destination is unavailable
/// or out of space.
///
/// `opened_ahead` is taken only when there are local recipients; otherwise it stays with the
/// caller until `receive` ends (its drop gives the unused delivery back to storaged).
pub(super) async fn open(
    plan: &Plan,
    peers: &Peers<'_>,
    opened_ahead: &mut Option<crate::ahead::OpenedAhead>,
) -> Result<Vec<Sink>, Outcome> {
    let mut sinks = Vec::new();
    if !plan.local.is_empty() {
        sinks.push(open_store(peers, opened_ahead.take()).await?);
    }
    if !plan.remote.is_empty() {
        match open_queue(peers).await {
            Ok(sink) => sinks.push(sink),
            Err(outcome) => {
                abort(peers, sinks).await;
                return Err(outcome);
            }
        }
    }
    Ok(sinks)
}

/// storaged's delivery pipe: the one opened ahead (at the first local RCPT) if its link is
/// still up, or else one opened now (space may be back).
async fn open_store(
    peers: &Peers<'_>,
    opened_ahead: Option<crate::ahead::OpenedAhead>,
) -> Result<Sink, Outcome> {
    let ahead = match opened_ahead {
        Some(ahead) => ahead.take().await,
        None => Err(crate::ahead::NotOpened::Unavailable),
    };
    let opened = match ahead {
        Ok(opened) if !opened.storaged.is_closed() => Ok(opened),
        _ => match &peers.storaged {
            Some(s) => crate::ahead::open(s).await,
            None => Err(crate::ahead::NotOpened::Unavailable),
        },
    };
    let crate::ahead::Opened { id, pipe, storaged } = match opened {
        Ok(opened) => opened,
        Err(crate::ahead::NotOpened::NoSpace(why)) => {
            tracing::warn!("storaged opened no delivery: {why}");
            return Err(Outcome {
                reply: Reply::insufficient_storage(),
                size: 0,
            });
        }
        Err(crate::ahead::NotOpened::Unavailable) => {
            return Err(unavailable("message store"));
        }
    };
    match tokio::net::unix::pipe::Sender::from_owned_fd(pipe) {
        Ok(pipe) => Ok(Sink::Store { id, pipe, storaged }),
        Err(e) => {
            tracing::warn!("storaged's delivery pipe: {e}");
            abort_store(&storaged, id).await;
            Err(unavailable("message store"))
        }
    }
}

/// A new file in queued's queue directory, for the remote recipients.
async fn open_queue(peers: &Peers<'_>) -> Result<Sink, Outcome> {
    let opened = match &peers.queued {
        Some(q) => q.call(queue::OpenMessage {}, Vec::new()).await.ok(),
        None => None,
    };
    match opened {
        Some((Ok(file), mut fds)) if fds.len() == 1 => Ok(Sink::Queue {
            id: file,
            file: file_of(fds.remove(0)),
        }),
        Some((Err(queue::Refused::InsufficientStorage { message }), _)) => {
            tracing::warn!("queued opened no message file: {message}");
            Err(Outcome {
                reply: Reply::insufficient_storage(),
                size: 0,
            })
        }
        other => {
            tracing::warn!("queued gave no message file: {other:?}");
            Err(unavailable("queue"))
        }
    }
}

/// The answer when a destination's role is not there: the client should retry later.
fn unavailable(what: &str) -> Outcome {
    Outcome {
        reply: Reply::new(
            451,
            "4.3.0",
            format!("the {what} is not available; try again later"),
        ),
        size: 0,
    }
}

/// Gives back every destination opened for a message that will not be committed.
pub(super) async fn abort(peers: &Peers<'_>, sinks: Vec<Sink>) {
    for sink in sinks {
        match sink {
            Sink::Store { id, storaged, .. } => abort_store(&storaged, id).await,
            Sink::Queue { id, .. } => abort_queue(peers, id).await,
        }
    }
}

/// Gives delivery `id` back to the storaged that opened it (if that one is gone, so is the
/// delivery).
pub(super) async fn abort_store(
    storaged: &ipc::Client<StoreService>,
    id: ipc::msg::store::DeliveryId,
) {
    if !storaged.is_closed() {
        let _ = storaged.ask(store::AbortDelivery { id }).await;
    }
}

pub(super) async fn abort_queue(peers: &Peers<'_>, file: queue::FileId) {
    if let Some(q) = &peers.queued {
        let _ = q.ask(queue::Abort { file }).await;
    }
}

fn file_of(fd: std::os::fd::OwnedFd) -> tokio::fs::File {
    tokio::fs::File::from_std(std::fs::File::from(fd))
}
