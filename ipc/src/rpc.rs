//! Request/response services over a link, with many requests in flight.
//!
//! A [`Client`] sends requests tagged with ids and matches responses to them as they arrive, in
//! any order; a [`Server`] yields requests with a [`Responder`] each, and may push events. Both
//! ends answer pings, so every link can be checked for life without knowing its service.
//!
//! Every request is a type of its own that names the type of its answer ([`Call`]): the caller
//! decodes the response as that type, and the server can only build an [`Answer`] of it from a
//! value of that type. So no role can be sent, or send, the wrong kind of answer; there is no
//! response enum on the wire, only the answer's own encoding.

use crate::sync::lock;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::codec;
use crate::frame::Kind;
use crate::transport::{ChannelError, Handle, Link, LinkReceiver, LinkSender};

/// A service: the requests a client may send (one [`Call`] type each, gathered in the
/// `Request` enum that goes on the wire) and the events it gets back.
pub trait Service: 'static {
    const NAME: &'static str;
    type Request: Serialize + DeserializeOwned + Send + fmt::Debug + Named + 'static;
    type Event: Serialize + DeserializeOwned + Send + Clone + fmt::Debug + 'static;
}

/// A request's name, from its type (for logs and spans).
pub trait Named {
    fn name(&self) -> &'static str;
}

/// One request of a service and the type of its answer. Declared with [`crate::requests!`].
pub trait Call: Serialize + fmt::Debug + Send + Into<<Self::Service as Service>::Request> {
    type Service: Service;
    type Answer: Serialize + DeserializeOwned + Send + fmt::Debug + 'static;
    const NAME: &'static str;

    /// The answer to a request of this type, with the descriptors that go with it.
    fn reply(answer: &Self::Answer, fds: Vec<Handle>) -> Answer<Self::Service> {
        let payload = codec::encode(answer).and_then(|p| match p.len() {
            n if n > crate::frame::MAX_PAYLOAD => Err(codec::CodecError::Encode(format!(
                "the answer to {} takes {n} bytes, more than a frame holds",
                Self::NAME
            ))),
            _ => Ok(p),
        });
        Answer {
            payload,
            fds,
            _service: PhantomData,
        }
    }

    /// Like [`Call::reply`], but an answer that cannot be encoded into one frame (too large) is
    /// replaced by `fallback()`, sent without descriptors: the caller always hears back instead
    /// of waiting for an answer that was dropped.
    fn reply_or(
        answer: &Self::Answer,
        fds: Vec<Handle>,
        fallback: impl FnOnce() -> Self::Answer,
    ) -> Answer<Self::Service> {
        match codec::encode(answer) {
            Ok(payload) if payload.len() <= crate::frame::MAX_PAYLOAD => Answer {
                payload: Ok(payload),
                fds,
                _service: PhantomData,
            },
            _ => {
                fds.into_iter().for_each(sandbox::fdpass::discard);
                Self::reply(&fallback(), Vec::new())
            }
        }
    }
}

/// An answer encoded as the type its request names (made by [`Call::reply`]), with its
/// descriptors; sent by [`Responder::send`].
pub struct Answer<S: Service> {
    payload: Result<Vec<u8>, codec::CodecError>,
    fds: Vec<Handle>,
    _service: PhantomData<fn() -> S>,
}

impl<S: Service> fmt::Debug for Answer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Answer")
            .field("service", &S::NAME)
            .field("bytes", &self.payload.as_ref().map(Vec::len))
            .field("fds", &self.fds.len())
            .finish()
    }
}

impl<S: Service> Answer<S> {
    /// The encoded bytes (what goes on the wire), or why there are none.
    pub fn into_parts(self) -> (Result<Vec<u8>, codec::CodecError>, Vec<Handle>) {
        (self.payload, self.fds)
    }
}

