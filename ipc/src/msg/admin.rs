//! The admin service: `moxctl` calls the supervisor over the admin socket (a `SOCK_SEQPACKET`
//! Unix socket in a root-owned 0750 directory). The connection opens with a typed handshake,
//! `ClientHello` → `ServerHello`, then carries requests of [`AdminService`].

use serde::{Deserialize, Serialize};

use crate::rpc::Service;
use crate::topology::Role;

/// Marker for the moxctl → supervisor admin service.
#[derive(Debug)]
pub enum AdminService {}

impl Service for AdminService {
    const NAME: &'static str = "admin";
    type Request = Request;
    type Event = Event;
}

/// moxctl → supervisor: the first message on a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientHello {
    pub protocol: u16,
    pub client: String,
}

/// supervisor → moxctl: the answer to the hello.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerHello {
    Welcome { protocol: u16, build_id: String },
    Denied { reason: String },
}

crate::requests! {
    /// A request from moxctl to the supervisor.
    pub enum Request for AdminService, refused: Error {
        /// moxctl → supervisor: the state of every role.
        GetStatus {} -> Status,
        /// moxctl → supervisor: shut the whole tree down gracefully; a line for the operator.
        Stop {} -> String,
        /// moxctl → supervisor: restart one role (fresh process and links).
        Restart { role: Role } -> String,
        /// moxctl → supervisor: set the log filter of one role, or of all and the supervisor.
        LogLevel { role: Option<Role>, filter: String } -> String,
        /// moxctl → supervisor: ping every role, and through each role every peer it calls;
        /// per role, the control round trip and its peers' round trips.
        Ping {} -> Vec<RolePings>,
        /// moxctl → supervisor → the owning role: an administrative request (fds attached
        /// where the request says so); the owning role's answer.
        ForRole { request: crate::msg::control::RoleAdmin } -> crate::msg::control::AdminReply,
        /// moxctl → supervisor: read the configuration file again and apply what can change
        /// while running (certificate files, which keyd then pushes to the roles); the answer
        /// names the changes that need a restart.
        Reload {} -> String,
    }
}

/// supervisor → moxctl: the request was not carried out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub supervisor_pid: u32,
    pub uptime_ms: u64,
    pub single_process: bool,
    /// Every listening socket, with its actual address.
    pub listeners: Vec<crate::config::ListenerSpec>,
    pub roles: Vec<RoleStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleStatus {
    pub role: Role,
    pub state: RoleState,
    pub pid: Option<u32>,
    pub uid: Option<u32>,
    /// Restarts since the supervisor started.
    pub restarts: u32,
    /// Time since the current instance became ready.
    pub uptime_ms: Option<u64>,
    /// The delay before the current or next start attempt.
    pub backoff_ms: u64,
    pub last_error: Option<String>,
    /// Sandbox steps of the current instance.
    pub sandbox: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoleState {
    Starting,
    Ready,
    /// Waiting before the next start attempt.
    Backoff,
    Stopping,
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolePings {
    pub role: Role,
    /// Supervisor → role round trip in microseconds, or why there was none.
    pub control: Result<u64, String>,
    pub peers: Vec<crate::msg::control::PeerPing>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {}
