//! The process tree, driven through the real binaries: start, sandbox, links, restarts,
//! shutdown, the admin socket, configuration errors, single-process mode.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Options, Tree, alive, proc_field, skip_unless_root};
use ipc::Role;
use ipc::config::ListenerKind;
use ipc::msg::admin::{self, RoleState};
use moxd::admin_client::Response;

#[test]
fn tree_starts_and_moxctl_lists_all_nine_processes() {
    let tree = Tree::spawn(Options::default());
    let took = tree.wait_ready(Duration::from_secs(20));
    eprintln!("tree ready after {took:?}");
    let out = tree.moxctl(&["status"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("supervisor pid {}", tree.pid())),
        "{text}"
    );
    for role in Role::ALL {
        let line = text
            .lines()
            .find(|l| l.starts_with(role.name()))
            .unwrap_or_else(|| panic!("no line for {role}: {text}"));
        assert!(line.contains(" ready "), "{line}");
    }
    let status = tree.status().expect("status");
    let pids: HashSet<u32> = status.roles.iter().filter_map(|r| r.pid).collect();
    assert_eq!(pids.len(), 8, "eight role processes: {status:#?}");
    assert!(!pids.contains(&tree.pid()));
    for pid in &pids {
        assert!(alive(*pid));
    }
}

#[test]
fn every_link_answers_pings() {
    let tree = Tree::start(Options::default());
    assert_links_work(&tree);
    let out = tree.moxctl(&["ping"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("FAILED"), "{text}");
}

/// Pings every role and every edge; panics naming what failed.
fn assert_links_work(tree: &Tree) {
    let Response::Pings(pings) = tree.request(admin::Ping {}) else {
        panic!("no pings")
    };
    let mut edges = BTreeSet::new();
    for r in &pings {
        assert!(r.control.is_ok(), "{}: {:?}", r.role, r.control);
        for p in &r.peers {
            assert!(p.result.is_ok(), "{} → {}: {:?}", r.role, p.peer, p.result);
            edges.insert((r.role, p.peer));
        }
    }
    let declared: BTreeSet<(Role, Role)> = ipc::topology::EDGES
        .iter()
        .map(|e| (e.client, e.server))
        .collect();
    assert_eq!(
        edges, declared,
        "every declared edge, and only those, is pinged"
    );
}

#[test]
fn roles_run_sandboxed_under_their_own_uids() {
    let tree = Tree::start(Options::default());
    let status = tree.status().expect("status");
    let mut uids = HashSet::new();
    for r in &status.roles {
        let pid = r.pid.expect("running");
        let field = |k| proc_field(pid, k).unwrap_or_else(|| panic!("{k} of {}", r.role));
        assert_eq!(field("NoNewPrivs"), "1", "{}", r.role);
        assert_eq!(field("Seccomp"), "2", "{}", r.role);
        assert_eq!(field("CapEff"), "0000000000000000", "{}", r.role);
        let ids: Vec<u32> = field("Uid")
            .split_whitespace()
            .map(|u| u.parse().expect("uid"))
            .collect();
        assert_eq!(ids.len(), 4);
        assert!(ids.iter().all(|u| *u == ids[0]), "{}: uids {ids:?}", r.role);
        if common::is_root() {
            assert_ne!(ids[0], 0, "{} runs as root", r.role);
            let gid_line = field("Gid");
            let gids: Vec<&str> = gid_line.split_whitespace().collect();
            assert!(
                gids.iter().all(|g| *g == gids[0] && *g != "0"),
                "{}: gids {gids:?}",
                r.role
            );
            assert_eq!(field("Groups"), gids[0], "{}: supplementary groups", r.role);
            assert_eq!(Some(ids[0]), r.uid, "status shows the real uid");
            uids.insert(ids[0]);
        }
        assert!(
            r.sandbox
                .iter()
                .any(|s| s.starts_with("seccomp: ") && s.contains("kill")),
            "{:?}",
            r.sandbox
        );
        assert!(
            r.sandbox.iter().any(|s| s.starts_with("landlock: ABI")),
            "{:?}",
            r.sandbox
        );
    }
    if common::is_root() {
        assert_eq!(uids.len(), 8, "every role has its own uid");
    } else {
        eprintln!("not root: uid separation not checked (CI runs as root)");
    }
}

#[test]
fn listening_sockets_live_only_in_the_supervisor_and_their_role() {
    if skip_unless_root("listening_sockets_live_only_in_the_supervisor_and_their_role") {
        return;
    }
    let tree = Tree::start(Options::default());
    let status = tree.status().expect("status");
    let pid_of = |role: Role| {
        status
            .roles
            .iter()
            .find(|r| r.role == role)
            .and_then(|r| r.pid)
            .expect("pid")
    };
    assert_eq!(status.listeners.len(), ListenerKind::ALL.len());
    for l in &status.listeners {
        let inode = listening_inode(l.addr.port()).unwrap_or_else(|| panic!("no socket for {l:?}"));
        let holders = holders_of(inode);
        let expected: BTreeSet<u32> = [tree.pid(), pid_of(l.kind.role())].into();
        assert_eq!(
            holders,
            expected,
            "{} ({}) is held by {holders:?}",
            l.kind.name(),
            l.addr
        );
    }
}

fn listening_inode(port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let local_port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
        (local_port == port && f.get(3) == Some(&"0A")).then(|| f.get(9)?.parse().ok())?
    })
}

