//! A full disk, for real: the tree's data directory is a small tmpfs made by the test, filled
//! with a ballast file to just above (or at) the free-space floor, then mail is sent over SMTP
//! until it is refused. Every message that got its 250 must be stored, `verifydata` must find
//! nothing wrong, and once the ballast is gone, mail is taken again. Root only (mount).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use common::{Options, Tree, addr};
use ipc::config::ListenerKind;

const MIB: u64 = 1024 * 1024;

/// A tree on a tmpfs of `size` with `[storage] min_free = min_free`, with account bob.
fn tree_on_tmpfs(size: &'static str, min_free: &str) -> Tree {
    let tree = Tree::start(Options {
        data_tmpfs: Some(size),
        extra: format!("\n[storage]\nmin_free = \"{min_free}\"\n"),
        ..Options::default()
    });
    for args in [
        &["domain", "add", "example.org"][..],
        &["account", "add", "bob", "bob@example.org"],
    ] {
        let out = tree.moxctl(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    tree
}

/// Free bytes of the file system holding `path`.
fn free(path: &Path) -> u64 {
    let s = nix::sys::statvfs::statvfs(path).expect("statvfs");
    s.blocks_available() as u64 * s.fragment_size()
}

/// Fills the file system of `dir` with `dir/ballast` until `leave` bytes are free.
fn ballast(dir: &Path, leave: u64) {
    let size = free(dir).saturating_sub(leave);
    let mut f = std::fs::File::create(dir.join("ballast")).expect("ballast");
    let block = vec![0x55u8; MIB as usize];
    let mut left = size;
    while left > 0 {
        let n = left.min(MIB) as usize;
        f.write_all(&block[..n]).expect("ballast write");
        left -= n as u64;
    }
    f.sync_all().expect("sync");
}

/// What the server said to one message.
#[derive(Debug, PartialEq, Eq)]
enum Sent {
    Accepted,
    /// Refused at RCPT or at the end of DATA: the reply.
    AtRcpt(String),
    AtData(String),
}

/// Sends one message of about `size` bytes with `subject` to bob over one connection.
fn send(mx: SocketAddr, subject: &str, size: usize) -> Sent {
    let s = TcpStream::connect(mx).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut r = BufReader::new(s.try_clone().expect("clone"));
    let mut w = s;
    let mut reply = || {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return all + "<closed>";
            }
            all += &line;
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    };
    assert!(reply().starts_with("220 "));
    let cmd = |w: &mut TcpStream, line: &str| {
        w.write_all(format!("{line}\r\n").as_bytes()).expect("send");
    };
    cmd(&mut w, "EHLO client.test");
    assert!(reply().starts_with("250"));
    cmd(&mut w, "MAIL FROM:<sender@client.test>");
    assert!(reply().starts_with("250"));
    cmd(&mut w, "RCPT TO:<bob@example.org>");
    let rcpt = reply();
    if !rcpt.starts_with("250") {
        return Sent::AtRcpt(rcpt);
    }
    cmd(&mut w, "DATA");
    let data = reply();
    if !data.starts_with("354") {
        return Sent::AtData(data);
    }
    let line = "x".repeat(76);
    let mut body = format!("From: <sender@client.test>\r\nSubject: {subject}\r\n\r\n");
    while body.len() < size {
        body += &line;
        body += "\r\n";
    }
    body += ".\r\n";
    w.write_all(body.as_bytes()).expect("body");
    let end = reply();
    cmd(&mut w, "QUIT");
    if end.starts_with("250") {
        Sent::Accepted
    } else {
        Sent::AtData(end)
    }
}

/// The subjects of every stored message file.
fn stored(tree: &Tree) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let msg = tree.dir.path().join("data/storaged/msg");
    for shard in std::fs::read_dir(msg).expect("msg").flatten() {
        for file in std::fs::read_dir(shard.path()).expect("shard").flatten() {
            let text =
                String::from_utf8_lossy(&std::fs::read(file.path()).expect("read")).into_owned();
            if let Some(subject) = text.lines().find_map(|l| l.strip_prefix("Subject: ")) {
                out.insert(subject.to_string());
            }
        }
    }
    out
}

fn assert_verifydata_clean(tree: &Tree) {
    let out = tree.moxctl(&["verifydata"]);
    assert!(
        out.status.success(),
        "{}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        tree.log_text()
    );
}

fn storaged_pid(tree: &Tree) -> Option<u32> {
    let status = tree.status().expect("status");
    status
        .roles
        .iter()
        .find(|r| r.role == ipc::Role::Storaged)
        .and_then(|r| r.pid)
}

