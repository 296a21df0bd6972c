//! Restart latency of the real tree: how long after a role is killed with SIGKILL it serves
//! again. Tests only check that a killed role comes back (a state poll with a generous
//! deadline); how fast belongs here.
//!
//! `cargo bench -p moxd --bench restart_bench` (as root: the tree creates its role users; about
//! 6 s once built). Without `--bench` (as `cargo test --benches` runs it) it measures nothing.
//!
//! It starts `moxd serve` from this build (`CARGO_BIN_EXE_moxd`, as tests/tree.rs does, with
//! the same configuration: listeners on loopback, a resolver that answers NXDOMAIN) and kills
//! each role once, in `Role::ALL` order, waiting after each until every role is ready and every
//! edge answers. Columns, each from the kill:
//! - delay: the restart delay the supervisor's status showed while the role waited
//!   (`backoff_ms`); a role that had been ready waits 250 ms after a first crash, doubling per
//!   crash in a row, so each role is killed once (ARCHITECTURE.md "Restarts");
//! - start: the status shows the new process starting (polled every 2 ms: "-" when no poll
//!   caught it before it was ready);
//! - ready: the status shows the new process ready;
//! - start→ready: what starting a role costs (exec, handshake, sandbox, its own start: storaged
//!   opens its database);
//! - answers: a connection made to the role's plain-text port right at the kill gets its first
//!   bytes (the listener stays open in the supervisor, so it waits in the backlog); network
//!   roles only;
//! - links: every edge of the role (as client and as server) answers a ping through the
//!   supervisor's admin `Ping` (polled every 5 ms once ready).
//!
//! Last, how long a TLS handshake takes to fail while keyd is stopped (SIGSTOP) rather than
//! dead: the network role's wait for a signature is bounded (keyclient's 2 s timeout).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{Options, Tree};
use ipc::Role;
use ipc::config::ListenerKind;
use ipc::msg::admin::{self, RoleState, Status};
use moxd::admin_client::Response;

/// Longest any one step may take before the benchmark gives up.
const LIMIT: Duration = Duration::from_secs(30);

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("restart_bench: measures only under `cargo bench` (given --bench); nothing run");
        return;
    }
    if !common::is_root() {
        println!("restart_bench: needs root (the tree creates and switches to its role users)");
        return;
    }
    let started = Instant::now();
    let tree = Tree::spawn(Options::default());
    tree.wait_for(LIMIT, "every role ready", all_ready);
    println!(
        "moxd tree from {} ready in {:.2} s; each role killed once (SIGKILL), times from the kill\n",
        common::MOXD,
        started.elapsed().as_secs_f64()
    );
    println!(
        "{:<11} {:>8} {:>9} {:>9} {:>11} {:>10} {:>9}",
        "role", "delay ms", "start ms", "ready ms", "start→ready", "answers ms", "links ms"
    );
    for role in Role::ALL {
        let r = restart(&tree, role);
        let or_dash = |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{:.1}", ms(d)));
        println!(
            "{:<11} {:>8} {:>9} {:>9.1} {:>11} {:>10} {:>9.1}",
            role.name(),
            or_dash(r.delay),
            or_dash(r.launched),
            ms(r.ready),
            or_dash(r.launched.map(|l| r.ready.saturating_sub(l))),
            or_dash(r.answers),
            ms(r.links),
        );
    }
    keyd_stopped(&tree);
}

