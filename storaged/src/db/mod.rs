//! The database: one sled instance, opened only by storaged, only through this module.
//!
//! Trees and keys:
//! - `meta`: `schema` → u32 version; `uidvalidity` → next UIDVALIDITY (u32).
//! - `domains`: domain → [`record::Domain`].
//! - `accounts`: account name → [`record::Account`].
//! - `addresses`: normalized address (`local@domain`, or `@domain` for a catch-all) → account.
//! - `mailboxes`: mailbox id (u64 BE) → [`record::Mailbox`].
//! - `mailbox_names`: account NUL name → mailbox id.
//! - `messages`: mailbox id (u64 BE) ‖ uid (u32 BE) → [`record::Message`].
//! - `tombstones`: mailbox id ‖ uid → modseq (u64 BE) of the expunge, for QRESYNC.
//! - `feed`: account NUL modseq (u64 BE) → [`record::FeedRecord`]: changes not yet announced,
//!   written in the transaction that makes the change, removed once published.
//! - `pending`: file id → `deliver::PendingFile`: files synced while their records were written.
//! - `bodies`: file id → [`record::Body`]: small messages' bytes, durable here until
//!   their files are (the checkpointer writes the files out and drops them).
//!
//! Every change that spans trees runs in one sled transaction; [`Db::flush`] makes everything
//! committed so far durable (fsync) and is called before any change is acknowledged. A flush
//! that fails, or a write that finds sled's log unwritable, sets the [`failure::Failure`]
//! latch: nothing is made durable after that, and storaged exits to recover.

pub mod failure;
pub mod keys;
pub mod record;
pub mod signal;
pub mod tx;

use ipc::sync::lock;
use std::path::Path;

use crate::error::{Result, StoreError};

pub(crate) type BlobSyncs = (
    std::time::SystemTime,
    std::collections::HashMap<std::ffi::OsString, std::time::SystemTime>,
);

/// How many ids [`Db::new_id`] takes from the counter at once.
const ID_BLOCK: u64 = 64;

/// The schema this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// The open database and its trees.
#[derive(Debug, Clone)]
pub struct Db {
    db: sled::Db,
    /// sled's log file, opened a second time: sled's `flush` ends with `sync_file_range` on
    /// Linux, which neither flushes the device's write cache nor the file's size, so a flush
    /// is followed by an `fdatasync` of this (fsync works per inode, not per descriptor).
    log: std::sync::Arc<std::fs::File>,
    /// sled's directory of items too large for its log (over about 128 KiB), which it writes
    /// as files of their own and never syncs: synced by [`Db::flush`] when new ones appeared.
    blobs: std::path::PathBuf,
    /// When the previous blob sync started, and the blob files synced since shortly before
    /// it, with the modification time they had then.
    pub(crate) synced_blobs: std::sync::Arc<std::sync::Mutex<BlobSyncs>>,
    pub(crate) meta: sled::Tree,
    pub(crate) domains: sled::Tree,
    pub(crate) accounts: sled::Tree,
    pub(crate) addresses: sled::Tree,
    pub(crate) mailboxes: sled::Tree,
    pub(crate) mailbox_names: sled::Tree,
    pub(crate) messages: sled::Tree,
    pub(crate) tombstones: sled::Tree,
    pub(crate) feed: sled::Tree,
    /// Message files whose records were written while the files were being synced (see
    /// `deliver::deliver_durably`): file id → `deliver::PendingFile`.
    pub(crate) pending: sled::Tree,
    pub(crate) bodies: sled::Tree,
    /// Ids taken from the counter and not yet handed out: (next, end).
    ids: std::sync::Arc<std::sync::Mutex<(u64, u64)>>,
    /// Wakes the checkpointer when bodies were added.
    pub(crate) checkpoint: std::sync::Arc<signal::Signal>,
    /// Set by the first failed flush or log write (see [`failure`]).
    pub failure: std::sync::Arc<failure::Failure>,
}

