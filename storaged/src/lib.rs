//! storaged — the only opener of the database and the message files.
//!
//! Runs as: its own system user (`_moxd_storaged`), sandboxed (DESIGN.md §4).
//! May reach: its data directory.
//! Must never: open network sockets; hold keys or passwords.
//! Peers of storaged: calls none; called by keyd, authd, queued, smtpd, submission, imapd, httpd.
//! (Each link may ask only its own questions, [`service`]: deliveries from smtpd, submission
//! and queued; login names and tickets from authd; ticket-scoped mailbox sessions from imapd
//! and httpd; from submission, which account an address belongs to; from keyd, whether a
//! submission session owns an address; from queued, which account a submission session is.)
//!
//! Status: the database (sled), message files, deliveries through pipes with group flush (small
//! messages in the database log until a checkpoint, [`inline`]), administration of
//! domains/accounts/addresses, `verifydata`, the mailbox API for imapd/httpd (scoped by session
//! tickets), the change feed and backups work.

pub mod accounts;
pub mod backup;
pub mod db;
pub mod deliver;
pub mod envelope;
pub mod error;
pub mod feed;
pub mod files;
mod identity;
pub mod inline;
pub mod mailboxes;
pub mod messages;
mod ops;
pub mod search;
pub mod service;
mod session;
pub mod spool;
pub mod structure;
pub mod verify;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_mailbox;

use ipc::msg::store::StoreService;
use ipc::{Context, RoleError, RoleSpec, grant};
use tracing::Instrument;

/// How the runtime starts and confines storaged.
pub const SPEC: RoleSpec = RoleSpec {
    role: ipc::Role::Storaged,
    syscalls: sandbox::Syscalls {
        files: true,
        net_server: false,
        net_client: false,
    },
    tcp_connect: &[],
    file_size: ipc::FileSize::Unlimited,
    run: |plumbing| ipc::context::start(plumbing, run),
};

/// storaged's entry point.
pub async fn run(ctx: Context<grant::Storaged>) -> Result<(), RoleError> {
    let dir = ctx.config.dir.clone();
    let opened = ipc::span::spawn_blocking(move || {
        let db = db::Db::open(&dir.join("db"))?;
        let files = files::Files::open(&dir)?;
        // A backup interrupted by a crash leaves its staging directory (hard links) behind.
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with("backup-") {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let taken_back = verify::settle_pending(&db, &files)?;
        if taken_back > 0 {
            tracing::warn!("took back {taken_back} deliveries a crash interrupted");
        }
        let rewritten = inline::settle(&db, &files)?;
        if rewritten > 0 {
            tracing::info!("wrote {rewritten} message files from the database after a crash");
        }
        // After a crash or a restore the id counter may lag: move it past every id in use.
        db.ensure_ids_above(verify::max_used_id(&db, &files)?)?;
        let removed = verify::sweep_orphans(&db, &files, db.new_id()?)?;
        if removed > 0 {
            tracing::warn!("removed {removed} message files of deliveries interrupted by a crash");
        }
        Ok::<_, error::StoreError>((db, files))
    })
    .await;
    let (db, files) = RoleError::job(ipc::Role::Storaged, "opening the store", opened)?;
    // Until this returns: its drop makes the last checkpoint.
    let _checkpointer = inline::Checkpointer::start(db.clone(), files.clone())
        .map_err(|e| RoleError::io("starting the checkpoint thread", e))?;
    let feed = std::sync::Arc::new(feed::Feed::default());
    let flusher = deliver::Flusher::start(db.clone(), feed.clone());
    let storage = ctx.config.storage.clone();
    let space = ipc::space::FreeSpace::open(files.root(), storage.min_free)
        .map_err(|e| RoleError::io("opening the data directory to watch its free space", e))?;
    let store = service::Store::new(
        db,
        files,
        flusher,
        feed,
        std::sync::Arc::new(space),
        storage.max_open_bytes_per_peer,
    );
    tracing::info!("store open");
    let failure = store.db.failure.clone();
    let admin_store = store.clone();
    ctx.tasks.spawn(
        ipc::serve::serve_admin(ctx.admin, ctx.shutdown.clone(), move |call| {
            admin_store.clone().admin(call)
        })
        .in_current_span(),
    );
    let closing = store.clone();
    let (shutdown, tasks) = (ctx.shutdown.clone(), ctx.tasks.clone());
    tokio::select! {
        () = ipc::serve::accept_links::<StoreService, _, _, _>(
            ctx.incoming,
            ctx.shutdown,
            ctx.tasks.clone(),
            ctx.reporter,
            move |peer, incoming| store.clone().handle(peer, incoming),
            // A network role whose link closed has lost every connection: its sessions end.
            move |peer| closing.end_sessions(peer),
        ) => Ok(()),
        why = failure.tripped() => Err(exit_failed(&why, shutdown, tasks).await),
    }
}

/// How long requests in flight when the database failed get to be answered before storaged
/// exits. Those waiting for a flush are answered at once (with a failure: the latch is set);
/// this is for the rest, which cannot succeed either.
const DRAIN_AFTER_FAILURE: std::time::Duration = std::time::Duration::from_secs(2);

/// The orderly end after the database failed (see [`db::failure`]): no new request is read,
/// those in flight are answered (every delivery that needed durability with a temporary
/// failure, never an acknowledgement), and the error returned makes the process exit, so that
/// the supervisor starts a new storaged and sled recovers from its log what was made durable.
async fn exit_failed(
    why: &str,
    shutdown: tokio_util::sync::CancellationToken,
    tasks: tokio_util::task::TaskTracker,
) -> RoleError {
    tracing::error!(
        "exiting so that the supervisor restarts storaged: the database failed ({why}); \
         what was acknowledged is in its log, and the next start recovers it"
    );
    shutdown.cancel();
    tasks.close();
    if tokio::time::timeout(DRAIN_AFTER_FAILURE, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still in flight after {DRAIN_AFTER_FAILURE:?}: their peers see the link close"
        );
    }
    RoleError::role(ipc::Role::Storaged, "the database failed", why.to_string())
}
