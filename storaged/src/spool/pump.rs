//! The pump: reads one delivery's pipe as the bytes come, into memory or a file (Unix; see
//! the parent module).

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ipc::space::FreeSpace;
use tokio::io::AsyncReadExt;

use super::{Budget, Reservation, Spooled};
use crate::files::Files;

/// Bytes of one delivery kept in memory; a larger message goes to a file.
pub const MEMORY_PER_DELIVERY: u64 = 2 * 1024 * 1024;
/// How long a commit waits for the writer to close its end after the last bytes.
const CLOSE_WAIT: Duration = Duration::from_secs(30);

impl Budget {
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

/// What one delivery's reading may use.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Where a delivery goes that does not fit in memory.
    pub files: Files,
    /// Memory shared by every open delivery.
    pub memory: Arc<Budget>,
    /// Bytes the open deliveries of the writer's link may hold together.
    pub peer: Arc<Budget>,
    /// The data directory's floor, checked before bytes go into a file.
    pub space: Arc<FreeSpace>,
    /// The largest message: more fails the delivery.
    pub max: u64,
}

/// Why a delivery's bytes could not be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpoolError {
    /// For lack of space: the disk, the floor, or the link's share (SMTP `452 4.3.1`).
    #[error("{0}")]
    NoSpace(String),
    #[error("{0}")]
    Failed(String),
}

impl SpoolError {
    fn io(what: &str, e: &std::io::Error) -> SpoolError {
        let message = format!("{what}: {e}");
        if ipc::space::is_full(e) {
            SpoolError::NoSpace(message)
        } else {
            SpoolError::Failed(message)
        }
    }
}

/// Reads one delivery's pipe in the background. Dropping it stops the reading and frees what
/// was read.
#[derive(Debug)]
pub struct Pump {
    task: tokio::task::JoinHandle<Result<(Spooled, Reservation), SpoolError>>,
}

impl Drop for Pump {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Pump {
    /// Starts reading `read_end` (the read end of a pipe) in a task of the current runtime,
    /// within `limits`.
    pub fn start(read_end: OwnedFd, limits: Limits) -> Result<Pump, SpoolError> {
        let rx = tokio::net::unix::pipe::Receiver::from_owned_fd(read_end)
            .map_err(|e| SpoolError::io("delivery pipe", &e))?;
        Ok(Pump {
            task: tokio::spawn(tracing::Instrument::in_current_span(read_all(rx, limits))),
        })
    }

    /// Waits until the writer has closed its end, and returns everything it wrote, with the
    /// share of the link's budget it holds (given back when dropped).
    pub async fn finish(mut self) -> Result<(Spooled, Reservation), SpoolError> {
        match tokio::time::timeout(CLOSE_WAIT, &mut self.task).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(SpoolError::Failed(format!("delivery pipe reader: {e}"))),
            Err(_) => Err(SpoolError::Failed(format!(
                "the delivery's writer did not close its end within {CLOSE_WAIT:?}"
            ))),
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
    limits: Limits,
) -> Result<(Spooled, Reservation), SpoolError> {
    const CHUNK: usize = 64 * 1024;
    let Limits {
        files,
        memory,
        peer,
        space,
        max,
    } = limits;
    // Nothing is reserved before the first bytes: a delivery opened ahead and never used
    // holds no memory.
    rx.readable().await.map_err(pipe_err)?;
    let mut held = peer.none();
    let mut sink = match memory.take(CHUNK as u64) {
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
                        write_blocking(&file, written, &space).await?;
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
                    write_blocking(file, buf[..n].to_vec(), &space).await?;
                    *len += n as u64;
                }
                n
            }
        };
        if !held.grow(n as u64) {
            return Err(SpoolError::NoSpace(format!(
                "this link's open deliveries hold {} bytes, as many as it may",
                peer.size()
            )));
        }
        let total = match &sink {
            Sink::Memory(bytes, _) => bytes.len() as u64,
            Sink::File(_, len) => *len,
        };
        if total > max {
            return Err(SpoolError::Failed(format!(
                "the message is larger than {max} bytes"
            )));
        }
        if n == 0 {
            let spooled = match sink {
                Sink::Memory(bytes, reservation) => Spooled::Memory {
                    bytes,
                    _budget: reservation,
                },
                Sink::File(file, len) => {
                    let file = Arc::try_unwrap(file).map_err(|_| {
                        SpoolError::Failed("delivery file still in use".to_string())
                    })?;
                    Spooled::File(file, len)
                }
            };
            return Ok((spooled, held));
        }
    }
}

fn temp_file(files: &Files) -> Result<File, SpoolError> {
    files.temp_file().map_err(|e| {
        if e.is_no_space() {
            SpoolError::NoSpace(e.to_string())
        } else {
            SpoolError::Failed(e.to_string())
        }
    })
}