impl Db {
    /// Opens (creating if needed) the database in `dir`, checking its schema version.
    pub fn open(dir: &Path) -> Result<Db> {
        // The previous instance may still be letting go of the lock (its last tasks in
        // single-process mode, or a process still exiting): wait for it a little.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let db = loop {
            match sled::Config::new()
                .path(dir)
                .mode(sled::Mode::HighThroughput)
                .open()
            {
                // sled wraps the EWOULDBLOCK of its file lock in an error of its own kind.
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => break other?,
            }
        };
        let tree = |name: &str| db.open_tree(name);
        let this = Db {
            meta: tree("meta")?,
            domains: tree("domains")?,
            accounts: tree("accounts")?,
            addresses: tree("addresses")?,
            mailboxes: tree("mailboxes")?,
            mailbox_names: tree("mailbox_names")?,
            messages: tree("messages")?,
            tombstones: tree("tombstones")?,
            feed: tree("feed")?,
            pending: tree("pending")?,
            bodies: tree("bodies")?,
            ids: Default::default(),
            checkpoint: Default::default(),
            failure: Default::default(),
            blobs: dir.join("blobs"),
            synced_blobs: std::sync::Arc::new(std::sync::Mutex::new((
                std::time::UNIX_EPOCH,
                Default::default(),
            ))),
            log: std::sync::Arc::new(std::fs::File::open(dir.join("db")).map_err(|e| {
                StoreError::File {
                    path: dir.join("db").display().to_string(),
                    source: e,
                }
            })?),
            db,
        };
        match this.meta.get("schema")? {
            None => {
                this.meta.insert("schema", &SCHEMA_VERSION.to_be_bytes())?;
                this.meta.insert("uidvalidity", &1u32.to_be_bytes())?;
                this.flush()?;
            }
            Some(v) => {
                let found = keys::u32_of("meta", &v)?;
                if found != SCHEMA_VERSION {
                    return Err(StoreError::Schema {
                        found,
                        known: SCHEMA_VERSION,
                    });
                }
            }
        }
        Ok(this)
    }

    /// Syncs sled's blob files changed since shortly before the previous flush, and their
    /// directory, if the directory itself changed in that time (one `stat` when there is
    /// nothing to do).
    fn sync_recent_blobs(&self) -> Result<()> {
        let err = |path: &Path, e: std::io::Error| StoreError::File {
            path: path.display().to_string(),
            source: e,
        };
        let mut state = lock(&self.synced_blobs);
        let (since, synced) = &mut *state;
        let started = std::time::SystemTime::now();
        // A margin for coarse timestamps and clock steps.
        let cutoff = since
            .checked_sub(std::time::Duration::from_secs(5))
            .unwrap_or(std::time::UNIX_EPOCH);
        let changed = |m: &std::fs::Metadata| m.modified().map_or(true, |t| t >= cutoff);
        match std::fs::metadata(&self.blobs) {
            Ok(m) if changed(&m) => {}
            _ => {
                *since = started;
                return Ok(());
            }
        }
        let mut any = false;
        let entries = std::fs::read_dir(&self.blobs).map_err(|e| err(&self.blobs, e))?;
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            let mtime = meta.modified().unwrap_or(started);
            if !changed(&meta) || synced.get(&entry.file_name()) == Some(&mtime) {
                continue;
            }
            let path = entry.path();
            std::fs::File::open(&path)
                .and_then(|f| f.sync_data())
                .map_err(|e| err(&path, e))?;
            synced.insert(entry.file_name(), mtime);
            any = true;
        }
        synced.retain(|_, t| *t >= cutoff);
        if any {
            std::fs::File::open(&self.blobs)
                .and_then(|d| d.sync_all())
                .map_err(|e| err(&self.blobs, e))?;
        }
        *since = started;
        Ok(())
    }

    /// Makes every committed change durable. Once a flush has failed, every later one fails
    /// too (see [`failure`]).
    pub fn flush(&self) -> Result<()> {
        if let Some(why) = self.failure.why() {
            return Err(StoreError::Failed(why.to_string()));
        }
        let flushed = (|| {
            self.db.flush()?;
            self.log.sync_data().map_err(|e| StoreError::File {
                path: "database log".into(),
                source: e,
            })?;
            self.sync_recent_blobs()
        })();
        if let Err(e) = &flushed {
            self.failure.trip(&e.to_string());
        }
        flushed
    }

    /// Sets the failure latch if `e` says sled could not read or write its files: sled keeps
    /// such an error and fails every later write, so the database is as good as failed.
    pub fn notice(&self, e: &StoreError) {
        if let StoreError::DbIo(io) = e {
            self.failure.trip(&format!("database: {io}"));
        }
    }

    /// A new unique id (mailboxes, message files). The counter lives in the `meta` tree, so a
    /// backup carries it; after a crash or a restore, [`Db::ensure_ids_above`] moves it past
    /// every id in use before anything new is made. Ids are taken from the counter
    /// [`ID_BLOCK`] at a time and handed out from memory (a write less per delivery); the
    /// counter is always past every id handed out, and the ones a restart leaves unused are
    /// simply never used.
    pub fn new_id(&self) -> Result<u64> {
        let mut block = lock(&self.ids);
        if block.0 >= block.1 {
            let previous = self.meta.fetch_and_update("next_id", |old| {
                let n = old
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map_or(1, u64::from_be_bytes);
                Some(n.saturating_add(ID_BLOCK).to_be_bytes().to_vec())
            })?;
            let first = previous
                .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
                .map_or(1, u64::from_be_bytes);
            *block = (first, first.saturating_add(ID_BLOCK));
        }
        let id = block.0;
        block.0 += 1;
        Ok(id)
    }

    /// Makes every later [`Db::new_id`] larger than `used`.
    pub fn ensure_ids_above(&self, used: u64) -> Result<()> {
        let mut block = lock(&self.ids);
        if block.0 <= used {
            // The ids in hand are not all above `used`: take a new block.
            *block = (0, 0);
        }
        self.meta.update_and_fetch("next_id", |old| {
            let n = old
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(1, u64::from_be_bytes);
            Some(n.max(used.saturating_add(1)).to_be_bytes().to_vec())
        })?;
        Ok(())
    }

    /// Every message record of a mailbox, in UID order.
    pub fn message_records(&self, mailbox: u64) -> Result<Vec<(u32, record::Message)>> {
        self.messages
            .scan_prefix(keys::mailbox(mailbox))
            .map(|entry| {
                let (key, value) = entry?;
                let (_, uid) = keys::split_message("messages", &key)?;
                Ok((uid, record::decode("messages", &value)?))
            })
            .collect()
    }

    /// Writes a consistent copy of the whole database to `dir` (which must not exist).
    pub fn export_to(&self, dir: &Path) -> Result<()> {
        let copy = sled::Config::new().path(dir).create_new(true).open()?;
        copy.import(self.db.export());
        copy.flush()?;
        Ok(())
    }
}

/// Current time in seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
