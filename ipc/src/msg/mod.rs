//! The message catalogue, grouped by service. Each service is a marker type implementing
//! [`crate::rpc::Service`] with `Request`/`Response`/`Event` enums; every variant's doc line names
//! sender → receiver. Bump [`crate::frame::PROTOCOL_VERSION`] on every change here.

pub mod admin;
pub mod auth;
pub mod control;
pub mod key;
pub mod queue;
pub mod setup;
pub mod store;
