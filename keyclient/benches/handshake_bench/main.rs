//! Full TLS handshakes per second with the server key in keyd, a process of its own reached
//! over a `SOCK_SEQPACKET` socketpair as in the tree, against the baseline: the same rustls
//! server holding the key in this process. ECDSA P-256 and RSA-2048, TLS 1.3, no resumption
//! (every handshake signs, so every keyd handshake makes a round trip to the other process).
//!
//! `cargo bench -p keyclient --bench handshake_bench` (about 65 s; `-- --quick` for about 15 s).
//! Without `--bench` (as `cargo test --benches` runs it) it measures nothing. Each row
//! alternates ten slices of each side, so that load drifting on a shared machine does not
//! favour one. keyd runs as this binary started again (`keyd_child`), with the link at fd 3.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod keyd_child;

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipc::context::PeerSlot;
use ipc::grant::ImapdPeers;
use ipc::msg::key::KeyService;
use ipc::{Link, PeerLinks, Role};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, dir] = &args[..]
        && flag == keyd_child::ARG
    {
        keyd_child::run(std::path::Path::new(dir));
        return;
    }
    if !args.iter().any(|a| a == "--bench") {
        println!("handshake_bench: measures only under `cargo bench` (given --bench); nothing run");
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let seconds = if quick { 1.0 } else { 5.0 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { tokio::spawn(run(seconds)).await.unwrap() });
}

async fn run(seconds: f64) {
    let dir = tempfile::tempdir().unwrap();
    // Self-signed ECDSA and RSA certificates, which keyd finds at its start; their key files
    // serve the in-process baseline.
    {
        let mut keys = keyd::keys::KeyStore::open(dir.path()).unwrap();
        keyd::certs::self_signed(dir.path(), &mut keys, &["bench.example".into()]).unwrap();
    }
    let (ours, theirs) = ipc::transport::socket_pair().unwrap();
    let mut child = keyd_child::spawn(dir.path(), theirs);
    let peers = ImapdPeers::default();
    peers
        .connect(Role::Keyd, Link::from_fd(ours, "imapd→keyd").unwrap())
        .unwrap();
    let slot: PeerSlot<KeyService> = peers.keyd.clone();
    let remote = keyclient::server_config(&slot).await.unwrap();

    println!(
        "TLS 1.3 full handshakes (no resumption), {seconds} s per row and side; keyd is process {} \
         (this one is {})",
        child.id(),
        std::process::id()
    );
    println!(
        "{:<6} {:>8}  {:<28} {:>12} {:>12}",
        "key", "threads", "server", "handshakes/s", "vs baseline"
    );
    for (name, scheme_client) in [("selfsigned-ecdsa", "ECDSA"), ("selfsigned-rsa", "RSA")] {
        let pem = std::fs::read(dir.path().join(format!("{name}.key.pem"))).unwrap();
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(dir.path().join(format!("{name}.cert.pem")))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let local = Arc::new(
            ServerConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(chain.clone(), PrivateKeyDer::from_pem_slice(&pem).unwrap())
                .unwrap(),
        );
        let client = client_config(scheme_client == "RSA");
        // One connection at a time (latency-bound: every keyd round trip is on the critical
        // path); as many handshaking threads as a server's runtime has workers (one per
        // processor: throughput-bound); and more threads than processors (oversubscribed, as
        // when other work competes), where every switch to keyd's process and back costs.
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut counts = vec![1, cpus, 2 * cpus];
        counts.dedup();
        for threads in counts {
            // Alternating slices, so that drifting load on a shared machine weighs on both
            // sides alike.
            let (mut a, mut b) = (0.0, 0.0);
            for _ in 0..SLICES {
                a += rate(&local, &client, seconds / SLICES as f64, threads);
                b += rate(&remote, &client, seconds / SLICES as f64, threads);
            }
            print_pair(scheme_client, &threads.to_string(), a, b);
        }
        // As the roles run: handshakes as tasks of a runtime of their own (one worker per
        // processor), where a signature through keyd is waited for on a worker.
        let (mut a, mut b) = (0.0, 0.0);
        for _ in 0..SLICES {
            a += rate_in_runtime(&local, &client, seconds / SLICES as f64, cpus);
            b += rate_in_runtime(&remote, &client, seconds / SLICES as f64, cpus);
        }
        print_pair(scheme_client, &format!("{cpus} tasks"), a, b);
    }
    drop(peers);
    // Closing its stdin ends the child.
    drop(child.stdin.take());
    let status = child.wait().unwrap();
    assert!(status.success(), "keyd child: {status}");
}

