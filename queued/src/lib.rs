//! queued — the outbound queue: MX lookup, TLS policy, retries, DSNs.
//!
//! Runs as: its own system user (`_moxd_queued`), sandboxed (DESIGN.md §4).
//! May reach: its queue directory; outbound TCP to ports 25, 465, 587, 443 and DNS.
//! Must never: hold keys or passwords; open the mailbox store.
//! Peers of queued: calls keyd, storaged; called by submission, httpd.
//! (storaged names the account of a submission's session ticket, whose sending limits a
//! message counts against; keyd is for signing DSNs, which are not sent yet; httpd's link is
//! refused every request until its queue API exists.)
//!
//! Status: messages submitted for other domains are queued durably (and listed by `moxctl
//! queue list`); sending them out (MX lookup, TLS policy, retries, DSNs) is not implemented yet.

pub mod limits;
pub mod service;
pub mod store;

use ipc::msg::queue::QueueService;
use ipc::{Context, RoleError, RoleSpec, grant};
use tracing::Instrument;

/// How the runtime starts and confines queued.
pub const SPEC: RoleSpec = RoleSpec {
    role: ipc::Role::Queued,
    syscalls: sandbox::Syscalls {
        files: true,
        net_server: false,
        net_client: true,
    },
    tcp_connect: &[25, 465, 587, 443, 53],
    file_size: ipc::FileSize::Unlimited,
    run: |plumbing| ipc::context::start(plumbing, run),
};

/// queued's entry point.
pub async fn run(ctx: Context<grant::Queued>) -> Result<(), RoleError> {
    let dir = ctx.config.dir.clone();
    let smtp = ctx.config.smtp.clone();
    let storage = ctx.config.storage.clone();
    let space = ipc::space::FreeSpace::open(&dir, storage.min_free)
        .map_err(|e| RoleError::io("opening the queue directory to watch its free space", e))?;
    let opened = ipc::span::spawn_blocking(move || {
        let queue = store::Queue::open(&dir)?;
        let limits = limits::Limits::open(
            &dir,
            smtp.max_messages_per_day,
            smtp.max_first_time_recipients_per_day,
        )?;
        Ok::<_, String>((queue, limits))
    })
    .await;
    let (queue, limits) = RoleError::job(ipc::Role::Queued, "opening the queue", opened)?;
    let queued = service::Queued::new(
        queue,
        limits,
        space,
        storage.max_open_bytes_per_peer,
        // What smtpd's RLIMIT_FSIZE lets it write into one file (ipc::FileSize::Message).
        ctx.config.smtp.message_file_limit(),
        ctx.peers.storaged.clone(),
    );
    tracing::info!("queue open; sending out is not implemented yet");
    let admin = queued.clone();
    ctx.tasks.spawn(
        ipc::serve::serve_admin(ctx.admin, ctx.shutdown.clone(), move |call| {
            admin.clone().admin(call)
        })
        .in_current_span(),
    );
    let (expiring, shutdown) = (queued.clone(), ctx.shutdown.clone());
    ctx.tasks.spawn(
        async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => expiring.expire_held(),
                }
            }
        }
        .in_current_span(),
    );
    let closing = queued.clone();
    ipc::serve::accept_links::<QueueService, _, _, _>(
        ctx.incoming,
        ctx.shutdown,
        ctx.tasks,
        ctx.reporter,
        move |peer, incoming| queued.clone().handle(peer, incoming),
        move |peer| closing.link_closed(peer),
    )
    .await;
    Ok(())
}