/// What the reader hands a waiting call: the raw answer, which the call decodes as the type
/// its request names; an undecodable one shuts the link (a broken peer).
enum Reply {
    Pong,
    Response(Vec<u8>, Vec<Handle>),
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Reply>>>>;

/// The calling end of a service. Clones share the link, which closes when the last clone is
/// dropped.
pub struct Client<S: Service> {
    tx: LinkSender,
    pending: Pending,
    next_id: Arc<AtomicU64>,
    closed: watch::Receiver<bool>,
    /// Cancelled by a call whose answer did not decode: the reader closes the link.
    broken: CancellationToken,
    _service: PhantomData<fn() -> S>,
}

impl<S: Service> Clone for Client<S> {
    fn clone(&self) -> Self {
        Client {
            tx: self.tx.clone(),
            pending: self.pending.clone(),
            next_id: self.next_id.clone(),
            closed: self.closed.clone(),
            broken: self.broken.clone(),
            _service: PhantomData,
        }
    }
}

impl<S: Service> fmt::Debug for Client<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("service", &S::NAME)
            .field("link", &self.tx.name())
            .finish()
    }
}

impl<S: Service> Client<S> {
    /// Starts the reader task (inside a tokio runtime) and returns the client and the stream of
    /// events the server pushes.
    pub fn new(link: Link) -> (Client<S>, mpsc::UnboundedReceiver<S::Event>) {
        let pending: Pending = Arc::default();
        let (closed_tx, closed) = watch::channel(false);
        let (events_tx, events) = mpsc::unbounded_channel();
        let broken = CancellationToken::new();
        tokio::spawn(
            read_responses::<S>(
                link.rx,
                link.tx.clone(),
                pending.clone(),
                events_tx,
                closed_tx,
                broken.clone(),
            )
            .in_current_span(),
        );
        let client = Client {
            tx: link.tx,
            pending,
            next_id: Arc::new(AtomicU64::new(1)),
            closed,
            broken,
            _service: PhantomData,
        };
        (client, events)
    }

    /// Sends `request` with `fds` and waits for its answer and the descriptors that came with
    /// it. An answer that does not decode as the request's answer type shuts the link: the
    /// server is broken.
    pub async fn call<C: Call<Service = S>>(
        &self,
        request: C,
        fds: Vec<Handle>,
    ) -> Result<(C::Answer, Vec<Handle>), ChannelError> {
        let request: S::Request = request.into();
        let payload = codec::encode(&request)?;
        match self.exchange(Kind::Request, &payload, fds).await? {
            Reply::Response(payload, fds) => match codec::decode::<C::Answer>(&payload) {
                Ok(answer) => Ok((answer, fds)),
                Err(e) => {
                    fds.into_iter().for_each(sandbox::fdpass::discard);
                    tracing::warn!(
                        link = self.tx.name(),
                        service = S::NAME,
                        "closing channel: the answer to {} does not decode: {e}",
                        C::NAME
                    );
                    self.tx.shut_down();
                    self.broken.cancel();
                    Err(e.into())
                }
            },
            Reply::Pong => Err(ChannelError::Protocol(
                "a request answered with a pong".into(),
            )),
        }
    }

    /// [`Client::call`] for a request whose answer carries no descriptors: any that come are
    /// closed unread.
    pub async fn ask<C: Call<Service = S>>(&self, request: C) -> Result<C::Answer, ChannelError> {
        let (answer, fds) = self.call(request, Vec::new()).await?;
        fds.into_iter().for_each(sandbox::fdpass::discard);
        Ok(answer)
    }

    /// Measures one round trip to the other end.
    pub async fn ping(&self) -> Result<Duration, ChannelError> {
        let start = Instant::now();
        match self.exchange(Kind::Ping, &[], Vec::new()).await? {
            Reply::Pong => Ok(start.elapsed()),
            Reply::Response(..) => Err(ChannelError::Protocol(
                "ping answered with a response".into(),
            )),
        }
    }

    /// Whether the link has closed (peer gone or broken).
    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Waits until the link closes.
    pub async fn closed(&self) {
        let mut closed = self.closed.clone();
        let _ = closed.wait_for(|c| *c).await;
    }

