//! Descriptors that travel with a message, and dropping the ones nobody asked for.
//!
//! On Unix a message between roles is one datagram on an AF_UNIX socket with its descriptors
//! attached (`SCM_RIGHTS`, `send` and `recv`). Windows has no such passing: there all roles
//! are tasks of one process and a message's handles move in memory with it, so all this module
//! offers there is the limit on their number and `discard`.

#[cfg(unix)]
mod unix;

#[cfg(unix)]
pub use unix::{Received, accept, recv, register_async, send};

/// The most descriptors one message may carry.
pub const MAX_FDS: usize = 64;

/// Closes a descriptor that arrived where none was expected.
///
/// A plain `close`, on purpose. An earlier version first set `SO_LINGER {on, 0}` so that a
/// socket whose sender had set a linger time could not make `close` wait it out; but every
/// role's seccomp filter forbids `SO_LINGER` (and keyd, authd and storaged may not call
/// `setsockopt` at all), so one frame with one unexpected descriptor killed the receiving role
/// with SIGSYS. Nothing needs the guard: no role can set a linger time (the same filters), the
/// supervisor never does, and without one `close` of a socket returns at once (the kernel
/// finishes a TCP close in the background). Pipes, local files and the other descriptors a
/// role can hold close without waiting either. Kept as a named function so that every place
/// that drops a peer's descriptor unread says so.
#[cfg(unix)]
pub fn discard(fd: std::os::fd::OwnedFd) {
    drop(fd);
}

/// Closes a handle that arrived where none was expected: a plain drop, as on Unix (where the
/// reasons are given). Kept as a named function so that every place that drops a peer's handle
/// unread says so on every system.
#[cfg(windows)]
pub fn discard(handle: impl Into<std::os::windows::io::OwnedHandle>) {
    drop(handle.into());
}