/// Appends `bytes` to `file` off the async workers, if they leave the floor free.
async fn write_blocking(
    file: &Arc<File>,
    bytes: Vec<u8>,
    space: &FreeSpace,
) -> Result<(), SpoolError> {
    space
        .check(bytes.len() as u64)
        .map_err(|short| SpoolError::NoSpace(short.to_string()))?;
    let file = file.clone();
    ipc::span::spawn_blocking(move || (&*file).write_all(&bytes))
        .await
        .map_err(|e| SpoolError::Failed(format!("delivery file writer: {e}")))?
        .map_err(|e| SpoolError::io("writing a delivery file", &e))
}

fn pipe_err(e: std::io::Error) -> SpoolError {
    SpoolError::io("reading the delivery pipe", &e)
}

/// A new pipe for one delivery: (read end, write end), both close-on-exec.
pub fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::MEMORY_BUDGET;

    /// Limits with `budget` as memory, no cap per link and no floor.
    fn limits(dir: &tempfile::TempDir, budget: &Arc<Budget>, max: u64) -> Limits {
        Limits {
            files: Files::open(dir.path()).unwrap(),
            memory: budget.clone(),
            peer: Budget::new(u64::MAX),
            space: Arc::new(FreeSpace::with_reader(
                ipc::config::MinFree::Bytes(0),
                Box::new(|| Ok((u64::MAX / 2, u64::MAX / 2))),
            )),
            max,
        }
    }

    /// A pump reading a new pipe (its write end returned), with a directory for spilled files.
    fn started(budget: &Arc<Budget>, max: u64) -> (Pump, OwnedFd, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let (pump, theirs) = started_with(limits(&dir, budget, max));
        (pump, theirs, dir)
    }

    fn started_with(limits: Limits) -> (Pump, OwnedFd) {
        let (ours, theirs) = pipe().unwrap();
        (Pump::start(ours, limits).unwrap(), theirs)
    }

    /// Writes `bytes` into a new pipe from another thread and pumps it.
    async fn pumped(bytes: Vec<u8>, budget: &Arc<Budget>, max: u64) -> Result<Spooled, String> {
        let dir = tempfile::tempdir().unwrap();
        pumped_with(bytes, limits(&dir, budget, max))
            .await
            .map(|(spooled, _)| spooled)
            .map_err(|e| e.to_string())
    }

    async fn pumped_with(
        bytes: Vec<u8>,
        limits: Limits,
    ) -> Result<(Spooled, Reservation), SpoolError> {
        let (pump, theirs) = started_with(limits);
        let writer = std::thread::spawn(move || {
            // The reader may stop early (too large): a failed write is expected then.
            let _ = File::from(theirs).write_all(&bytes);
        });
        let spooled = pump.finish().await;
        writer.join().unwrap();
        spooled
    }

    /// One link's open deliveries together may hold its share and no more: past it, the
    /// delivery fails for lack of space; another link's go on; once the first is committed
    /// (its share given back), the link may deliver again.
    #[tokio::test]
    async fn a_link_over_its_share_fails_only_its_own_delivery() {
        let dir = tempfile::tempdir().unwrap();
        let memory = Budget::new(MEMORY_BUDGET);
        let mut flooding = limits(&dir, &memory, u64::MAX);
        flooding.peer = Budget::new(300_000);
        let other = limits(&dir, &memory, u64::MAX);
        let first = pumped_with(message(200_000), flooding.clone())
            .await
            .unwrap();
        let err = pumped_with(message(200_000), flooding.clone())
            .await
            .unwrap_err();
        assert!(matches!(err, SpoolError::NoSpace(_)), "{err}");
        assert!(err.to_string().contains("300000 bytes"), "{err}");
        pumped_with(message(200_000), other).await.unwrap();
        drop(first);
        assert_eq!(flooding.peer.left(), 300_000, "all given back");
        pumped_with(message(200_000), flooding).await.unwrap();
    }

    /// A delivery that goes to a file stops, for lack of space, before it takes the floor.
    #[tokio::test]
    async fn spilling_under_the_floor_fails_for_lack_of_space() {
        let dir = tempfile::tempdir().unwrap();
        let mut limits = limits(&dir, &Budget::new(0), u64::MAX);
        limits.space = Arc::new(FreeSpace::with_reader(
            ipc::config::MinFree::Bytes(1 << 20),
            Box::new(|| Ok(((1 << 20) + 10_000, 1 << 30))),
        ));
        let err = pumped_with(message(200_000), limits.clone())
            .await
            .unwrap_err();
        assert!(
            err.to_string().starts_with("insufficient system storage"),
            "{err}"
        );
        let (spooled, _) = pumped_with(message(5_000), limits).await.unwrap();
        assert!(matches!(spooled, Spooled::File(..)));
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
