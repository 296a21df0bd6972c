//! The start of every role: `Hello` → `Bootstrap` → `Ready`, on the role's channel to the
//! supervisor (fd 3), as typed messages of a [`crate::Channel`].

use serde::{Deserialize, Serialize};

use crate::config::{ListenerSpec, ProcessConfig, RoleConfig, SandboxConfig};
use crate::topology::Role;

/// role → supervisor, during start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromRole {
    /// role → supervisor: who I am and which build I am.
    Hello(Hello),
    /// role → supervisor: locked down and serving.
    Ready(Ready),
    /// role → supervisor: start failed; the role exits after sending this.
    Failed { reason: String },
}

/// supervisor → role, during start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToRole {
    /// supervisor → role: everything the role may touch. Its fds, in order: one per listener in
    /// `listeners`, one per peer in `peers`, then two per certificate of keyd's `config`.
    Bootstrap(Box<Bootstrap>),
    /// supervisor → role: the hello was not accepted (wrong role, version or build).
    Refused { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub role: Role,
    pub protocol: u16,
    pub build_id: String,
    pub pid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bootstrap {
    pub role: Role,
    pub sandbox: SandboxConfig,
    pub process: ProcessConfig,
    /// The role's own settings: the variant of `role`.
    pub config: RoleConfig,
    pub listeners: Vec<ListenerSpec>,
    pub peers: Vec<Role>,
    pub log_filter: String,
}

impl Bootstrap {
    /// How many fds must accompany this bootstrap.
    pub fn fd_count(&self) -> usize {
        self.listeners.len() + self.peers.len() + 2 * self.config.certificates().len()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    /// The sandbox steps as applied, one line each.
    pub sandbox: Vec<String>,
    /// Steps the system could not perform.
    pub warnings: Vec<String>,
}
