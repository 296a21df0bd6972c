//! A delivery opened at storaged ahead of DATA.
//!
//! Asked for as soon as a transaction has its first local recipient, so that storaged's round
//! trip overlaps the client's wait for the RCPT reply and its next command instead of delaying
//! the 354. A delivery that is never used (RSET, a refused DATA, a connection that ends) is
//! given back to storaged when this is dropped.

use std::os::fd::OwnedFd;
use tracing::Instrument;

use ipc::msg::store::{self, StoreService};

/// An open delivery at storaged.
pub struct Opened {
    pub id: ipc::msg::store::DeliveryId,
    /// The write end of the delivery's pipe.
    pub pipe: OwnedFd,
    /// The link it was opened on: its commit or abort must go there.
    pub storaged: ipc::Client<StoreService>,
}

/// Why storaged gave no delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotOpened {
    /// Short of space (`452 4.3.1`); the detail, for the log.
    NoSpace(String),
    /// Not running, or another failure (`451 4.3.0`).
    Unavailable,
}

/// The answer to an `OpenDelivery` asked for in the background.
pub struct OpenedAhead {
    task: Option<tokio::task::JoinHandle<Result<Opened, NotOpened>>>,
}

impl OpenedAhead {
    /// Asks `storaged` for a delivery now, without waiting for the answer.
    pub fn start(storaged: ipc::Client<StoreService>) -> OpenedAhead {
        let task = tokio::spawn(async move { open(&storaged).await }.in_current_span());
        OpenedAhead { task: Some(task) }
    }

    /// The delivery, or why storaged gave none.
    pub async fn take(mut self) -> Result<Opened, NotOpened> {
        let task = self.task.take().ok_or(NotOpened::Unavailable)?;
        task.await.unwrap_or(Err(NotOpened::Unavailable))
    }
}

impl Drop for OpenedAhead {
    fn drop(&mut self) {
        let Some(task) = self.task.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime left (shutting down): the link closes and storaged forgets them all.
            task.abort();
            return;
        };
        runtime.spawn(
            async move {
                if let Ok(Ok(opened)) = task.await {
                    drop(opened.pipe);
                    if !opened.storaged.is_closed() {
                        let _ = opened
                            .storaged
                            .ask(store::AbortDelivery { id: opened.id })
                            .await;
                    }
                }
            }
            .in_current_span(),
        );
    }
}

/// One `OpenDelivery` round trip.
pub async fn open(storaged: &ipc::Client<StoreService>) -> Result<Opened, NotOpened> {
    match storaged.call(store::OpenDelivery {}, Vec::new()).await {
        Ok((Ok(id), mut fds)) if fds.len() == 1 => Ok(Opened {
            id,
            pipe: fds.remove(0),
            storaged: storaged.clone(),
        }),
        Ok((Err(store::Refused::InsufficientStorage { message }), _)) => {
            Err(NotOpened::NoSpace(message))
        }
        Ok((Ok(id), _)) => {
            tracing::warn!("storaged opened delivery {id} without its pipe");
            let _ = storaged.ask(store::AbortDelivery { id }).await;
            Err(NotOpened::Unavailable)
        }
        other => {
            tracing::warn!("storaged gave no delivery: {other:?}");
            Err(NotOpened::Unavailable)
        }
    }
}
