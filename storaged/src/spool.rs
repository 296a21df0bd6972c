//! Deliveries that arrive through a pipe.
//!
//! smtpd writes a message into a pipe while its client sends it; storaged reads the other end
//! as the bytes come and keeps them in memory — or, past a per-delivery cap or a budget shared
//! by all open deliveries, in an anonymous file only storaged holds — until smtpd commits.
//! Compared with a temporary file both processes hold:
//! - nothing smtpd writes once it has committed can reach a stored message (it never held a
//!   descriptor of a file storaged keeps);
//! - an ordinary message is never read back from a file before it is stored, and no file is
//!   created and deleted per message (on an ext4 without a journal every inode allocation
//!   skips the inodes freed in the last minutes, so that churn grows costly under load).
//!
//! The writer ends a delivery by closing its end of the pipe; [`Pump::finish`] waits for that.

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::files::Files;

/// Bytes of one delivery kept in memory; a larger message goes to a file.
pub const MEMORY_PER_DELIVERY: u64 = 2 * 1024 * 1024;
/// Bytes all open deliveries keep in memory together.
pub const MEMORY_BUDGET: u64 = 64 * 1024 * 1024;
/// How long a commit waits for the writer to close its end after the last bytes.
const CLOSE_WAIT: Duration = Duration::from_secs(30);

/// The memory open deliveries may hold, shared by all of them.
#[derive(Debug)]
pub struct Budget {
    left: AtomicU64,
}

impl Budget {
    pub fn new(bytes: u64) -> Arc<Budget> {
        Arc::new(Budget {
            left: AtomicU64::new(bytes),
        })
    }

    /// Takes `n` bytes of the budget if they are there.
    fn take(self: &Arc<Self>, n: u64) -> Option<Reservation> {
        self.left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(n)
            })
            .ok()
            .map(|_| Reservation {
                budget: self.clone(),
                bytes: n,
            })
    }

    /// What is left (for tests).
    pub fn left(&self) -> u64 {
        self.left.load(Ordering::Acquire)
    }
}

/// Budget held by one delivery, given back when it is dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<Budget>,
    bytes: u64,
}

