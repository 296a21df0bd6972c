//! httpd — HTTP(S): ACME http-01, MTA-STS, autoconfig, admin and account API, metrics.
//!
//! Runs as: its own system user (`_moxd_httpd`), sandboxed (DESIGN.md §4).
//! May reach: its listeners; outbound 443 to the ACME server; DNS; keyd, authd, storaged, queued over their links.
//! Must never: hold keys or passwords.
//! Peers: keyd, authd, storaged, queued (httpd calls them).
//!
//! Status: the tree, sandbox, listeners and links are in place; the protocol itself arrives with
//! the HTTP issue. Until then every connection is told so and closed: plain listeners get the protocol's
//! "service not available" reply; implicit-TLS listeners say it inside TLS, after a handshake
//! whose signature keyd makes (the role never holds the private key).

use ipc::config::ListenerKind;
use ipc::{Context, RoleError, RoleSpec};

/// How the runtime starts and confines httpd.
pub const SPEC: RoleSpec = RoleSpec {
    role: ipc::Role::Httpd,
    syscalls: sandbox::Syscalls {
        files: false,
        net_server: true,
        net_client: true,
    },
    tcp_connect: &[443, 53],
    writes_files: false,
    run: |ctx| Box::pin(run(ctx)),
};

/// httpd's entry point.
pub async fn run(ctx: Context) -> Result<(), RoleError> {
    let hostname = ctx.config.hostname.clone();
    HOSTNAME.get_or_init(|| hostname);
    // Implicit-TLS listeners complete the handshake through keyd first.
    let (tls, plain): (Vec<_>, Vec<_>) = ctx
        .listeners
        .into_iter()
        .partition(|l| l.spec.kind.implicit_tls());
    keyclient::spawn_tls_unavailable(
        ctx.peers.keyd.clone(),
        tls,
        ctx.shutdown.clone(),
        ctx.tasks.clone(),
        unavailable,
    );
    ipc::serve::answer_unavailable(plain, ctx.shutdown.clone(), ctx.tasks, unavailable)?;
    ctx.shutdown.cancelled().await;
    Ok(())
}

static HOSTNAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The honest answer on a listener this role does not serve yet.
fn unavailable(kind: ListenerKind) -> Option<String> {
    let host = HOSTNAME.get().map_or("moxd", String::as_str);
    match kind {
        ListenerKind::Http => Some(format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{}",
            body(host).len(),
            body(host)
        )),
        ListenerKind::Https => Some(format!(
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