/// How long a TLS handshake on the IMAPS port takes with keyd running, and how long it takes to
/// fail with keyd stopped (SIGSTOP): imapd gives up on the signature after keyclient's 2 s
/// `SIGN_TIMEOUT` and ends the handshake instead of leaving it hanging. Each through python3's
/// ssl (tests/common `python_tls`), the interpreter's start included.
fn keyd_stopped(tree: &Tree) {
    let imaps = common::addr(tree, ListenerKind::Imaps);
    let handshake = || {
        let began = Instant::now();
        let result = common::python_tls(imaps, "- -");
        (began.elapsed(), result)
    };
    // The fastest of three: the first pays for cold caches.
    let running = (0..3)
        .map(|_| {
            let (took, result) = handshake();
            result.expect("a handshake while keyd runs");
            took
        })
        .min()
        .expect("three handshakes");
    let status = tree.status().expect("status");
    let keyd = status
        .roles
        .iter()
        .find(|r| r.role == Role::Keyd)
        .and_then(|r| r.pid)
        .expect("keyd's pid");
    let keyd = nix::unistd::Pid::from_raw(keyd as i32);
    nix::sys::signal::kill(keyd, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
    let (stopped, result) = handshake();
    nix::sys::signal::kill(keyd, nix::sys::signal::Signal::SIGCONT).expect("SIGCONT");
    assert!(result.is_err(), "a handshake succeeded with keyd stopped");
    println!(
        "\nTLS handshake on the IMAPS port (python3 ssl, its start included): {:.1} ms with keyd \
         running (fastest of 3);\nfailed after {:.1} ms with keyd stopped (SIGSTOP; keyclient's signature \
         timeout is 2 s)",
        ms(running),
        ms(stopped)
    );
}

/// What one restart took, from the kill.
struct Restart {
    /// None when no poll saw the role waiting (or starting).
    delay: Option<Duration>,
    launched: Option<Duration>,
    ready: Duration,
    answers: Option<Duration>,
    links: Duration,
}

/// Kills `role` and times its way back.
fn restart(tree: &Tree, role: Role) -> Restart {
    let status = tree.status().expect("status");
    let old = status.roles.iter().find(|r| r.role == role).expect("slot");
    let pid = old.pid.expect("a running role");
    let port = plain_port(role).map(|kind| common::addr(tree, kind));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    let killed = Instant::now();
    let probe = port.map(|addr| std::thread::spawn(move || first_bytes(addr, role, killed)));
    let (mut delay, mut launched) = (None, None);
    let ready = loop {
        assert!(killed.elapsed() < LIMIT, "{role} not back within {LIMIT:?}");
        if let Ok(s) = tree.status()
            && let Some(new) = s.roles.iter().find(|r| r.role == role)
        {
            let replaced = new.pid.is_some_and(|p| p != pid);
            match new.state {
                RoleState::Backoff => {
                    delay.get_or_insert(Duration::from_millis(new.backoff_ms));
                }
                RoleState::Starting if replaced => {
                    launched.get_or_insert(killed.elapsed());
                }
                RoleState::Ready if replaced => break killed.elapsed(),
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let links = loop {
        assert!(
            killed.elapsed() < LIMIT,
            "{role}'s links not back within {LIMIT:?}"
        );
        if edges_answer(tree, role) {
            break killed.elapsed();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let answers = probe.map(|t| t.join().expect("probe thread"));
    // Every role ready again before the next kill.
    tree.wait_for(LIMIT, "every role ready", all_ready);
    Restart {
        delay,
        launched,
        ready,
        answers,
        links,
    }
}

/// Whether the status lists every role, each ready.
fn all_ready(s: &Status) -> bool {
    s.roles.len() == Role::ALL.len() && s.roles.iter().all(|r| r.state == RoleState::Ready)
}

/// The plain-text port of a network role, which answers a connection by itself.
fn plain_port(role: Role) -> Option<ListenerKind> {
    match role {
        Role::Smtpd => Some(ListenerKind::Smtp),
        Role::Submission => Some(ListenerKind::Submission),
        Role::Imapd => Some(ListenerKind::Imap),
        Role::Httpd => Some(ListenerKind::Http),
        _ => None,
    }
}

/// Connects to `addr` (the role at it was just killed) and returns when its first bytes came,
/// measured from `since`.
fn first_bytes(addr: SocketAddr, role: Role, since: Instant) -> Duration {
    let mut s = TcpStream::connect_timeout(&addr, LIMIT).expect("connecting");
    s.set_read_timeout(Some(LIMIT)).expect("read timeout");
    if role == Role::Httpd {
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("request");
    }
    let mut byte = [0u8; 1];
    let n = s.read(&mut byte).expect("reading the first bytes");
    assert_eq!(n, 1, "{role} closed the connection without a word");
    since.elapsed()
}

/// Whether `role` answers the supervisor and every edge of it answers a ping.
fn edges_answer(tree: &Tree, role: Role) -> bool {
    let ping = admin::Ping {}.into();
    let Ok(Response::Pings(pings)) = moxd::admin_client::request(&tree.socket, &ping) else {
        return false;
    };
    pings.iter().any(|r| r.role == role)
        && pings.iter().all(|r| {
            (r.role != role || r.control.is_ok())
                && r.peers
                    .iter()
                    .filter(|p| r.role == role || p.peer == role)
                    .all(|p| p.result.is_ok())
        })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
