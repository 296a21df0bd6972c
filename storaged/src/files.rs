//! Message files: one immutable file per mailbox entry, under `msg/<shard>/<id>`, written only
//! by storaged; temporary files (IMAP uploads, deliveries too large for memory) are anonymous
//! (`O_TMPFILE`) in `tmp/`.
//!
//! A stored file is complete before the database refers to it. It is durable (file and
//! directory synced) before the reference is — or the reference is made durable together with
//! a way back: a pending mark (`deliver::deliver_durably`: a file a crash lost takes its record
//! back) or the message's bytes in the database (`inline`: the file is written again). So a
//! crash can leave an unreferenced file behind (found by `verifydata`), never a reference to a
//! missing or partial file once storaged has started.

use ipc::sync::lock;
use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Result, StoreError};

/// Bytes of a message's beginning kept in memory while storing it, for parsing its header.
pub const HEAD_LIMIT: usize = 256 * 1024;

/// The message file area under storaged's directory.
#[derive(Debug, Clone)]
pub struct Files {
    root: PathBuf,
    msg: PathBuf,
    tmp: PathBuf,
    /// Shard directories known to be durable in `msg/`.
    synced: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<PathBuf>>>,
}

impl Files {
    /// Uses (creating if needed) `msg/` and `tmp/` under `root`.
    pub fn open(root: &Path) -> Result<Files> {
        let files = Files {
            root: root.to_path_buf(),
            synced: Default::default(),
            msg: root.join("msg"),
            tmp: root.join("tmp"),
        };
        for dir in [&files.msg, &files.tmp] {
            std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e))?;
        }
        Ok(files)
    }

    /// The directory everything lives under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where message file `id` lives.
    pub fn path(&self, id: u64) -> PathBuf {
        self.msg
            .join(format!("{:x}", id >> 12))
            .join(format!("{id:x}"))
    }

    /// A new anonymous file for one delivery, readable and writable.
    pub fn temp_file(&self) -> Result<File> {
        ipc::tmpfile::anonymous(&self.tmp).map_err(|e| file_err(&self.tmp, e))
    }

    /// Copies the first `size` bytes of `src` into file `ids[0]`, links `ids[1..]` to it, and
    /// makes all of it durable. Returns the first [`HEAD_LIMIT`] bytes for parsing.
    pub fn store(&self, src: &File, size: u64, ids: &[u64]) -> Result<Vec<u8>> {
        self.store_with(src, size, ids, &[])
    }

    /// Like [`Files::store`], with `prepend` written before the source's bytes.
    pub fn store_with(
        &self,
        src: &File,
        size: u64,
        ids: &[u64],
        prepend: &[u8],
    ) -> Result<Vec<u8>> {
        let (head, unsynced) = self.store_unsynced(src, size, ids, prepend)?;
        unsynced.sync()?;
        Ok(head)
    }

    /// Like [`Files::store_with`], returning before anything is synced: the caller does other
    /// work while [`Unsynced::sync`] runs, and must not let anything refer to the files before
    /// it returned. On error nothing is left behind.
    pub fn store_unsynced(
        &self,
        src: &File,
        size: u64,
        ids: &[u64],
        prepend: &[u8],
    ) -> Result<(Vec<u8>, Unsynced)> {
        self.store_inner(Source::File(src, size), ids, prepend)
    }

    /// Writes `whole` as file `ids[0]` and links `ids[1..]` to it, returning before anything
    /// is synced (as [`Files::store_unsynced`]). On error nothing is left behind.
    pub fn store_bytes_unsynced(&self, whole: &[u8], ids: &[u64]) -> Result<Unsynced> {
        self.store_inner(Source::Bytes(whole), ids, &[])
            .map(|(_, unsynced)| unsynced)
    }

    /// Removes files just made for `ids` (nothing refers to them yet).
    pub fn remove_new(&self, ids: &[u64]) {
        for id in ids {
            let _ = std::fs::remove_file(self.path(*id));
        }
    }

    /// Writes the files (see [`Files::store_unsynced`]); on error removes what it made.
    fn store_inner(
        &self,
        src: Source<'_>,
        ids: &[u64],
        prepend: &[u8],
    ) -> Result<(Vec<u8>, Unsynced)> {
        let result = self.write_new(src, ids, prepend);
        if result.is_err() {
            self.remove_new(ids);
        }
        result
    }

    fn write_new(
        &self,
        src: Source<'_>,
        ids: &[u64],
        prepend: &[u8],
    ) -> Result<(Vec<u8>, Unsynced)> {
        let Some((&first, rest)) = ids.split_first() else {
            return Ok((Vec::new(), Unsynced::default()));
        };
        let path = self.path(first);
        let mut dirs = BTreeSet::new();
        self.ensure_shard(&path, &mut dirs)?;
        let mut dst = ipc::files::private()
            .create_new(true)
            .open(&path)
            .map_err(|e| file_err(&path, e))?;
        let head = match src {
            Source::File(src, size) => {
                dst.write_all(prepend).map_err(|e| file_err(&path, e))?;
                let copied = copy_range(src, &mut dst, size).map_err(|e| file_err(&path, e))?;
                let mut head = prepend[..prepend.len().min(HEAD_LIMIT)].to_vec();
                head.extend_from_slice(&copied[..copied.len().min(HEAD_LIMIT - head.len())]);
                head
            }
            Source::Bytes(bytes) => {
                dst.write_all(prepend)
                    .and_then(|()| dst.write_all(bytes))
                    .map_err(|e| file_err(&path, e))?;
                Vec::new()
            }
        };
        for id in rest {
            let link = self.path(*id);
            self.ensure_shard(&link, &mut dirs)?;
            std::fs::hard_link(&path, &link).map_err(|e| file_err(&link, e))?;
        }
        Ok((
            head,
            Unsynced {
                file: Some((path, dst)),
                dirs,
            },
        ))
    }

    /// Links existing message file `from` as new file `to` (a copy to another mailbox) and
    /// makes the new entry durable.
    pub fn link(&self, from: u64, to: u64) -> Result<()> {
        let mut dirs = BTreeSet::new();
        let link = self.path(to);
        self.ensure_shard(&link, &mut dirs)?;
        std::fs::hard_link(self.path(from), &link).map_err(|e| file_err(&link, e))?;
        for dir in dirs {
            sync_dir(&dir)?;
        }
        Ok(())
    }

    /// The bytes of message file `id` if it is at most `limit` long (for parsing it once).
    pub fn read_small(&self, id: u64, limit: u64) -> Result<Option<Vec<u8>>> {
        use std::io::Read;
        let path = self.path(id);
        let mut f = File::open(&path).map_err(|e| file_err(&path, e))?;
        let len = f.metadata().map_err(|e| file_err(&path, e))?.len();
        if len > limit {
            return Ok(None);
        }
        let mut bytes = Vec::with_capacity(len as usize);
        f.read_to_end(&mut bytes).map_err(|e| file_err(&path, e))?;
        Ok(Some(bytes))
    }

    /// Opens message file `id` for reading.
    pub fn open_read(&self, id: u64) -> Result<File> {
        let path = self.path(id);
        File::open(&path).map_err(|e| file_err(&path, e))
    }

    /// Removes message file `id` (open descriptors keep working).
    pub fn remove(&self, id: u64) -> Result<()> {
        let path = self.path(id);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(file_err(&path, e)),
        }
    }

    /// Every message file present, with its size.
    pub fn list(&self) -> Result<Vec<(u64, u64)>> {
        let mut out = Vec::new();
        for shard in std::fs::read_dir(&self.msg).map_err(|e| file_err(&self.msg, e))? {
            let shard = shard.map_err(|e| file_err(&self.msg, e))?;
            for file in std::fs::read_dir(shard.path()).map_err(|e| file_err(&shard.path(), e))? {
                let file = file.map_err(|e| file_err(&shard.path(), e))?;
                let name = file.file_name();
                // A file being written again from the database, or one a crash left half
                // written (removed by `inline::settle` at start).
                if name.to_string_lossy().starts_with('.') {
                    continue;
                }
                let id = u64::from_str_radix(&name.to_string_lossy(), 16).map_err(|_| {
                    StoreError::Invalid {
                        what: "message file name",
                        why: file.path().display().to_string(),
                    }
                })?;
                let size = file
                    .metadata()
                    .map_err(|e| file_err(&file.path(), e))?
                    .len();
                out.push((id, size));
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Creates the shard directory of `path` if needed (syncing its parent), and remembers it
    /// for a sync after the new entries are in.
    fn ensure_shard(&self, path: &Path, dirs: &mut BTreeSet<PathBuf>) -> Result<()> {
        let Some(shard) = path.parent() else {
            return Ok(());
        };
        // A shard is durable once `msg/` was synced after its creation. Another delivery may
        // have created it and not synced yet: anyone who has not seen it synced syncs itself.
        let synced = lock(&self.synced).contains(shard);
        if !synced {
            match std::fs::create_dir(shard) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(file_err(shard, e)),
            }
            sync_dir(&self.msg)?;
            lock(&self.synced).insert(shard.to_path_buf());
        }
        dirs.insert(shard.to_path_buf());
        Ok(())
    }
}

/// Copies bytes `0..size` of `src` by offset (the writer may share its file offset) and returns
/// the first [`HEAD_LIMIT`] of them.
fn copy_range(src: &File, dst: &mut File, size: u64) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity((size as usize).min(HEAD_LIMIT));
    let mut buf = vec![0u8; 64 * 1024];
    let mut offset = 0u64;
    while offset < size {
        let want = ((size - offset) as usize).min(buf.len());
        let n = read_at(src, &mut buf[..want], offset)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("source ended at {offset} of {size} bytes"),
            ));
        }
        dst.write_all(&buf[..n])?;
        let keep = n.min(HEAD_LIMIT - head.len().min(HEAD_LIMIT));
        head.extend_from_slice(&buf[..keep]);
        offset += n as u64;
    }
    Ok(head)
}

