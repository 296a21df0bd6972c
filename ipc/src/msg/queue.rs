//! The queue service offered by queued: the outbound queue (issue 5).
//!
//! No request is defined yet: until the issue named above adds them, a link to queued carries only
//! pings, and queued answers nothing it does not implement.

use serde::{Deserialize, Serialize};

use crate::rpc::Service;

/// Marker for the service queued offers to its peers.
#[derive(Debug)]
pub enum QueueService {}

impl Service for QueueService {
    const NAME: &'static str = "queue";
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
