//! Errors of the supervisor.

use crate::config::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("role users: {0}")]
    Users(String),
    #[error("directories: {0}")]
    Dirs(String),
    #[error("listeners: {0}")]
    Listen(String),
    #[error("admin socket: {0}")]
    Admin(String),
    #[error("starting {role}: {why}")]
    Spawn { role: ipc::Role, why: String },
    #[error("{0}")]
    Fatal(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}
