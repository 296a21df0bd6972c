//! storaged benchmark: durable deliveries through the path the IPC service takes, group commit
//! against a flush per delivery, and reading the metadata of one large mailbox.
//!
//! `cargo bench -p storaged --bench store_bench` measures for about 70 s; `-- --quick` for about
//! 15 s. Run without `--bench` (as `cargo test --benches` does) it makes one tiny smoke pass.
//!
//! It measures on the real disk: a temporary directory under `$MOXD_BENCH_DIR`, else `/var/tmp`,
//! else the current directory (tmpfs would make every fsync free), and prints what it found.
//! The configurations compared are measured in interleaved rounds, and every row shows the
//! disk's fsync latency and the CPU used by everything else while it ran: on a shared machine
//! other work moves the numbers, and those columns show when it did.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use storaged::db::record::{self, Flags, Message};
use storaged::db::{Db, now};
use storaged::deliver::{self, Flusher, Outcome};
use storaged::files::Files;
use tokio::runtime::Runtime;

const KIB: usize = 1024;
const SIZES: [usize; 2] = [2 * KIB, 100 * KIB];
/// Writers and commit of each row, for every size.
const CONFIGS: [(usize, Commit); 3] = [(1, Commit::Group), (32, Commit::Group), (32, Commit::Each)];
const RECIPIENT: &str = "bob@example.com";

fn main() {
    let plan = Plan::from_args();
    let base = std::env::var_os("MOXD_BENCH_DIR").map_or_else(default_base, PathBuf::from);
    let root = tempfile::Builder::new()
        .prefix("moxd-store-bench-")
        .tempdir_in(&base)
        .expect("a temporary directory in the bench directory");
    println!("storaged benchmark ({} run)\n", plan.name);
    machine_facts(root.path(), &plan);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!(
        "\ndeliveries to one account, {} rounds of {:.1} s per row, interleaved (warm-up {:.2} s, \
         then {:.2} s a round);\nlatency is temp_file → write → deliver → durable; fsync: p50 of \
         a 4 KiB probe before each round;\ncpu %: this process, others %: the rest of the machine \
         (of {} cores)",
        plan.rounds,
        plan.measure.as_secs_f64(),
        plan.warmup.as_secs_f64(),
        plan.rewarm.as_secs_f64(),
        cpus(),
    );
    println!(
        "size     writers  commit         msgs/s   MiB/s  p50 ms  p99 ms delivered fsync ms cpu % others %"
    );
    let mut ratios = Vec::new();
    for size in SIZES {
        let rows = compare(&runtime, root.path(), &plan, size);
        for row in &rows {
            row.print();
        }
        // CONFIGS: 32 writers with group commit, then with a flush per delivery.
        let (group, each) = (rows[1].per_second, rows[2].per_second);
        ratios.push((size, (each > 0.0).then(|| group / each)));
    }
    for (size, ratio) in ratios {
        let ratio = ratio.map_or("nothing measured".into(), |r| {
            format!("{r:.2}x the messages/s")
        });
        println!(
            "group commit vs db.flush() per delivery, 32 writers, {}: {ratio}",
            size_label(size)
        );
    }
    drop(runtime);
    scan(root.path(), &plan);
}

/// How long and how often to measure.
struct Plan {
    name: &'static str,
    /// Before the first round of each configuration.
    warmup: Duration,
    /// Before each later round, while the writers get going again.
    rewarm: Duration,
    /// Measured per round.
    measure: Duration,
    rounds: usize,
    fsync_runs: usize,
    probe_runs: usize,
    scan_messages: usize,
    scan_runs: usize,
}

