//! Typed message channels: `Channel<Out, In>` can only send `Out` and receive `In`, and pairs are
//! created with mirrored types, so a wrong message is a compile error.

use std::fmt;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec;
use crate::frame::Kind;
use crate::transport::{ChannelError, Handle, Link};

/// One end of a typed, sequential message channel (used for the setup handshake).
pub struct Channel<Out, In> {
    link: Link,
    _types: PhantomData<fn(Out) -> In>,
}

impl<Out, In> fmt::Debug for Channel<Out, In> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("link", &self.link.name())
            .finish()
    }
}

impl<Out: Serialize, In: DeserializeOwned> Channel<Out, In> {
    pub fn new(link: Link) -> Self {
        Channel {
            link,
            _types: PhantomData,
        }
    }

    /// Two connected in-memory ends with mirrored types.
    pub fn memory_pair(name_a: &str, name_b: &str) -> (Channel<Out, In>, Channel<In, Out>)
    where
        In: Serialize,
        Out: DeserializeOwned,
    {
        let (a, b) = Link::memory_pair(name_a, name_b);
        (Channel::new(a), Channel::new(b))
    }

    pub async fn send(&self, msg: &Out, fds: Vec<Handle>) -> Result<(), ChannelError> {
        let payload = codec::encode(msg)?;
        self.link.tx.send(Kind::Message, 0, &payload, fds).await
    }

    /// The next message; a close by the peer is `ChannelError::Closed`.
    pub async fn recv(&mut self) -> Result<(In, Vec<Handle>), ChannelError> {
        let frame = self.link.rx.recv().await?.ok_or(ChannelError::Closed)?;
        if frame.header.kind != Kind::Message {
            return Err(ChannelError::Protocol(format!(
                "expected a message frame, got {:?}",
                frame.header.kind
            )));
        }
        Ok((codec::decode(&frame.payload)?, frame.fds))
    }

    pub fn into_link(self) -> Link {
        self.link
    }
}
