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
    let peer = peer_credentials(&fd)?.pid;
    let parent = nix::unistd::getppid().as_raw();
    if peer != parent {
        return Err(io::Error::other(format!(
            "fd 3's peer is pid {peer}, not our parent {parent}"
        )));
    }
    fcntl(&fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(io::Error::from)?;
    Ok(fd)
}

/// Who is at the other end of a connected Unix socket, as the kernel recorded it when the
/// socket was connected or made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCredentials {
    pub uid: libc::uid_t,
    pub pid: libc::pid_t,
}

/// The credentials of the peer of `fd`: `SO_PEERCRED` on Linux and OpenBSD, `LOCAL_PEERCRED`
/// on FreeBSD (13 and later, which record the pid too).
pub fn peer_credentials(fd: &OwnedFd) -> io::Result<PeerCredentials> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let cred = nix::sys::socket::getsockopt(fd, nix::sys::socket::sockopt::PeerCredentials)
            .map_err(io::Error::from)?;
        Ok(PeerCredentials {
            uid: cred.uid(),
            pid: cred.pid(),
        })
    }
    #[cfg(target_os = "openbsd")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: an all-zero sockpeercred is a valid value of a plain C struct.
        let mut cred: libc::sockpeercred = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockpeercred>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `cred`, which is that large.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&raw mut cred).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(PeerCredentials {
            uid: cred.uid,
            pid: cred.pid,
        })
    }
    #[cfg(target_os = "freebsd")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: an all-zero xucred is a valid value of a plain C struct.
        let mut cred: libc::xucred = unsafe { std::mem::zeroed() };
        cred.cr_version = libc::XUCRED_VERSION;
        let mut len = std::mem::size_of::<libc::xucred>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `cred`, which is that large.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                0, // SOL_LOCAL
                libc::LOCAL_PEERCRED,
                (&raw mut cred).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(PeerCredentials {
            uid: cred.cr_uid,
            // SAFETY: the kernel fills cr_pid for LOCAL_PEERCRED (FreeBSD 13 and later).
            pid: unsafe { cred.cr_pid__c_anonymous_union.cr_pid },
        })
    }
    #[cfg(not(any(
        target_os = "linux",
        target_os = "android",
        target_os = "openbsd",
        target_os = "freebsd"
    )))]
    {
        let _ = fd;
        Err(io::Error::other(
            "this system cannot name the process at the other end of a socket",
        ))
    }
}

/// Closes every descriptor numbered `first` or above: whatever the launching environment leaked.
pub fn close_from(first: u32) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: close_range only closes descriptors; callers own none above `first` that
        // they use (this runs at process start, before anything is opened).
        let rc = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0u32) };
        if rc == 0 {
            return Ok(());
        }
    }
    #[cfg(any(target_os = "openbsd", target_os = "freebsd"))]
    {
        // SAFETY: as above; closefrom cannot fail on a valid lower bound.
        unsafe { libc::closefrom(first as libc::c_int) };
        return Ok(());
    }
    // Kernels before 5.9, and systems without closefrom: walk the table.
    #[allow(unreachable_code)]
    {
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
