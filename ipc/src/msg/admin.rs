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
    type Response = Response;
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// moxctl → supervisor: the state of every role.
    Status,
    /// moxctl → supervisor: shut the whole tree down gracefully.
    Stop,
    /// moxctl → supervisor: restart one role (fresh process and links).
    Restart { role: Role },
    /// moxctl → supervisor: set the log filter of one role, or of all and the supervisor.
    LogLevel { role: Option<Role>, filter: String },
    /// moxctl → supervisor: ping every role, and through each role every peer it calls.
    Ping,
    /// moxctl → supervisor → the owning role: an administrative request (fds attached where
    /// the request says so).
    Role(crate::msg::control::RoleAdmin),
    /// moxctl → supervisor: read the configuration file again and apply what can change while
    /// running (certificate files, which keyd then pushes to the roles); the answer names the
    /// changes that need a restart.
    Reload,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// supervisor → moxctl
    Status(Status),
    /// supervisor → moxctl: done, with a line for the operator.
    Done(String),
    /// supervisor → moxctl: per role, the control round trip and its peers' round trips.
    Pings(Vec<RolePings>),
    /// supervisor → moxctl: the owning role's answer to a `Role` request.
    Role(crate::msg::control::AdminReply),
    /// supervisor → moxctl: the request was not carried out, and why.
    Error(String),
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