impl Reservation {
    fn grow(&mut self, n: u64) -> bool {
        match self.budget.take(n) {
            Some(more) => {
                self.bytes += more.bytes;
                std::mem::forget(more);
                true
            }
            None => false,
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.left.fetch_add(self.bytes, Ordering::AcqRel);
    }
}

/// A delivery's bytes once the writer has closed its end.
#[derive(Debug)]
pub enum Spooled {
    /// The whole message in memory (its budget is given back when this is dropped).
    Memory {
        bytes: Vec<u8>,
        _budget: Reservation,
    },
    /// The message in an anonymous file, `len` bytes.
    File(File, u64),
}

impl Spooled {
    pub fn len(&self) -> u64 {
        match self {
            Spooled::Memory { bytes, .. } => bytes.len() as u64,
            Spooled::File(_, len) => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads one delivery's pipe in the background. Dropping it stops the reading and frees what
/// was read.
#[derive(Debug)]
pub struct Pump {
    task: tokio::task::JoinHandle<Result<Spooled, String>>,
}

impl Drop for Pump {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Pump {
    /// Starts reading `read_end` (the read end of a pipe) in a task of the current runtime.
    /// At most `max` bytes are taken; more fail the delivery.
    pub fn start(
        read_end: OwnedFd,
        files: Files,
        budget: Arc<Budget>,
        max: u64,
    ) -> Result<Pump, String> {
        let rx = tokio::net::unix::pipe::Receiver::from_owned_fd(read_end)
            .map_err(|e| format!("delivery pipe: {e}"))?;
        Ok(Pump {
            task: tokio::spawn(read_all(rx, files, budget, max)),
        })
    }

    /// Waits until the writer has closed its end, and returns everything it wrote.
    pub async fn finish(mut self) -> Result<Spooled, String> {
        match tokio::time::timeout(CLOSE_WAIT, &mut self.task).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(format!("delivery pipe reader: {e}")),
            Err(_) => Err(format!(
                "the delivery's writer did not close its end within {CLOSE_WAIT:?}"
            )),
        }
    }
}

/// Where a delivery's bytes are while they arrive.
enum Sink {
    Memory(Vec<u8>, Reservation),
    File(Arc<File>, u64),
}

async fn read_all(
    mut rx: tokio::net::unix::pipe::Receiver,
    files: Files,
    budget: Arc<Budget>,
    max: u64,
) -> Result<Spooled, String> {
    const CHUNK: usize = 64 * 1024;
    // Nothing is reserved before the first bytes: a delivery opened ahead and never used
    // holds no memory.
    rx.readable().await.map_err(pipe_err)?;
    let mut sink = match budget.take(CHUNK as u64) {
        Some(r) => Sink::Memory(Vec::with_capacity(CHUNK), r),
        None => Sink::File(Arc::new(temp_file(&files)?), 0),
    };
    let mut buf = vec![0u8; CHUNK];
    loop {
        // Memory is read into directly; a file is written from `buf`.
        let n = match &mut sink {
            Sink::Memory(bytes, reservation) => {
                if bytes.capacity() - bytes.len() < CHUNK {
                    let more = bytes.capacity().max(CHUNK) as u64;
                    let room = bytes.len() as u64 + more <= MEMORY_PER_DELIVERY.max(CHUNK as u64)
                        && reservation.grow(more);
                    if room {
                        bytes.reserve_exact(more as usize);
                    } else {
                        let file = temp_file(&files)?;
                        let len = bytes.len() as u64;
                        let written = std::mem::take(bytes);
                        let file = Arc::new(file);
                        write_blocking(&file, written).await?;
                        sink = Sink::File(file, len);
                        continue;
                    }
                }
                let before = bytes.len();
                rx.read_buf(bytes).await.map_err(pipe_err)?;
                bytes.len() - before
            }
            Sink::File(file, len) => {
                let n = rx.read(&mut buf).await.map_err(pipe_err)?;
                if n > 0 {
                    write_blocking(file, buf[..n].to_vec()).await?;
                    *len += n as u64;
                }
                n
            }
        };
        let total = match &sink {
            Sink::Memory(bytes, _) => bytes.len() as u64,
            Sink::File(_, len) => *len,
        };
        if total > max {
            return Err(format!("the message is larger than {max} bytes"));
        }
        if n == 0 {
            return Ok(match sink {
                Sink::Memory(bytes, reservation) => Spooled::Memory {
                    bytes,
                    _budget: reservation,
                },
                Sink::File(file, len) => {
                    let file = Arc::try_unwrap(file)
                        .map_err(|_| "delivery file still in use".to_string())?;
                    Spooled::File(file, len)
                }
            });
        }
    }
}

fn temp_file(files: &Files) -> Result<File, String> {
    files.temp_file().map_err(|e| e.to_string())
}

/// Appends `bytes` to `file` off the async workers.
async fn write_blocking(file: &Arc<File>, bytes: Vec<u8>) -> Result<(), String> {
    let file = file.clone();
    tokio::task::spawn_blocking(move || (&*file).write_all(&bytes))
        .await
        .map_err(|e| format!("delivery file writer: {e}"))?
        .map_err(|e| format!("writing a delivery file: {e}"))
}

fn pipe_err(e: std::io::Error) -> String {
    format!("reading the delivery pipe: {e}")
}

/// A new pipe for one delivery: (read end, write end), both close-on-exec.
pub fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pump reading a new pipe (its write end returned), with a directory for spilled files.
    fn started(budget: &Arc<Budget>, max: u64) -> (Pump, OwnedFd, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let files = Files::open(dir.path()).unwrap();
        let (ours, theirs) = pipe().unwrap();
        let pump = Pump::start(ours, files, budget.clone(), max).unwrap();
        (pump, theirs, dir)
    }

    /// Writes `bytes` into a new pipe from another thread and pumps it.
    async fn pumped(bytes: Vec<u8>, budget: &Arc<Budget>, max: u64) -> Result<Spooled, String> {
        let (pump, theirs, _dir) = started(budget, max);
        let writer = std::thread::spawn(move || {
            // The reader may stop early (too large): a failed write is expected then.
            let _ = File::from(theirs).write_all(&bytes);
        });
        let spooled = pump.finish().await;
        writer.join().unwrap();
        spooled
    }

    fn content(spooled: &Spooled) -> Vec<u8> {
        match spooled {
            Spooled::Memory { bytes, .. } => bytes.clone(),
            Spooled::File(file, len) => {
                use std::os::unix::fs::FileExt;
                let mut out = vec![0; *len as usize];
                file.read_exact_at(&mut out, 0).unwrap();
                out
            }
        }
    }

    fn message(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[tokio::test]
    async fn a_small_message_stays_in_memory_and_gives_its_budget_back() {
        let budget = Budget::new(MEMORY_BUDGET);
        let msg = message(100_000);
        let spooled = pumped(msg.clone(), &budget, u64::MAX).await.unwrap();
        assert!(matches!(spooled, Spooled::Memory { .. }));
        assert_eq!(content(&spooled), msg);
        assert!(budget.left() < MEMORY_BUDGET);
        drop(spooled);
        assert_eq!(budget.left(), MEMORY_BUDGET);
    }

    #[tokio::test]
    async fn a_large_message_goes_to_a_file() {
        let budget = Budget::new(MEMORY_BUDGET);
        let msg = message(MEMORY_PER_DELIVERY as usize + 300_001);
        let spooled = pumped(msg.clone(), &budget, u64::MAX).await.unwrap();
        assert!(matches!(spooled, Spooled::File(..)));
        assert_eq!(spooled.len(), msg.len() as u64);
        assert_eq!(content(&spooled), msg);
        assert_eq!(budget.left(), MEMORY_BUDGET, "nothing kept in memory");
    }

    #[tokio::test]
    async fn with_the_budget_spent_even_a_small_message_goes_to_a_file() {
        let budget = Budget::new(1000);
        let msg = message(5000);
        let spooled = pumped(msg.clone(), &budget, u64::MAX).await.unwrap();
        assert!(matches!(spooled, Spooled::File(..)));
        assert_eq!(content(&spooled), msg);
        assert_eq!(budget.left(), 1000);
    }

    #[tokio::test]
    async fn an_empty_message_is_empty() {
        let budget = Budget::new(MEMORY_BUDGET);
        let spooled = pumped(Vec::new(), &budget, u64::MAX).await.unwrap();
        assert!(spooled.is_empty());
    }

    #[tokio::test]
    async fn more_than_the_limit_fails_and_frees_everything() {
        let budget = Budget::new(MEMORY_BUDGET);
        for len in [70_000, MEMORY_PER_DELIVERY as usize + 70_000] {
            let err = pumped(message(len), &budget, 65_536).await.unwrap_err();
            assert!(err.contains("larger than 65536"), "{err}");
            assert_eq!(budget.left(), MEMORY_BUDGET);
        }
    }

    /// A delivery opened and not written to (smtpd opens one ahead of DATA) holds no memory.
    #[tokio::test]
    async fn an_unused_delivery_reserves_nothing() {
        let budget = Budget::new(MEMORY_BUDGET);
        let (_pump, _theirs, _dir) = started(&budget, u64::MAX);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(budget.left(), MEMORY_BUDGET);
    }

    /// A delivery given up before the writer finished (smtpd aborted, or its link closed):
    /// dropping the pump stops the reading and gives the memory back.
    #[tokio::test]
    async fn dropping_an_unfinished_pump_frees_its_memory() {
        let budget = Budget::new(MEMORY_BUDGET);
        let (pump, theirs, _dir) = started(&budget, u64::MAX);
        let (wrote, wrote_rx) = std::sync::mpsc::channel();
        let (more, more_rx) = std::sync::mpsc::channel::<()>();
        let writer = std::thread::spawn(move || {
            let mut w = File::from(theirs);
            w.write_all(&message(200_000)).unwrap();
            wrote.send(()).unwrap();
            more_rx.recv().unwrap();
            w.write_all(b"more")
        });
        while wrote_rx.try_recv().is_err() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(budget.left() < MEMORY_BUDGET);
        drop(pump);
        for _ in 0..100 {
            if budget.left() == MEMORY_BUDGET {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(budget.left(), MEMORY_BUDGET);
        more.send(()).unwrap();
        assert!(writer.join().unwrap().is_err(), "the read end is closed");
    }
}
