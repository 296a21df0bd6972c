//! Small messages ride in the database log.
//!
//! A delivery of at most [`INLINE_LIMIT`] bytes writes its message file without syncing it and
//! puts a copy of the bytes (a *body*) into the `bodies` tree, in the same transaction as its
//! records: the one flush that makes the records durable makes the bytes durable too, and the
//! client's 250 waits for no file or directory sync. Later — when deliveries pause, or every
//! half second under load — the [`Checkpointer`] makes the files durable, many at a time, and
//! removes their bodies. This is a database's write-ahead log and checkpoint, for mail: one
//! device flush per delivery instead of three (log, file, directory) on the way to the 250.
//!
//! Readers never see a body: the file is there from the start (in the page cache until it is
//! synced). What a crash can leave — a body whose file is missing, short or holds anything —
//! is repaired at start by [`settle`]: each file still referred to is written again from its
//! body and synced. A copy of a message (IMAP COPY links the file) syncs the file first, so the
//! new name never refers to bytes only a body holds.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::db::record::{self, Message};
use crate::db::signal::Signal;
use crate::db::{Db, keys};
use crate::error::{Result, StoreError};
use crate::files::Files;

/// Deliveries up to this size (prepended fields included) ride in the database log. sled
/// splits a leaf only past 16 items and writes a node over about 128 KiB as a blob file of its
/// own (which each flush must then sync: measured, 24 KiB bodies made the 250's wait two to
/// three times longer at p90); 17 bodies of 6 KiB stay well under. Plain text mail fits; larger
/// messages take the file path, synced while their records are written.
pub const INLINE_LIMIT: usize = 6 * 1024;
/// How long deliveries must pause before a checkpoint starts.
const IDLE: Duration = Duration::from_millis(20);
/// The longest a body waits for its checkpoint while deliveries go on.
const MAX_WAIT: Duration = Duration::from_millis(500);

/// A message's bytes held in the database until its file is durable.
pub use crate::db::record::Body;

impl Db {
    /// Every body not yet checkpointed: (file id, body).
    pub fn bodies(&self) -> Result<Vec<(u64, Body)>> {
        let mut out = Vec::new();
        for e in self.bodies.iter() {
            let (k, v) = e?;
            out.push((keys::u64_of("bodies", &k)?, record::decode("bodies", &v)?));
        }
        Ok(out)
    }

    /// Whether record (`mailbox`, `uid`) still exists and refers to file `id`.
    fn refers(&self, mailbox: u64, uid: u32, id: u64) -> Result<bool> {
        Ok(match self.messages.get(keys::message(mailbox, uid))? {
            Some(v) => record::decode::<Message>("messages", &v)?.file == id,
            None => false,
        })
    }

    fn forget_bodies(&self, ids: &[u64]) -> Result<()> {
        let mut batch = sled::Batch::default();
        for id in ids {
            batch.remove(&id.to_be_bytes());
        }
        self.bodies.apply_batch(batch)?;
        Ok(())
    }
}

/// Makes file `id` durable now if its bytes are still only durable as a body (before a second
/// name is linked to it).
pub fn make_durable(db: &Db, files: &Files, id: u64) -> Result<()> {
    if db.bodies.contains_key(id.to_be_bytes())? {
        let path = files.path(id);
        std::fs::File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(|e| file_err(&path, e))?;
        crate::files::sync_dir(path.parent().unwrap_or(files.root()))?;
        db.forget_bodies(&[id])?;
    }
    Ok(())
}