impl Plan {
    /// `--quick` for a smoke run of the measurements; without `--bench` (which `cargo bench`
    /// passes) a tiny pass that only proves the benchmark works.
    fn from_args() -> Plan {
        let (mut quick, mut bench) = (false, false);
        for arg in std::env::args().skip(1) {
            match arg.as_str() {
                "--quick" => quick = true,
                "--bench" => bench = true,
                other => eprintln!("store_bench: ignoring `{other}` (it knows --quick)"),
            }
        }
        match (bench, quick) {
            (false, _) => Plan {
                name: "smoke: no --bench, so not a measurement",
                warmup: Duration::ZERO,
                rewarm: Duration::ZERO,
                measure: Duration::from_millis(30),
                rounds: 1,
                fsync_runs: 5,
                probe_runs: 3,
                scan_messages: 200,
                scan_runs: 1,
            },
            (true, true) => Plan {
                name: "quick",
                warmup: Duration::from_millis(300),
                rewarm: Duration::from_millis(100),
                measure: Duration::from_millis(600),
                rounds: 2,
                fsync_runs: 50,
                probe_runs: 10,
                scan_messages: 10_000,
                scan_runs: 5,
            },
            (true, false) => Plan {
                name: "full",
                warmup: Duration::from_secs(1),
                rewarm: Duration::from_millis(250),
                measure: Duration::from_secs(2),
                rounds: 4,
                fsync_runs: 200,
                probe_runs: 20,
                scan_messages: 10_000,
                scan_runs: 15,
            },
        }
    }
}

fn default_base() -> PathBuf {
    let var_tmp = Path::new("/var/tmp");
    if var_tmp.is_dir() {
        var_tmp.into()
    } else {
        ".".into()
    }
}

