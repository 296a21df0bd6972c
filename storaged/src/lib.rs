//! storaged — the only opener of the database and the message files.
//!
//! Runs as: its own system user (`_moxd_storaged`), sandboxed (DESIGN.md §4).
//! May reach: its data directory.
//! Must never: open network sockets; hold keys or passwords.
//! Peers: smtpd, imapd, httpd, queued, authd (they call storaged).
//!
//! Status: the tree, sandbox and links are in place; storaged defines no requests yet (issue 3), so it
//! answers pings on its links and nothing else.

pub mod accounts;
pub mod db;
pub mod deliver;
pub mod envelope;
pub mod error;
pub mod files;
pub mod verify;

#[cfg(test)]
mod tests;

use ipc::msg::store::StoreService;
use ipc::{Context, RoleError, RoleSpec};

/// How the runtime starts and confines storaged.
pub const SPEC: RoleSpec = RoleSpec {
    role: ipc::Role::Storaged,
    syscalls: sandbox::Syscalls {
        files: true,
        net_server: false,
        net_client: false,
    },
    tcp_connect: &[],
    writes_files: true,
    run: |ctx| Box::pin(run(ctx)),
};

/// storaged's entry point.
pub async fn run(ctx: Context) -> Result<(), RoleError> {
    tracing::info!("ready: links from peers carry pings only until issue 3");
    ipc::serve::accept_links::<StoreService, _, _>(
        ctx.incoming,
        ctx.shutdown,
        ctx.tasks,
        |_, incoming| async move {
            // No request of this service exists yet, so none can arrive.
            match incoming.request {}
        },
    )
    .await;
    Ok(())
}
