//! smtpd — SMTP: inbound mail on port 25 (MX) and submission on 465/587.
//!
//! Runs as: its own system user (`_moxd_smtpd`), sandboxed (DESIGN.md §4).
//! May reach: its listeners; DNS; keyd, authd, storaged and queued over their links.
//! Must never: open any file; hold keys or passwords.
//! Peers: keyd, authd, storaged, queued (smtpd calls them).
//!
//! Status: the tree, sandbox, listeners and links are in place; the protocol itself arrives with
//! issue 5. Until then every connection is told so and closed: plain listeners get the protocol's
//! "service not available" reply; implicit-TLS listeners say it inside TLS, after a handshake
//! whose signature keyd makes (the role never holds the private key).

pub mod address;
pub mod command;
pub mod data;
pub mod reply;
pub mod session;
#[cfg(test)]
mod session_tests;

use ipc::config::ListenerKind;
use ipc::{Context, RoleError, RoleSpec};

/// How the runtime starts and confines smtpd.
pub const SPEC: RoleSpec = RoleSpec {
    role: ipc::Role::Smtpd,
    syscalls: sandbox::Syscalls {
        files: false,
        net_server: true,
        net_client: true,
    },
    tcp_connect: &[53],
    writes_files: false,
    run: |ctx| Box::pin(run(ctx)),
};

/// smtpd's entry point.
pub async fn run(ctx: Context) -> Result<(), RoleError> {
    keyclient::serve_unavailable(ctx, unavailable).await
}

/// The honest answer on a listener this role does not serve yet.
fn unavailable(host: &str, kind: ListenerKind) -> Option<String> {
    match kind {
        ListenerKind::Smtp | ListenerKind::Submission | ListenerKind::Submissions => Some(format!(
            "421 4.3.2 {host} moxd: SMTP service not implemented yet, try again later\r\n"
        )),
        _ => None,
    }
}
