//! The store service offered by storaged: the database and message files: delivery, mailboxes (issue 3).
//!
//! No request is defined yet: until the issue named above adds them, a link to storaged carries only
//! pings, and storaged answers nothing it does not implement.

use serde::{Deserialize, Serialize};

use crate::rpc::Service;

/// Marker for the service storaged offers to its peers.
#[derive(Debug)]
pub enum StoreService {}

impl Service for StoreService {
    const NAME: &'static str = "store";
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
