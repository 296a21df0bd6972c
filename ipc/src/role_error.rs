//! Why a role stopped: [`RoleError`], the error of every role's entry point and of the runtime
//! around it. Each variant names what failed and keeps the error that made it fail as its
//! `source`, so that the line the supervisor logs ([`RoleError::chain`]) reads down to the cause.

use std::error::Error;

use crate::grant::GrantError;
use crate::topology::Role;
use crate::transport::ChannelError;

/// A role's failure: at start, on its control channel, or in its own work.
#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    /// What the supervisor handed over does not fit the role's grant: a link to a role it may
    /// not call, or the settings of another role.
    #[error(transparent)]
    Grant(#[from] GrantError),
    /// The supervisor refused the role's hello (another role, protocol version or build).
    #[error("start refused: {0}")]
    Refused(String),
    /// The test hook `debug.fail_at_start`: the role fails before `Ready` on purpose.
    #[error("failing at start as configured (debug.fail_at_start)")]
    FailAtStart,
    /// A file, directory or socket the role needs could not be used.
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The control channel to the supervisor, or a link to a peer, failed.
    #[error("{what}")]
    Link {
        what: String,
        #[source]
        source: ChannelError,
    },
    /// The supervisor closed the control channel: the role's life is over.
    #[error("the supervisor closed the control channel; exiting")]
    SupervisorGone,
    /// The role's task, or a blocking job it waited for, ended without a result (cancelled).
    #[error("{what}")]
    Task {
        what: String,
        #[source]
        source: tokio::task::JoinError,
    },
    /// The role's own work failed; the source is the role crate's error, with its causes.
    #[error("{role}: {what}")]
    Role {
        role: Role,
        what: String,
        #[source]
        source: Box<dyn Error + Send + Sync + 'static>,
    },
}

impl RoleError {
    /// `what` failed on a file, directory or socket.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> RoleError {
        RoleError::Io {
            what: what.into(),
            source,
        }
    }

    /// `what` failed on the control channel or a peer link.
    pub fn link(what: impl Into<String>, source: impl Into<ChannelError>) -> RoleError {
        RoleError::Link {
            what: what.into(),
            source: source.into(),
        }
    }

    /// `what` never finished: its task was cancelled.
    pub fn task(what: impl Into<String>, source: tokio::task::JoinError) -> RoleError {
        RoleError::Task {
            what: what.into(),
            source,
        }
    }

    /// `role`'s own work `what` failed with its crate's error `source`.
    pub fn role(
        role: Role,
        what: impl Into<String>,
        source: impl Into<Box<dyn Error + Send + Sync + 'static>>,
    ) -> RoleError {
        RoleError::Role {
            role,
            what: what.into(),
            source: source.into(),
        }
    }

    /// The outcome of `role`'s blocking job `what` (start-up work on the blocking pool): its
    /// value, or why it failed, cancelled or with the role's own error.
    pub fn job<T, E>(
        role: Role,
        what: &str,
        joined: Result<Result<T, E>, tokio::task::JoinError>,
    ) -> Result<T, RoleError>
    where
        E: Into<Box<dyn Error + Send + Sync + 'static>>,
    {
        joined
            .map_err(|e| RoleError::task(what, e))?
            .map_err(|e| RoleError::role(role, what, e))
    }

    /// The error and each of its causes, `: `-separated, for one log line. A cause whose text
    /// its parent already ends with (a `{source}` in the parent's message) is not repeated.
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut cause = Error::source(self);
        while let Some(e) = cause {
            let line = e.to_string();
            if !text.ends_with(&line) {
                text.push_str(": ");
                text.push_str(&line);
            }
            cause = e.source();
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("opening the credential store")]
    struct Open(#[source] std::io::Error);

    #[test]
    fn the_log_line_reads_down_to_the_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "permission denied");
        let e = RoleError::role(Role::Authd, "starting", Open(io));
        assert_eq!(
            e.chain(),
            "authd: starting: opening the credential store: permission denied"
        );
        let source = Error::source(&e).expect("the crate's error is kept");
        assert!(source.downcast_ref::<Open>().is_some());
    }

    #[test]
    fn a_cause_already_in_its_parents_message_is_not_repeated() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot open /x: {source}")]
        struct Verbose {
            source: std::io::Error,
        }
        let io = std::io::Error::other("disk on fire");
        let e = RoleError::role(Role::Queued, "opening the queue", Verbose { source: io });
        assert_eq!(
            e.chain(),
            "queued: opening the queue: cannot open /x: disk on fire"
        );
    }

    #[test]
    fn io_and_link_errors_keep_their_source() {
        let e = RoleError::io("opening the data directory", std::io::Error::other("gone"));
        assert_eq!(e.chain(), "opening the data directory: gone");
        let e = RoleError::link("sending Ready", ChannelError::Closed);
        assert_eq!(e.chain(), "sending Ready: channel closed");
    }
}
