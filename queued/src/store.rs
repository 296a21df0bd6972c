//! The queue directory, opened only by queued (0700, its own user):
//! - `tmp/`: anonymous files (`O_TMPFILE`) handed to smtpd to write a message into;
//! - `msg/ID`: a queued message, copied out of its temporary file (so that the writer's
//!   descriptor can no longer change it), fsync'd, renamed into place;
//! - `env/ID`: its envelope and queue state, written atomically after the message.
//!
//! A message is queued once its envelope exists; at start, messages without an envelope
//! (a crash between the two steps) are removed.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use ipc::msg::queue::{Envelope, QueueEntry};
use serde::{Deserialize, Serialize};

/// The largest message queued (matches storaged's limit).
pub const MAX_MESSAGE: u64 = 100 * 1024 * 1024;

/// What `env/ID` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub envelope: Envelope,
    /// Written before the message file's bytes when it is sent.
    pub prepend: Vec<u8>,
    pub size: u64,
    pub queued_at: i64,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// Not to be sent until its submitter releases it (see `queue::Request::Enqueue`).
    pub held: bool,
}

/// `env/ID` as written before records had `held`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RecordBeforeHeld {
    envelope: Envelope,
    prepend: Vec<u8>,
    size: u64,
    queued_at: i64,
    attempts: u32,
    last_error: Option<String>,
}

#[derive(Debug)]
pub struct Queue {
    dir: PathBuf,
}

fn err(what: &str, path: &Path, e: impl std::fmt::Display) -> String {
    format!("{what} {}: {e}", path.display())
}

impl Queue {
    /// Opens (creating) the queue in `dir` and removes leftovers of interrupted work.
    pub fn open(dir: &Path) -> Result<Queue, String> {
        for sub in ["tmp", "msg", "env"] {
            let p = dir.join(sub);
            std::fs::create_dir_all(&p).map_err(|e| err("creating", &p, e))?;
        }
        let q = Queue {
            dir: dir.to_path_buf(),
        };
        // Envelopes half written, or left without their message by a failure in between.
        let env = dir.join("env");
        for entry in std::fs::read_dir(&env)
            .map_err(|e| err("reading", &env, e))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !dir.join("msg").join(&name).exists() {
                tracing::warn!("removing envelope {name}: its queueing was interrupted");
                let _ = std::fs::remove_file(entry.path());
            }
        }
        // Held messages whose submitter can no longer release them (its link is gone with the
        // previous instance): their clients were not told they were accepted.
        for id in q.ids()? {
            match q.record(id) {
                Ok(record) if record.held => {
                    tracing::warn!("removing held message {id}: it was never released");
                    q.remove(id)?;
                }
                Ok(_) => {}
                Err(e) => tracing::error!("{e}"),
            }
        }
        let msg = dir.join("msg");
        for entry in std::fs::read_dir(&msg)
            .map_err(|e| err("reading", &msg, e))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !dir.join("env").join(&name).exists() {
                tracing::warn!("removing {name}: its queueing was interrupted");
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(q)
    }

    /// An anonymous read-write file for one message.
    pub fn temp_file(&self) -> Result<File, String> {
        let tmp = self.dir.join("tmp");
        ipc::tmpfile::anonymous(&tmp)
            .map_err(|e| format!("temporary file in {}: {e}", tmp.display()))
    }