fn holders_of(inode: u64) -> BTreeSet<u32> {
    let needle = format!("socket:[{inode}]");
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|t| t.to_string_lossy() == needle) {
                out.insert(pid);
            }
        }
    }
    out
}

#[test]
fn admin_socket_refuses_users_that_are_not_admins() {
    if skip_unless_root("admin_socket_refuses_users_that_are_not_admins") {
        return;
    }
    let group = "moxdtestadm";
    let _ = Command::new("groupadd").args(["--system", group]).status();
    let gid = nix::unistd::Group::from_name(group)
        .expect("lookup")
        .expect("group exists")
        .gid;
    let tree = Tree::start(Options {
        admin_group: Some(group.into()),
        ..Options::default()
    });
    let as_nobody = |groups: &str| {
        Command::new("setpriv")
            .args(["--reuid", "nobody", "--regid", "nogroup"])
            .arg(format!("--groups={groups}"))
            .arg(common::MOXCTL)
            .arg("--socket")
            .arg(&tree.socket)
            .arg("status")
            .output()
            .expect("setpriv")
    };
    // Without the admin group the directory (0750) keeps nobody out.
    let out = as_nobody("65534");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("access denied"),
        "{err}"
    );
    // With it, the socket is reachable and SO_PEERCRED refuses the uid.
    let out = as_nobody(&gid.to_string());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "nobody got in: {out:?}");
    assert!(
        err.contains("access denied: uid 65534 is not an administrator"),
        "{err}"
    );
    assert!(
        tree.log_text()
            .contains("admin: refused connection from uid 65534")
    );
    // Root still is.
    assert!(tree.moxctl(&["status"]).status.success());
}

#[test]
fn killed_roles_come_back_under_the_same_uid_with_working_links() {
    let tree = Tree::start(Options::default());
    for role in Role::ALL {
        let before = tree.status().expect("status");
        let old = before
            .roles
            .iter()
            .find(|r| r.role == role)
            .expect("slot")
            .clone();
        let pid = old.pid.expect("running");
        // Read before the kill: afterwards the old process's /proc entry is gone.
        let old_proc_uid = proc_field(pid, "Uid").expect("the running role's uid");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill");
        let killed = Instant::now();
        // A generous deadline for the state; how fast a restart is belongs in a benchmark.
        let after = tree.wait_for(Duration::from_secs(30), &format!("{role} back"), |s| {
            s.roles.iter().all(|r| r.state == RoleState::Ready)
                && s.roles
                    .iter()
                    .any(|r| r.role == role && r.pid.is_some_and(|p| p != pid))
        });
        eprintln!("{role} back after {:?}", killed.elapsed());
        let new = after.roles.iter().find(|r| r.role == role).expect("slot");
        assert_eq!(new.uid, old.uid);
        assert_eq!(new.restarts, old.restarts + 1);
        assert_eq!(
            proc_field(new.pid.expect("pid"), "Uid").as_deref(),
            Some(old_proc_uid.as_str()),
            "{role} runs under the uid it had before the kill"
        );
        assert_links_work(&tree);
    }
}