/// Reads from `file` at `offset`: without touching its file offset on Unix; on Windows the
/// read moves it, which is harmless here since the writer is done before a copy starts.
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        std::os::windows::fs::FileExt::seek_read(file, buf, offset)
    }
}

/// fsyncs a directory, making the entries created in it durable.
/// Message files written, not yet durable.
#[derive(Debug, Default)]
pub struct Unsynced {
    file: Option<(PathBuf, File)>,
    dirs: BTreeSet<PathBuf>,
}

impl Unsynced {
    /// Makes the file's bytes and its directory entries durable: the file and the directories
    /// are synced at once (on a journaling file system their commits can coincide).
    pub fn sync(self) -> Result<()> {
        let Some((path, file)) = self.file else {
            return Ok(());
        };
        let dirs = || self.dirs.iter().try_for_each(|d| sync_dir(d));
        std::thread::scope(|s| {
            // One after the other if no thread can be had.
            let Ok(spawned) = std::thread::Builder::new().spawn_scoped(s, dirs) else {
                return file
                    .sync_all()
                    .map_err(|e| file_err(&path, e))
                    .and_then(|()| dirs());
            };
            let synced = file.sync_all().map_err(|e| file_err(&path, e));
            let dirs = spawned
                .join()
                .unwrap_or_else(|_| Err(file_err(&path, std::io::Error::other("sync thread"))));
            synced.and(dirs)
        })
    }
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    ipc::files::sync_dir(dir).map_err(|e| file_err(dir, e))
}

fn file_err(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::File {
        path: path.display().to_string(),
        source,
    }
}

/// The bytes of a message to deliver.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// The first `size` bytes of a file.
    File(&'a File, u64),
    /// The whole message, in memory.
    Bytes(&'a [u8]),
}

impl Source<'_> {
    pub fn len(&self) -> u64 {
        match self {
            Source::File(_, size) => *size,
            Source::Bytes(b) => b.len() as u64,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