    /// Copies `src` into the queue as message `id` with `record`; durable on return.
    pub fn enqueue(&self, id: u64, src: &mut File, record: &mut Record) -> Result<(), String> {
        let size = src.metadata().map_err(|e| e.to_string())?.len();
        if size > MAX_MESSAGE {
            return Err(format!(
                "a message of {size} octets is larger than {MAX_MESSAGE}"
            ));
        }
        record.size = size + record.prepend.len() as u64;
        let msg_dir = self.dir.join("msg");
        let tmp = msg_dir.join(format!(".{id}"));
        let result = (|| {
            let mut out = ipc::files::private()
                .create_new(true)
                .open(&tmp)
                .map_err(|e| err("creating", &tmp, e))?;
            src.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
            let copied = std::io::copy(&mut src.take(size), &mut out)
                .map_err(|e| err("copying into", &tmp, e))?;
            if copied != size {
                return Err(format!(
                    "the message shrank while being copied ({copied} of {size})"
                ));
            }
            out.sync_all().map_err(|e| err("syncing", &tmp, e))?;
            // Closed before the rename: Windows renames no open file.
            drop(out);
            std::fs::rename(&tmp, msg_dir.join(id.to_string()))
                .map_err(|e| err("renaming", &tmp, e))?;
            sync_dir(&msg_dir)?;
            self.write_record(id, record)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
            let _ = std::fs::remove_file(msg_dir.join(id.to_string()));
            let env = self.dir.join("env");
            let _ = std::fs::remove_file(env.join(format!(".{id}")));
            let _ = std::fs::remove_file(env.join(id.to_string()));
        }
        result
    }

    fn write_record(&self, id: u64, record: &Record) -> Result<(), String> {
        let env_dir = self.dir.join("env");
        let bytes = ipc::codec::encode_unbounded(record).map_err(|e| e.to_string())?;
        write_atomic(
            &env_dir.join(format!(".{id}")),
            &env_dir.join(id.to_string()),
            &bytes,
        )
    }

    /// The record of message `id` (also as written before records knew `held`).
    pub fn record(&self, id: u64) -> Result<Record, String> {
        let path = self.dir.join("env").join(id.to_string());
        let bytes = std::fs::read(&path).map_err(|e| err("reading", &path, e))?;
        match ipc::codec::decode_unbounded::<Record>(&bytes) {
            Ok(record) => Ok(record),
            Err(e) => match ipc::codec::decode_unbounded::<RecordBeforeHeld>(&bytes) {
                Ok(old) => Ok(Record {
                    envelope: old.envelope,
                    prepend: old.prepend,
                    size: old.size,
                    queued_at: old.queued_at,
                    attempts: old.attempts,
                    last_error: old.last_error,
                    held: false,
                }),
                Err(_) => Err(err("decoding", &path, e)),
            },
        }
    }

    /// Releases held message `id`; durable on return.
    pub fn release(&self, id: u64) -> Result<(), String> {
        let mut record = self.record(id)?;
        record.held = false;
        self.write_record(id, &record)
    }

    /// Removes message `id`: its envelope first (from then on it is not queued), then its
    /// bytes.
    pub fn remove(&self, id: u64) -> Result<(), String> {
        let env_dir = self.dir.join("env");
        let env = env_dir.join(id.to_string());
        std::fs::remove_file(&env).map_err(|e| err("removing", &env, e))?;
        sync_dir(&env_dir)?;
        let msg = self.dir.join("msg").join(id.to_string());
        std::fs::remove_file(&msg).map_err(|e| err("removing", &msg, e))
    }

    /// The ids of every queued message.
    fn ids(&self) -> Result<Vec<u64>, String> {
        let env_dir = self.dir.join("env");
        Ok(std::fs::read_dir(&env_dir)
            .map_err(|e| err("reading", &env_dir, e))?
            .flatten()
            .filter_map(|e| e.file_name().to_string_lossy().parse::<u64>().ok())
            .collect())
    }

    /// Every queued message, oldest first.
    pub fn list(&self) -> Result<Vec<QueueEntry>, String> {
        let mut out = Vec::new();
        for id in self.ids()? {
            let record = self.record(id)?;
            out.push(QueueEntry {
                id: ipc::msg::queue::QueueId(id),
                envelope: record.envelope,
                size: record.size,
                queued_at: record.queued_at,
                attempts: record.attempts,
                last_error: record.last_error,
                held: record.held,
            });
        }
        out.sort_by_key(|e| (e.queued_at, e.id));
        Ok(out)
    }

    /// The largest message id in use (ids continue after it).
    pub fn max_id(&self) -> u64 {
        std::fs::read_dir(self.dir.join("env"))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().to_string_lossy().parse::<u64>().ok())
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0)
    }
}

