//! authd — the only checker of passwords: SASL, brute-force throttling, session tickets.
//!
//! Runs as: its own system user (`_moxd_authd`), sandboxed (DESIGN.md §4).
//! May reach: its credential directory.
//! Must never: hold keys or mail; log a password.
//! Peers of authd: calls storaged; called by submission, imapd, httpd.
//! (storaged resolves login names to accounts and holds the session tickets authd registers.)
//!
//! Status: SASL (PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-1/256 and -PLUS) over IPC, with throttling
//! (per client address, account and link) and session tickets registered at storaged;
//! passwords set through moxctl. Submission relays its AUTH here; imapd and httpd have their
//! links but do not serve their protocols yet.

pub mod credentials;
pub mod error;
pub mod sasl;
pub mod store;
pub mod throttle;
pub mod ticket;

mod crypto;
mod md5;
mod persist;
pub mod service;

use ipc::msg::auth::AuthService;
use ipc::{Context, RoleError, RoleSpec, grant};
use tracing::Instrument;

/// How the runtime starts and confines authd.
pub const SPEC: RoleSpec = RoleSpec {
    role: ipc::Role::Authd,
    syscalls: sandbox::Syscalls {
        files: true,
        net_server: false,
        net_client: false,
    },
    tcp_connect: &[],
    file_size: ipc::FileSize::Unlimited,
    run: |plumbing| ipc::context::start(plumbing, run),
};

/// authd's entry point.
pub async fn run(ctx: Context<grant::Authd>) -> Result<(), RoleError> {
    let dir = ctx.config.dir.clone();
    let open_dir = dir.clone();
    let limits = ctx.config.auth.clone();
    let opened = ipc::span::spawn_blocking(move || {
        Ok::<_, error::StoreError>((
            store::CredentialStore::open(&open_dir)?,
            throttle::Throttle::load(&open_dir)?.with_limits(limits),
        ))
    })
    .await;
    let (creds, throttle) =
        RoleError::job(ipc::Role::Authd, "opening the credential store", opened)?;
    let auth = service::Auth::new(
        ctx.config.hostname.clone(),
        dir,
        creds,
        throttle,
        ctx.peers.storaged.clone(),
    );
    tracing::info!("credential store open");
    let (admin_auth, expiry_auth) = (auth.clone(), auth.clone());
    let shutdown = ctx.shutdown.clone();
    ctx.tasks.spawn(
        async move {
            let mut expiry = tokio::time::interval(std::time::Duration::from_secs(60));
            let mut save = tokio::time::interval(std::time::Duration::from_secs(2));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        expiry_auth.save_throttle().await;
                        return;
                    }
                    _ = expiry.tick() => expiry_auth.expire_tickets().await,
                    _ = save.tick() => expiry_auth.save_throttle().await,
                }
            }
        }
        .in_current_span(),
    );
    ctx.tasks.spawn(
        ipc::serve::serve_admin(ctx.admin, ctx.shutdown.clone(), move |call| {
            admin_auth.clone().admin(call)
        })
        .in_current_span(),
    );
    let closing = auth.clone();
    ipc::serve::accept_links::<AuthService, _, _, _>(
        ctx.incoming,
        ctx.shutdown,
        ctx.tasks.clone(),
        ctx.reporter,
        move |peer, incoming| auth.clone().handle(peer, incoming),
        // A network role whose link closed has lost every connection: its tickets end.
        move |peer| closing.end_sessions(peer),
    )
    .await;
    Ok(())
}
