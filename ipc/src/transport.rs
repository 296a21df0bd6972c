//! Links: one bidirectional, frame-preserving connection between two ends, over a
//! `SOCK_SEQPACKET` socketpair (between processes, Unix only) or in-memory queues (roles as
//! tasks of one process: `--single-process`, tests, and always on Windows). Both carry the same
//! datagrams and the same descriptors, so everything above this module is identical in both
//! modes.
//!
//! # What travels with a frame: [`Handle`]
//!
//! On Unix a [`Handle`] is an `OwnedFd`: whatever the kernel can pass with `SCM_RIGHTS` (files,
//! pipes, sockets), and in memory the same descriptor moves with the frame unchanged.
//!
//! On Windows it is a `std::fs::File`. Nothing can be passed between processes there, so every
//! link is in memory and a handle only moves from one task to another; and what moves is
//! always a file: temporary files for messages being written, message files to read, the
//! certificate files given to keyd, imports and backups. Listening sockets do not travel as
//! handles on any system ([`crate::Listener`] holds a `TcpListener`), and deliveries on Windows
//! use files rather than pipes, so no socket or pipe is ever a `Handle` there. A `File` says
//! exactly that, converts to and from `OwnedHandle` where a system call wants one, and lets
//! role code write `File::from(handle)` and `Handle::from(file)` the same way on both systems.

use std::io;
#[cfg(unix)]
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

#[cfg(unix)]
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
#[cfg(unix)]
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

use crate::codec::CodecError;
#[cfg(unix)]
use crate::frame::MAX_FRAME;
use crate::frame::{FrameError, Header, Kind};

/// An owned OS handle that travels with a frame: a socket, file or pipe (see the module docs).
#[cfg(unix)]
pub type Handle = OwnedFd;

/// An owned file that travels with a frame in memory (see the module docs).
#[cfg(windows)]
pub type Handle = std::fs::File;

/// Depth of an in-memory link's queue before senders wait.
const MEMORY_QUEUE: usize = 1024;

/// Why a link or channel stopped working.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("channel closed")]
    Closed,
}

impl ChannelError {
    /// Whether the other end caused this error of receiving by sending something malformed (a
    /// broken frame, an undecodable payload, a frame of a kind it may not send), as opposed to
    /// the link ending or the system failing us. Only receiving errors are meant: a frame we
    /// failed to build is our own fault.
    pub fn is_peer_fault(&self) -> bool {
        match self {
            ChannelError::Frame(_) | ChannelError::Protocol(_) => true,
            ChannelError::Codec(e) => !matches!(e, CodecError::Encode(_)),
            ChannelError::Io(_) | ChannelError::Closed => false,
        }
    }
}

/// A datagram taken apart: its header, payload and descriptors.
#[derive(Debug)]
pub struct Frame {
    pub header: Header,
    pub payload: Vec<u8>,
    pub fds: Vec<Handle>,
}

/// Both ends of a link.
#[derive(Debug)]
pub struct Link {
    pub tx: LinkSender,
    pub rx: LinkReceiver,
}

/// The sending half; cheap to clone, usable from many tasks at once.
#[derive(Debug, Clone)]
pub struct LinkSender {
    inner: SenderInner,
    name: Arc<str>,
}

#[derive(Debug, Clone)]
enum SenderInner {
    #[cfg(unix)]
    Socket(Arc<AsyncFd<OwnedFd>>),
    Memory(mpsc::Sender<(Vec<u8>, Vec<Handle>)>),
}

/// The receiving half; one reader at a time.
#[derive(Debug)]
pub struct LinkReceiver {
    inner: ReceiverInner,
    name: Arc<str>,
}

#[derive(Debug)]
enum ReceiverInner {
    #[cfg(unix)]
    Socket {
        fd: Arc<AsyncFd<OwnedFd>>,
        buf: Box<[u8]>,
    },
    Memory(mpsc::Receiver<(Vec<u8>, Vec<Handle>)>),
}

/// A connected pair of blocking, close-on-exec `SOCK_SEQPACKET` sockets: one end for each side
/// of an edge, to be passed to the processes that use them.
#[cfg(unix)]
pub fn socket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(io::Error::from)
}