/// Writes `bytes` to `path` through `tmp` in the same directory: written, synced, renamed
/// into place, the directory synced. Durable on return; a crash leaves the old file or the
/// new one, never a mix.
pub fn write_atomic(tmp: &Path, path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut f = ipc::files::private()
        .create(true)
        .truncate(true)
        .open(tmp)
        .map_err(|e| err("creating", tmp, e))?;
    f.write_all(bytes).map_err(|e| err("writing", tmp, e))?;
    f.sync_all().map_err(|e| err("syncing", tmp, e))?;
    // Closed before the rename: Windows renames no open file.
    drop(f);
    std::fs::rename(tmp, path).map_err(|e| err("renaming", tmp, e))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn sync_dir(dir: &Path) -> Result<(), String> {
    ipc::files::sync_dir(dir).map_err(|e| err("syncing", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        Envelope {
            from: "alice@example.org".into(),
            recipients: vec!["bob@example.net".into()],
            account: "alice".into(),
            smtputf8: false,
            eight_bit: true,
            requiretls: false,
        }
    }

    #[test]
    fn enqueues_durably_lists_and_sweeps_interrupted_work() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path()).unwrap();
        let mut tmp = q.temp_file().unwrap();
        tmp.write_all(b"Subject: hi\r\n\r\nbody\r\n").unwrap();
        let mut record = Record {
            envelope: envelope(),
            prepend: b"DKIM-Signature: x\r\n".to_vec(),
            size: 0,
            queued_at: 5,
            attempts: 0,
            last_error: None,
            held: false,
        };
        q.enqueue(7, &mut tmp, &mut record).unwrap();
        // The writer's descriptor no longer reaches the queued copy.
        tmp.write_all(b"tampered").unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("msg/7")).unwrap(),
            b"Subject: hi\r\n\r\nbody\r\n"
        );
        let list = q.list().unwrap();
        assert_eq!((list.len(), list[0].id.0, list[0].size), (1, 7, 21 + 19));
        assert_eq!(q.max_id(), 7);
        // A message without its envelope (crash in between) is swept at the next open.
        std::fs::write(dir.path().join("msg/9"), b"x").unwrap();
        std::fs::write(dir.path().join("msg/.10"), b"x").unwrap();
        std::fs::write(dir.path().join("env/11"), b"x").unwrap();
        std::fs::write(dir.path().join("env/.12"), b"x").unwrap();
        let q = Queue::open(dir.path()).unwrap();
        assert!(!dir.path().join("msg/9").exists() && !dir.path().join("msg/.10").exists());
        assert!(!dir.path().join("env/11").exists() && !dir.path().join("env/.12").exists());
        assert_eq!(q.list().unwrap().len(), 1);
    }

    #[test]
    fn held_messages_are_released_or_removed_and_never_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path()).unwrap();
        for id in [1, 2, 3] {
            let mut tmp = q.temp_file().unwrap();
            tmp.write_all(b"Subject: hi\r\n\r\nbody\r\n").unwrap();
            let mut record = Record {
                envelope: envelope(),
                prepend: Vec::new(),
                size: 0,
                queued_at: id as i64,
                attempts: 0,
                last_error: None,
                held: true,
            };
            q.enqueue(id, &mut tmp, &mut record).unwrap();
        }
        q.release(1).unwrap();
        assert!(!q.record(1).unwrap().held);
        q.remove(2).unwrap();
        assert!(!dir.path().join("msg/2").exists() && !dir.path().join("env/2").exists());
        assert!(q.record(3).unwrap().held);
        // A record written before records had `held` still reads (as not held).
        let old = RecordBeforeHeld {
            envelope: envelope(),
            prepend: Vec::new(),
            size: 21,
            queued_at: 9,
            attempts: 0,
            last_error: None,
        };
        std::fs::write(dir.path().join("msg/4"), b"Subject: hi\r\n\r\nbody\r\n").unwrap();
        std::fs::write(
            dir.path().join("env/4"),
            ipc::codec::encode_unbounded(&old).unwrap(),
        )
        .unwrap();
        assert!(!q.record(4).unwrap().held);
        // 3 was never released: gone at the next start; 1 and 4 stay.
        let q = Queue::open(dir.path()).unwrap();
        let ids: Vec<u64> = q.list().unwrap().iter().map(|e| e.id.0).collect();
        assert_eq!(ids, [1, 4]);
        assert!(!dir.path().join("msg/3").exists());
    }
}
