//! Round-trip latency and throughput of rpc calls, over the socketpair between two processes and
//! over the in-memory transport, and what passing one fd per request costs.
//!
//! `cargo bench -p ipc --bench ipc_bench`. The binary re-executes itself with `--echo-server` for
//! the far end of the socket (fd 3, as the supervisor hands a role its channel); both ends run a
//! current-thread tokio runtime, as roles do. On a small shared machine the figures are
//! indicative: compare rows of one run rather than runs.

use std::error::Error;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use ipc::rpc::{Call, Client, Incoming, Server, Service};
use ipc::transport::{ChannelError, Link, socket_pair};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

const ECHO_SERVER: &str = "--echo-server";
/// Bytes carried by each request (and echoed back).
const REQUEST_BYTES: usize = 16;
const WARMUP: usize = 2_000;
const SAMPLES: usize = 30_000;
const SAMPLES_WITH_FD: usize = 20_000;
const IN_FLIGHT: usize = 64;
const CALLS_PER_WORKER: usize = 2_000;

type BoxError = Box<dyn Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    // `cargo bench` passes `--bench`; anything but our own flag is ignored.
    if std::env::args().any(|a| a == ECHO_SERVER) {
        return echo_server_process();
    }
    let mut table = Table::default();

    let (ours, theirs) = socket_pair()?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg(ECHO_SERVER);
    sandbox::spawn::pass_as_fd3(&mut cmd, theirs);
    let child = cmd.spawn()?;
    // Our copy of the child's end lives in `cmd`: close it, so the child sees our close.
    drop(cmd);
    runtime()?.block_on(async {
        let link = Link::from_fd(ours, "bench parent")?;
        measure("socket, 2 processes", link, &mut table).await
    })?;
    // The runtime is gone, and with it the client's reader task: the child sees the close.
    wait_for_exit(child)?;

    runtime()?.block_on(async {
        let (ours, theirs) = Link::memory_pair("bench client", "bench server");
        let server = tokio::spawn(serve(Server::new(theirs)));
        measure("memory, 1 process", ours, &mut table).await?;
        server.await??;
        Ok::<_, BoxError>(())
    })?;

    table.print();
    Ok(())
}

