//! Starting one instance of a role, as a process (re-exec of our own binary with the channel at
//! fd 3 and nothing else inherited) or as a task of this process (single-process mode), and the
//! supervisor's side of the `Hello` → `Bootstrap` → `Ready` handshake, which both share.

use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use ipc::msg::control::{self, ControlService};
use ipc::msg::setup::{Bootstrap, FromRole, Ready, ToRole};
use ipc::{Channel, Client, Handle, Link, Role, RoleSpec};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::clip::clip;
use crate::logs::LogControl;

/// How long a role may take from exec to `Ready`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// How roles are started.
#[derive(Clone)]
pub enum Launcher {
    /// Each role its own process: `/proc/self/exe role NAME`.
    Process,
    /// Each role a task of this process, with the given role table and log control.
    InProcess {
        specs: Arc<[RoleSpec]>,
        log: LogControl,
    },
}

impl std::fmt::Debug for Launcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Launcher::Process => "Launcher::Process",
            Launcher::InProcess { .. } => "Launcher::InProcess",
        })
    }
}

/// What can stop a started instance immediately.
#[derive(Debug, Clone)]
pub enum Killer {
    /// Asks the task that owns (and will reap) the child to kill it: the pid cannot have been
    /// reused while the child is unreaped.
    Process(mpsc::UnboundedSender<()>),
    Task(tokio::task::AbortHandle),
}

impl Killer {
    pub fn kill(&self) {
        match self {
            Killer::Process(tx) => {
                let _ = tx.send(());
            }
            Killer::Task(handle) => handle.abort(),
        }
    }
}

/// What a started instance reports later, on the channel its starter gave. The starter turns
/// it into its own event type (`From<Outcome>`), so launching needs to know nothing of the tree.
#[derive(Debug)]
pub enum Outcome {
    /// The handshake ended: the instance is ready, or why it is not.
    Connected {
        role: Role,
        epoch: u64,
        result: Result<Connected, String>,
    },
    /// The instance is gone.
    Exited {
        role: Role,
        epoch: u64,
        status: String,
    },
}

/// A started instance, before its handshake completes.
#[derive(Debug)]
pub struct Started {
    pub pid: u32,
    pub killer: Killer,
}

/// The result of a successful handshake.
#[derive(Debug)]
pub struct Connected {
    pub control: Client<ControlService>,
    /// What the role tells the supervisor unasked, over `control`.
    pub reports: mpsc::UnboundedReceiver<control::Event>,
    pub ready: Ready,
    pub pid: u32,
}

impl Launcher {
    /// Starts `role` generation `epoch`; reports [`Outcome::Connected`] and
    /// [`Outcome::Exited`] later on `events`.
    pub fn start<E: From<Outcome> + Send + 'static>(
        &self,
        role: Role,
        epoch: u64,
        boot: Bootstrap,
        fds: Vec<Handle>,
        build_id: Arc<str>,
        events: mpsc::UnboundedSender<E>,
    ) -> Result<Started, String> {
        match self {
            Launcher::Process => start_process(role, epoch, boot, fds, build_id, events),
            Launcher::InProcess { specs, log } => {
                let spec = *specs
                    .iter()
                    .find(|s| s.role == role)
                    .ok_or_else(|| format!("no entry point for {role}"))?;
                start_task(spec, epoch, boot, fds, build_id, log.clone(), events)
            }
        }
    }
}

fn start_process<E: From<Outcome> + Send + 'static>(
    role: Role,
    epoch: u64,
    boot: Bootstrap,
    fds: Vec<Handle>,
    build_id: Arc<str>,
    events: mpsc::UnboundedSender<E>,
) -> Result<Started, String> {
    let (ours, theirs) = ipc::transport::socket_pair().map_err(|e| format!("socketpair: {e}"))?;
    let mut cmd = std::process::Command::new("/proc/self/exe");
    cmd.arg0(format!("moxd-{role}"))
        .args(["role", role.name()])
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Own process group: a Ctrl-C in the terminal reaches the supervisor only, which then
        // stops the roles in order.
        .process_group(0);
    sandbox::spawn::pass_as_fd3(&mut cmd, theirs);
    let mut child = tokio::process::Command::from(cmd)
        .kill_on_drop(false)
        .spawn()
        .map_err(|e| format!("spawning: {e}"))?;
    let pid = child.id().ok_or("child exited at once")?;
    if let Some(out) = child.stdout.take() {
        tokio::spawn(crate::logs::relay(role, pid, out));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(crate::logs::relay(role, pid, err));
    }
    let exit_events = events.clone();
    let (kill_tx, mut kill_rx) = mpsc::unbounded_channel::<()>();
    tokio::spawn(async move {
        let status = loop {
            tokio::select! {
                status = child.wait() => break match status {
                    Ok(status) => describe(status),
                    Err(e) => format!("wait failed: {e}"),
                },
                Some(()) = kill_rx.recv() => {
                    let _ = child.start_kill();
                }
            }
        };
        let _ = exit_events.send(E::from(Outcome::Exited {
            role,
            epoch,
            status,
        }));
    });
    tokio::spawn(async move {
        let result = match Link::from_fd(ours, format!("supervisor→{role}")) {
            Ok(link) => handshake(role, Some(pid), link, boot, fds, &build_id).await,
            Err(e) => Err(e.to_string()),
        };
        let _ = events.send(E::from(Outcome::Connected {
            role,
            epoch,
            result,
        }));
    });
    Ok(Started {
        pid,
        killer: Killer::Process(kill_tx),
    })
}