    pub fn link_name(&self) -> &str {
        self.tx.name()
    }

    async fn exchange(
        &self,
        kind: Kind,
        payload: &[u8],
        fds: Vec<Handle>,
    ) -> Result<Reply, ChannelError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply_tx, reply_rx) = oneshot::channel();
        lock(&self.pending).insert(id, reply_tx);
        // Removes the entry if this future is dropped before the response arrives.
        let _guard = PendingGuard {
            pending: &self.pending,
            id,
        };
        // Checked after registering: the reader marks the link closed before it fails every
        // registered call, so a call is either failed by it or refused here, never left waiting.
        if self.is_closed() {
            return Err(ChannelError::Closed);
        }
        self.tx.send(kind, id, payload, fds).await?;
        reply_rx.await.map_err(|_| ChannelError::Closed)
    }
}

struct PendingGuard<'a> {
    pending: &'a Pending,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        lock(self.pending).remove(&self.id);
    }
}

async fn read_responses<S: Service>(
    mut rx: LinkReceiver,
    tx: LinkSender,
    pending: Pending,
    events: mpsc::UnboundedSender<S::Event>,
    closed: watch::Sender<bool>,
    broken: CancellationToken,
) {
    let result = loop {
        let received = tokio::select! {
            received = rx.recv() => received,
            // Every `Client` is gone: nobody can call any more, so let go of the link.
            () = closed.closed() => break Ok(()),
            () = broken.cancelled() => {
                break Err(ChannelError::Protocol("an answer did not decode".into()))
            }
        };
        let frame = match received {
            Ok(Some(frame)) => frame,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        match frame.header.kind {
            Kind::Pong | Kind::Ping if !frame.fds.is_empty() => {
                frame.fds.into_iter().for_each(sandbox::fdpass::discard);
                break Err(ChannelError::Protocol(
                    "a ping or pong carried descriptors".into(),
                ));
            }
            Kind::Pong => {
                if let Some(waiter) = lock(&pending).remove(&frame.header.id) {
                    let _ = waiter.send(Reply::Pong);
                }
            }
            Kind::Response => {
                match lock(&pending).remove(&frame.header.id) {
                    Some(waiter) => {
                        if let Err(Reply::Response(_, fds)) =
                            waiter.send(Reply::Response(frame.payload, frame.fds))
                        {
                            // The caller gave up: nobody else may close these.
                            fds.into_iter().for_each(sandbox::fdpass::discard);
                        }
                    }
                    None => frame.fds.into_iter().for_each(sandbox::fdpass::discard),
                }
            }
            Kind::Event if !frame.fds.is_empty() => {
                break Err(ChannelError::Protocol(
                    "an event carried descriptors".into(),
                ));
            }
            Kind::Event => match codec::decode::<S::Event>(&frame.payload) {
                Ok(event) => {
                    let _ = events.send(event);
                }
                Err(e) => break Err(e.into()),
            },
            Kind::Ping => {
                if let Err(e) = tx.send(Kind::Pong, frame.header.id, &[], Vec::new()).await {
                    break Err(e);
                }
            }
            other => {
                break Err(ChannelError::Protocol(format!(
                    "a {} server sent a {other:?} frame",
                    S::NAME
                )));
            }
        }
    };
    if let Err(e) = result {
        tracing::warn!(link = rx.name(), service = S::NAME, "closing channel: {e}");
    }
    let _ = closed.send(true);
    // Dropping the reply senders fails every call still waiting.
    lock(&pending).clear();
}

/// The serving end of a service.
pub struct Server<S: Service> {
    rx: LinkReceiver,
    tx: LinkSender,
    _service: PhantomData<fn() -> S>,
}

impl<S: Service> fmt::Debug for Server<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("service", &S::NAME)
            .field("link", &self.rx.name())
            .finish()
    }
}

/// One request and the means to answer it.
#[derive(Debug)]
pub struct Incoming<S: Service> {
    pub request: S::Request,
    pub fds: Vec<Handle>,
    pub reply: Responder<S>,
}

