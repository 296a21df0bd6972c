//! The control service: the supervisor calls each running role over its fd-3 channel.

use serde::{Deserialize, Serialize};

use crate::rpc::Service;
use crate::topology::Role;

/// Marker for the supervisor → role control service.
#[derive(Debug)]
pub enum ControlService {}

impl Service for ControlService {
    const NAME: &'static str = "control";
    type Request = Request;
    type Event = Event;
}

crate::requests! {
    /// A request from the supervisor to a role.
    pub enum Request for ControlService, refused: Refused {
        /// supervisor → role: stop accepting work, finish what is in flight within `grace_ms`,
        /// exit.
        Shutdown { grace_ms: u64 } -> (),
        /// supervisor → role: replace the log filter (tracing `EnvFilter` syntax).
        SetLogLevel { filter: String } -> (),
        /// supervisor → role: a fresh link to `peer`; one fd attached.
        PeerUp { peer: Role } -> (),
        /// supervisor → role: `peer` died; its link is gone until the next `PeerUp`.
        PeerDown { peer: Role } -> (),
        /// supervisor → role: ping every peer this role calls and report the round trips.
        PingPeers {} -> Vec<PeerPing>,
        /// supervisor → role: an administrative request from moxctl for this role (fds
        /// attached where the request says so).
        Admin { request: RoleAdmin } -> AdminReply,
    }
}

/// role → supervisor: the request could not be carried out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Administrative requests, by the role that carries them out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoleAdmin {
    Store(crate::msg::store::Admin),
    Auth(crate::msg::auth::Admin),
    Key(crate::msg::key::Admin),
    Queue(crate::msg::queue::Admin),
}

impl RoleAdmin {
    /// The role that carries this request out.
    pub fn role(&self) -> Role {
        match self {
            RoleAdmin::Store(_) => Role::Storaged,
            RoleAdmin::Auth(_) => Role::Authd,
            RoleAdmin::Key(_) => Role::Keyd,
            RoleAdmin::Queue(_) => Role::Queued,
        }
    }
}

/// A role's answer to a [`RoleAdmin`] request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminReply {
    Store(crate::msg::store::AdminReply),
    Auth(crate::msg::auth::AdminReply),
    Key(crate::msg::key::AdminReply),
    Queue(crate::msg::queue::AdminReply),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerPing {
    pub peer: Role,
    /// Round trip in microseconds, or why there was none.
    pub result: Result<u64, String>,
}

/// What a role tells the supervisor unasked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// role → supervisor: this role shut down the link from `peer` because `peer` sent a broken
    /// frame (`reason`, for the log) (DESIGN.md §3). The supervisor restarts `peer`, so that it
    /// comes back with fresh links, only if `peer` is a client of the reporting role; any other
    /// report is logged and ignored.
    BrokenLink { peer: Role, reason: String },
}