/// The baseline row and keyd's, from the sums of [`SLICES`] rates each.
fn print_pair(key: &str, threads: &str, baseline: f64, keyd: f64) {
    let (baseline, keyd) = (baseline / SLICES as f64, keyd / SLICES as f64);
    let mut out = std::io::stdout().lock();
    for (server, rate) in [
        ("rustls, key in this process", baseline),
        ("keyd child process", keyd),
    ] {
        writeln!(
            out,
            "{key:<6} {threads:>8}  {server:<28} {rate:>12.0} {:>11.2}x",
            rate / baseline
        )
        .unwrap();
    }
}

/// Slices per row and side.
const SLICES: usize = 10;

/// A client that accepts any certificate; for RSA, one that offers only RSA signatures.
fn client_config(rsa_only: bool) -> Arc<ClientConfig> {
    #[derive(Debug)]
    struct Any(Vec<rustls::SignatureScheme>);
    impl rustls::client::danger::ServerCertVerifier for Any {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.clone()
        }
    }
    use rustls::SignatureScheme as S;
    let schemes = if rsa_only {
        vec![S::RSA_PSS_SHA256, S::RSA_PKCS1_SHA256]
    } else {
        vec![
            S::ECDSA_NISTP256_SHA256,
            S::RSA_PSS_SHA256,
            S::RSA_PKCS1_SHA256,
        ]
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Any(schemes)))
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// Handshakes per second over `threads` threads, each running client and server in memory.
fn rate(
    server: &Arc<ServerConfig>,
    client: &Arc<ClientConfig>,
    seconds: f64,
    threads: usize,
) -> f64 {
    let start = Instant::now();
    let limit = Duration::from_secs_f64(seconds);
    let total: u64 = tokio::task::block_in_place(|| {
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut n = 0u64;
                        while start.elapsed() < limit {
                            handshake(server, client);
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).sum()
        })
    });
    total as f64 / start.elapsed().as_secs_f64()
}

/// Handshakes per second as `tasks` tasks of a multi-threaded runtime with `tasks` workers.
fn rate_in_runtime(
    server: &Arc<ServerConfig>,
    client: &Arc<ClientConfig>,
    seconds: f64,
    tasks: usize,
) -> f64 {
    let start = Instant::now();
    let limit = Duration::from_secs_f64(seconds);
    let total: u64 = tokio::task::block_in_place(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(tasks)
            .build()
            .unwrap();
        rt.block_on(async {
            let workers: Vec<_> = (0..tasks)
                .map(|_| {
                    let (server, client) = (server.clone(), client.clone());
                    tokio::spawn(async move {
                        let mut n = 0u64;
                        while start.elapsed() < limit {
                            handshake(&server, &client);
                            n += 1;
                            tokio::task::yield_now().await;
                        }
                        n
                    })
                })
                .collect();
            let mut sum = 0;
            for w in workers {
                sum += w.await.unwrap();
            }
            sum
        })
    });
    total as f64 / start.elapsed().as_secs_f64()
}

fn handshake(server: &Arc<ServerConfig>, client: &Arc<ClientConfig>) {
    let mut c = ClientConnection::new(
        client.clone(),
        ServerName::try_from("bench.example").unwrap(),
    )
    .unwrap();
    let mut s = ServerConnection::new(server.clone()).unwrap();
    let mut buf = Vec::new();
    while c.is_handshaking() || s.is_handshaking() {
        buf.clear();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            s.read_tls(&mut buf.as_slice()).unwrap();
            s.process_new_packets().unwrap();
        }
        buf.clear();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            c.read_tls(&mut buf.as_slice()).unwrap();
            c.process_new_packets().unwrap();
        }
    }
}
