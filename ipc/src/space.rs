//! The free space of a role's file system, against the floor under which new mail is refused
//! (`[storage] min_free`; storaged for its data directory, queued for its queue directory).
//!
//! A mail server that fills its disk loses more than new mail: the database may fail to write
//! its log, and then nothing can be made durable. So storaged and queued stop taking mail
//! (`452 4.3.1`) while space is under the floor, which leaves room for what is in flight and
//! for the database, and take it again once space is back.
//!
//! Reading the file system (`fstatvfs` on Unix, allowed by the seccomp file set; it needs no
//! path, so Landlock does not matter; on Windows `GetDiskFreeSpaceW` of the directory's path,
//! through `fs2`, which sled brings into the tree there already) costs a system call: a reading
//! is reused for up to
//! [`MAX_AGE`], less what checks passed since then took, and read afresh whenever the estimate
//! comes near the floor, so that a refusal is always based on a fresh reading.

use crate::sync::lock;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::MinFree;

/// How long a reading of the file system is reused.
pub const MAX_AGE: Duration = Duration::from_secs(1);

/// Reads (free bytes for unprivileged users, total bytes) of a file system.
pub type Reader = Box<dyn Fn() -> std::io::Result<(u64, u64)> + Send + Sync>;

/// The guard of one file system.
pub struct FreeSpace {
    min_free: MinFree,
    read: Reader,
    last: Mutex<Option<Reading>>,
}

impl std::fmt::Debug for FreeSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FreeSpace")
            .field("min_free", &self.min_free)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    free: u64,
    floor: u64,
    /// Bytes that passed checks since this reading (written, or about to be).
    spent: u64,
}

/// Too little space: the refusal, with what was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("insufficient system storage: {free} bytes free, {need} more wanted, floor {floor} bytes")]
pub struct Short {
    pub free: u64,
    pub need: u64,
    pub floor: u64,
}

impl FreeSpace {
    /// Guards the file system holding `dir` (on Unix kept open: it is read by descriptor).
    pub fn open(dir: &Path, min_free: MinFree) -> std::io::Result<FreeSpace> {
        Ok(FreeSpace::with_reader(min_free, reader(dir)?))
    }

    /// A guard over whatever `read` reports (tests simulate a file system with it).
    pub fn with_reader(min_free: MinFree, read: Reader) -> FreeSpace {
        FreeSpace {
            min_free,
            read,
            last: Mutex::new(None),
        }
    }

    /// Whether `need` more bytes may be written and still leave the floor free; if so they
    /// are counted against the current reading.
    pub fn check(&self, need: u64) -> Result<(), Short> {
        let mut last = lock(&self.last);
        let fresh = match *last {
            Some(r) if r.at.elapsed() < MAX_AGE && !r.near(need) => None,
            _ => self.reading(),
        };
        if let Some(r) = fresh {
            *last = Some(r);
        }
        let Some(r) = last.as_mut() else {
            // The file system cannot be read: not a reason to refuse mail (logged).
            return Ok(());
        };
        let free = r.free.saturating_sub(r.spent);
        if free < r.floor.saturating_add(need) {
            return Err(Short {
                free,
                need,
                floor: r.floor,
            });
        }
        r.spent = r.spent.saturating_add(need);
        Ok(())
    }

    /// Forgets the current reading: the next check reads afresh (after space was freed or
    /// taken in a way no check saw, e.g. a failed write).
    pub fn forget(&self) {
        *lock(&self.last) = None;
    }

    fn reading(&self) -> Option<Reading> {
        match (self.read)() {
            Ok((free, total)) => Some(Reading {
                at: Instant::now(),
                free,
                floor: self.min_free.floor(total),
                spent: 0,
            }),
            Err(e) => {
                tracing::warn!("reading the free space of the file system: {e}");
                None
            }
        }
    }
}

impl Reading {
    /// Whether after `need` more bytes the estimate would be within one floor of the floor
    /// (or under it): close enough that it is measured again.
    fn near(&self, need: u64) -> bool {
        let margin = self.floor.saturating_mul(2).saturating_add(need);
        self.free.saturating_sub(self.spent) < margin
    }
}

/// Whether `e` says the file system (or a quota) is full. (Windows' `ERROR_DISK_FULL` and
/// `ERROR_HANDLE_DISK_FULL` are `StorageFull` already.)
pub fn is_full(e: &std::io::Error) -> bool {
    let kind = e.kind();
    if kind == std::io::ErrorKind::StorageFull || kind == std::io::ErrorKind::QuotaExceeded {
        return true;
    }
    #[cfg(unix)]
    {
        e.raw_os_error() == Some(nix::libc::ENOSPC)
    }
    #[cfg(not(unix))]
    {
        false
    }
}