/// Writes file `id` from `bytes` again: into a new file, synced, renamed over the old name
/// (a reader of the old file keeps reading it whole; nothing is ever truncated in place), and
/// the directory synced. Every name has a body of its own, so hard links need no care.
fn rewrite(files: &Files, id: u64, bytes: &[u8]) -> Result<()> {
    let path = files.path(id);
    let dir = path.parent().map(PathBuf::from).unwrap_or_default();
    std::fs::create_dir_all(&dir).map_err(|e| file_err(&dir, e))?;
    let fresh = fresh_path(files, id);
    let written = (|| {
        let mut f = ipc::files::private()
            .create(true)
            .truncate(true)
            .open(&fresh)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        // Closed before the rename: Windows renames no open file.
        drop(f);
        std::fs::rename(&fresh, &path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&fresh);
        return Err(file_err(&path, e));
    }
    crate::files::sync_dir(&dir)?;
    if let Some(msg) = dir.parent() {
        crate::files::sync_dir(msg)?;
    }
    Ok(())
}

/// Where [`rewrite`] writes file `id` before renaming it into place (skipped by
/// [`Files::list`]). Only a body's file is ever rewritten, and the body outlives the rename,
/// so one a crash leaves behind has its body still there ([`settle`] removes it).
fn fresh_path(files: &Files, id: u64) -> PathBuf {
    files.path(id).with_file_name(format!(".{id:x}.new"))
}

/// At start, before anything is served: every body whose record still refers to its file gets
/// that file written again and synced (after a crash an unsynced file may be missing, short or
/// hold anything); the others (deliveries taken back, messages expunged) are dropped. Returns
/// how many files were written.
pub fn settle(db: &Db, files: &Files) -> Result<usize> {
    let bodies = db.bodies()?;
    let mut written = 0;
    for (id, body) in &bodies {
        let _ = std::fs::remove_file(fresh_path(files, *id));
        if db.refers(body.mailbox, body.uid, *id)? {
            rewrite(files, *id, &body.bytes)?;
            written += 1;
        }
    }
    if !bodies.is_empty() {
        db.forget_bodies(&bodies.iter().map(|(id, _)| *id).collect::<Vec<_>>())?;
        db.flush()?;
    }
    Ok(written)
}

/// Makes the files of every body durable and removes the bodies. Returns how many files were
/// made durable. With `trust_files` false (after a failed sync, whose pages the kernel may have
/// dropped) every file still referred to is written again from its body first.
pub fn checkpoint(db: &Db, files: &Files, trust_files: bool) -> Result<usize> {
    let bodies = db.bodies()?;
    if bodies.is_empty() {
        return Ok(0);
    }
    let mut synced = Vec::new();
    let mut dirs = BTreeSet::new();
    let mut done = Vec::with_capacity(bodies.len());
    for (id, body) in &bodies {
        let path = files.path(*id);
        let intact = trust_files
            && std::fs::metadata(&path).is_ok_and(|m| m.len() == body.bytes.len() as u64);
        if intact {
            synced.push((*id, path.clone(), body));
            if let Some(dir) = path.parent() {
                dirs.insert(dir.to_path_buf());
            }
        } else if db.refers(body.mailbox, body.uid, *id)? {
            if trust_files {
                tracing::warn!("message file {id} is not as delivered; writing it again");
            }
            rewrite(files, *id, &body.bytes)?;
        }
        // Otherwise the delivery was taken back or the message expunged: nothing to keep.
        done.push(*id);
    }
    // Each file and directory on its own. (One `syncfs` would need one device flush for them
    // all, but it also writes whatever else is dirty on the file system — measured here, a
    // build's output stalled deliveries for a third of a second.)
    for (id, path, body) in &synced {
        match std::fs::File::open(path).and_then(|f| f.sync_all()) {
            Ok(()) => {}
            // Expunged or moved since it was looked at (its record is gone): nothing to keep.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if db.refers(body.mailbox, body.uid, *id)? {
                    rewrite(files, *id, &body.bytes)?;
                }
            }
            Err(e) => return Err(file_err(path, e)),
        }
    }
    for dir in &dirs {
        crate::files::sync_dir(dir)?;
    }
    // Removing the bodies becomes durable with a later flush; a crash before that only makes
    // the start write these files once more.
    db.forget_bodies(&done)?;
    Ok(synced.len())
}

/// Runs checkpoints in a thread of its own: once deliveries have paused for [`IDLE`], or at
/// the latest [`MAX_WAIT`] after the first body it has not checkpointed. Dropping it makes a
/// last checkpoint and ends the thread (which holds the database open).
#[derive(Debug)]
pub struct Checkpointer {
    signal: Arc<Signal>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    pub fn start(db: Db, files: Files) -> std::io::Result<Checkpointer> {
        let signal = db.checkpoint.clone();
        let thread = std::thread::Builder::new()
            .name("checkpoint".into())
            .spawn(ipc::span::in_current_span(move || run(&db, &files)))?;
        Ok(Checkpointer {
            signal,
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.signal.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(db: &Db, files: &Files) {
    let signal: Arc<Signal> = db.checkpoint.clone();
    let mut seen = 0u64;
    let mut trust_files = true;
    loop {
        let (deliveries, stopping) = signal.wait_for_pause(seen, IDLE, MAX_WAIT);
        seen = deliveries;
        match checkpoint(db, files, trust_files) {
            Ok(_) => trust_files = true,
            Err(e) => {
                // The bodies stay; the next checkpoint writes the files again (or the start).
                tracing::error!("checkpoint of message files: {e}");
                trust_files = false;
                if !stopping {
                    std::thread::sleep(Duration::from_secs(1));
                    signal.poke();
                }
            }
        }
        if stopping {
            return;
        }
    }
}

fn file_err(path: &std::path::Path, source: std::io::Error) -> StoreError {
    StoreError::File {
        path: path.display().to_string(),
        source,
    }
}
