//! storaged benchmark: deliveries through storaged's service, as smtpd makes them, and reading
//! the metadata of one large mailbox.
//!
//! Each delivery takes the service's whole path: `OpenDelivery` over a `SOCK_SEQPACKET` link
//! (the pipe's write end comes back with the answer, by `SCM_RIGHTS`), the message written into
//! the pipe while storaged's pump reads it, then `Deliver`, answered once the message is durable
//! (`service::Store::handle` → `commit_delivery` → `deliver::deliver_durably` with the group
//! flush). The service runs on a runtime of its own, as a role does, with the checkpointer
//! thread that syncs the files of small messages; the writers (smtpd's connections) run on
//! another runtime and share one link, as smtpd's connections do. A 2 KiB message rides in the
//! database log (`storaged::inline`); a 100 KiB one takes the file path. Each row says how many
//! group flushes (each one `fdatasync` of the database log) were made per delivery: about 1 with
//! one writer, fewer when concurrent deliveries share a flush.
//!
//! `cargo bench -p storaged --bench store_bench` measures for about 40 s; `-- --quick` for about
//! 10 s. Without `--bench` (as `cargo test --benches` runs it) it measures nothing and exits.
//!
//! It measures on the real disk: a temporary directory under `$MOXD_BENCH_DIR`, else `/var/tmp`,
//! else the current directory (tmpfs would make every fsync free), and prints what it found.
//! The rows of one message size are measured in interleaved rounds, and every row shows the
//! disk's fsync latency and the CPU used by everything else while it ran: on a shared machine
//! other work moves the numbers, and those columns show when it did.

mod machine;
mod message;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipc::msg::store::{self, RecipientResult, StoreService};
use ipc::{Client, Link, Role};
use storaged::db::record::{self, Flags, Message};
use storaged::db::{Db, now};
use storaged::files::Files;
use storaged::inline::{Checkpointer, INLINE_LIMIT};
use storaged::service::Store;
use tokio::io::AsyncWriteExt;
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

use machine::{
    cpus, fsync_latencies, machine_busy, machine_facts, ms, percent, percentile, process_cpu,
};
use message::message;

const KIB: usize = 1024;
/// One size under [`INLINE_LIMIT`] (in the database log), one over it (a file of its own).
const SIZES: [usize; 2] = [2 * KIB, 100 * KIB];
/// Concurrent deliveries of each row, for every size: one alone pays a flush of its own; 32 (a
/// link's most requests in flight, `ipc::serve::MAX_IN_FLIGHT`) share them.
const WRITERS: [usize; 2] = [1, 32];
const RECIPIENT: &str = "bob@example.com";
/// What smtpd prepends to each message (counted in the size that decides the inline path).
const PREPEND: &[u8] = b"Authentication-Results: mx.example.com; spf=pass smtp.mailfrom=example.org;\r\n\tdkim=pass header.d=example.org; dmarc=pass header.from=example.org\r\n";

fn main() {
    let Some(plan) = Plan::from_args() else {
        println!("store_bench: measures only under `cargo bench` (given --bench); nothing run");
        return;
    };
    let base = std::env::var_os("MOXD_BENCH_DIR").map_or_else(default_base, PathBuf::from);
    let root = tempfile::Builder::new()
        .prefix("moxd-store-bench-")
        .tempdir_in(&base)
        .expect("a temporary directory in the bench directory");
    println!("storaged benchmark ({} run)\n", plan.name);
    machine_facts(root.path(), plan.fsync_runs);

    // storaged's runtime (a role's: two workers) and smtpd's, as two processes would have.
    let service = runtime(2);
    let writers = runtime(2);
    println!(
        "\ndeliveries to one account through the store service over a socketpair link, {} rounds \
         of {:.1} s per row, interleaved\n(warm-up {:.2} s, then {:.2} s a round); latency is \
         OpenDelivery → write into the pipe → Deliver → answered (durable);\nflushes/msg: group \
         flushes of the database log per delivery; fsync: p50 of a 4 KiB probe before each \
         round;\ncpu %: this process (service and writers), others %: the rest of the machine \
         (of {} cores)",
        plan.rounds,
        plan.measure.as_secs_f64(),
        plan.warmup.as_secs_f64(),
        plan.rewarm.as_secs_f64(),
        cpus(),
    );
    println!(
        "size     path    writers   msgs/s   MiB/s  p50 ms  p99 ms delivered flushes/msg fsync ms cpu % others %"
    );
    for size in SIZES {
        for row in compare(&service, &writers, root.path(), &plan, size) {
            row.print();
        }
    }
    drop((service, writers));
    scan(root.path(), &plan);
}