fn start_task<E: From<Outcome> + Send + 'static>(
    spec: RoleSpec,
    epoch: u64,
    boot: Bootstrap,
    fds: Vec<Handle>,
    build_id: Arc<str>,
    log: LogControl,
    events: mpsc::UnboundedSender<E>,
) -> Result<Started, String> {
    let role = spec.role;
    let pid = std::process::id();
    let (ours, theirs) =
        Link::memory_pair(&format!("supervisor→{role}"), &format!("{role}→supervisor"));
    let task_build = build_id.clone();
    // The role's span, so that its lines say which role wrote them.
    let task = tokio::spawn(
        crate::role::run_in_process(spec, theirs, task_build, log)
            .instrument(ipc::span::role(role)),
    );
    let killer = Killer::Task(task.abort_handle());
    let exit_events = events.clone();
    tokio::spawn(async move {
        let status = match task.await {
            Ok(Ok(())) => "finished".to_string(),
            Ok(Err(e)) => format!("failed: {}", e.chain()),
            Err(e) if e.is_cancelled() => "killed".to_string(),
            Err(e) => format!("task failed: {e}"),
        };
        let _ = exit_events.send(E::from(Outcome::Exited {
            role,
            epoch,
            status,
        }));
    });
    tokio::spawn(async move {
        let result = handshake(role, None, ours, boot, fds, &build_id).await;
        let _ = events.send(E::from(Outcome::Connected {
            role,
            epoch,
            result,
        }));
    });
    Ok(Started { pid, killer })
}

/// The supervisor's side: expect `Hello` from the right role and build, send the bootstrap and
/// its fds, expect `Ready`; then the link carries control requests.
async fn handshake(
    role: Role,
    pid: Option<u32>,
    link: Link,
    boot: Bootstrap,
    fds: Vec<Handle>,
    build_id: &str,
) -> Result<Connected, String> {
    let mut channel = Channel::<ToRole, FromRole>::new(link);
    let step = async {
        let hello = match channel
            .recv()
            .await
            .map_err(|e| format!("waiting for hello: {e}"))?
        {
            (FromRole::Hello(hello), fds) if fds.is_empty() => hello,
            (FromRole::Failed { reason }, fds) => {
                fds.into_iter().for_each(sandbox::fdpass::discard);
                return Err(reason);
            }
            (other, fds) => {
                fds.into_iter().for_each(sandbox::fdpass::discard);
                return Err(format!(
                    "expected hello (without descriptors), got {}",
                    clip(&format!("{other:?}"))
                ));
            }
        };
        let refusal = if hello.role != role {
            Some(format!("hello from {} on {role}'s channel", hello.role))
        } else if hello.protocol != ipc::frame::PROTOCOL_VERSION {
            Some(format!(
                "protocol {} but the supervisor speaks {}",
                hello.protocol,
                ipc::frame::PROTOCOL_VERSION
            ))
        } else if hello.build_id != build_id {
            Some(format!(
                "build {} differs from the supervisor's {build_id}: the binary was replaced; restart the whole service",
                hello.build_id
            ))
        } else if pid.is_some_and(|p| p != hello.pid) {
            Some(format!(
                "hello claims pid {}, the child is {pid:?}",
                hello.pid
            ))
        } else {
            None
        };
        if let Some(reason) = refusal {
            let _ = channel
                .send(
                    &ToRole::Refused {
                        reason: reason.clone(),
                    },
                    Vec::new(),
                )
                .await;
            return Err(reason);
        }
        channel
            .send(&ToRole::Bootstrap(Box::new(boot)), fds)
            .await
            .map_err(|e| format!("sending bootstrap: {e}"))?;
        match channel
            .recv()
            .await
            .map_err(|e| format!("waiting for ready: {e}"))?
        {
            (FromRole::Ready(ready), fds) if fds.is_empty() => Ok((ready, hello.pid)),
            (FromRole::Failed { reason }, fds) => {
                fds.into_iter().for_each(sandbox::fdpass::discard);
                Err(reason)
            }
            (other, fds) => {
                fds.into_iter().for_each(sandbox::fdpass::discard);
                Err(format!(
                    "expected ready (without descriptors), got {}",
                    clip(&format!("{other:?}"))
                ))
            }
        }
    };
    let (ready, pid) = tokio::time::timeout(HANDSHAKE_TIMEOUT, step)
        .await
        .map_err(|_| format!("no ready within {HANDSHAKE_TIMEOUT:?}"))??;
    let (control, reports) = Client::<ControlService>::new(channel.into_link());
    Ok(Connected {
        control,
        reports,
        ready,
        pid,
    })
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => match nix::sys::signal::Signal::try_from(sig) {
            Ok(s) => format!("killed by {s}"),
            Err(_) => format!("killed by signal {sig}"),
        },
        _ => status.to_string(),
    }
}
