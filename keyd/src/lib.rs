//! keyd — the only holder of private keys: TLS and DKIM signing (ACME account keys to come).
//!
//! Runs as: its own system user (`_moxd_keyd`), sandboxed (DESIGN.md §4).
//! May reach: its key directory.
//! Must never: open network sockets or see message bodies; export a private key.
//! Peers of keyd: calls storaged; called by queued, smtpd, submission, imapd, httpd.
//! (What a caller may ask depends on its link, [`service`]: TLS for the network roles, DKIM for
//! submission and queued only. keyd asks storaged one question: does a submission session own
//! the From: address it wants signed.)
//!
//! Status: the key store, certificates (files of the configuration, reloaded by `moxctl
//! reload`; self-signed when there are none), TLS and DKIM signing work (DKIM: keyd writes the
//! field, with `t=`, `x=` and no `l=`, for a From: address in the key's domain that the asking
//! session owns); ACME arrives with httpd.

pub mod certs;
pub mod dkim;
pub mod dkim_policy;
pub mod dkim_sign;
pub mod from_address;
pub mod keys;
pub mod lanes;
pub mod service;
pub mod shape;

use ipc::msg::key::KeyService;
use ipc::{Context, RoleError, RoleSpec, grant};
use tracing::Instrument;

/// How the runtime starts and confines keyd.
pub const SPEC: RoleSpec = RoleSpec {
    role: ipc::Role::Keyd,
    syscalls: sandbox::Syscalls {
        files: true,
        net_server: false,
        net_client: false,
    },
    tcp_connect: &[],
    file_size: ipc::FileSize::Unlimited,
    run: |plumbing| ipc::context::start(plumbing, run),
};

/// keyd's entry point.
pub async fn run(ctx: Context<grant::Keyd>) -> Result<(), RoleError> {
    let dir = ctx.config.dir.clone();
    let hostname = ctx.config.hostname.clone();
    let open_dir = dir.clone();
    let (files, fds) = (ctx.config.certificates.clone(), ctx.files);
    let self_name = hostname.clone();
    let opened = ipc::span::spawn_blocking(move || {
        // Certificate files of the configuration: read once from the supervisor's fds.
        // At start a bad file is skipped (and logged), so keyd never crash-loops on it; a
        // reload, by contrast, changes nothing unless every file is good.
        let from_files = certs::from_files_skipping_bad(&files, fds);
        let mut keys = keys::KeyStore::open(&open_dir)?;
        let certs = certs::serving(&open_dir, &mut keys, from_files, &self_name)?;
        Ok::<_, keys::KeyError>((keys, certs))
    })
    .await;
    let (keys, certs) = RoleError::job(ipc::Role::Keyd, "opening the keys", opened)?;
    tracing::info!(
        "{} keys, {} certificates",
        keys.names().count(),
        certs.len()
    );
    let dkim = dkim_policy::DkimPolicy::new(ctx.peers.storaged.clone(), &ctx.config.dkim);
    tracing::info!(
        "DKIM signatures valid for {} days",
        ctx.config.dkim.signature_validity_days
    );
    let keyd = service::Keyd::new(dir, hostname, keys, certs, dkim);
    let admin_keyd = keyd.clone();
    ctx.tasks.spawn(
        ipc::serve::serve_admin(ctx.admin, ctx.shutdown.clone(), move |call| {
            admin_keyd.clone().admin(call)
        })
        .in_current_span(),
    );
    ipc::serve::accept_links::<KeyService, _, _, _>(
        ctx.incoming,
        ctx.shutdown,
        ctx.tasks.clone(),
        ctx.reporter,
        move |peer, incoming| keyd.clone().handle(peer, incoming),
        |_| {},
    )
    .await;
    Ok(())
}
