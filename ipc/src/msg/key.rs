//! The key service offered by keyd: private keys: TLS signatures, DKIM signatures, ACME (issue 4).
//!
//! No request is defined yet: until the issue named above adds them, a link to keyd carries only
//! pings, and keyd answers nothing it does not implement.

use serde::{Deserialize, Serialize};

use crate::rpc::Service;

/// Marker for the service keyd offers to its peers.
#[derive(Debug)]
pub enum KeyService {}

impl Service for KeyService {
    const NAME: &'static str = "key";
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