/// Reads the file system of `dir` by descriptor: (free bytes for unprivileged users, total).
#[cfg(unix)]
fn reader(dir: &Path) -> std::io::Result<Reader> {
    let dir = std::fs::File::open(dir)?;
    Ok(Box::new(move || {
        let s = nix::sys::statvfs::fstatvfs(&dir).map_err(std::io::Error::from)?;
        let unit = s.fragment_size();
        Ok((
            (s.blocks_available() as u64).saturating_mul(unit),
            (s.blocks() as u64).saturating_mul(unit),
        ))
    }))
}

/// Reads the file system of `dir` by path (Windows has no by-handle call for it).
#[cfg(windows)]
fn reader(dir: &Path) -> std::io::Result<Reader> {
    let dir = dir.to_path_buf();
    // Fail now, as the Unix form does, if the directory is not there.
    std::fs::metadata(&dir)?;
    Ok(Box::new(move || {
        Ok((fs2::available_space(&dir)?, fs2::total_space(&dir)?))
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    const MIB: u64 = 1024 * 1024;
    const GIB: u64 = 1024 * MIB;

    /// A guard over a simulated file system of `total` bytes whose free space the test sets;
    /// also counts the readings.
    fn simulated(min_free: MinFree, total: u64) -> (FreeSpace, Arc<AtomicU64>, Arc<AtomicU64>) {
        let free = Arc::new(AtomicU64::new(total));
        let reads = Arc::new(AtomicU64::new(0));
        let (f, r) = (free.clone(), reads.clone());
        let guard = FreeSpace::with_reader(
            min_free,
            Box::new(move || {
                r.fetch_add(1, Ordering::SeqCst);
                Ok((f.load(Ordering::SeqCst), total))
            }),
        );
        (guard, free, reads)
    }

    #[test]
    fn the_default_floor_is_the_smaller_of_one_gib_and_five_percent() {
        assert_eq!(MinFree::Default.floor(100 * GIB), GIB);
        assert_eq!(MinFree::Default.floor(10 * GIB), GIB / 2);
        assert_eq!(MinFree::Default.floor(20 * GIB), GIB);
        assert_eq!(MinFree::Default.floor(0), 0);
        assert_eq!(MinFree::Percent(10).floor(10 * GIB), GIB);
        assert_eq!(MinFree::Bytes(7).floor(10 * GIB), 7);
        assert_eq!(MinFree::Percent(50).floor(u64::MAX), u64::MAX / 2);
    }

    #[test]
    fn refuses_what_would_go_under_the_floor_and_takes_it_again_once_space_is_back() {
        let (guard, free, _) = simulated(MinFree::Bytes(10 * MIB), 100 * MIB);
        free.store(15 * MIB, Ordering::SeqCst);
        assert_eq!(guard.check(4 * MIB), Ok(()));
        free.store(11 * MIB, Ordering::SeqCst); // written
        let short = guard.check(4 * MIB).unwrap_err();
        assert_eq!((short.floor, short.need), (10 * MIB, 4 * MIB));
        assert!(short.to_string().starts_with("insufficient system storage"));
        free.store(9 * MIB, Ordering::SeqCst);
        assert!(
            guard.check(0).is_err(),
            "under the floor even with nothing to write"
        );
        free.store(50 * MIB, Ordering::SeqCst);
        assert_eq!(guard.check(4 * MIB), Ok(()), "space freed is seen at once");
    }

    #[test]
    fn far_above_the_floor_a_reading_is_reused() {
        let (guard, _, reads) = simulated(MinFree::Bytes(MIB), 100 * GIB);
        for _ in 0..1000 {
            guard.check(100_000).unwrap();
        }
        assert_eq!(reads.load(Ordering::SeqCst), 1);
    }

    /// One reading says 1 GiB free over a floor of 100 MiB: the checks after it count what
    /// they let through, and once that brings the estimate within a floor of the floor, the
    /// next check measures again (a cached reading alone would let through any amount for a
    /// second).
    #[test]
    fn checks_between_readings_count_what_they_let_through() {
        let (guard, free, reads) = simulated(MinFree::Bytes(100 * MIB), 10 * GIB);
        free.store(GIB, Ordering::SeqCst);
        for _ in 0..8 {
            guard.check(100 * MIB).unwrap();
        }
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        free.store(150 * MIB, Ordering::SeqCst); // what those checks let through was written
        assert!(guard.check(100 * MIB).is_err());
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn an_unreadable_file_system_refuses_nothing() {
        let guard = FreeSpace::with_reader(
            MinFree::Default,
            Box::new(|| Err(std::io::Error::other("gone"))),
        );
        assert_eq!(guard.check(GIB), Ok(()));
    }

    #[test]
    fn reads_a_real_file_system() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            FreeSpace::open(dir.path(), MinFree::Bytes(0))
                .unwrap()
                .check(1),
            Ok(())
        );
        assert!(
            FreeSpace::open(dir.path(), MinFree::Bytes(u64::MAX / 2))
                .unwrap()
                .check(0)
                .is_err()
        );
    }
}
