//! What the machine is doing while the benchmark runs: CPUs, load, the filesystem and what an
//! fsync costs on it, and CPU time used by this process and by everything else.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Prints the CPU count, the load, the filesystem measured on (and whether it has a journal),
/// and what an fsync of 4 KiB costs there.
pub fn machine_facts(dir: &Path, fsync_runs: usize) {
    println!("cpus:        {}", cpus());
    println!("load:        {} (1, 5, 15 min)", load_averages());
    println!("directory:   {}", dir.display());
    match mount_of(dir) {
        Some(m) => {
            println!(
                "filesystem:  {} on {} mounted at {} ({})",
                m.fstype, m.device, m.point, m.options
            );
            if m.fstype == "tmpfs" || m.fstype == "ramfs" {
                println!("             WARNING: memory-backed; set MOXD_BENCH_DIR to a disk");
            }
            if m.fstype == "ext4" || m.fstype == "ext3" {
                let journal = if has_journal(&m.device) {
                    "yes"
                } else {
                    "none (fsync still flushes the device, but without a journal ext4 skips \
                     recently deleted inodes when creating files: CPU time per delivery)"
                };
                println!("journal:     {journal}");
            }
            if let Some(cache) = write_cache(&m.device) {
                println!("write cache: {cache} (the device's, per /sys/class/block)");
            }
        }
        None => println!("filesystem:  unknown (no /proc/self/mounts entry)"),
    }
    let mut latencies = fsync_latencies(dir, fsync_runs);
    latencies.sort_unstable();
    let p50 = percentile(&latencies, 0.50);
    println!(
        "fsync 4 KiB: p50 {:.3} ms, p99 {:.3} ms over {} overwrites",
        ms(p50),
        ms(percentile(&latencies, 0.99)),
        latencies.len()
    );
    if p50 < Duration::from_micros(50) {
        println!(
            "             fsync looks fake: too fast for stable storage (tmpfs, eatmydata, or a \
             cache that ignores flushes)"
        );
    } else {
        println!(
            "             fsync is real: it waits for the device (whether the device's answer \
             survives power loss cannot be seen from here)"
        );
    }
}

/// Times `fsync` after overwriting a 4 KiB file in place, `runs` times.
pub fn fsync_latencies(dir: &Path, runs: usize) -> Vec<Duration> {
    let path = dir.join("fsync-probe");
    let file = File::create(&path).expect("fsync probe file");
    let mut block = [0u8; 4096];
    file.write_all_at(&block, 0).expect("fsync probe write");
    file.sync_all().expect("fsync probe fsync");
    let latencies = (0..runs)
        .map(|i| {
            block[0] = i as u8;
            file.write_all_at(&block, 0).expect("fsync probe write");
            let began = Instant::now();
            file.sync_all().expect("fsync probe fsync");
            began.elapsed()
        })
        .collect();
    std::fs::remove_file(&path).expect("removing the fsync probe");
    latencies
}

/// `/proc/loadavg`'s three averages (they count tasks waiting for the disk too), or "unknown".
fn load_averages() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

struct Mount {
    device: String,
    point: String,
    fstype: String,
    options: String,
}

/// The mount holding `dir`: the longest mount point that contains it.
fn mount_of(dir: &Path) -> Option<Mount> {
    let dir = dir.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut f = line.split(' ');
            let (device, point, fstype, options) = (f.next()?, f.next()?, f.next()?, f.next()?);
            dir.starts_with(point).then(|| Mount {
                device: device.into(),
                point: point.into(),
                fstype: fstype.into(),
                options: options.into(),
            })
        })
        .max_by_key(|m| m.point.len())
}

/// Whether an ext3/ext4 filesystem on `device` has a journal: jbd2 lists each journal as
/// `<device>-<inode>` under `/proc/fs/jbd2`.
fn has_journal(device: &str) -> bool {
    let Some(name) = Path::new(device).file_name() else {
        return false;
    };
    let prefix = format!("{}-", name.to_string_lossy());
    std::fs::read_dir("/proc/fs/jbd2")
        .into_iter()
        .flatten()
        .flatten()
        .any(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
}

/// "write back" or "write through" for a block device (or the disk of a partition).
fn write_cache(device: &str) -> Option<String> {
    let name = Path::new(device).file_name()?;
    let block = Path::new("/sys/class/block")
        .join(name)
        .canonicalize()
        .ok()?;
    [block.join("queue"), block.parent()?.join("queue")]
        .iter()
        .find_map(|queue| std::fs::read_to_string(queue.join("write_cache")).ok())
        .map(|s| s.trim().to_string())
}

pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

/// The CPU time this process used so far (user and system), from `/proc/self/stat` in the
/// kernel's fixed 100 ticks per second; zero when unknown.
pub fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which ends at the last ')': state is the first, utime
    // and stime the 12th and 13th.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|t| t.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// The busy CPU time of the whole machine so far (all but idle and iowait, steal included),
/// from `/proc/stat` in 100 ticks per second; zero when unknown.
pub fn machine_busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu = stat.lines().next().unwrap_or_default();
    // user nice system idle iowait irq softirq steal (guest time is within user).
    let ticks: u64 = cpu
        .split_whitespace()
        .skip(1)
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .filter_map(|(_, t)| t.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

pub fn percent(part: Duration, whole: Duration) -> f64 {
    100.0 * part.as_secs_f64() / whole.as_secs_f64().max(1e-9)
}

/// The nearest-rank percentile of sorted durations (zero when there are none).
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.saturating_sub(1).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
