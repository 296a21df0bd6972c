//! The one crate in moxd allowed to use `unsafe` and libc directly.
//!
//! Everything here is a small safe function around a system call, each `unsafe` block with a
//! `// SAFETY:` line (enforced by `clippy::undocumented_unsafe_blocks`):
//!
//! - [`dirflags`]: `chattr +T` on a directory (storaged's, for ext4's allocator);
//! - [`fdpass`]: `sendmsg`/`recvmsg` with `SCM_RIGHTS`, receiving fds close-on-exec and never
//!   leaking the ones that arrived when the control buffer was truncated;
//! - [`fds`]: taking fd 3 at role start, closing every inherited fd above it, keeping 0–2 open;
//! - [`pidfd`] (Linux): copying another process's descriptor, for tests that play a
//!   compromised role;
//! - [`spawn`]: placing a channel at fd 3 of a child process;
//! - [`apply`]: the lockdown sequence of DESIGN.md §4, run by every role in its sync `main` before
//!   any other thread exists (uid drop with verification, non-dumpable, parent-death signal,
//!   no_new_privs, Landlock, rlimits, seccomp), and `pledge`/`unveil` on OpenBSD.
//!
//! Where a step is unsupported by the running kernel it is reported as such, and the role logs a
//! warning naming the step and continues; where a step that is supported fails, [`apply`] fails
//! and the role does not start.
//!
//! Windows has none of this: moxd runs there as one process with every role a task, and no
//! privilege separation at all. [`apply`] reports the sandbox as unsupported, and of the
//! modules only what the rest of moxd needs on every system exists there (`fdpass::MAX_FDS`,
//! `fdpass::discard`, `dirflags` answering "unsupported"); `fds`, `spawn` and the transport of
//! `fdpass` are Unix only.

pub mod dirflags;
pub mod fdpass;
#[cfg(unix)]
pub mod fds;
#[cfg(target_os = "linux")]
pub mod pidfd;
mod policy;
#[cfg(unix)]
pub mod spawn;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "openbsd")]
mod openbsd;

pub use policy::{FsAccess, FsRule, Ids, Policy, Report, SeccompMode, Step, StepOutcome, Syscalls};

/// Errors from a lockdown step that the running system supports but that did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{step}: {source}")]
    Sys {
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("privilege drop did not hold: {0}")]
    PrivilegesRemain(String),
    #[error("landlock: {0}")]
    Landlock(String),
    #[error("seccomp: {0}")]
    Seccomp(String),
    #[error("{0}")]
    Unsupported(String),
}

#[cfg(unix)]
impl Error {
    // Used by the lockdown of the systems that have one.
    #[cfg_attr(not(any(target_os = "linux", target_os = "openbsd")), allow(dead_code))]
    pub(crate) fn sys(step: &'static str, errno: nix::errno::Errno) -> Self {
        Error::Sys {
            step,
            source: std::io::Error::from(errno),
        }
    }
}

/// Applies `policy` to the calling process. Call it once, from the main thread, before any other
/// thread exists: seccomp, Landlock and no_new_privs bind the calling thread and the threads it
/// creates afterwards.
pub fn apply(policy: &Policy) -> Result<Report, Error> {
    #[cfg(target_os = "linux")]
    {
        linux::apply(policy)
    }
    #[cfg(target_os = "openbsd")]
    {
        openbsd::apply(policy)
    }
    #[cfg(windows)]
    {
        let _ = policy;
        let mut report = Report::default();
        report.unsupported(
            "sandbox",
            "Windows has no privilege separation: every role runs with the rights of this process",
        );
        Ok(report)
    }
    #[cfg(not(any(target_os = "linux", target_os = "openbsd", windows)))]
    {
        let _ = policy;
        let mut report = Report::default();
        report.unsupported("sandbox", "no sandbox for this operating system");
        Ok(report)
    }
}

/// Whether the process runs with the root user id, i.e. can drop to role users. Never on
/// Windows, which has no role users to drop to.
pub fn is_root() -> bool {
    #[cfg(unix)]
    {
        nix::unistd::geteuid().is_root()
    }
    #[cfg(not(unix))]
    {
        false
    }
}