/// Prints the CPU count, the load, the filesystem measured on (and whether it has a journal),
/// and what an fsync of 4 KiB costs there.
fn machine_facts(dir: &Path, plan: &Plan) {
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
    let mut latencies = fsync_latencies(dir, plan.fsync_runs);
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
fn fsync_latencies(dir: &Path, runs: usize) -> Vec<Duration> {
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

/// How a delivery is made durable before it counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Commit {
    /// `Flusher::flush().await`, shared by concurrent deliveries, as the IPC service does.
    Group,
    /// `db.flush()` right after each delivery, on its blocking thread.
    Each,
}

/// Measures every configuration of [`CONFIGS`] for one message size, each on its own store, in
/// interleaved rounds.
fn compare(runtime: &Runtime, root: &Path, plan: &Plan, size: usize) -> Vec<Row> {
    let _entered = runtime.enter();
    let mut stores: Vec<Store> = CONFIGS
        .iter()
        .map(|&(writers, commit)| Store::open(root, size, writers, commit))
        .collect();
    for round in 0..plan.rounds {
        let warmup = if round == 0 { plan.warmup } else { plan.rewarm };
        for store in &mut stores {
            let mut probe = fsync_latencies(store.dir.path(), plan.probe_runs);
            probe.sort_unstable();
            store.fsync.push(percentile(&probe, 0.50));
            let (cpu, machine, began) = (process_cpu(), machine_busy(), Instant::now());
            runtime.block_on(store.round(warmup, plan.measure));
            store.cpu += process_cpu().saturating_sub(cpu);
            store.busy += began.elapsed();
            store.machine_busy += machine_busy().saturating_sub(machine);
        }
    }
    stores.into_iter().map(Store::finish).collect()
}

/// A store with one account, a message its writers deliver again and again, and what was
/// measured on it so far.
struct Store {
    dir: tempfile::TempDir,
    target: Arc<Target>,
    size: usize,
    writers: usize,
    /// Deliveries made, in and out of the measured windows.
    delivered: usize,
    /// Deliveries that became durable within a measured window.
    durable: usize,
    window: Duration,
    /// Of the deliveries begun within a measured window.
    latencies: Vec<Duration>,
    /// The p50 of the fsync probe before each round.
    fsync: Vec<Duration>,
    /// CPU time of this process and of the whole machine during the rounds, and the rounds'
    /// wall-clock time.
    cpu: Duration,
    machine_busy: Duration,
    busy: Duration,
}

/// What every writer of a store shares.
struct Target {
    db: Db,
    files: Files,
    flusher: Flusher,
    commit: Commit,
    message: Vec<u8>,
    recipients: Vec<String>,
}

impl Store {
    /// A fresh store (inside the runtime: the flusher is a task).
    fn open(root: &Path, size: usize, writers: usize, commit: Commit) -> Store {
        let dir = tempfile::tempdir_in(root).expect("store directory");
        let db = Db::open(&dir.path().join("db")).expect("opening the database");
        let files = Files::open(dir.path()).expect("opening the message files");
        db.add_domain("example.com", None)
            .expect("adding the domain");
        db.add_account("bob", RECIPIENT)
            .expect("adding the account");
        db.flush().expect("flush");
        let target = Arc::new(Target {
            flusher: Flusher::start(db.clone(), Default::default()),
            db,
            files,
            commit,
            message: message(size),
            recipients: vec![RECIPIENT.to_string()],
        });
        Store {
            dir,
            target,
            size,
            writers,
            delivered: 0,
            durable: 0,
            window: Duration::ZERO,
            latencies: Vec::new(),
            fsync: Vec::new(),
            cpu: Duration::ZERO,
            machine_busy: Duration::ZERO,
            busy: Duration::ZERO,
        }
    }

    /// Runs the writers for `warmup` and then `measure`; counts the deliveries made durable
    /// within the measured window, and the latency of those begun within it.
    async fn round(&mut self, warmup: Duration, measure: Duration) {
        let warm = Instant::now() + warmup;
        let end = warm + measure;
        let tasks: Vec<_> = (0..self.writers)
            .map(|_| tokio::spawn(writer(self.target.clone(), end)))
            .collect();
        for task in tasks {
            for (began, done) in task.await.expect("writer task") {
                self.delivered += 1;
                self.durable += usize::from((warm..=end).contains(&done));
                if began >= warm {
                    self.latencies.push(done - began);
                }
            }
        }
        self.window += measure;
    }

    /// Checks that the store is consistent and holds every delivery made; sums up.
    fn finish(mut self) -> Row {
        let (db, files) = (&self.target.db, &self.target.files);
        let problems = storaged::verify::verify(db, files).expect("verify");
        assert!(problems.is_empty(), "{problems:#?}");
        let (_, inbox) = db
            .mailbox_by_name("bob", "Inbox")
            .expect("inbox")
            .expect("an inbox");
        assert_eq!(inbox.counts.total as usize, self.delivered);
        self.latencies.sort_unstable();
        self.fsync.sort_unstable();
        Row {
            size: self.size,
            writers: self.writers,
            commit: self.target.commit,
            per_second: self.durable as f64 / self.window.as_secs_f64(),
            p50: percentile(&self.latencies, 0.50),
            p99: percentile(&self.latencies, 0.99),
            delivered: self.delivered,
            fsync: percentile(&self.fsync, 0.50),
            cpu_percent: percent(self.cpu, self.busy),
            others_percent: percent(self.machine_busy.saturating_sub(self.cpu), self.busy),
        }
    }
}

/// Delivers until `end`; returns when each delivery began and when it was durable.
async fn writer(target: Arc<Target>, end: Instant) -> Vec<(Instant, Instant)> {
    let mut timings = Vec::new();
    while Instant::now() < end {
        let began = Instant::now();
        deliver_once(&target).await;
        timings.push((began, Instant::now()));
    }
    timings
}

/// One delivery as `service::Store` makes it: a temporary file the peer writes, `deliver` on a
/// blocking thread, then the flush; only fd passing and the IPC round trip are missing.
async fn deliver_once(target: &Arc<Target>) {
    let job = target.clone();
    let outcomes = tokio::task::spawn_blocking(move || {
        let mut file = job.files.temp_file().expect("temporary file");
        file.write_all(&job.message).expect("writing the message");
        let size = job.message.len() as u64;
        let outcomes =
            deliver::deliver(&job.db, &job.files, &file, size, &job.recipients).expect("delivery");
        if job.commit == Commit::Each {
            job.db.flush().expect("flush");
        }
        outcomes
    })
    .await
    .expect("delivery task");
    assert!(
        matches!(outcomes[..], [Outcome::Delivered { .. }]),
        "{outcomes:?}"
    );
    if target.commit == Commit::Group {
        target.flusher.flush().await.expect("group flush");
    }
}

struct Row {
    size: usize,
    writers: usize,
    commit: Commit,
    per_second: f64,
    p50: Duration,
    p99: Duration,
    delivered: usize,
    fsync: Duration,
    cpu_percent: f64,
    others_percent: f64,
}

impl Row {
    fn print(&self) {
        let mib_per_second = self.per_second * self.size as f64 / (KIB * KIB) as f64;
        let commit = match self.commit {
            Commit::Group => "group",
            Commit::Each => "per delivery",
        };
        println!(
            "{:<8} {:>7}  {commit:<12} {:>8.1} {:>7.2} {:>7.2} {:>7.2} {:>9} {:>8.3} {:>5.0} {:>8.0}",
            size_label(self.size),
            self.writers,
            self.per_second,
            mib_per_second,
            ms(self.p50),
            ms(self.p99),
            self.delivered,
            ms(self.fsync),
            self.cpu_percent,
            self.others_percent,
        );
    }
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

/// The CPU time this process used so far (user and system), from `/proc/self/stat` in the
/// kernel's fixed 100 ticks per second; zero when unknown.
fn process_cpu() -> Duration {
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
fn machine_busy() -> Duration {
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

fn percent(part: Duration, whole: Duration) -> f64 {
    100.0 * part.as_secs_f64() / whole.as_secs_f64().max(1e-9)
}

/// Fills one mailbox with message records (fake file ids: no message files exist) and times
/// reading all of them back with `Db::message_records`.
fn scan(root: &Path, plan: &Plan) {
    let n = plan.scan_messages;
    let dir = tempfile::tempdir_in(root).expect("store directory");
    let path = dir.path().join("db");
    let db = Db::open(&path).expect("opening the database");
    db.add_domain("example.com", None)
        .expect("adding the domain");
    db.add_account("bob", RECIPIENT)
        .expect("adding the account");
    let (inbox, _) = db
        .mailbox_by_name("bob", "Inbox")
        .expect("inbox")
        .expect("an inbox");
    let template = Message {
        file: 0,
        size: 2 * KIB as u64,
        modseq: 0,
        flags: Flags::default(),
        keywords: Vec::new(),
        internal_date: now(),
        envelope: storaged::envelope::parse(&message(2 * KIB)),
        structure: storaged::structure::parse(&message(2 * KIB)),
    };
    let record_bytes = record::encode(&template).expect("encoding").len();
    let filling = Instant::now();
    for first in (0..n).step_by(500) {
        let entries: Vec<(u64, Message)> = (first..n.min(first + 500))
            .map(|i| {
                let mut m = template.clone();
                m.file = (1 << 40) | i as u64;
                m.flags = if i % 4 == 0 {
                    Flags::default()
                } else {
                    Flags::SEEN
                };
                if i % 20 == 0 {
                    m.keywords.push("$Forwarded".into());
                }
                (inbox, m)
            })
            .collect();
        db.append_messages(&entries).expect("appending records");
    }
    db.flush().expect("flush");
    let filled = filling.elapsed();

    let scan_once = |db: &Db| {
        let began = Instant::now();
        let records = db.message_records(inbox).expect("reading the records");
        let took = began.elapsed();
        assert_eq!(records.len(), n);
        took
    };
    scan_once(&db);
    let mut runs: Vec<Duration> = (0..plan.scan_runs).map(|_| scan_once(&db)).collect();
    runs.sort_unstable();
    drop(db);
    let reopened = Db::open(&path).expect("reopening the database");
    let cold = scan_once(&reopened);

    let median = percentile(&runs, 0.50);
    println!(
        "\nmetadata scan: {n} records of ~{record_bytes} bytes (2 KiB message envelope, fake \
         file ids) in one mailbox, appended in batches of 500 in {:.2} s",
        filled.as_secs_f64()
    );
    println!("{:<34} {:>9} {:>12}", "scan", "ms", "records/s");
    for (what, took) in [
        (format!("warm, median of {}", runs.len()), median),
        ("first after reopening the db".to_string(), cold),
    ] {
        println!(
            "{what:<34} {:>9.2} {:>12.0}",
            ms(took),
            n as f64 / took.as_secs_f64()
        );
    }
}

/// A plausible RFC 5322 message of exactly `size` bytes: trace and DKIM headers, a text part
/// and, from 16 KiB on, a base64 PDF attachment taking most of the size.
fn message(size: usize) -> Vec<u8> {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut out = Vec::with_capacity(size);
    for l in TRACE {
        line(&mut out, l);
    }
    line(&mut out, &format!("\tbh={}=;", rng.base64(43)));
    line(&mut out, &format!("\tb={}", rng.base64(70)));
    for width in [72, 72, 72, 58] {
        line(&mut out, &format!("\t {}", rng.base64(width)));
    }
    for l in HEADERS {
        line(&mut out, l);
    }
    let mut tail = Vec::new();
    if size >= 16 * KIB {
        for l in ATTACHMENT {
            line(&mut tail, l);
        }
        let lines = (size - out.len() - tail.len() - 2 * KIB) / 78;
        for _ in 0..lines {
            line(&mut tail, &rng.base64(76));
        }
    }
    line(&mut tail, "--=_part_7f3a--");
    let room = size
        .checked_sub(out.len() + tail.len())
        .expect("a message larger than its headers");
    text(&mut out, &mut rng, room);
    out.extend_from_slice(&tail);
    assert_eq!(out.len(), size);
    out
}

const TRACE: &[&str] = &[
    "Return-Path: <ann@example.org>",
    "Received: from mail.example.org (mail.example.org [192.0.2.10])",
    "\tby mx.example.com (moxd) with ESMTPS id 4F2A9C3E",
    "\tfor <bob@example.com>; Tue, 14 Apr 2026 09:12:44 +0000",
    "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=mail2026;",
    "\th=from:to:cc:subject:date:message-id:mime-version:content-type;",
];

const HEADERS: &[&str] = &[
    "From: \"Ann Example\" <ann@example.org>",
    "To: Bob Example <bob@example.com>",
    "Cc: carol@example.net",
    "Subject: Quarterly report: figures for review before Friday",
    "Date: Tue, 14 Apr 2026 11:12:40 +0200",
    "Message-ID: <20260414091240.4F2A9C3E@mail.example.org>",
    "MIME-Version: 1.0",
    "Content-Type: multipart/mixed; boundary=\"=_part_7f3a\"",
    "",
    "This is a multi-part message in MIME format.",
    "--=_part_7f3a",
    "Content-Type: text/plain; charset=utf-8",
    "Content-Transfer-Encoding: 7bit",
    "",
];

const ATTACHMENT: &[&str] = &[
    "--=_part_7f3a",
    "Content-Type: application/pdf; name=\"report-q1.pdf\"",
    "Content-Transfer-Encoding: base64",
    "Content-Disposition: attachment; filename=\"report-q1.pdf\"",
    "",
];

const WORDS: &[&str] = &[
    "the", "report", "figures", "quarter", "review", "please", "before", "meeting", "revenue",
    "costs", "attached", "thanks", "numbers", "team", "and", "of", "for", "with", "regional",
    "forecast", "updated", "as", "agreed", "we", "should", "look", "at", "margins", "again",
];

/// Appends exactly `n` (at least 2) bytes of CRLF-terminated prose lines of at most 74 bytes.
fn text(out: &mut Vec<u8>, rng: &mut Rng, n: usize) {
    assert!(n >= 2, "no room for the text part");
    let end = out.len() + n;
    loop {
        let mut words = String::new();
        let left = end - out.len();
        if left < 80 {
            while words.len() < left - 2 {
                words.push_str(WORDS[rng.below(WORDS.len())]);
                words.push(' ');
            }
            words.truncate(left - 2);
            line(out, &words);
            return;
        }
        while words.len() < 60 {
            if !words.is_empty() {
                words.push(' ');
            }
            words.push_str(WORDS[rng.below(WORDS.len())]);
        }
        line(out, &words);
        if rng.below(6) == 0 && end - out.len() >= 82 {
            line(out, "");
        }
    }
}

fn line(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// xorshift64: deterministic filler, no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    fn base64(&mut self, n: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        (0..n)
            .map(|_| char::from(ALPHABET[self.below(64)]))
            .collect()
    }
}

/// The nearest-rank percentile of sorted durations (zero when there are none).
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.saturating_sub(1).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn size_label(size: usize) -> String {
    format!("{} KiB", size / KIB)
}