impl Link {
    /// Wraps one end of a socketpair; must be called inside a tokio runtime.
    #[cfg(unix)]
    pub fn from_fd(fd: OwnedFd, name: impl Into<Arc<str>>) -> io::Result<Link> {
        nix::fcntl::fcntl(
            &fd,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .map_err(io::Error::from)?;
        let fd = Arc::new(sandbox::fdpass::register_async(fd)?);
        let name = name.into();
        Ok(Link {
            tx: LinkSender {
                inner: SenderInner::Socket(fd.clone()),
                name: name.clone(),
            },
            rx: LinkReceiver {
                inner: ReceiverInner::Socket {
                    fd,
                    buf: vec![0u8; MAX_FRAME + 1].into_boxed_slice(),
                },
                name,
            },
        })
    }

    /// A connected pair of in-memory links.
    pub fn memory_pair(name_a: &str, name_b: &str) -> (Link, Link) {
        let (a_tx, b_rx) = mpsc::channel(MEMORY_QUEUE);
        let (b_tx, a_rx) = mpsc::channel(MEMORY_QUEUE);
        let a: Arc<str> = name_a.into();
        let b: Arc<str> = name_b.into();
        (
            Link {
                tx: LinkSender {
                    inner: SenderInner::Memory(a_tx),
                    name: a.clone(),
                },
                rx: LinkReceiver {
                    inner: ReceiverInner::Memory(a_rx),
                    name: a,
                },
            },
            Link {
                tx: LinkSender {
                    inner: SenderInner::Memory(b_tx),
                    name: b.clone(),
                },
                rx: LinkReceiver {
                    inner: ReceiverInner::Memory(b_rx),
                    name: b,
                },
            },
        )
    }

    pub fn name(&self) -> &str {
        &self.tx.name
    }
}

impl LinkSender {
    /// Sends one frame; the descriptors are closed on our side once sent.
    pub async fn send(
        &self,
        kind: Kind,
        id: u64,
        payload: &[u8],
        fds: Vec<Handle>,
    ) -> Result<(), ChannelError> {
        let datagram = Header::encode(kind, id, fds.len(), payload)?;
        match &self.inner {
            #[cfg(unix)]
            SenderInner::Socket(fd) => {
                let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
                loop {
                    let mut ready = fd.writable().await?;
                    match ready.try_io(|inner| {
                        sandbox::fdpass::send(inner.get_ref().as_fd(), &datagram, &borrowed)
                    }) {
                        Ok(Ok(_)) => return Ok(()),
                        Ok(Err(e)) if is_closed(&e) => return Err(ChannelError::Closed),
                        Ok(Err(e)) => return Err(e.into()),
                        Err(_would_block) => continue,
                    }
                }
            }
            SenderInner::Memory(tx) => tx
                .send((datagram, fds))
                .await
                .map_err(|_| ChannelError::Closed),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Ends a link found broken for both sides at once, even while clones of this sender
    /// (event subscriptions, responders of requests in flight) still hold the socket: the peer
    /// reads end of file at once and every later send on it fails, instead of the link staying
    /// half alive until the last clone is dropped. In memory the queues end when their last
    /// handle is dropped; there is no hostile peer in one process.
    pub fn shut_down(&self) {
        #[cfg(unix)]
        if let SenderInner::Socket(fd) = &self.inner {
            // ENOTCONN (the peer already went) leaves nothing to do.
            let _ = nix::sys::socket::shutdown(
                fd.get_ref().as_raw_fd(),
                nix::sys::socket::Shutdown::Both,
            );
        }
    }

    /// The raw socket, for identifying the link in logs; `None` in memory.
    pub fn raw_fd(&self) -> Option<i32> {
        match &self.inner {
            #[cfg(unix)]
            SenderInner::Socket(fd) => Some(fd.get_ref().as_raw_fd()),
            SenderInner::Memory(_) => None,
        }
    }
}

impl LinkReceiver {
    /// Receives one frame. `Ok(None)` is an orderly close by the peer; an error means the peer
    /// sent something malformed and the link must be dropped.
    pub async fn recv(&mut self) -> Result<Option<Frame>, ChannelError> {
        match &mut self.inner {
            #[cfg(unix)]
            ReceiverInner::Socket { fd, buf } => loop {
                let mut ready = fd.readable().await?;
                let got = match ready
                    .try_io(|inner| sandbox::fdpass::recv(inner.get_ref().as_fd(), buf))
                {
                    Ok(Ok(got)) => got,
                    Ok(Err(e)) if is_closed(&e) => return Ok(None),
                    Ok(Err(e)) => return Err(e.into()),
                    Err(_would_block) => continue,
                };
                if got.len == 0 && got.fds.is_empty() {
                    return Ok(None);
                }
                if got.data_truncated {
                    return Err(FrameError::Oversize.into());
                }
                if got.fds_truncated {
                    return Err(FrameError::TooManyFds(got.fds.len()).into());
                }
                return parse(&buf[..got.len], got.fds).map(Some);
            },
            ReceiverInner::Memory(rx) => match rx.recv().await {
                None => Ok(None),
                Some((datagram, fds)) => parse(&datagram, fds).map(Some),
            },
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

fn parse(datagram: &[u8], fds: Vec<Handle>) -> Result<Frame, ChannelError> {
    let (header, payload) = Header::decode(datagram, fds.len())?;
    Ok(Frame {
        header,
        payload: payload.to_vec(),
        fds,
    })
}

#[cfg(unix)]
fn is_closed(e: &io::Error) -> bool {
    use nix::errno::Errno;
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::EPIPE | Errno::ECONNRESET)
    )
}
