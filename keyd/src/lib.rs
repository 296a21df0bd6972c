//! keyd — the only holder of private keys: TLS and DKIM signing, ACME account keys.
//!
//! Runs as: its own system user (`_moxd_keyd`), sandboxed (DESIGN.md §4).
//! May reach: its key directory.
//! Must never: open network sockets or see message bodies; export a private key.
//! Peers: smtpd, imapd, httpd, queued (they call keyd).
//!
//! Status: the key store, certificates (self-signed when none is configured) and TLS signing
//! for the network roles work; DKIM signing, certificate files from the configuration, ACME and
//! the moxctl commands arrive with the rest of issue 4.

pub mod certs;
pub mod dkim;
pub mod keys;
pub mod service;
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
    let dir = ctx.dir()?;
    let hostname = ctx.config.hostname.clone();
    let open_dir = dir.clone();
    let (keys, certs) = tokio::task::spawn_blocking(move || {
        let mut keys = keys::KeyStore::open(&open_dir)?;
        let mut certs = certs::load(&open_dir, &keys)?;
        if certs.is_empty() {
            certs::self_signed(&open_dir, &mut keys, &[hostname])?;
            certs = certs::load(&open_dir, &keys)?;
        }
        Ok::<_, keys::KeyError>((keys, certs))
    })
    .await??;
    tracing::info!(
        "{} keys, {} certificates",
        keys.names().count(),
        certs.len()
    );
    let keyd = service::Keyd::new(dir, keys, certs);
    let admin_keyd = keyd.clone();
    ctx.tasks.spawn(ipc::serve::serve_admin(
        ctx.admin,
        ctx.shutdown.clone(),
        move |call| admin_keyd.clone().admin(call),
    ));
    ipc::serve::accept_links::<KeyService, _, _, _>(
        ctx.incoming,
        ctx.shutdown,
        ctx.tasks.clone(),
        move |peer, incoming| keyd.clone().handle(peer, incoming),
        |_| {},
    )
    .await;
    Ok(())
}