#[test]
fn killing_the_supervisor_ends_every_role() {
    let mut tree = Tree::start(Options::default());
    let pids: Vec<u32> = tree
        .status()
        .expect("status")
        .roles
        .iter()
        .filter_map(|r| r.pid)
        .collect();
    let mut child = tree.child.take().expect("running");
    child.kill().expect("kill supervisor");
    child.wait().expect("reap");
    let start = Instant::now();
    while pids.iter().any(|p| alive(*p)) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "roles outlived the supervisor: {pids:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(tree);
}

#[test]
fn a_role_failing_at_start_backs_off_with_growing_delays() {
    let tree = Tree::spawn(Options {
        fail_at_start: vec!["queued"],
        ..Options::default()
    });
    let mut delays = Vec::new();
    let start = Instant::now();
    while delays.len() < 3 && start.elapsed() < Duration::from_secs(20) {
        if let Ok(s) = tree.status() {
            let q = s
                .roles
                .iter()
                .find(|r| r.role == Role::Queued)
                .expect("slot");
            if q.state == RoleState::Backoff && delays.last() != Some(&q.backoff_ms) {
                delays.push(q.backoff_ms);
                let err = q.last_error.as_deref().unwrap_or_default();
                assert!(err.contains("debug.fail_at_start"), "{err}");
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(delays, [1000, 2000, 4000], "{}", tree.log_text());
    let out = tree.moxctl(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("queued"))
        .expect("queued line");
    assert!(
        line.contains("backoff") && line.contains("retry after"),
        "{line}"
    );
    // The others stay up, and those that call queued simply have no link to it.
    let s = tree.status().expect("status");
    assert!(
        s.roles
            .iter()
            .filter(|r| r.role != Role::Queued)
            .all(|r| r.state == RoleState::Ready)
    );
}

#[test]
fn a_core_role_that_never_starts_stops_the_tree() {
    let mut tree = Tree::spawn(Options {
        fail_at_start: vec!["keyd"],
        ..Options::default()
    });
    let code = tree.wait_exit(Duration::from_secs(40));
    assert_eq!(code, Some(1));
    let log = tree.log_text();
    assert!(
        log.contains("keyd failed to start 5 times in a row"),
        "{log}"
    );
}

#[test]
fn sigterm_stops_every_role_gracefully_in_order() {
    let mut tree = Tree::start(Options::default());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(tree.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    assert_eq!(tree.wait_exit(Duration::from_secs(15)), Some(0));
    let log = tree.log_text();
    for role in Role::ALL {
        assert!(
            log.contains(&format!("{role} stopped (exit code 0)")),
            "{role}: {log}"
        );
    }
    let pos = |role: Role| log.find(&format!("{role} stopped")).expect("stopped line");
    // The network roles first (in any order among themselves), then the roles behind them,
    // one at a time: every role of a phase has stopped before any role of the next.
    let phases: [&[Role]; 5] = [
        &[Role::Smtpd, Role::Submission, Role::Imapd, Role::Httpd],
        &[Role::Queued],
        &[Role::Authd],
        &[Role::Storaged],
        &[Role::Keyd],
    ];
    assert_eq!(
        phases.iter().map(|p| p.len()).sum::<usize>(),
        Role::ALL.len(),
        "every role is in a phase"
    );
    for pair in phases.windows(2) {
        for &earlier in pair[0] {
            for &later in pair[1] {
                assert!(
                    pos(earlier) < pos(later),
                    "{earlier} stopped before {later}: {log}"
                );
            }
        }
    }
    assert!(!tree.socket.exists(), "admin socket removed");
}

#[test]
fn moxctl_restart_loglevel_and_stop() {
    let mut tree = Tree::start(Options::default());
    let old = tree
        .status()
        .expect("status")
        .roles
        .iter()
        .find(|r| r.role == Role::Imapd)
        .and_then(|r| r.pid);
    let out = tree.moxctl(&["restart", "imapd"]);
    assert!(out.status.success(), "{out:?}");
    tree.wait_for(Duration::from_secs(10), "imapd restarted", |s| {
        s.roles
            .iter()
            .any(|r| r.role == Role::Imapd && r.state == RoleState::Ready && r.pid != old)
    });
    assert_links_work(&tree);
    // smtpd logs "done" (in its connection's span, naming the peer) at debug level when a
    // session ends cleanly: the filter's effect is seen in the log, not only in moxctl's exit
    // status.
    let smtp = common::addr(&tree, ListenerKind::Smtp);
    let at_info = smtp_session(smtp);
    let out = tree.moxctl(&["loglevel", "smtpd", "debug"]);
    assert!(out.status.success(), "{out:?}");
    let at_debug = smtp_session(smtp);
    wait_log_line(&tree, &done_line(Role::Smtpd, at_debug));
    let out = tree.moxctl(&["loglevel", "smtpd", "info"]);
    assert!(out.status.success(), "{out:?}");
    let at_info_again = smtp_session(smtp);
    // Back at debug once more, only so that a line marks how far smtpd's log has come: each
    // session above had ended (and logged, or not) before the next filter change was asked.
    let out = tree.moxctl(&["loglevel", "smtpd", "debug"]);
    assert!(out.status.success(), "{out:?}");
    let marker = smtp_session(smtp);
    wait_log_line(&tree, &done_line(Role::Smtpd, marker));
    let log = tree.log_text();
    assert!(!log.contains(&done_line(Role::Smtpd, at_info)), "{log}");
    assert!(
        !log.contains(&done_line(Role::Smtpd, at_info_again)),
        "{log}"
    );
    let out = tree.moxctl(&["loglevel", "nonsense=[["]);
    assert!(!out.status.success());
    let out = tree.moxctl(&["restart", "nosuchrole"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("unknown role"));
    let out = tree.moxctl(&["stop"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(tree.wait_exit(Duration::from_secs(15)), Some(0));
}

/// One SMTP session on `addr` that ends with QUIT and the server's close; returns the
/// client's address as smtpd names the peer.
fn smtp_session(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s.write_all(b"QUIT\r\n").expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out)
        .expect("read to the server's close");
    assert!(out.contains("\r\n221 "), "{out}");
    s.local_addr().expect("local address")
}

/// The line `role` (smtpd or submission) logs at debug level when the session of the client at
/// `peer` ends cleanly: the message, then the fields of the role's and the connection's spans.
fn done_line(role: Role, peer: std::net::SocketAddr) -> String {
    format!("DEBUG smtpd::conn: done role={role} peer={peer} session=")
}

/// Waits (under a generous deadline) until the tree's log holds `needle`.
fn wait_log_line(tree: &Tree, needle: &str) {
    let start = Instant::now();
    while !tree.log_text().contains(needle) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no {needle:?} in the log:\n{}",
            tree.log_text()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn network_roles_say_their_protocol_is_not_served_yet() {
    let tree = Tree::start(Options::default());
    let status = tree.status().expect("status");
    let addr = |kind| {
        status
            .listeners
            .iter()
            .find(|l| l.kind == kind)
            .expect("listener")
            .addr
    };
    let read_all = |addr, send: &[u8]| {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let _ = s.write_all(send);
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    let smtp = read_all(addr(ListenerKind::Smtp), b"QUIT\r\n");
    assert!(
        smtp.starts_with("220 mx.test.example ESMTP moxd\r\n221 2.0.0 "),
        "{smtp}"
    );
    let imap = read_all(addr(ListenerKind::Imap), b"");
    assert!(imap.starts_with("* BYE [UNAVAILABLE]"), "{imap}");
    let http = read_all(addr(ListenerKind::Http), b"GET / HTTP/1.0\r\n\r\n");
    assert!(http.starts_with("HTTP/1.1 503 "), "{http}");
    // An implicit-TLS port speaks only TLS (tests/tls.rs does the handshake): plaintext gets
    // no plaintext answer. What comes back is a TLS alert record (content type 21, version
    // 3.x): the port was reached and a TLS server read the bytes. An empty answer (a refused
    // or dropped connection) does not pass.
    let mut s = TcpStream::connect_timeout(&addr(ListenerKind::Imaps), Duration::from_secs(5))
        .expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(b"a001 CAPABILITY\r\n").expect("write");
    let mut plain = Vec::new();
    let _ = s.read_to_end(&mut plain);
    assert!(
        !String::from_utf8_lossy(&plain).contains("BYE"),
        "{plain:?}"
    );
    assert!(
        plain.len() >= 7 && plain[0] == 21 && plain[1] == 3,
        "a TLS alert record: {plain:?}"
    );
}

#[test]
fn single_process_mode_runs_every_role_in_one_process() {
    let mut tree = Tree::start(Options {
        single_process: true,
        ..Options::default()
    });
    let status = tree.status().expect("status");
    assert!(status.single_process);
    assert!(status.roles.iter().all(|r| r.pid == Some(tree.pid())));
    assert_links_work(&tree);
    let out = tree.moxctl(&["restart", "storaged"]);
    assert!(out.status.success(), "{out:?}");
    tree.wait_for(Duration::from_secs(10), "storaged restarted", |s| {
        s.roles
            .iter()
            .any(|r| r.role == Role::Storaged && r.restarts == 1 && r.state == RoleState::Ready)
    });
    assert_links_work(&tree);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(tree.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    assert_eq!(tree.wait_exit(Duration::from_secs(15)), Some(0));
}

#[test]
fn single_process_mode_lines_say_which_role_and_connection_wrote_them() {
    let tree = Tree::start(Options {
        single_process: true,
        ..Options::default()
    });
    let out = tree.moxctl(&["loglevel", "info,smtpd::conn=debug"]);
    assert!(out.status.success(), "{out:?}");
    // smtpd and submission run the same code in one process, writing to one log: each line
    // says which of them wrote it, and for which client.
    let mx = smtp_session(common::addr(&tree, ListenerKind::Smtp));
    let submission = smtp_session(common::addr(&tree, ListenerKind::Submission));
    wait_log_line(&tree, &done_line(Role::Smtpd, mx));
    wait_log_line(&tree, &done_line(Role::Submission, submission));
    let log = tree.log_text();
    assert!(!log.contains(&done_line(Role::Submission, mx)), "{log}");
    assert!(!log.contains(&done_line(Role::Smtpd, submission)), "{log}");
    // And so does every other line of a role's code (`TIME LEVEL target: …`), whichever task
    // or thread wrote it.
    let role_code = [
        "keyd",
        "storaged",
        "authd",
        "queued",
        "smtpd",
        "imapd",
        "httpd",
        "keyclient",
        "ipc::serve",
        "supervisor::role",
    ];
    let mut seen = 0;
    for line in log.lines() {
        let Some(target) = line.split_whitespace().nth(2) else {
            continue;
        };
        let target = target.trim_end_matches(':');
        if role_code
            .iter()
            .any(|t| target == *t || target.starts_with(&format!("{t}::")))
        {
            assert!(
                line.contains(" role="),
                "a role's line without its role: {line}"
            );
            seen += 1;
        }
    }
    assert!(seen >= 16, "only {seen} lines of roles in\n{log}");
}

#[test]
fn single_process_mode_backs_off_a_failing_role() {
    let tree = Tree::spawn(Options {
        single_process: true,
        fail_at_start: vec!["httpd"],
        ..Options::default()
    });
    let s = tree.wait_for(Duration::from_secs(10), "httpd retried", |s| {
        s.roles
            .iter()
            .any(|r| r.role == Role::Httpd && r.restarts >= 2 && r.backoff_ms >= 2000)
    });
    assert!(
        s.roles
            .iter()
            .filter(|r| r.role != Role::Httpd)
            .all(|r| r.state == RoleState::Ready)
    );
}

#[test]
fn configuration_errors_name_file_line_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[server]\nhostname = \"mx.example\"\ndata_dir = \"/tmp/x\"\nlisten = 25\n",
    )
    .expect("write");
    let out = Command::new(common::MOXD)
        .arg("serve")
        .arg("-c")
        .arg(&path)
        .output()
        .expect("moxd");
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:4:1: unknown field `listen`"),
        "{err}"
    );
    assert!(err.contains("(in [server] listen)"), "{err}");
}

#[test]
fn moxctl_explains_a_missing_server() {
    let out = Command::new(common::MOXCTL)
        .args(["--socket", "/nonexistent/admin.sock", "status"])
        .output()
        .expect("moxctl");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no admin socket at /nonexistent/admin.sock")
    );
}

#[test]
fn a_second_supervisor_on_the_same_socket_is_refused() {
    let tree = Tree::start(Options::default());
    let out = Command::new(common::MOXD)
        .arg("serve")
        .arg("-c")
        .arg(tree.dir.path().join("moxd.toml"))
        .output()
        .expect("moxd");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another moxd is running") || err.contains("Address already in use"),
        "{err}"
    );
    assert!(tree.status().is_ok(), "the first one still serves");
}
