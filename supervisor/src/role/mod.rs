//! The role side of the tree: what runs in a role process (`moxd role NAME`) before and around
//! the role's own `run(ctx)`, and the same for a role running as a task in single-process mode.
//!
//! Process start, in order: close inherited fds above 3 → take fd 3 (a Unix socket whose peer is
//! our parent) → `Hello` → `Bootstrap` (blocking, no threads yet) → sandbox → tokio runtime →
//! `Ready` → serve control requests while `run(ctx)` runs.

mod serve;

use std::process::ExitCode;

use ipc::blocking::BlockingChannel;
use ipc::config::SeccompSetting;
use ipc::msg::setup::{Bootstrap, FromRole, Hello, Ready, ToRole};
use ipc::{Handle, RoleError, RoleSpec};
use tracing::Instrument;

pub use serve::serve;

use crate::logs::{self, LogControl};

/// Runs the role process described by `spec`. Returns the process exit code.
pub fn main(spec: &RoleSpec, build_id: &str) -> ExitCode {
    if let Err(e) = sandbox::fds::close_from(4) {
        eprintln!("{}: closing inherited descriptors: {e}", spec.role);
        return ExitCode::from(2);
    }
    let fd = match sandbox::fds::take_channel_fd() {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("moxd role {}: {e}", spec.role);
            return ExitCode::from(2);
        }
    };
    let channel = BlockingChannel::<FromRole, ToRole>::new(fd);
    let (boot, fds) = match handshake(spec, build_id, &channel) {
        Ok(x) => x,
        Err(why) => {
            eprintln!("{}: start refused: {why}", spec.role);
            return ExitCode::from(2);
        }
    };
    let log = logs::init_role(&boot.log_filter);
    // Every line of this process, on any thread, carries the role's name (in single-process
    // mode, where every line goes to one log, that is how lines of smtpd and submission differ).
    let span = ipc::span::role(spec.role);
    let _in_role = span.enter();
    let fail = |channel: &BlockingChannel<FromRole, ToRole>, reason: String| {
        tracing::error!("{reason}");
        let _ = channel.send(&FromRole::Failed { reason }, &[]);
        ExitCode::FAILURE
    };

    let report = match sandbox::apply(&policy(spec, &boot)) {
        Ok(report) => report,
        Err(e) => return fail(&channel, format!("sandbox: {e}")),
    };
    for step in report.warnings() {
        tracing::warn!("sandbox step unsupported here, continuing without it: {step}");
    }
    tracing::info!("sandbox: {report}");
    if boot.process.fail_at_start {
        return fail(&channel, RoleError::FailAtStart.to_string());
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(usize::from(boot.process.worker_threads))
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .thread_name(format!("moxd-{}", spec.role))
        // No signal driver: roles take no signals (and it would need a socketpair).
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&channel, format!("building the async runtime: {e}")),
    };
    let ready = Ready {
        sandbox: report.steps.iter().map(|s| s.to_string()).collect(),
        warnings: report.warnings().map(|s| s.to_string()).collect(),
    };
    let fd = channel.into_fd();
    let result = runtime.block_on(
        async move {
            let link = ipc::Link::from_fd(fd, format!("{}→supervisor", spec.role))
                .map_err(|e| RoleError::io("the control channel", e))?;
            serve(*spec, *boot, link, fds, ready, log).await
        }
        .instrument(span.clone()),
    );
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{}", e.chain());
            ExitCode::FAILURE
        }
    }
}

/// Threads for blocking work (file I/O, synchronous signing) beyond the async workers.
const MAX_BLOCKING_THREADS: usize = 8;
/// RLIMIT_NPROC of a role user. seccomp already forbids creating processes, so this only bounds
/// threads; it counts every process of the uid, and during a restart the old instance may still
/// be exiting while the new one starts (and libraries such as sled run threads of their own).
const MAX_THREADS_PER_USER: u64 = 128;