/// Sends 100 KB messages until one is refused (at most `limit`); returns the acknowledged
/// subjects and the refusal.
fn send_until_refused(mx: SocketAddr, prefix: &str, limit: usize) -> (Vec<String>, Sent) {
    let mut acked = Vec::new();
    for i in 0..limit {
        let subject = format!("{prefix}-{i}");
        match send(mx, &subject, 100_000) {
            Sent::Accepted => acked.push(subject),
            refused => return (acked, refused),
        }
    }
    panic!("{limit} messages of 100 KB all accepted on a nearly full file system");
}

#[test]
fn under_the_free_space_floor_mail_is_refused_with_452_and_taken_again_once_space_is_back() {
    if common::skip_unless_root("under_the_free_space_floor_mail_is_refused_with_452") {
        return;
    }
    let floor = 8 * MIB;
    let tree = tree_on_tmpfs("32m", "8M");
    let mx = addr(&tree, ListenerKind::Smtp);
    let data = tree.dir.path().join("data");
    let pid = storaged_pid(&tree);
    // Room for a dozen or so messages above the floor.
    ballast(&data, floor + 2 * MIB);
    let (acked, refused) = send_until_refused(mx, "floor", 200);
    assert!(acked.len() >= 3, "some mail was taken: {acked:?}");
    let (Sent::AtData(reply) | Sent::AtRcpt(reply)) = &refused else {
        unreachable!()
    };
    assert!(reply.starts_with("452 4.3.1 "), "{refused:?}");
    // The floor held: what is left is for the database and what is in flight.
    assert!(
        free(&data) >= floor - MIB,
        "{} bytes free under a floor of {floor}",
        free(&data)
    );
    // Under the floor (more ballast), the next try is refused already at RCPT (smtpd asks
    // storaged again after a refusal).
    let more = free(&data).saturating_sub(floor - MIB);
    std::fs::write(data.join("ballast2"), vec![0x55u8; more as usize]).expect("ballast2");
    let refused = send(mx, "refused", 100_000);
    assert!(
        matches!(&refused, Sent::AtRcpt(r) if r.starts_with("452 4.3.1 ")),
        "refused at RCPT: {refused:?}"
    );
    let stored = stored(&tree);
    let lost: Vec<&String> = acked.iter().filter(|s| !stored.contains(*s)).collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    assert!(!stored.contains("refused"));
    assert_verifydata_clean(&tree);
    // Space back: mail is taken at once, by the same storaged.
    std::fs::remove_file(data.join("ballast")).expect("rm ballast");
    std::fs::remove_file(data.join("ballast2")).expect("rm ballast2");
    assert_eq!(send(mx, "after", 100_000), Sent::Accepted);
    assert!(stored_subject(&tree, "after"));
    assert_eq!(storaged_pid(&tree), pid, "storaged was not restarted");
    assert_verifydata_clean(&tree);
}

/// With no floor at all, the disk fills for real: four senders at once race the checks, so
/// writes may fail with ENOSPC. Every refusal is still a temporary one, nothing acknowledged is
/// lost, the store stays consistent, and mail is taken again once there is space.
#[test]
fn a_disk_that_really_fills_loses_nothing_acknowledged() {
    if common::skip_unless_root("a_disk_that_really_fills_loses_nothing_acknowledged") {
        return;
    }
    let tree = tree_on_tmpfs("32m", "0");
    let mx = addr(&tree, ListenerKind::Smtp);
    let data = tree.dir.path().join("data");
    ballast(&data, 3 * MIB);
    let runs: Vec<(Vec<String>, Sent)> = std::thread::scope(|s| {
        let senders: Vec<_> = (0..4)
            .map(|t| s.spawn(move || send_until_refused(mx, &format!("full{t}"), 200)))
            .collect();
        senders
            .into_iter()
            .map(|h| h.join().expect("sender"))
            .collect()
    });
    let acked: Vec<String> = runs.iter().flat_map(|(a, _)| a.clone()).collect();
    assert!(!acked.is_empty(), "some mail was taken");
    for (_, refused) in &runs {
        let (Sent::AtData(reply) | Sent::AtRcpt(reply)) = refused else {
            unreachable!()
        };
        assert!(reply.starts_with("452 4.3.1 "), "{refused:?}");
    }
    eprintln!(
        "{} acknowledged; ENOSPC seen by storaged: {}",
        acked.len(),
        tree.log_text().contains("No space left on device")
    );
    let stored = stored(&tree);
    let lost: Vec<&String> = acked.iter().filter(|s| !stored.contains(*s)).collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    std::fs::remove_file(data.join("ballast")).expect("rm ballast");
    assert_eq!(send(mx, "after", 100_000), Sent::Accepted);
    let stored = self::stored(&tree);
    let lost: Vec<&String> = acked.iter().filter(|s| !stored.contains(*s)).collect();
    assert!(lost.is_empty(), "acknowledged but lost later: {lost:?}");
    assert!(stored.contains("after"));
    assert_verifydata_clean(&tree);
}

fn stored_subject(tree: &Tree, subject: &str) -> bool {
    stored(tree).contains(subject)
}

