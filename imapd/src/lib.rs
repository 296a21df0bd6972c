//! imapd — IMAP on ports 143 and 993.
//!
//! Runs as: its own system user (`_moxd_imapd`), sandboxed (DESIGN.md §4).
//! May reach: its listeners.
//! Must never: open any file; hold keys or passwords.
//! Peers of imapd: calls keyd, storaged, authd; called by none.
//!
//! Status: the tree, sandbox, listeners and links are in place; the protocol itself arrives with
//! the IMAP issue, and of the links only keyd's is used so far. Until then every connection is
//! told so and closed: plain listeners get the protocol's "service not available" reply;
//! implicit-TLS listeners say it inside TLS, after a handshake whose signature keyd makes (the
//! role never holds the private key).

use ipc::config::ListenerKind;
use ipc::{Context, RoleError, RoleSpec, grant};

/// How the runtime starts and confines imapd.
pub const SPEC: RoleSpec = RoleSpec {
    role: ipc::Role::Imapd,
    syscalls: sandbox::Syscalls {
        files: false,
        net_server: true,
        net_client: false,
    },
    tcp_connect: &[],
    file_size: ipc::FileSize::Nothing,
    run: |plumbing| ipc::context::start(plumbing, run),
};

/// imapd's entry point.
pub async fn run(ctx: Context<grant::Imapd>) -> Result<(), RoleError> {
    keyclient::serve_unavailable(
        ctx.config.hostname,
        ctx.peers.keyd,
        ctx.listeners,
        ctx.shutdown,
        ctx.tasks,
        unavailable,
    )
    .await
}

/// The honest answer on a listener this role does not serve yet.
fn unavailable(host: &str, kind: ListenerKind) -> Option<String> {
    match kind {
        ListenerKind::Imap | ListenerKind::Imaps => Some(format!(
            "* BYE [UNAVAILABLE] {host} moxd: IMAP service not implemented yet\r\n"
        )),
        _ => None,
    }
}