fn handshake(
    spec: &RoleSpec,
    build_id: &str,
    channel: &BlockingChannel<FromRole, ToRole>,
) -> Result<(Box<Bootstrap>, Vec<Handle>), String> {
    let hello = FromRole::Hello(Hello {
        role: spec.role,
        protocol: ipc::frame::PROTOCOL_VERSION,
        build_id: build_id.to_string(),
        pid: std::process::id(),
    });
    channel
        .send(&hello, &[])
        .map_err(|e| format!("sending hello: {e}"))?;
    match channel
        .recv()
        .map_err(|e| format!("waiting for bootstrap: {e}"))?
    {
        (ToRole::Bootstrap(boot), fds) => {
            if boot.role != spec.role {
                return Err(format!("bootstrap is for {}, not {}", boot.role, spec.role));
            }
            if fds.len() != boot.fd_count() {
                return Err(format!(
                    "bootstrap names {} sockets but {} arrived",
                    boot.fd_count(),
                    fds.len()
                ));
            }
            Ok((boot, fds))
        }
        (ToRole::Refused { reason }, _) => Err(reason),
    }
}

/// The sandbox a role process applies at start, from its table entry and its bootstrap. Public
/// so that tests lock a child down with exactly this policy and try what it forbids.
pub fn policy(spec: &RoleSpec, boot: &Bootstrap) -> sandbox::Policy {
    sandbox::Policy {
        role: spec.role.name(),
        ids: boot.sandbox.ids.map(|(uid, gid)| sandbox::Ids { uid, gid }),
        fs: boot
            .config
            .dir()
            .into_iter()
            .map(|dir| sandbox::FsRule {
                path: dir.to_path_buf(),
                access: sandbox::FsAccess::ReadWrite,
            })
            .collect(),
        tcp_bind: Vec::new(),
        // The configured DNS resolvers' ports too (TCP is DNS's fallback for long answers).
        tcp_connect: {
            let mut ports = spec.tcp_connect.to_vec();
            if spec.syscalls.net_client {
                ports.extend(boot.config.dns().iter().map(|a| a.port()));
                ports.sort_unstable();
                ports.dedup();
            }
            ports
        },
        syscalls: spec.syscalls,
        max_threads: MAX_THREADS_PER_USER,
        max_file_size: match spec.file_size {
            ipc::FileSize::Nothing => Some(0),
            // A role without SMTP settings has no message to write: nothing.
            ipc::FileSize::Message => Some(
                boot.config
                    .smtp()
                    .map_or(0, ipc::config::SmtpSettings::message_file_limit),
            ),
            ipc::FileSize::Unlimited => None,
        },
        seccomp: match boot.sandbox.seccomp {
            SeccompSetting::Kill => sandbox::SeccompMode::Kill,
            SeccompSetting::Log => sandbox::SeccompMode::Log,
            SeccompSetting::Off => sandbox::SeccompMode::Off,
        },
    }
}

/// Runs a role as a task of the supervisor's process (single-process mode): the same handshake
/// over an in-memory link, no sandbox (one process cannot hold several), then the same `serve`.
pub async fn run_in_process(
    spec: RoleSpec,
    link: ipc::Link,
    build_id: std::sync::Arc<str>,
    log: LogControl,
) -> Result<(), RoleError> {
    let mut channel = ipc::Channel::<FromRole, ToRole>::new(link);
    let hello = FromRole::Hello(Hello {
        role: spec.role,
        protocol: ipc::frame::PROTOCOL_VERSION,
        build_id: build_id.to_string(),
        pid: std::process::id(),
    });
    channel
        .send(&hello, Vec::new())
        .await
        .map_err(|e| RoleError::link("sending hello", e))?;
    let (boot, fds) = match channel
        .recv()
        .await
        .map_err(|e| RoleError::link("waiting for bootstrap", e))?
    {
        (ToRole::Bootstrap(boot), fds) => (boot, fds),
        (ToRole::Refused { reason }, _) => return Err(RoleError::Refused(reason)),
    };
    if boot.process.fail_at_start {
        let reason = RoleError::FailAtStart.to_string();
        channel
            .send(&FromRole::Failed { reason }, Vec::new())
            .await
            .map_err(|e| RoleError::link("saying the start failed", e))?;
        return Err(RoleError::FailAtStart);
    }
    let ready = Ready {
        sandbox: vec!["none: single-process mode runs every role in one process".into()],
        warnings: Vec::new(),
    };
    serve(spec, *boot, channel.into_link(), fds, ready, log).await
}
