//! smtpd — SMTP: inbound mail on port 25 (MX) and submission on 465/587, one crate run as two
//! processes with different rights ([`SPEC`], [`SUBMISSION_SPEC`]).
//!
//! Runs as: its own system users (`_moxd_smtpd`, `_moxd_submission`), sandboxed (DESIGN.md §4).
//! May reach: its listeners; DNS.
//! Must never: open any file; hold keys or passwords.
//! Peers of smtpd: calls keyd, storaged; called by none.
//! Peers of submission: calls keyd, storaged, authd, queued; called by none.
//! (The MX process has no link to authd or queued, and keyd refuses it DKIM signatures: mail
//! from the internet is neither authenticated, relayed nor signed here.)
//!
//! Status: MX delivery to local recipients, with SPF, DKIM, DMARC and iprev checked and
//! recorded in Authentication-Results (a DMARC `reject` refuses, `quarantine` files into Junk);
//! submission with AUTH (relayed to authd) over STARTTLS or implicit TLS (keys in keyd), the
//! sender's and From: addresses checked, mail for other domains DKIM-signed through keyd and
//! queued durably in queued.

pub mod address;
mod ahead;
mod auth;
pub mod command;
mod conn;
pub mod data;
mod header;
mod inbound;
mod io;
mod links;
mod receive;
pub mod reply;
pub mod session;
#[cfg(test)]
mod session_tests;
mod submission;

use std::sync::Arc;

use ipc::config::ListenerKind;
use ipc::config::SmtpdConfig;
use ipc::{Context, Grant, RoleError, RoleSpec, grant};
use tracing::Instrument;

use crate::links::Links;
use crate::session::{Config, Mode};

/// How the runtime starts and confines smtpd.
pub const SPEC: RoleSpec = RoleSpec {
    role: ipc::Role::Smtpd,
    syscalls: sandbox::Syscalls {
        files: false,
        net_server: true,
        net_client: true,
    },
    tcp_connect: &[53],
    // Messages are written into the pipes storaged hands out (no file limit applies to a pipe)
    // and, on the submission side, into the temporary files queued hands out (passed fds:
    // smtpd can open no file itself). The file limit is what bounds those: a compromised
    // submission cannot grow one past the largest message, and queued counts each open one at
    // that size against the link's `[storage] max_open_per_peer`.
    file_size: ipc::FileSize::Message,
    run: |plumbing| ipc::context::start(plumbing, run),
};

/// The submission instance: the same code, its own process, user and rights (DESIGN.md §8).
pub const SUBMISSION_SPEC: RoleSpec = RoleSpec {
    role: ipc::Role::Submission,
    run: |plumbing| ipc::context::start(plumbing, run_submission),
    ..SPEC
};

/// The MX process's entry point.
pub async fn run(ctx: Context<grant::Smtpd>) -> Result<(), RoleError> {
    let links = Links::mx(ctx.peers.clone());
    serve(ctx, links).await
}

/// The submission process's entry point.
pub async fn run_submission(ctx: Context<grant::Submission>) -> Result<(), RoleError> {
    let links = Links::submission(ctx.peers.clone());
    serve(ctx, links).await
}

/// Either process: TLS from keyd, then one accept loop per listener.
async fn serve<G: Grant<Config = SmtpdConfig>>(
    ctx: Context<G>,
    links: Links,
) -> Result<(), RoleError> {
    let tls = match keyclient::server_config(&links.keyd).await {
        Ok(config) => Some(config),
        Err(e) => {
            tracing::error!("no TLS (STARTTLS and port 465 unavailable): {}", e.chain());
            None
        }
    };
    let settings = ctx.config.smtp.clone();
    let shared = Arc::new(conn::Shared {
        settings: settings.clone(),
        tls: tls.clone(),
        peers: links,
        open: Default::default(),
        ids: ipc::span::Ids::new(),
        known_local: Default::default(),
        checker: if settings.localserve {
            None
        } else {
            match inbound::Checker::new(&ctx.config.dns, &ctx.config.hostname) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::error!("no SPF/DKIM/DMARC checks: {e}");
                    None
                }
            }
        },
    });
    for listener in ctx.listeners {
        let kind = listener.spec.kind;
        let mode = match kind {
            ListenerKind::Smtp => Mode::Mx,
            ListenerKind::Submission | ListenerKind::Submissions => Mode::Submission,
            other => {
                tracing::error!("smtpd was given a {} listener; ignoring it", other.name());
                continue;
            }
        };
        let implicit = kind.implicit_tls();
        let config = Arc::new(Config {
            hostname: ctx.config.hostname.clone(),
            mode,
            max_size: settings.max_message_size,
            max_recipients: settings.max_recipients as usize,
            max_errors: settings.max_errors,
            starttls: tls.is_some() && !implicit,
        });
        let std_listener = listener.socket;
        let listening = |e| RoleError::io(format!("listening on {}", kind.name()), e);
        std_listener.set_nonblocking(true).map_err(listening)?;
        let socket = tokio::net::TcpListener::from_std(std_listener).map_err(listening)?;
        let (shutdown, tasks, shared) = (ctx.shutdown.clone(), ctx.tasks.clone(), shared.clone());
        ctx.tasks.spawn(async move {
            loop {
                let (tcp, peer) = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    accepted = socket.accept() => match accepted {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!("accepting on {}: {e}", kind.name());
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let span = ipc::span::connection(peer, shared.ids.next());
                let (shared, config, shutdown) = (shared.clone(), config.clone(), shutdown.clone());
                tasks.spawn(async move {
                    tokio::select! {
                        _ = conn::serve(shared, config, tcp, peer, implicit) => {}
                        // At shutdown a connection in the middle of a message loses it, unacknowledged.
                        _ = async { shutdown.cancelled().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {}
                    }
                }.instrument(span));
            }
        }.in_current_span());
    }
    ctx.shutdown.cancelled().await;
    Ok(())
}

/// How long connections may go on after shutdown begins.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
