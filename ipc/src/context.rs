//! What a role is given: its whole grant of resources. If it is not in [`Context`], the role
//! cannot touch it: the links and settings are those of the role's [`Grant`] alone. The same
//! `Context` serves a role running as its own process and as a task.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{ListenerSpec, RoleConfig};
use crate::grant::{Grant, GrantError, PeerLinks};
use crate::msg::control::{self, ControlService};
use crate::role_error::RoleError;
use crate::rpc::EventSender;
pub use crate::slot::PeerSlot;
use crate::topology::Role;
use crate::transport::{Handle, Link};

/// Everything the role of grant `G` may use.
#[derive(Debug)]
pub struct Context<G: Grant> {
    /// The role's own settings.
    pub config: G::Config,
    /// Listening sockets bound by the supervisor, with what they are for.
    pub listeners: Vec<Listener>,
    /// Links to the roles this role calls, one field each; they are replaced when a peer
    /// restarts.
    pub peers: G::Peers,
    /// Links from the roles that call this one, as they (re)connect.
    pub incoming: mpsc::UnboundedReceiver<(Role, Link)>,
    /// Administrative requests from moxctl, forwarded by the supervisor.
    pub admin: mpsc::UnboundedReceiver<AdminCall>,
    /// Cancelled when the role must stop taking new work.
    pub shutdown: CancellationToken,
    /// Tasks to wait for (within the grace period) before exiting.
    pub tasks: TaskTracker,
    /// Files the supervisor opened for this role (keyd: two per certificate of its settings).
    pub files: Vec<Handle>,
    /// Tells the supervisor about peers that broke the protocol on their link to this role.
    pub reporter: Reporter,
}

impl<G: Grant> Context<G> {
    /// The role this context is for.
    pub fn role(&self) -> Role {
        G::ROLE
    }
}

/// What the runtime around a role hands it whatever the role: the context before it is typed
/// by the role's grant ([`start`]).
#[derive(Debug)]
pub struct Plumbing {
    pub role: Role,
    pub config: RoleConfig,
    pub listeners: Vec<Listener>,
    pub incoming: mpsc::UnboundedReceiver<(Role, Link)>,
    pub admin: mpsc::UnboundedReceiver<AdminCall>,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
    pub files: Vec<Handle>,
    pub reporter: Reporter,
}

/// A role ready to run: its links, for the runtime to install and replace, and its `run(ctx)`,
/// not yet polled.
pub struct Started {
    pub peers: Arc<dyn PeerLinks>,
    pub run: Pin<Box<dyn Future<Output = Result<(), RoleError>> + Send>>,
}

impl fmt::Debug for Started {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Started")
            .field("role", &self.peers.role())
            .finish()
    }
}

/// Types `plumbing` by grant `G` (refusing another role's) and readies `run` on it: what a
/// role's [`RunFn`] does, `|plumbing| ipc::context::start(plumbing, run)`.
pub fn start<G, R, F>(plumbing: Plumbing, run: R) -> Result<Started, RoleError>
where
    G: Grant,
    R: FnOnce(Context<G>) -> F,
    F: Future<Output = Result<(), RoleError>> + Send + 'static,
{
    let role = G::ROLE;
    if plumbing.role != role {
        return Err(GrantError::WrongRole {
            role: plumbing.role,
            given: role,
        }
        .into());
    }
    let config = G::config(plumbing.config).map_err(|other| GrantError::WrongConfig {
        role,
        given: other.role(),
    })?;
    let peers = G::Peers::default();
    let ctx = Context::<G> {
        config,
        listeners: plumbing.listeners,
        peers: peers.clone(),
        incoming: plumbing.incoming,
        admin: plumbing.admin,
        shutdown: plumbing.shutdown,
        tasks: plumbing.tasks,
        files: plumbing.files,
        reporter: plumbing.reporter,
    };
    Ok(Started {
        peers: Arc::new(peers),
        run: Box::pin(run(ctx)),
    })
}

/// A role's voice to the supervisor over its control channel: when a client of this role sends
/// a broken frame, the role shuts that link down and says so here, and the supervisor restarts
/// the client with fresh links (DESIGN.md §3) instead of leaving it running without one.
#[derive(Debug, Clone)]
pub struct Reporter {
    control: Option<EventSender<ControlService>>,
}

/// Longest reason sent with a report; the supervisor cuts and escapes it again.
const MAX_REASON: usize = 256;

impl Reporter {
    /// Reports on the control channel whose events go out through `control`.
    pub fn new(control: EventSender<ControlService>) -> Reporter {
        Reporter {
            control: Some(control),
        }
    }

    /// A role running without a supervisor (tests, tools): reports are only logged.
    pub fn detached() -> Reporter {
        Reporter { control: None }
    }

    /// Tells the supervisor that `peer` broke the protocol on its link to us (`reason`), after
    /// that link was shut down.
    pub async fn broken_link(&self, peer: Role, reason: &str) {
        let Some(control) = &self.control else {
            tracing::debug!("no supervisor to tell that {peer} broke its link");
            return;
        };
        let mut reason = reason.to_string();
        if reason.len() > MAX_REASON {
            let mut cut = MAX_REASON;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason.truncate(cut);
        }
        let event = control::Event::BrokenLink { peer, reason };
        if let Err(e) = control.send(&event).await {
            tracing::warn!("telling the supervisor that {peer} broke its link: {e}");
        }
    }
}

/// One administrative request for this role and the means to answer it.
#[derive(Debug)]
pub struct AdminCall {
    pub request: crate::msg::control::RoleAdmin,
    pub fds: Vec<Handle>,
    pub reply: tokio::sync::oneshot::Sender<Result<crate::msg::control::AdminReply, String>>,
}

/// A listening socket and its purpose. Bound by the supervisor; in process mode it arrives as
/// a descriptor with the bootstrap, in single-process mode (the only mode on Windows, where a
/// listening socket cannot be handed to another process) it is the supervisor's own socket.
#[derive(Debug)]
pub struct Listener {
    pub spec: ListenerSpec,
    pub socket: std::net::TcpListener,
}

/// A role's entry point, typed by nothing so that roles can be tabled: it types the plumbing by
/// the role's grant and readies `run(ctx)` ([`start`]).
pub type RunFn = fn(Plumbing) -> Result<Started, RoleError>;

/// What the runtime needs to know about a role before starting it.
#[derive(Clone, Copy)]
pub struct RoleSpec {
    pub role: Role,
    /// The system calls beyond the base set.
    pub syscalls: sandbox::Syscalls,
    /// TCP ports the role may connect to (Landlock).
    pub tcp_connect: &'static [u16],
    /// The largest regular file the role may write (RLIMIT_FSIZE).
    pub file_size: FileSize,
    pub run: RunFn,
}

/// The largest regular file a role may write, enforced by the kernel as RLIMIT_FSIZE. The
/// kernel checks the writer's limit, so it also bounds the files another role hands out to it
/// (queued's temporary files, which smtpd's submission side writes into).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileSize {
    /// The role writes no regular file at all: 0.
    Nothing,
    /// The role writes messages into files other roles hand it: the largest message
    /// (`[smtp] max_message_size`) and the header fields smtpd adds
    /// ([`crate::config::SmtpSettings::message_file_limit`]).
    Message,
    /// The role keeps files of its own (database, queue, keys): no limit.
    Unlimited,
}

impl fmt::Debug for RoleSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoleSpec")
            .field("role", &self.role)
            .finish()
    }
}