/// The far end of the socket: answers every request until the link closes.
fn echo_server_process() -> Result<(), BoxError> {
    let fd = sandbox::fds::take_channel_fd()?;
    runtime()?.block_on(async {
        let link = Link::from_fd(fd, "bench child")?;
        serve(Server::new(link)).await?;
        Ok(())
    })
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

async fn serve(mut server: Server<Bench>) -> Result<(), ChannelError> {
    while let Some(Incoming {
        request,
        fds,
        reply,
    }) = server.next().await?
    {
        let BenchRequest::Echo(Echo { bytes }) = request;
        let response = BenchResponse {
            bytes,
            fds: fds.len(),
        };
        drop(fds);
        reply.send(Echo::reply(&Ok(response), Vec::new())).await?;
    }
    Ok(())
}

/// Runs every measurement over `link`, whose far end serves [`Bench`], then closes it.
async fn measure(transport: &'static str, link: Link, table: &mut Table) -> Result<(), BoxError> {
    let (client, _events) = Client::<Bench>::new(link);
    let request = Echo {
        bytes: vec![0x5a; REQUEST_BYTES],
    };
    let devnull = File::open("/dev/null")?;

    for _ in 0..WARMUP {
        call(&client, &request, None).await?;
        client.ping().await?;
    }

    let mut pings = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let start = Instant::now();
        client.ping().await?;
        pings.push(start.elapsed());
    }
    table.latency(transport, "ping", pings);

    let mut calls = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let start = Instant::now();
        call(&client, &request, None).await?;
        calls.push(start.elapsed());
    }
    let plain = table.latency(transport, "call, no fd", calls);

    let mut with_fd = Vec::with_capacity(SAMPLES_WITH_FD);
    for _ in 0..SAMPLES_WITH_FD {
        // The dup is ours to make before sending; it stays outside the timed region.
        let fd = OwnedFd::from(devnull.try_clone()?);
        let start = Instant::now();
        call(&client, &request, Some(fd)).await?;
        with_fd.push(start.elapsed());
    }
    let one_fd = table.latency(transport, "call, 1 fd attached", with_fd);
    table.note(
        transport,
        "cost of 1 fd (p50 difference)",
        format_signed(one_fd.abs_diff(plain), one_fd < plain),
    );

    let mut workers = JoinSet::new();
    let start = Instant::now();
    for _ in 0..IN_FLIGHT {
        let client = client.clone();
        let request = request.clone();
        workers.spawn(async move {
            for _ in 0..CALLS_PER_WORKER {
                call(&client, &request, None).await?;
            }
            Ok::<_, BoxError>(())
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    let elapsed = start.elapsed();
    let per_second = (IN_FLIGHT * CALLS_PER_WORKER) as f64 / elapsed.as_secs_f64();
    table.note(
        transport,
        &format!("throughput, {IN_FLIGHT} in flight"),
        format!("{per_second:.0} req/s"),
    );
    Ok(())
}

async fn call(client: &Client<Bench>, request: &Echo, fd: Option<OwnedFd>) -> Result<(), BoxError> {
    let expected_fds = usize::from(fd.is_some());
    let (response, _) = client
        .call(request.clone(), fd.into_iter().collect())
        .await?;
    let response = response?;
    if response.bytes != request.bytes || response.fds != expected_fds {
        return Err(format!("wrong echo: {response:?}").into());
    }
    Ok(())
}

/// Waits for the echo server to see our close and exit; kills it if it does not.
fn wait_for_exit(mut child: Child) -> Result<(), BoxError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = child.try_wait()? {
            return if status.success() {
                Ok(())
            } else {
                Err(format!("echo server: {status}").into())
            };
        }
        if Instant::now() > deadline {
            child.kill()?;
            child.wait()?;
            return Err("echo server did not exit when its link closed".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------------
// The bench service.

#[derive(Debug)]
pub enum Bench {}

impl Service for Bench {
    const NAME: &'static str = "bench";
    type Request = BenchRequest;
    type Event = NoEvent;
}

ipc::requests! {
    /// The one request of the bench service.
    pub enum BenchRequest for Bench, refused: String {
        /// Echo `bytes` back, saying how many descriptors came with them.
        Echo { bytes: Vec<u8> } -> BenchResponse,
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct BenchResponse {
    pub bytes: Vec<u8>,
    /// How many fds came with the request.
    pub fds: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum NoEvent {}

// ---------------------------------------------------------------------------------------------
// The printed table.

#[derive(Debug, Default)]
struct Table {
    rows: Vec<[String; 4]>,
}

impl Table {
    const HEADER: [&'static str; 4] = ["transport", "measurement", "p50 µs", "p99 µs"];

    /// Adds a latency row; returns the median.
    fn latency(&mut self, transport: &str, what: &str, mut samples: Vec<Duration>) -> Duration {
        samples.sort_unstable();
        let at = |pct: usize| samples[(samples.len() * pct / 100).min(samples.len() - 1)];
        let (p50, p99) = (at(50), at(99));
        self.rows.push([
            transport.into(),
            format!("{what} (n={})", samples.len()),
            micros(p50),
            micros(p99),
        ]);
        p50
    }

    /// Adds a row whose one figure stands in the p50 column.
    fn note(&mut self, transport: &str, what: &str, value: String) {
        self.rows
            .push([transport.into(), what.into(), value, String::new()]);
    }

    fn print(&self) {
        let width = |i: usize| {
            let cells = self.rows.iter().map(|r| r[i].chars().count());
            cells
                .chain([Self::HEADER[i].chars().count()])
                .max()
                .unwrap_or(0)
        };
        let (w0, w1, w2, w3) = (width(0), width(1), width(2), width(3));
        println!(
            "ipc_bench: {REQUEST_BYTES}-byte requests echoed back, current-thread runtimes at both ends"
        );
        let [h0, h1, h2, h3] = Self::HEADER;
        println!("  {h0:w0$}  {h1:w1$}  {h2:>w2$}  {h3:>w3$}");
        for [c0, c1, c2, c3] in &self.rows {
            println!("  {c0:w0$}  {c1:w1$}  {c2:>w2$}  {c3:>w3$}");
        }
    }
}

fn micros(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

fn format_signed(magnitude: Duration, negative: bool) -> String {
    let sign = if negative { "-" } else { "+" };
    format!("{sign}{}", micros(magnitude))
}
