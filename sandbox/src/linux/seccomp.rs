//! seccomp: a per-role allow-list of system calls; anything else kills the process.
//!
//! Filters are stacked. The first allows the role's calls and kills on anything else. The
//! second turns `clone3` into ENOSYS (its flags live in memory a filter cannot read), so glibc
//! falls back to `clone`, whose flags the first filter checks: threads yes, processes no. For
//! roles that open no file, a third makes `open`/`openat` fail with EACCES instead of killing:
//! libraries probe files such as /sys/devices/system/cpu/online (glibc's `get_nprocs`, asked by
//! thread pools) and cope with a refusal; they could open nothing anyway. The kernel applies
//! the most restrictive verdict of all filters.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::{Error, Policy, Report, SeccompMode};

type Rules = BTreeMap<i64, Vec<SeccompRule>>;

pub(super) fn apply(policy: &Policy, report: &mut Report) -> Result<(), Error> {
    let violation = match policy.seccomp {
        SeccompMode::Off => {
            report.skipped("seccomp", "disabled in the configuration");
            return Ok(());
        }
        SeccompMode::Kill => SeccompAction::KillProcess,
        SeccompMode::Log => SeccompAction::Log,
    };
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| {
        Error::Unsupported(format!("seccomp: no filter for this architecture: {e}"))
    })?;
    let rules = allow_list(policy)?;
    let count = rules.len();
    let allow = compile(rules, violation, SeccompAction::Allow, arch)?;
    let mut no_clone3 = Rules::new();
    no_clone3.insert(libc::SYS_clone3, vec![]);
    let no_clone3 = compile(
        no_clone3,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )?;
    let mut no_open = Rules::new();
    if !policy.syscalls.files {
        no_open.insert(libc::SYS_openat, vec![]);
        #[cfg(target_arch = "x86_64")]
        no_open.insert(libc::SYS_open, vec![]);
    }
    let no_open = compile(
        no_open,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EACCES as u32),
        arch,
    )?;
    // The permissive filters first: installing a filter takes prctl and seccomp, which the
    // allow-list forbids once it is in place.
    for prog in [&no_clone3, &no_open, &allow] {
        seccompiler::apply_filter_all_threads(prog).map_err(|e| Error::Seccomp(e.to_string()))?;
    }
    report.applied(
        "seccomp",
        format!(
            "{count} system calls allowed, violations {}",
            if policy.seccomp == SeccompMode::Kill {
                "kill"
            } else {
                "logged"
            }
        ),
    );
    Ok(())
}

fn compile(
    rules: Rules,
    mismatch: SeccompAction,
    matched: SeccompAction,
    arch: TargetArch,
) -> Result<BpfProgram, Error> {
    let filter = SeccompFilter::new(rules, mismatch, matched, arch)
        .map_err(|e| Error::Seccomp(e.to_string()))?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| Error::Seccomp(e.to_string()))
}

fn allow_list(policy: &Policy) -> Result<Rules, Error> {
    let mut rules = Rules::new();
    fn allow_all(rules: &mut Rules, calls: &[i64]) {
        for call in calls {
            rules.insert(*call, vec![]);
        }
    }
    allow_all(&mut rules, BASE);
    #[cfg(target_arch = "x86_64")]
    allow_all(&mut rules, BASE_X86_64);
    if !policy.syscalls.files {
        // Passed on to the filter that answers EACCES.
        allow_all(&mut rules, &[libc::SYS_openat]);
        #[cfg(target_arch = "x86_64")]
        allow_all(&mut rules, &[libc::SYS_open]);
    }
    if policy.syscalls.files {
        allow_all(&mut rules, FILES);
        #[cfg(target_arch = "x86_64")]
        allow_all(&mut rules, FILES_X86_64);
    }
    if policy.syscalls.net_server || policy.syscalls.net_client {
        allow_all(&mut rules, SOCKETS);
        // Options a role may set: never SO_LINGER (closing such a socket blocks whoever holds
        // its last reference) nor socket filters (they would outlive the role on a listener).
        let mut options = Vec::new();
        for (level, name) in SOCKET_OPTIONS {
            options.push(rule(&[
                arg_eq(1, *level as u64)?,
                arg_eq(2, *name as u64)?,
            ])?);
        }
        rules.insert(libc::SYS_setsockopt, options);
    }
    if policy.syscalls.net_server {
        allow_all(&mut rules, &[libc::SYS_accept4, libc::SYS_accept]);
    }
    if policy.syscalls.net_client {
        allow_all(&mut rules, &[libc::SYS_connect, libc::SYS_bind]);
        // Internet sockets only: no AF_UNIX (the admin socket), no AF_NETLINK, no raw packets.
        rules.insert(
            libc::SYS_socket,
            vec![
                rule(&[arg_eq(0, libc::AF_INET as u64)?])?,
                rule(&[arg_eq(0, libc::AF_INET6 as u64)?])?,
            ],
        );
    }
    // A connected pair reaches nothing outside the process: stream pairs (tokio's signal pipe)
    // and seqpacket pairs (keyd's signing sockets; the kernel ignores a destination address on
    // a connected seqpacket socket). A datagram pair could `sendto` any named socket on the
    // system, so never those.
    rules.insert(
        libc::SYS_socketpair,
        vec![
            rule(&[
                arg_eq(0, libc::AF_UNIX as u64)?,
                arg_masked(1, 0xf, libc::SOCK_STREAM as u64)?,
            ])?,
            rule(&[
                arg_eq(0, libc::AF_UNIX as u64)?,
                arg_masked(1, 0xf, libc::SOCK_SEQPACKET as u64)?,
            ])?,
        ],
    );
    // Threads, never processes.
    rules.insert(
        libc::SYS_clone,
        vec![rule(&[SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(libc::CLONE_THREAD as u64),
            libc::CLONE_THREAD as u64,
        )
        .map_err(|e| Error::Seccomp(e.to_string()))?])?],
    );
    rules.insert(libc::SYS_clone3, vec![]); // answered ENOSYS by the second filter
    // Thread names only; no way back to PR_SET_DUMPABLE 1.
    rules.insert(
        libc::SYS_prctl,
        vec![
            rule(&[arg_eq(0, libc::PR_SET_NAME as u64)?])?,
            rule(&[arg_eq(0, libc::PR_GET_NAME as u64)?])?,
        ],
    );
    // Reading limits only (glibc's getrlimit is prlimit64 with no new limit).
    rules.insert(
        libc::SYS_prlimit64,
        vec![rule(&[SeccompCondition::new(
            2,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::Eq,
            0,
        )
        .map_err(|e| Error::Seccomp(e.to_string()))?])?],
    );
    // Non-blocking mode, readable bytes, and isatty.
    rules.insert(
        libc::SYS_ioctl,
        vec![
            rule(&[arg_eq(1, libc::FIONBIO)?])?,
            rule(&[arg_eq(1, libc::FIONREAD)?])?,
            rule(&[arg_eq(1, libc::TCGETS)?])?,
        ],
    );
    Ok(rules)
}

