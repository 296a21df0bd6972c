//! httpd — HTTP(S): ACME http-01, MTA-STS, autoconfig, admin and account API, metrics.
//!
//! Runs as: its own system user (`_moxd_httpd`), sandboxed (DESIGN.md §4).
//! May reach: its listeners; outbound 443 to the ACME server; DNS.
//! Must never: hold keys or passwords.
//! Peers of httpd: calls keyd, storaged, authd, queued; called by none.
//!
//! Status: the tree, sandbox, listeners and links are in place; the protocol itself arrives with
//! the HTTP issue, and of the links only keyd's is used so far (queued refuses httpd every
//! request until its queue API exists). Until then every connection is told so and closed:
//! plain listeners get the protocol's "service not available" reply; implicit-TLS listeners say
//! it inside TLS, after a handshake whose signature keyd makes (the role never holds the
//! private key).

use ipc::config::ListenerKind;
use ipc::{Context, RoleError, RoleSpec, grant};

/// How the runtime starts and confines httpd.
pub const SPEC: RoleSpec = RoleSpec {
    role: ipc::Role::Httpd,
    syscalls: sandbox::Syscalls {
        files: false,
        net_server: true,
        net_client: true,
    },
    tcp_connect: &[443, 53],
    file_size: ipc::FileSize::Nothing,
    run: |plumbing| ipc::context::start(plumbing, run),
};

/// httpd's entry point.
pub async fn run(ctx: Context<grant::Httpd>) -> Result<(), RoleError> {
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
        ListenerKind::Http | ListenerKind::Https => Some(format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{}",
            body(host).len(),
            body(host)
        )),
        _ => None,
    }
}

fn body(host: &str) -> String {
    format!("{host} moxd: HTTP service not implemented yet\n")
}