/// Disk usage of the file system holding `path`, in bytes.
fn used(path: &Path) -> u64 {
    let s = nix::sys::statvfs::statvfs(path).expect("statvfs");
    (s.blocks() - s.blocks_free()) as u64 * s.fragment_size()
}

/// sled's log fills for real: the database lives on a file system of its own, so the message
/// files still have room (the floor is off, and it watches the data directory anyway) while
/// sled's write of its log fails with ENOSPC. storaged then fails the delivery waiting for that
/// flush (temporarily), exits, and is restarted by the supervisor; sled recovers from its log.
/// Every acknowledged message is there, `verifydata` finds nothing wrong, and once the database
/// has room again mail is taken — by a new storaged.
#[test]
fn a_database_log_that_cannot_be_written_makes_storaged_restart_and_loses_nothing_acknowledged() {
    if common::skip_unless_root("a_database_log_that_cannot_be_written_makes_storaged_restart") {
        return;
    }
    let tree = Tree::start(Options {
        db_tmpfs: Some(DB_TMPFS),
        extra: "\n[storage]\nmin_free = \"0\"\n".into(),
        ..Options::default()
    });
    for args in [
        &["domain", "add", "example.org"][..],
        &["account", "add", "bob", "bob@example.org"],
    ] {
        let out = tree.moxctl(args);
        assert!(out.status.success(), "{args:?}");
    }
    let db = tree.dir.path().join("data/storaged/db");
    let mx = addr(&tree, ListenerKind::Smtp);
    let first = storaged_pid(&tree).expect("storaged runs");
    eprintln!("database at start: {} bytes used", used(&db));
    // Small messages: each goes into sled's log whole (see storaged's `inline`).
    let (acked, refused) = send_until_refused_sized(mx, "log", 5_000, 5_000);
    eprintln!(
        "{} acknowledged, then {refused:?}; database: {} bytes used",
        acked.len(),
        used(&db)
    );
    let (Sent::AtData(reply) | Sent::AtRcpt(reply)) = &refused else {
        unreachable!()
    };
    assert!(reply.starts_with("45"), "a temporary refusal: {refused:?}");
    assert!(
        !acked.is_empty(),
        "some mail was taken before the log filled"
    );
    // storaged exits after the failed flush, and is started again (for as long as the full
    // database keeps it from opening, again and again).
    let log = wait_for_log(&tree, "WARN supervisor::tree: storaged exited");
    assert!(
        log.contains("ERROR storaged: exiting so that the supervisor restarts storaged"),
        "storaged said why it exits"
    );
    assert!(
        log.contains("No space left on device"),
        "sled's log was full"
    );
    // A new storaged, on a database still full: it may fail to open it (and be started again),
    // or open it and take what fits; nothing it acknowledges may be lost either.
    let start = std::time::Instant::now();
    while storaged_pid(&tree).is_none_or(|pid| pid == first) {
        assert!(start.elapsed() < Duration::from_secs(30), "not restarted");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut acked = acked;
    if send(mx, "while-full", 5_000) == Sent::Accepted {
        acked.push("while-full".into());
    }
    // Room for the database again.
    let out = std::process::Command::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(&db)
        .output()
        .expect("remount");
    assert!(out.status.success(), "remount");
    let start = std::time::Instant::now();
    loop {
        match send(mx, "after", 5_000) {
            Sent::Accepted => break,
            refused if start.elapsed() > Duration::from_secs(60) => {
                panic!("mail not taken again: {refused:?}\n{}", tree.log_text())
            }
            _ => std::thread::sleep(Duration::from_millis(250)),
        }
    }
    let now = storaged_pid(&tree).expect("storaged runs");
    assert_ne!(now, first, "storaged was restarted");
    let stored = stored(&tree);
    let lost: Vec<&String> = acked.iter().filter(|s| !stored.contains(*s)).collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    assert!(stored.contains("after"));
    assert_verifydata_clean(&tree);
}

/// The size of the database's own file system: room for sled's files at start and a few
/// hundred small messages more.
const DB_TMPFS: &str = "3m";

/// Like [`send_until_refused`], with messages of `size` bytes.
fn send_until_refused_sized(
    mx: SocketAddr,
    prefix: &str,
    size: usize,
    limit: usize,
) -> (Vec<String>, Sent) {
    let mut acked = Vec::new();
    for i in 0..limit {
        let subject = format!("{prefix}-{i}");
        match send(mx, &subject, size) {
            Sent::Accepted => acked.push(subject),
            refused => return (acked, refused),
        }
    }
    panic!("{limit} messages all accepted");
}

/// Waits (up to 30 s) until the tree's log holds `line`; returns the log.
fn wait_for_log(tree: &Tree, line: &str) -> String {
    let start = std::time::Instant::now();
    loop {
        let log = tree.log_text();
        if log.contains(line) {
            return log;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no `{line}` in the log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
