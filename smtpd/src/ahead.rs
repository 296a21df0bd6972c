//! A delivery opened at storaged ahead of DATA.
//!
//! Asked for as soon as a transaction has its first local recipient, so that storaged's round
//! trip overlaps the client's wait for the RCPT reply and its next command instead of delaying
//! the 354. A delivery that is never used (RSET, a refused DATA, a connection that ends) is
//! given back to storaged when this is dropped.

use std::os::fd::OwnedFd;

use ipc::msg::store::{self, StoreService};

/// The answer to an `OpenDelivery` asked for in the background.
pub struct OpenedAhead {
    task: Option<tokio::task::JoinHandle<Option<(u64, OwnedFd)>>>,
    storaged: ipc::Client<StoreService>,
}

impl OpenedAhead {
    /// Asks `storaged` for a delivery now, without waiting for the answer.
    pub fn start(storaged: ipc::Client<StoreService>) -> OpenedAhead {
        let client = storaged.clone();
        let task = tokio::spawn(async move { open(&client).await });
        OpenedAhead {
            task: Some(task),
            storaged,
        }
    }

    /// The delivery (its id and the write end of its pipe), or `None` if storaged gave none.
    pub async fn take(mut self) -> Option<(u64, OwnedFd)> {
        let task = self.task.take()?;
        task.await.ok().flatten()
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
        let storaged = self.storaged.clone();
        runtime.spawn(async move {
            if let Ok(Some((id, pipe))) = task.await {
                drop(pipe);
                let _ = storaged
                    .call(&store::Request::AbortDelivery { id }, Vec::new())
                    .await;
            }
        });
    }
}

/// One `OpenDelivery` round trip.
pub async fn open(storaged: &ipc::Client<StoreService>) -> Option<(u64, OwnedFd)> {
    match storaged
        .call(&store::Request::OpenDelivery, Vec::new())
        .await
    {
        Ok((store::Response::DeliveryOpened { id }, mut fds)) if fds.len() == 1 => {
            Some((id, fds.remove(0)))
        }
        Ok((store::Response::DeliveryOpened { id }, _)) => {
            tracing::warn!("storaged opened delivery {id} without its pipe");
            let _ = storaged
                .call(&store::Request::AbortDelivery { id }, Vec::new())
                .await;
            None
        }
        other => {
            tracing::warn!("storaged gave no delivery: {other:?}");
            None
        }
    }
}