fn rule(conditions: &[SeccompCondition]) -> Result<SeccompRule, Error> {
    SeccompRule::new(conditions.to_vec()).map_err(|e| Error::Seccomp(e.to_string()))
}

fn arg_masked(index: u8, mask: u64, value: u64) -> Result<SeccompCondition, Error> {
    SeccompCondition::new(
        index,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::MaskedEq(mask),
        value,
    )
    .map_err(|e| Error::Seccomp(e.to_string()))
}

fn arg_eq(index: u8, value: u64) -> Result<SeccompCondition, Error> {
    SeccompCondition::new(index, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value)
        .map_err(|e| Error::Seccomp(e.to_string()))
}

/// Memory, threads, time, signals to ourselves, the async runtime, and IPC on inherited sockets.
const BASE: &[i64] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_preadv2,
    libc::SYS_pwritev2,
    libc::SYS_close,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_lseek,
    libc::SYS_fcntl,
    libc::SYS_dup,
    libc::SYS_dup3,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mprotect,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_brk,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_futex,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_getppid,
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getegid,
    libc::SYS_tgkill,
    libc::SYS_clock_gettime,
    libc::SYS_clock_getres,
    libc::SYS_gettimeofday,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_pwait2,
    libc::SYS_eventfd2,
    libc::SYS_pipe2,
    libc::SYS_ppoll,
    libc::SYS_sendmsg,
    libc::SYS_recvmsg,
    libc::SYS_sendto,
    libc::SYS_recvfrom,
    libc::SYS_shutdown,
    libc::SYS_getsockopt,
    libc::SYS_getrandom,
    libc::SYS_membarrier,
    libc::SYS_uname,
    libc::SYS_sysinfo,
    libc::SYS_restart_syscall,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

#[cfg(target_arch = "x86_64")]
const BASE_X86_64: &[i64] = &[libc::SYS_epoll_wait, libc::SYS_poll, libc::SYS_pipe];

/// Creating, reading, writing, syncing, linking and removing files under the Landlock rules.
const FILES: &[i64] = &[
    libc::SYS_openat,
    libc::SYS_mkdirat,
    libc::SYS_unlinkat,
    libc::SYS_renameat2,
    libc::SYS_linkat,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_sync_file_range,
    libc::SYS_ftruncate,
    libc::SYS_fallocate,
    libc::SYS_getdents64,
    libc::SYS_flock,
    libc::SYS_fchmod,
    libc::SYS_fstatfs,
    libc::SYS_statfs,
    libc::SYS_utimensat,
    libc::SYS_fadvise64,
    libc::SYS_copy_file_range,
    libc::SYS_splice,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_readlinkat,
    libc::SYS_getcwd,
];

#[cfg(target_arch = "x86_64")]
const FILES_X86_64: &[i64] = &[
    libc::SYS_open,
    libc::SYS_mkdir,
    libc::SYS_unlink,
    libc::SYS_rename,
    libc::SYS_renameat,
    libc::SYS_link,
    libc::SYS_stat,
    libc::SYS_lstat,
    libc::SYS_access,
    libc::SYS_readlink,
    libc::SYS_sendfile,
];

/// Addresses of sockets the role holds or creates (`setsockopt` is checked per option).
const SOCKETS: &[i64] = &[libc::SYS_getsockname, libc::SYS_getpeername];

/// The (level, option) pairs `setsockopt` may set.
const SOCKET_OPTIONS: &[(i32, i32)] = &[
    (libc::SOL_SOCKET, libc::SO_KEEPALIVE),
    (libc::SOL_SOCKET, libc::SO_REUSEADDR),
    (libc::SOL_SOCKET, libc::SO_RCVBUF),
    (libc::SOL_SOCKET, libc::SO_SNDBUF),
    (libc::IPPROTO_TCP, libc::TCP_NODELAY),
    (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE),
    (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL),
    (libc::IPPROTO_TCP, libc::TCP_KEEPCNT),
    (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY),
];
