//! The auth service offered by authd: credentials: SASL, session tickets (issue 3).
//!
//! No request is defined yet: until the issue named above adds them, a link to authd carries only
//! pings, and authd answers nothing it does not implement.

use serde::{Deserialize, Serialize};

use crate::rpc::Service;

/// Marker for the service authd offers to its peers.
#[derive(Debug)]
pub enum AuthService {}

impl Service for AuthService {
    const NAME: &'static str = "auth";
    type Request = Request;
    type Response = Response;
    type Event = Event;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {}
