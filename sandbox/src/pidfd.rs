//! Taking a copy of another process's descriptor (`pidfd_getfd(2)`, Linux 5.6 and later).
//!
//! For tests that play a compromised role: a test running as root freezes a role and takes its
//! end of a link, so that what it then sends is exactly what code running inside that role
//! could send, and the role at the other end answers under its real sandbox. The kernel checks
//! `PTRACE_MODE_ATTACH_REALCREDS` against the target, which root passes even for the
//! non-dumpable roles; a role cannot use this (its seccomp filter has neither call).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// A duplicate, close-on-exec, of descriptor `fd` of process `pid`. Both refer to the same open
/// file description (offset, flags such as `O_NONBLOCK`, socket state).
pub fn take(pid: u32, fd: RawFd) -> io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
    // SAFETY: pidfd_open takes a pid and flags by value and returns a new descriptor or -1.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if pidfd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pidfd_open just returned this descriptor to us alone.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) };
    // SAFETY: pidfd_getfd takes two descriptors and flags by value and returns a new
    // descriptor (close-on-exec) or -1; it reads no memory of ours.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_pidfd_getfd,
            std::os::fd::AsRawFd::as_raw_fd(&pidfd),
            fd,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pidfd_getfd just installed this descriptor in our table for us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;

    #[test]
    fn takes_a_working_copy_of_a_descriptor() {
        let (read, write) = nix::unistd::pipe().expect("pipe");
        let copy = take(std::process::id(), write.as_raw_fd()).expect("pidfd_getfd");
        drop(write);
        std::fs::File::from(copy).write_all(b"x").expect("write");
        let mut got = [0u8; 1];
        std::fs::File::from(read)
            .read_exact(&mut got)
            .expect("read");
        assert_eq!(&got, b"x");
    }

    #[test]
    fn a_descriptor_that_is_not_open_is_an_error() {
        assert!(take(std::process::id(), 100_000).is_err());
    }
}
