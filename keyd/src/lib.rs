//! keyd — the only holder of private keys: TLS and DKIM signing, ACME account keys.
//!
//! Runs as: its own system user (`_moxd_keyd`), sandboxed (DESIGN.md §4).
//! May reach: its key directory.
//! Must never: open network sockets or see message bodies; export a private key.
//! Peers: smtpd, imapd, httpd, queued (they call keyd).
//!
//! Status: the tree, sandbox and links are in place; keyd defines no requests yet (issue 4), so it
//! answers pings on its links and nothing else.

pub mod keys;
pub mod shape;

use ipc::msg::key::KeyService;
use ipc::{Context, RoleError, RoleSpec};

/// How the runtime starts and confines keyd.
pub const SPEC: RoleSpec = RoleSpec {
    role: ipc::Role::Keyd,
    syscalls: sandbox::Syscalls {
        files: true,
        net_server: false,
        net_client: false,
    },
    tcp_connect: &[],
    writes_files: true,
    run: |ctx| Box::pin(run(ctx)),
};

/// keyd's entry point.
pub async fn run(ctx: Context) -> Result<(), RoleError> {
    tracing::info!("ready: links from peers carry pings only until issue 4");
    ipc::serve::accept_links::<KeyService, _, _, _>(
        ctx.incoming,
        ctx.shutdown,
        ctx.tasks,
        |_, incoming| async move {
            // No request of this service exists yet, so none can arrive.
            match incoming.request {}
        },
        |_| {},
    )
    .await;
    Ok(())
}
