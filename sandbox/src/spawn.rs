//! Placing a channel at fd 3 of a child process.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Arranges for `fd` to be the child's fd 3, inherited across `exec` (every other descriptor of
/// ours is close-on-exec, as Rust opens them). `fd` stays owned by `cmd` and is closed in the
/// parent when `cmd` is dropped.
pub fn pass_as_fd3(cmd: &mut Command, fd: OwnedFd) {
    let raw = fd.as_raw_fd();
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe functions
    // (dup2, fcntl) on descriptor numbers; it allocates nothing and takes no locks.
    unsafe {
        cmd.pre_exec(move || {
            let _keep_alive = &fd;
            if raw == 3 {
                // dup2 onto itself is a no-op that would keep FD_CLOEXEC: clear it instead.
                if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(raw, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
