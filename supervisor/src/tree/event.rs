//! What the tree is started with and everything it reacts to. The tree's inputs in one place,
//! apart from how it reacts (`mod.rs`), for the modules that only send it events (the admin
//! socket, the signal watcher, the launcher through `From<Outcome>`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ipc::config::{ProcessConfig, RoleConfig, SandboxConfig};
use ipc::msg::admin;
use ipc::msg::control;
use ipc::{Handle, Role};
use tokio::sync::oneshot;

use crate::launch::{self, Launcher};
use crate::listeners::Bound;

/// What a started instance reports goes to the tree like any other event.
impl From<launch::Outcome> for Event {
    fn from(outcome: launch::Outcome) -> Event {
        Event::Launched(outcome)
    }
}

/// Everything the tree reacts to.
#[derive(Debug)]
pub enum Event {
    /// A started instance's handshake ended, or the instance is gone.
    Launched(launch::Outcome),
    Retry {
        role: Role,
        epoch: u64,
    },
    KillIfStill {
        role: Role,
        epoch: u64,
    },
    /// The control link of a running instance closed: it can no longer be managed.
    ControlClosed {
        role: Role,
        epoch: u64,
    },
    /// A running instance told the supervisor something unasked (see `reports.rs`).
    Reported {
        role: Role,
        epoch: u64,
        event: control::Event,
    },
    Admin {
        request: admin::Request,
        fds: Vec<Handle>,
        uid: u32,
        reply: oneshot::Sender<ipc::rpc::Answer<admin::AdminService>>,
    },
    Shutdown {
        reason: String,
    },
    ShutdownDeadline,
    /// keyd took the certificates of a reloaded configuration: keep them for its next start.
    Reloaded {
        config: Box<crate::Config>,
    },
}

/// What the tree is started with.
#[derive(Debug)]
pub struct Settings {
    pub launcher: Launcher,
    pub build_id: Arc<str>,
    pub listeners: Vec<Bound>,
    /// Each role's own settings.
    pub role_configs: BTreeMap<Role, RoleConfig>,
    pub processes: BTreeMap<Role, ProcessConfig>,
    pub sandbox: BTreeMap<Role, SandboxConfig>,
    pub log_filter: String,
    pub grace: Duration,
    pub single_process: bool,
    /// Create the localserve account once every role is ready.
    pub localserve: bool,
    /// The configuration file, read again by `moxctl reload`.
    pub config_path: std::path::PathBuf,
    /// The configuration in force.
    pub config: crate::Config,
}
