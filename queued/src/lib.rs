//! queued — the outbound queue: MX lookup, TLS policy, retries, DSNs.
//!
//! Runs as: its own system user (`_moxd_queued`), sandboxed (DESIGN.md §4).
//! May reach: its queue directory; outbound TCP to ports 25, 465, 587, 443 and DNS.
//! Must never: hold keys or passwords; open the mailbox store.
//! Peers: smtpd, httpd (they call queued); keyd, storaged (queued calls them).
//!
//! Status: the tree, sandbox and links are in place; queued defines no requests yet (issue 5), so it
//! answers pings on its links and nothing else.

use ipc::msg::queue::QueueService;
use ipc::{Context, RoleError, RoleSpec};

/// How the runtime starts and confines queued.
pub const SPEC: RoleSpec = RoleSpec {
    role: ipc::Role::Queued,
    syscalls: sandbox::Syscalls {
        files: true,
        net_server: false,
        net_client: true,
    },
    tcp_connect: &[25, 465, 587, 443, 53],
    writes_files: true,
    run: |ctx| Box::pin(run(ctx)),
};

/// queued's entry point.
pub async fn run(ctx: Context) -> Result<(), RoleError> {
    tracing::info!("ready: links from peers carry pings only until issue 5");
    ipc::serve::accept_links::<QueueService, _, _, _>(
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