fn runtime(workers: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("tokio runtime")
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
    /// `--quick` for a short run; none without `--bench` (which `cargo bench` passes and
    /// `cargo test` does not).
    fn from_args() -> Option<Plan> {
        let (mut quick, mut bench) = (false, false);
        for arg in std::env::args().skip(1) {
            match arg.as_str() {
                "--quick" => quick = true,
                "--bench" => bench = true,
                other => eprintln!("store_bench: ignoring `{other}` (it knows --quick)"),
            }
        }
        match (bench, quick) {
            (false, _) => None,
            (true, true) => Some(Plan {
                name: "quick",
                warmup: Duration::from_millis(300),
                rewarm: Duration::from_millis(100),
                measure: Duration::from_millis(600),
                rounds: 2,
                fsync_runs: 50,
                probe_runs: 10,
                scan_messages: 10_000,
                scan_runs: 5,
            }),
            (true, false) => Some(Plan {
                name: "full",
                warmup: Duration::from_secs(1),
                rewarm: Duration::from_millis(250),
                measure: Duration::from_secs(2),
                rounds: 4,
                fsync_runs: 200,
                probe_runs: 20,
                scan_messages: 10_000,
                scan_runs: 15,
            }),
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

/// Measures every row of [`WRITERS`] for one message size, each on its own store, in
/// interleaved rounds.
fn compare(
    service: &Runtime,
    writers: &Runtime,
    root: &Path,
    plan: &Plan,
    size: usize,
) -> Vec<Row> {
    let mut benches: Vec<Bench> = WRITERS
        .iter()
        .map(|&n| Bench::start(service, writers, root, size, n))
        .collect();
    for round in 0..plan.rounds {
        let warmup = if round == 0 { plan.warmup } else { plan.rewarm };
        for bench in &mut benches {
            let mut probe = fsync_latencies(bench.dir.path(), plan.probe_runs);
            probe.sort_unstable();
            bench.fsync.push(percentile(&probe, 0.50));
            let (cpu, machine, began) = (process_cpu(), machine_busy(), Instant::now());
            let flushes = bench.store.flusher.flushes();
            let delivered = bench.delivered;
            writers.block_on(bench.round(warmup, plan.measure));
            bench.flushes += bench.store.flusher.flushes() - flushes;
            bench.flushed += bench.delivered - delivered;
            bench.cpu += process_cpu().saturating_sub(cpu);
            bench.busy += began.elapsed();
            bench.machine_busy += machine_busy().saturating_sub(machine);
        }
    }
    benches.into_iter().map(|b| b.finish(service)).collect()
}

/// storaged's service on a store of its own with one account, the link smtpd would hold to
/// it, and what was measured on it so far.
struct Bench {
    dir: tempfile::TempDir,
    store: Arc<Store>,
    link: Client<StoreService>,
    shutdown: CancellationToken,
    /// Until the bench ends: its drop makes the last checkpoint.
    checkpointer: Option<Checkpointer>,
    message: Arc<[u8]>,
    size: usize,
    writers: usize,
    /// Deliveries made, in and out of the measured windows.
    delivered: usize,
    /// Deliveries that became durable within a measured window.
    durable: usize,
    window: Duration,
    /// Of the deliveries begun within a measured window.
    latencies: Vec<Duration>,
    /// Group flushes made during the rounds, and the deliveries made in them.
    flushes: u64,
    flushed: usize,
    /// The p50 of the fsync probe before each round.
    fsync: Vec<Duration>,
    /// CPU time of this process and of the whole machine during the rounds, and the rounds'
    /// wall-clock time.
    cpu: Duration,
    machine_busy: Duration,
    busy: Duration,
}

impl Bench {
    /// A fresh store and its service (on `service`), and a link to it (on `writers`).
    fn start(service: &Runtime, writers: &Runtime, root: &Path, size: usize, n: usize) -> Bench {
        let dir = tempfile::tempdir_in(root).expect("store directory");
        let db = Db::open(&dir.path().join("db")).expect("opening the database");
        let files = Files::open(dir.path()).expect("opening the message files");
        db.add_domain("example.com", None)
            .expect("adding the domain");
        db.add_account("bob", RECIPIENT)
            .expect("adding the account");
        db.flush().expect("flush");
        let checkpointer =
            Checkpointer::start(db.clone(), files.clone()).expect("the checkpoint thread");
        // As `storaged::run` builds it.
        let feed = Arc::new(storaged::feed::Feed::default());
        let flusher = storaged::deliver::Flusher::start(db.clone(), feed.clone());
        let settings = ipc::config::StorageSettings::default();
        let space = ipc::space::FreeSpace::open(files.root(), settings.min_free)
            .expect("watching the free space");
        let store = Store::new(
            db,
            files,
            flusher,
            feed,
            Arc::new(space),
            settings.max_open_bytes_per_peer,
        );
        let (ours, theirs) = ipc::transport::socket_pair().expect("socketpair");
        let shutdown = CancellationToken::new();
        {
            let _entered = service.enter();
            let (incoming_tx, incoming) = tokio::sync::mpsc::unbounded_channel();
            let link = Link::from_fd(theirs, "storaged←smtpd").expect("the service's link");
            incoming_tx
                .send((Role::Smtpd, link))
                .expect("queueing the link");
            let (handler, closing) = (store.clone(), store.clone());
            let shutdown = shutdown.clone();
            service.spawn(async move {
                // Held open until shutdown, as the supervisor holds a role's.
                let _incoming_tx = incoming_tx;
                ipc::serve::accept_links::<StoreService, _, _, _>(
                    incoming,
                    shutdown,
                    tokio_util::task::TaskTracker::new(),
                    ipc::Reporter::detached(),
                    move |peer, incoming| handler.clone().handle(peer, incoming),
                    move |peer| closing.end_sessions(peer),
                )
                .await
            });
        }
        let link = {
            let _entered = writers.enter();
            Client::new(Link::from_fd(ours, "smtpd→storaged").expect("smtpd's link")).0
        };
        let mut message = message(size);
        assert_eq!(
            size + PREPEND.len() <= INLINE_LIMIT,
            size < INLINE_LIMIT / 2,
            "each size must be well within or well past the inline limit"
        );
        message.shrink_to_fit();
        Bench {
            dir,
            store,
            link,
            shutdown,
            checkpointer: Some(checkpointer),
            message: message.into(),
            size,
            writers: n,
            delivered: 0,
            durable: 0,
            window: Duration::ZERO,
            latencies: Vec::new(),
            flushes: 0,
            flushed: 0,
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
            .map(|_| tokio::spawn(writer(self.link.clone(), self.message.clone(), end)))
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

    /// Stops the service, checks that the store is consistent and holds every delivery made;
    /// sums up.
    fn finish(mut self, service: &Runtime) -> Row {
        self.shutdown.cancel();
        drop(self.link);
        // The last checkpoint: every small message's file synced, its body gone.
        drop(self.checkpointer.take());
        service.block_on(async { tokio::time::sleep(Duration::from_millis(10)).await });
        let (db, files) = (&self.store.db, &self.store.files);
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
            per_second: self.durable as f64 / self.window.as_secs_f64(),
            p50: percentile(&self.latencies, 0.50),
            p99: percentile(&self.latencies, 0.99),
            delivered: self.delivered,
            flushes_per_message: self.flushes as f64 / self.flushed.max(1) as f64,
            fsync: percentile(&self.fsync, 0.50),
            cpu_percent: percent(self.cpu, self.busy),
            others_percent: percent(self.machine_busy.saturating_sub(self.cpu), self.busy),
        }
    }
}

/// Delivers until `end`; returns when each delivery began and when it was durable.
async fn writer(
    link: Client<StoreService>,
    message: Arc<[u8]>,
    end: Instant,
) -> Vec<(Instant, Instant)> {
    let mut timings = Vec::new();
    while Instant::now() < end {
        let began = Instant::now();
        deliver_once(&link, &message).await;
        timings.push((began, Instant::now()));
    }
    timings
}

/// One delivery as smtpd makes it: `OpenDelivery`, the message written into the pipe that
/// came with the answer (closed at its end), then `Deliver`, answered once durable.
async fn deliver_once(link: &Client<StoreService>, message: &[u8]) {
    let (opened, mut fds) = link
        .call(store::OpenDelivery {}, Vec::new())
        .await
        .expect("OpenDelivery");
    let (Ok(id), Some(pipe)) = (&opened, fds.pop()) else {
        panic!("no delivery opened: {opened:?}");
    };
    let mut pipe = tokio::net::unix::pipe::Sender::from_owned_fd(pipe).expect("the delivery pipe");
    pipe.write_all(message)
        .await
        .expect("writing into the delivery pipe");
    drop(pipe);
    let deliver = store::Deliver {
        id: *id,
        recipients: vec![RECIPIENT.to_string()],
        prepend: PREPEND.to_vec(),
        junk: false,
    };
    let answer = link.ask(deliver).await.expect("Deliver");
    assert_eq!(answer, Ok(vec![RecipientResult::Delivered]));
}

struct Row {
    size: usize,
    writers: usize,
    per_second: f64,
    p50: Duration,
    p99: Duration,
    delivered: usize,
    flushes_per_message: f64,
    fsync: Duration,
    cpu_percent: f64,
    others_percent: f64,
}

impl Row {
    fn print(&self) {
        let mib_per_second = self.per_second * self.size as f64 / (KIB * KIB) as f64;
        let path = if self.size + PREPEND.len() <= INLINE_LIMIT {
            "inline"
        } else {
            "file"
        };
        println!(
            "{:<8} {path:<7} {:>7} {:>8.1} {:>7.2} {:>7.2} {:>7.2} {:>9} {:>11.3} {:>8.3} {:>5.0} {:>8.0}",
            size_label(self.size),
            self.writers,
            self.per_second,
            mib_per_second,
            ms(self.p50),
            ms(self.p99),
            self.delivered,
            self.flushes_per_message,
            ms(self.fsync),
            self.cpu_percent,
            self.others_percent,
        );
    }
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

fn size_label(size: usize) -> String {
    format!("{} KiB", size / KIB)
}
