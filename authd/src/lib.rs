//! authd — the only checker of passwords: SASL, brute-force throttling, session tickets.
//!
//! Runs as: its own system user (`_moxd_authd`), sandboxed (DESIGN.md §4).
//! May reach: its credential directory; storaged (to register session tickets).
//! Must never: hold keys or mail; log a password.
//! Peers: smtpd, imapd, httpd (they call authd); storaged (authd calls it).
//!
//! Status: the tree, sandbox and links are in place; authd defines no requests yet (issue 3), so it
//! answers pings on its links and nothing else. The sans-IO core is here as a library, not yet
//! wired to IPC: the credential store ([`store`], [`credentials`]), SASL state machines
//! ([`sasl`]), brute-force throttling ([`throttle`]) and session tickets ([`ticket`]).

pub mod credentials;
pub mod error;
pub mod sasl;
pub mod store;
pub mod throttle;
pub mod ticket;

mod crypto;
mod md5;
mod persist;

use ipc::msg::auth::AuthService;
use ipc::{Context, RoleError, RoleSpec};

/// How the runtime starts and confines authd.
pub const SPEC: RoleSpec = RoleSpec {
    role: ipc::Role::Authd,
    syscalls: sandbox::Syscalls {
        files: true,
        net_server: false,
        net_client: false,
    },
    tcp_connect: &[],
    writes_files: true,
    run: |ctx| Box::pin(run(ctx)),
};

/// authd's entry point.
pub async fn run(ctx: Context) -> Result<(), RoleError> {
    tracing::info!("ready: links from peers carry pings only until issue 3");
    ipc::serve::accept_links::<AuthService, _, _>(
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
