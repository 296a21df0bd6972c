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
        ListenerKind::Smtp | ListenerKind::Submission => Some(format!(
            "421 4.3.2 {host} moxd: SMTP service not implemented yet, try again later\r\n"
        )),
        ListenerKind::Submissions => Some(format!(
            "421 4.3.2 {host} moxd: SMTP service not implemented yet, try again later\r\n"
        )),
        _ => None,
    }
}
