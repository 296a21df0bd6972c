//! One peer's link as a role holds it: the current client, swapped atomically when the peer
//! restarts, and the events the peer pushes over whichever link is current.

use std::fmt;
use std::sync::Arc;

use tokio::sync::{broadcast, watch};

use crate::rpc::{Client, Service};
use crate::transport::Link;

/// The current client for one peer, swapped atomically when the peer restarts.
pub struct PeerSlot<S: Service> {
    slot: Arc<watch::Sender<Option<Client<S>>>>,
    events: broadcast::Sender<S::Event>,
}

/// Events from a peer that may queue for one slow listener before it misses some.
const EVENT_BACKLOG: usize = 64;

impl<S: Service> Default for PeerSlot<S> {
    fn default() -> Self {
        PeerSlot {
            slot: Arc::new(watch::channel(None).0),
            events: broadcast::channel(EVENT_BACKLOG).0,
        }
    }
}

impl<S: Service> Clone for PeerSlot<S> {
    fn clone(&self) -> Self {
        PeerSlot {
            slot: self.slot.clone(),
            events: self.events.clone(),
        }
    }
}

impl<S: Service> fmt::Debug for PeerSlot<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerSlot")
            .field("service", &S::NAME)
            .field("connected", &self.current().is_some())
            .finish()
    }
}

impl<S: Service> PeerSlot<S> {
    /// The client, if the peer is connected and its link open.
    pub fn current(&self) -> Option<Client<S>> {
        self.slot
            .borrow()
            .as_ref()
            .filter(|c| !c.is_closed())
            .cloned()
    }

    /// Waits until the peer is connected.
    pub async fn wait(&self) -> Client<S> {
        let mut rx = self.slot.subscribe();
        loop {
            if let Some(client) = rx.borrow_and_update().as_ref().filter(|c| !c.is_closed()) {
                return client.clone();
            }
            if rx.changed().await.is_err() {
                // invariant: the sender lives in `self`, so it cannot be dropped while we wait.
                std::future::pending::<()>().await;
            }
        }
    }

    /// The events the peer pushes, over whichever link is current.
    pub fn events(&self) -> broadcast::Receiver<S::Event> {
        self.events.subscribe()
    }

    /// Wakes on every change of link: connected, replaced after a restart, or gone.
    pub fn links(&self) -> watch::Receiver<Option<Client<S>>> {
        self.slot.subscribe()
    }

    /// Pings the peer over its current link.
    pub async fn ping(&self) -> Result<std::time::Duration, String> {
        let client = self.current().ok_or("not connected")?;
        client.ping().await.map_err(|e| e.to_string())
    }

    pub(crate) fn set(&self, link: Link) {
        let (client, mut events) = Client::new(link);
        // Forward the link's events to whoever listens; the task ends with the link.
        let fanout = self.events.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    while let Some(event) = events.recv().await {
                        let _ = fanout.send(event);
                    }
                });
            }
            Err(_) => tracing::warn!("{}: no runtime to carry its events", S::NAME),
        }
        self.slot.send_replace(Some(client));
    }

    pub(crate) fn clear(&self) {
        self.slot.send_replace(None);
    }
}
