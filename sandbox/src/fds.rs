//! File-descriptor hygiene at process start.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl, open};
use nix::sys::stat::Mode;

/// The descriptor on which a role receives its channel to the supervisor.
pub const CHANNEL_FD: i32 = 3;

static TAKEN: AtomicBool = AtomicBool::new(false);

/// Takes ownership of fd 3, which must be a Unix socket whose peer is our parent process.
/// Marks it close-on-exec. Can succeed once per process.
pub fn take_channel_fd() -> io::Result<OwnedFd> {
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Err(io::Error::other("fd 3 was already taken"));
    }
    // SAFETY: F_GETFD on an arbitrary integer only reads the descriptor table.
    if unsafe { libc::fcntl(CHANNEL_FD, libc::F_GETFD) } < 0 {
        return Err(io::Error::other(
            "fd 3 is not open: `moxd role` is started by the supervisor only",
        ));
    }
    // SAFETY: fd 3 is open (checked above), was inherited for us alone, and the TAKEN flag
    // guarantees a single owner in this process.
    let fd = unsafe { OwnedFd::from_raw_fd(CHANNEL_FD) };
    let st = nix::sys::stat::fstat(&fd).map_err(io::Error::from)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(io::Error::other("fd 3 is not a socket"));
    }
    let cred = nix::sys::socket::getsockopt(&fd, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(io::Error::from)?;
    let parent = nix::unistd::getppid().as_raw();
    if cred.pid() != parent {
        return Err(io::Error::other(format!(
            "fd 3's peer is pid {}, not our parent {parent}",
            cred.pid()
        )));
    }
    fcntl(&fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(io::Error::from)?;
    Ok(fd)
}

/// Closes every descriptor numbered `first` or above: whatever the launching environment leaked.
pub fn close_from(first: u32) -> io::Result<()> {
    // SAFETY: close_range only closes descriptors; callers own none above `first` that they use
    // (this runs at process start, before anything is opened).
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0u32) };
    if rc == 0 {
        return Ok(());
    }
    // Kernels before 5.9: walk the table.
    let max = nix::unistd::sysconf(nix::unistd::SysconfVar::OPEN_MAX)
        .ok()
        .flatten()
        .unwrap_or(1024) as i32;
    for fd in first as i32..max {
        // SAFETY: closing a possibly-unopened descriptor number is harmless (EBADF).
        unsafe { libc::close(fd) };
    }
    Ok(())
}

/// Makes sure fds 0, 1 and 2 are open (on /dev/null if not), so that no socket or file opened
/// later lands on a standard descriptor and gets written to by accident.
pub fn ensure_stdio_open() -> io::Result<()> {
    for fd in 0..3 {
        // SAFETY: F_GETFD only reads the descriptor table.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0 {
            continue;
        }
        let null = open("/dev/null", OFlag::O_RDWR, Mode::empty()).map_err(io::Error::from)?;
        // The lowest free number is taken, which is `fd` itself as 0..fd are open.
        std::mem::forget(null);
    }
    Ok(())
}
