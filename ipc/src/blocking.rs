//! A typed channel on a blocking socket, for the part of a role's start that runs before any
//! thread or async runtime exists (`Hello` → `Bootstrap`, then the sandbox), and for tools.

use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec;
use crate::frame::{FrameError, Header, Kind, MAX_FRAME};
use crate::transport::{ChannelError, Handle};

/// One end of a typed message channel on a blocking `SOCK_SEQPACKET` socket.
pub struct BlockingChannel<Out, In> {
    fd: OwnedFd,
    _types: PhantomData<fn(Out) -> In>,
}

impl<Out, In> fmt::Debug for BlockingChannel<Out, In> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingChannel")
            .field("fd", &self.fd)
            .finish()
    }
}

impl<Out: Serialize, In: DeserializeOwned> BlockingChannel<Out, In> {
    pub fn new(fd: OwnedFd) -> Self {
        BlockingChannel {
            fd,
            _types: PhantomData,
        }
    }

    pub fn send(&self, msg: &Out, fds: &[BorrowedFd<'_>]) -> Result<(), ChannelError> {
        let payload = codec::encode(msg)?;
        let datagram = Header::encode(Kind::Message, 0, fds.len(), &payload)?;
        sandbox::fdpass::send(self.fd.as_fd(), &datagram, fds)?;
        Ok(())
    }

    pub fn recv(&self) -> Result<(In, Vec<Handle>), ChannelError> {
        let mut buf = vec![0u8; MAX_FRAME + 1];
        let got = sandbox::fdpass::recv(self.fd.as_fd(), &mut buf)?;
        if got.len == 0 && got.fds.is_empty() {
            return Err(ChannelError::Closed);
        }
        if got.data_truncated {
            return Err(FrameError::Oversize.into());
        }
        if got.fds_truncated {
            return Err(FrameError::TooManyFds(got.fds.len()).into());
        }
        let (header, payload) = Header::decode(&buf[..got.len], got.fds.len())?;
        if header.kind != Kind::Message {
            return Err(ChannelError::Protocol(format!(
                "expected a message frame, got {:?}",
                header.kind
            )));
        }
        Ok((codec::decode(payload)?, got.fds))
    }

    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }
}
