//! What a role asks of the sandbox, and what the sandbox reports back.

use std::fmt;
use std::path::PathBuf;

/// A role's lockdown. Built by the role runtime from the role's table entry and its bootstrap.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Role name, for log lines and the OpenBSD promise table.
    pub role: &'static str,
    /// The user to drop to; `None` when not started as root (localserve, tests as a user).
    pub ids: Option<Ids>,
    /// Filesystem access that survives Landlock; everything else is denied.
    pub fs: Vec<FsRule>,
    /// TCP ports the role may bind (Landlock ABI ≥ 4); empty denies all binds.
    pub tcp_bind: Vec<u16>,
    /// TCP ports the role may connect to (Landlock ABI ≥ 4); empty denies all connects.
    pub tcp_connect: Vec<u16>,
    /// Which groups of system calls the seccomp allow-list holds.
    pub syscalls: Syscalls,
    /// RLIMIT_NPROC when running under the role's own uid (it counts threads too).
    pub max_threads: u64,
    /// RLIMIT_FSIZE, the largest regular file the role may write (0: none at all); `None`
    /// leaves it unlimited. With a limit, SIGXFSZ is ignored, so that a write past it fails
    /// with EFBIG instead of killing the role.
    pub max_file_size: Option<u64>,
    pub seccomp: SeccompMode,
}

/// Numeric user and group of a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone)]
pub struct FsRule {
    pub path: PathBuf,
    pub access: FsAccess,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsAccess {
    ReadOnly,
    ReadWrite,
}

/// Groups of system calls beyond the base every role needs (memory, threads, the async runtime,
/// IPC over its inherited sockets).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Syscalls {
    /// Opening, creating, renaming, syncing and removing files.
    pub files: bool,
    /// Accepting connections on inherited listening sockets.
    pub net_server: bool,
    /// Creating AF_INET/AF_INET6 sockets: DNS and outbound TCP.
    pub net_client: bool,
}

/// What a seccomp violation does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SeccompMode {
    /// Kill the process (production).
    #[default]
    Kill,
    /// Allow and log to the kernel audit log (for finding a missing system call).
    Log,
    /// No seccomp filter.
    Off,
}

/// The outcome of each lockdown step, in order.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub name: &'static str,
    pub outcome: StepOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    Applied(String),
    /// Deliberately not done (e.g. no uid change when not started as root).
    Skipped(String),
    /// The running system cannot do it; the role continues with a warning.
    Unsupported(String),
}

// Which steps a report records depends on the system's lockdown (none, on some).
#[cfg_attr(not(any(target_os = "linux", target_os = "openbsd")), allow(dead_code))]
impl Report {
    pub(crate) fn applied(&mut self, name: &'static str, detail: impl Into<String>) {
        self.push(name, StepOutcome::Applied(detail.into()));
    }
    pub(crate) fn skipped(&mut self, name: &'static str, detail: impl Into<String>) {
        self.push(name, StepOutcome::Skipped(detail.into()));
    }
    #[cfg_attr(target_os = "openbsd", allow(dead_code))]
    pub(crate) fn unsupported(&mut self, name: &'static str, detail: impl Into<String>) {
        self.push(name, StepOutcome::Unsupported(detail.into()));
    }
    fn push(&mut self, name: &'static str, outcome: StepOutcome) {
        self.steps.push(Step { name, outcome });
    }

    /// Steps the system could not perform: each deserves a warning naming it.
    pub fn warnings(&self) -> impl Iterator<Item = &Step> {
        self.steps
            .iter()
            .filter(|s| matches!(s.outcome, StepOutcome::Unsupported(_)))
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            StepOutcome::Applied(d) => write!(f, "{}: {}", self.name, d),
            StepOutcome::Skipped(d) => write!(f, "{}: skipped ({})", self.name, d),
            StepOutcome::Unsupported(d) => write!(f, "{}: unsupported ({})", self.name, d),
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.steps.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{step}")?;
        }
        Ok(())
    }
}
