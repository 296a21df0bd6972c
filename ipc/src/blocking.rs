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

/// One request/response exchange of service `S` on a blocking socket used by one caller at a
/// time, waiting at most `timeout` for the answer. After an error the socket's state is unknown
/// (a late answer may still come): drop it.
pub fn call<C: crate::rpc::Call>(
    fd: BorrowedFd<'_>,
    request: C,
    timeout: std::time::Duration,
) -> Result<C::Answer, ChannelError> {
    send_request(fd, request)?;
    // A quick answer (an ECDSA signature) is waited for spinning: sleeping and being woken
    // again costs more than the signature on a virtual machine.
    spin_until_readable(fd, SPIN, &CALLERS);
    wait_answer::<C>(fd, timeout)
}

/// The first half of [`call`]: sends `request`. Then [`answered_within`] and [`wait_answer`].
pub fn send_request<C: crate::rpc::Call>(
    fd: BorrowedFd<'_>,
    request: C,
) -> Result<(), ChannelError> {
    let request: <C::Service as crate::rpc::Service>::Request = request.into();
    let payload = codec::encode(&request)?;
    let datagram = Header::encode(Kind::Request, 1, 0, &payload)?;
    sandbox::fdpass::send(fd, &datagram, &[])?;
    Ok(())
}

/// Whether the answer to a request sent on `fd` arrives within `limit`: spinning first (as
/// [`call`] does, yielding the processor between polls, if not too many threads spin already),
/// then asleep in the kernel for the rest.
pub fn answered_within(fd: BorrowedFd<'_>, limit: std::time::Duration) -> bool {
    let started = std::time::Instant::now();
    spin_until_readable(fd, limit.min(SPIN), &CALLERS);
    let mut poll = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
    #[cfg(target_os = "linux")]
    {
        let left = limit.saturating_sub(started.elapsed());
        let left = nix::sys::time::TimeSpec::from_duration(left);
        nix::poll::ppoll(&mut poll, Some(left), None).unwrap_or(0) > 0
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = started;
        nix::poll::poll(&mut poll, nix::poll::PollTimeout::ZERO).unwrap_or(0) > 0
    }
}

/// The second half of [`call`]: waits at most `timeout` for the answer and reads it.
pub fn wait_answer<C: crate::rpc::Call>(
    fd: BorrowedFd<'_>,
    timeout: std::time::Duration,
) -> Result<C::Answer, ChannelError> {
    let mut poll = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
    let millis = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    match nix::poll::poll(&mut poll, nix::poll::PollTimeout::from(millis)) {
        Ok(0) => {
            return Err(ChannelError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no answer in time",
            )));
        }
        Ok(_) => {}
        Err(e) => return Err(ChannelError::Io(e.into())),
    }
    BUFFER.with_borrow_mut(|buf| {
        let got = sandbox::fdpass::recv(fd, buf)?;
        if got.len == 0 {
            return Err(ChannelError::Closed);
        }
        if got.data_truncated || !got.fds.is_empty() {
            got.fds.into_iter().for_each(sandbox::fdpass::discard);
            return Err(FrameError::Oversize.into());
        }
        let (header, payload) = Header::decode(&buf[..got.len], 0)?;
        if header.kind != Kind::Response || header.id != 1 {
            return Err(ChannelError::Protocol(format!(
                "expected the answer, got {:?}",
                header.kind
            )));
        }
        Ok(codec::decode(payload)?)
    })
}

thread_local! {
    /// One receive buffer per thread, not a fresh 64 KiB per call (signatures are hot).
    static BUFFER: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; MAX_FRAME + 1]);
}

/// Serves service `S` on a blocking socket, one request at a time (each answered before the
/// next is read), until the peer closes it (`Ok`) or sends something other than requests and
/// pings, or descriptors (`Err`). For a thread that owns the socket, such as keyd's signers.
/// Polls `fd` without sleeping, yielding the processor between polls, until it is readable
/// or `limit` has passed.
fn spin_until_readable(fd: BorrowedFd<'_>, limit: std::time::Duration, spinners: &Spinners) {
    // Spinning pays when a processor is free; with every one busy it only takes time from the
    // threads doing the work. At most half the processors spin at once (per kind: callers,
    // servers); the others sleep at once.
    let Some(_spinning) = spinners.enter() else {
        return;
    };
    let mut poll = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
    let until = std::time::Instant::now() + limit;
    while std::time::Instant::now() < until {
        if nix::poll::poll(&mut poll, nix::poll::PollTimeout::ZERO).unwrap_or(0) > 0 {
            return;
        }
        std::thread::yield_now();
    }
}

/// Threads spinning at one time, and how many may.
struct Spinners(std::sync::atomic::AtomicUsize);

static CALLERS: Spinners = Spinners(std::sync::atomic::AtomicUsize::new(0));
static SERVERS: Spinners = Spinners(std::sync::atomic::AtomicUsize::new(0));

struct Spinning<'a>(&'a Spinners);

impl Spinners {
    fn enter(&self) -> Option<Spinning<'_>> {
        use std::sync::atomic::Ordering;
        static MAX: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        let max = *MAX.get_or_init(|| {
            std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
        });
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Spinning(self))
    }
}

impl Drop for Spinning<'_> {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// How long [`serve`] spins for the next request before it sleeps.
const SERVE_SPIN: std::time::Duration = std::time::Duration::from_micros(300);

/// How long [`call`] spins for its answer before it sleeps.
const SPIN: std::time::Duration = std::time::Duration::from_micros(60);

pub fn serve<S: crate::rpc::Service>(
    fd: OwnedFd,
    mut handle: impl FnMut(S::Request) -> crate::rpc::Answer<S>,
) -> Result<(), ChannelError> {
    let mut buf = vec![0u8; MAX_FRAME + 1];
    // When requests come close together (a busy TLS listener), the next one is waited for
    // spinning, yielding the processor to anything else that wants it: a sleeping thread's
    // wakeup costs more than a signature on a virtual machine. After a longer pause the
    // thread sleeps at once.
    let mut last_answer: Option<std::time::Instant> = None;
    let mut dense = false;
    loop {
        if dense {
            spin_until_readable(fd.as_fd(), SERVE_SPIN, &SERVERS);
        }
        let got = sandbox::fdpass::recv(fd.as_fd(), &mut buf)?;
        if got.len == 0 && got.fds.is_empty() {
            return Ok(());
        }
        // The gap from the previous answer to this request.
        dense = last_answer.is_some_and(|t| t.elapsed() < SERVE_SPIN);
        if got.data_truncated || got.fds_truncated || !got.fds.is_empty() {
            got.fds.into_iter().for_each(sandbox::fdpass::discard);
            return Err(ChannelError::Protocol(
                "descriptors or an oversize frame on a request socket".into(),
            ));
        }
        let (header, payload) = Header::decode(&buf[..got.len], 0)?;
        let answer = match header.kind {
            Kind::Ping => Header::encode(Kind::Pong, header.id, 0, &[])?,
            Kind::Request => {
                let (answer, fds) = handle(codec::decode(payload)?).into_parts();
                // This socket carries no descriptors either way.
                fds.into_iter().for_each(sandbox::fdpass::discard);
                Header::encode(Kind::Response, header.id, 0, &answer?)?
            }
            other => {
                return Err(ChannelError::Protocol(format!(
                    "expected a request, got {other:?}"
                )));
            }
        };
        sandbox::fdpass::send(fd.as_fd(), &answer, &[])?;
        last_answer = Some(std::time::Instant::now());
    }
}