/// Answers one request; may be moved to another task and used in any order.
pub struct Responder<S: Service> {
    tx: LinkSender,
    id: u64,
    _service: PhantomData<fn() -> S>,
}

impl<S: Service> fmt::Debug for Responder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder").field("id", &self.id).finish()
    }
}

impl<S: Service> Responder<S> {
    /// The request's id on its link (the frame header's), for the request's span.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Pushes events to the client this request came from.
    pub fn events(&self) -> EventSender<S> {
        EventSender {
            tx: self.tx.clone(),
            _service: PhantomData,
        }
    }

    /// Sends `answer` (made by the request type's [`Call::reply`]). An answer that could not
    /// be encoded is not sent: its descriptors are closed and the error returned.
    pub async fn send(self, answer: Answer<S>) -> Result<(), ChannelError> {
        match answer.payload {
            Ok(payload) => {
                self.tx
                    .send(Kind::Response, self.id, &payload, answer.fds)
                    .await
            }
            Err(e) => {
                answer.fds.into_iter().for_each(sandbox::fdpass::discard);
                Err(e.into())
            }
        }
    }
}

/// Pushes events to the client of a server.
pub struct EventSender<S: Service> {
    tx: LinkSender,
    _service: PhantomData<fn() -> S>,
}

impl<S: Service> Clone for EventSender<S> {
    fn clone(&self) -> Self {
        EventSender {
            tx: self.tx.clone(),
            _service: PhantomData,
        }
    }
}

impl<S: Service> fmt::Debug for EventSender<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventSender")
            .field("link", &self.tx.name())
            .finish()
    }
}

impl<S: Service> EventSender<S> {
    /// The link the events go out on.
    pub fn link_name(&self) -> &str {
        self.tx.name()
    }

    /// Pushes one event. Events carry no descriptors: anything that needs one is a request.
    pub async fn send(&self, event: &S::Event) -> Result<(), ChannelError> {
        let payload = codec::encode(event)?;
        self.tx.send(Kind::Event, 0, &payload, Vec::new()).await
    }
}

impl<S: Service> Server<S> {
    pub fn new(link: Link) -> Server<S> {
        Server {
            rx: link.rx,
            tx: link.tx,
            _service: PhantomData,
        }
    }

    pub fn events(&self) -> EventSender<S> {
        EventSender {
            tx: self.tx.clone(),
            _service: PhantomData,
        }
    }

    pub fn link_name(&self) -> &str {
        self.rx.name()
    }

    /// Closes a link whose client misbehaved, for both sides at once (see
    /// [`LinkSender::shut_down`]).
    pub fn shut_down(&self) {
        self.tx.shut_down();
    }

    /// The next request, answering pings on the way. `Ok(None)`: the client closed the link. An
    /// error means the client misbehaved; drop the server (closing the link) and log it.
    pub async fn next(&mut self) -> Result<Option<Incoming<S>>, ChannelError> {
        loop {
            let Some(frame) = self.rx.recv().await? else {
                return Ok(None);
            };
            match frame.header.kind {
                Kind::Ping if !frame.fds.is_empty() => {
                    frame.fds.into_iter().for_each(sandbox::fdpass::discard);
                    return Err(ChannelError::Protocol("a ping carried descriptors".into()));
                }
                Kind::Ping => {
                    self.tx
                        .send(Kind::Pong, frame.header.id, &[], Vec::new())
                        .await?;
                }
                Kind::Request => {
                    let request = codec::decode::<S::Request>(&frame.payload)?;
                    return Ok(Some(Incoming {
                        request,
                        fds: frame.fds,
                        reply: Responder {
                            tx: self.tx.clone(),
                            id: frame.header.id,
                            _service: PhantomData,
                        },
                    }));
                }
                other => {
                    return Err(ChannelError::Protocol(format!(
                        "a {} client sent a {other:?} frame",
                        S::NAME
                    )));
                }
            }
        }
    }
}
