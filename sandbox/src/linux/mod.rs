//! The Linux lockdown sequence (DESIGN.md §4), in order.

mod landlock;
mod privs;
mod seccomp;

use nix::sys::resource::{Resource, setrlimit};

use crate::{Error, Policy, Report};

pub(crate) fn apply(policy: &Policy) -> Result<Report, Error> {
    let mut report = Report::default();

    // 1. umask 077, no core dumps.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    setrlimit(Resource::RLIMIT_CORE, 0, 0).map_err(|e| Error::sys("RLIMIT_CORE", e))?;
    report.applied("umask+core", "umask 077, RLIMIT_CORE 0");

    // 2. The role's own user, verified.
    match policy.ids {
        Some(ids) => {
            privs::drop_to(ids)?;
            report.applied(
                "uid",
                format!(
                    "uid {} gid {}, setuid(0) refused, no capabilities",
                    ids.uid, ids.gid
                ),
            );
        }
        None => report.skipped("uid", "not started as root"),
    }

    // 3. Not dumpable (no ptrace, no /proc/PID/mem for other processes of the uid), and die with
    //    the parent. PDEATHSIG is reset by the uid change, so it is set after it.
    nix::sys::prctl::set_dumpable(false).map_err(|e| Error::sys("PR_SET_DUMPABLE", e))?;
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| Error::sys("PR_SET_PDEATHSIG", e))?;
    if nix::unistd::getppid().as_raw() == 1 {
        // The parent died before PDEATHSIG was armed: we are an orphan, stop now.
        return Err(Error::Unsupported(
            "the supervisor exited during start".into(),
        ));
    }
    report.applied("prctl", "not dumpable, SIGKILL on parent death");

    // 4. No privilege gain through exec ever again.
    nix::sys::prctl::set_no_new_privs().map_err(|e| Error::sys("PR_SET_NO_NEW_PRIVS", e))?;
    report.applied("no_new_privs", "set");

    // 5. Landlock.
    landlock::apply(policy, &mut report)?;

    // 6. rlimits. NPROC counts the threads of every process of the real uid, so it is only safe
    //    under the role's own user.
    if policy.ids.is_some() {
        setrlimit(
            Resource::RLIMIT_NPROC,
            policy.max_threads,
            policy.max_threads,
        )
        .map_err(|e| Error::sys("RLIMIT_NPROC", e))?;
    }
    if let Some(max) = policy.max_file_size {
        // A write past the limit then fails with EFBIG (the role answers it like any failed
        // write) instead of killing the process with SIGXFSZ's default action.
        ignore_sigxfsz()?;
        setrlimit(Resource::RLIMIT_FSIZE, max, max).map_err(|e| Error::sys("RLIMIT_FSIZE", e))?;
    }
    // Descriptors: the soft limit up to the hard one (often 1024 against 4096 or more). A
    // role's connections, open deliveries and message files are bounded by its own limits,
    // not by a default meant for programs of select(2)'s time.
    if let Ok((soft, hard)) = nix::sys::resource::getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
    report.applied(
        "rlimits",
        format!(
            "NPROC {}, FSIZE {}",
            if policy.ids.is_some() {
                policy.max_threads.to_string()
            } else {
                "unchanged (shared uid)".into()
            },
            policy
                .max_file_size
                .map_or_else(|| "unlimited".to_string(), |max| max.to_string())
        ),
    );

    // 7. seccomp, last: it forbids some of the calls above.
    seccomp::apply(policy, &mut report)?;

    Ok(report)
}

/// Ignores SIGXFSZ, which the kernel sends to a process that writes past its RLIMIT_FSIZE.
fn ignore_sigxfsz() -> Result<(), Error> {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: SIG_IGN installs no handler, so no code of ours ever runs in signal context; the
    // role is still single-threaded here (the sandbox is applied before any thread exists).
    unsafe { signal(Signal::SIGXFSZ, SigHandler::SigIgn) }
        .map(drop)
        .map_err(|e| Error::sys("SIGXFSZ", e))
}
