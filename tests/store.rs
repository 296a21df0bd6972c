//! storaged through the real tree: administration with moxctl, local delivery, verifydata, and
//! crash safety — kill -9 of storaged in the middle of a stream of deliveries loses nothing
//! that was acknowledged.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Options, Tree};
use ipc::Role;
use ipc::msg::admin::{self, RoleState};
use ipc::msg::control::{AdminReply, RoleAdmin};
use ipc::msg::store::{Admin, AdminReply as StoreReply, MailboxInfo, RecipientResult};

fn store(tree: &Tree, op: Admin) -> Result<StoreReply, String> {
    store_with(tree, op, Vec::new())
}

/// A store request from the admin socket, with descriptors; `Err` if it was refused or could
/// not be made.
fn store_with(
    tree: &Tree,
    op: Admin,
    fds: Vec<std::os::fd::OwnedFd>,
) -> Result<StoreReply, String> {
    let request = admin::ForRole {
        request: RoleAdmin::Store(op),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    match runtime.block_on(moxd::admin_client::ask(&tree.socket, request, fds))? {
        Ok(AdminReply::Store(r)) => Ok(r),
        Ok(other) => Err(format!(
            "a store request answered for another role: {other:?}"
        )),
        Err(e) => Err(e.0),
    }
}

/// Delivers `message` to `rcpts` the way an admin would: `moxctl deliver` reading stdin.
fn moxctl_deliver(tree: &Tree, rcpts: &[&str], message: &[u8]) -> std::process::Output {
    let mut child = Command::new(common::MOXCTL)
        .arg("--socket")
        .arg(&tree.socket)
        .arg("deliver")
        .args(rcpts)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("moxctl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(message)
        .expect("write");
    child.wait_with_output().expect("moxctl")
}

fn inbox(tree: &Tree, account: &str) -> MailboxInfo {
    let Ok(StoreReply::Mailboxes(list)) = store(
        tree,
        Admin::ListMailboxes {
            account: account.into(),
        },
    ) else {
        panic!("no mailboxes")
    };
    list.into_iter().find(|m| m.name == "Inbox").expect("inbox")
}

fn assert_consistent(tree: &Tree) {
    let reply = store(tree, Admin::VerifyData).expect("verifydata");
    assert_eq!(
        reply,
        StoreReply::Problems(Vec::new()),
        "{}",
        tree.log_text()
    );
}

#[test]
fn moxctl_manages_domains_accounts_and_delivers_locally() {
    let tree = Tree::start(Options::default());
    let ok = |args: &[&str]| {
        let out = tree.moxctl(args);
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ok(&["domain", "add", "example.org", "--separator", "+"]);
    ok(&["account", "add", "bob", "bob@example.org"]);
    ok(&["address", "add", "robert@example.org", "bob"]);
    assert!(ok(&["account", "list"]).contains("bob: bob@example.org, robert@example.org"));
    assert!(ok(&["domain", "list"]).contains("example.org (separator +)"));

    let bad = tree.moxctl(&["account", "add", "eve", "bob@example.org"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("is taken by account `bob`"),
        "{bad:?}"
    );
    let bad = tree.moxctl(&["account", "add", "../x", "x@example.org"]);
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("invalid account name"),
        "{bad:?}"
    );

    let msg = b"From: a@example.net\r\nSubject: hello\r\n\r\nbody\r\n";
    let out = moxctl_deliver(
        &tree,
        &[
            "bob+tag@example.org",
            "robert@example.org",
            "zed@example.org",
        ],
        msg,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "an unknown recipient makes the command fail"
    );
    assert!(text.contains("bob+tag@example.org: delivered"), "{text}");
    assert!(text.contains("zed@example.org: unknown address"), "{text}");
    let inbox = inbox(&tree, "bob");
    assert_eq!(
        (inbox.total, inbox.unseen, inbox.uidnext),
        (1, 1, ipc::msg::store::Uid(2)),
        "one copy per account"
    );
    assert_eq!(inbox.size, msg.len() as u64);
    assert_consistent(&tree);

    // Passwords go to authd as a pipe; accounts storaged does not know are refused.
    let set = |account: &str, password: &str| {
        let mut child = Command::new(common::MOXCTL)
            .arg("--socket")
            .arg(&tree.socket)
            .args(["password", "set", account, "--stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("moxctl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("{password}\n").as_bytes())
            .expect("write");
        child.wait_with_output().expect("moxctl")
    };
    let out = set("bob", "s3cret horse");
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("password set for bob"));
    let out = set("mallory", "x");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no such account `mallory`"),
        "{out:?}"
    );
    assert!(
        !tree.log_text().contains("s3cret"),
        "a password reached a log"
    );

    ok(&["address", "remove", "robert@example.org"]);
    ok(&["account", "remove", "bob"]);
    ok(&["domain", "remove", "example.org"]);
    assert_consistent(&tree);
}

/// Waits (under a generous deadline) until `more` further deliveries have been acknowledged.
fn wait_for_more_acks(acked: &Mutex<BTreeSet<String>>, more: usize, tree: &Tree) {
    let count = || acked.lock().expect("lock").len();
    let (from, start) = (count(), Instant::now());
    while count() < from + more {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no {more} more deliveries acknowledged (at {})\n{}",
            count(),
            tree.log_text()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn storaged_survives_kill_9_during_deliveries_without_losing_acknowledged_mail() {
    let tree = Arc::new(Tree::start(Options::default()));
    store(
        &tree,
        Admin::AddDomain {
            domain: "example.org".into(),
            separator: None,
        },
    )
    .expect("domain");
    store(
        &tree,
        Admin::AddAccount {
            name: "bob".into(),
            address: "bob@example.org".into(),
        },
    )
    .expect("account");

    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (tree, acked, stop) = (tree.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let marker = format!("marker-{w}-{n}");
                    n += 1;
                    let msg = format!(
                        "Subject: {marker}\r\nMessage-ID: <{marker}@test>\r\n\r\n{marker}\r\n"
                    );
                    let fd = memfd_with(msg.as_bytes());
                    let deliver = Admin::Deliver {
                        recipients: vec!["bob@example.org".into()],
                    };
                    let reply = store_with(&tree, deliver, vec![fd]);
                    if let Ok(StoreReply::Delivered(r)) = reply
                        && r == [("bob@example.org".to_string(), RecipientResult::Delivered)]
                    {
                        acked.lock().expect("lock").insert(marker);
                    }
                }
            })
        })
        .collect();

    for _ in 0..5 {
        // Kill while mail flows: a few more deliveries acknowledged since the last restart.
        wait_for_more_acks(&acked, 5, &tree);
        let status = tree.status().expect("status");
        let pid = status
            .roles
            .iter()
            .find(|r| r.role == Role::Storaged)
            .and_then(|r| r.pid)
            .expect("pid");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill");
        tree.wait_for(Duration::from_secs(10), "storaged back", |s| {
            s.roles.iter().any(|r| {
                r.role == Role::Storaged && r.state == RoleState::Ready && r.pid != Some(pid)
            })
        });
    }
    // Deliveries are acknowledged again after the last restart.
    wait_for_more_acks(&acked, 5, &tree);
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().expect("writer");
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked.len() > 20,
        "too few deliveries to mean anything: {}",
        acked.len()
    );

    // Restart once more so that the start-up sweep has run after the last kill.
    let out = tree.moxctl(&["restart", "storaged"]);
    assert!(out.status.success(), "{out:?}");
    let start = Instant::now();
    while tree.status().map_or(true, |s| {
        s.roles
            .iter()
            .any(|r| r.role == Role::Storaged && r.state != RoleState::Ready)
    }) {
        assert!(start.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(50));
    }
    tree.wait_for(Duration::from_secs(20), "ready", |s| {
        s.roles.iter().all(|r| r.state == RoleState::Ready)
    });
    assert_consistent(&tree);
    let inbox = inbox(&tree, "bob");
    assert!(
        inbox.total as usize >= acked.len(),
        "inbox has {} messages, {} were acknowledged",
        inbox.total,
        acked.len()
    );

    // Every acknowledged message is on disk, byte for byte.
    let mut found = BTreeSet::new();
    for shard in std::fs::read_dir(tree.dir.path().join("data/storaged/msg"))
        .expect("msg dir")
        .flatten()
    {
        for file in std::fs::read_dir(shard.path()).expect("shard").flatten() {
            let body = std::fs::read_to_string(file.path()).expect("read");
            if let Some(marker) = body
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("Subject: "))
            {
                found.insert(marker.to_string());
            }
        }
    }
    let lost: Vec<&String> = acked.difference(&found).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    eprintln!(
        "{} acknowledged, {} stored, none lost",
        acked.len(),
        found.len()
    );
}

/// An anonymous file holding `bytes`, to pass as a message.
fn memfd_with(bytes: &[u8]) -> std::os::fd::OwnedFd {
    let mut f = tempfile::tempfile().expect("tempfile");
    f.write_all(bytes).expect("write");
    use std::io::Seek;
    f.rewind().expect("rewind");
    f.into()
}

/// The numbers `n` of the "Subject: during n" messages among the message files under `msg`.
fn during_in(msg: &std::path::Path) -> Vec<usize> {
    let mut found = Vec::new();
    for shard in std::fs::read_dir(msg).expect("msg").flatten() {
        for file in std::fs::read_dir(shard.path()).expect("shard").flatten() {
            let text =
                String::from_utf8_lossy(&std::fs::read(file.path()).expect("read")).into_owned();
            if let Some(rest) = text.split("Subject: during ").nth(1) {
                let n = rest.split("\r\n").next().expect("subject line");
                found.push(n.parse().expect("a number"));
            }
        }
    }
    found
}

#[test]
fn backup_while_delivering_is_consistent() {
    let tree = Arc::new(Tree::start(Options::default()));
    store(
        &tree,
        Admin::AddDomain {
            domain: "example.org".into(),
            separator: None,
        },
    )
    .expect("domain");
    store(
        &tree,
        Admin::AddAccount {
            name: "bob".into(),
            address: "bob@example.org".into(),
        },
    )
    .expect("account");
    for i in 0..5 {
        let out = moxctl_deliver(
            &tree,
            &["bob@example.org"],
            format!("Subject: before {i}\r\n\r\nx\r\n").as_bytes(),
        );
        assert!(out.status.success(), "{out:?}");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(AtomicUsize::new(0));
    // The deliveries that began before the backup command returned and were acknowledged.
    let writer = {
        let (tree, stop, acknowledged) = (tree.clone(), stop.clone(), acknowledged.clone());
        std::thread::spawn(move || {
            let mut done = Vec::new();
            for n in 0.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let out = moxctl_deliver(
                    &tree,
                    &["bob@example.org"],
                    format!("Subject: during {n}\r\n\r\ny\r\n").as_bytes(),
                );
                if out.status.success() {
                    done.push(n);
                    acknowledged.fetch_add(1, Ordering::SeqCst);
                }
            }
            done
        })
    };
    // The writer is under way (one delivery acknowledged) before the backup starts.
    let start = Instant::now();
    while acknowledged.load(Ordering::SeqCst) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no delivery acknowledged\n{}",
            tree.log_text()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let dest = tree.dir.path().join("backup");
    let out = tree.moxctl(&["backup", dest.to_str().expect("utf-8")]);
    stop.store(true, Ordering::SeqCst);
    let delivered = writer.join().expect("writer");
    let during = delivered.len();
    assert!(out.status.success(), "{out:?}\n{}", tree.log_text());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("backup of ") && text.contains("moxd verifydata"),
        "{text}"
    );
    let check = Command::new(common::MOXD)
        .arg("verifydata")
        .arg(&dest)
        .output()
        .expect("moxd");
    assert!(check.status.success(), "{check:?}");
    assert!(String::from_utf8_lossy(&check.stdout).contains("data is consistent"));
    let files = std::fs::read_dir(dest.join("msg"))
        .expect("msg")
        .flatten()
        .map(|d| std::fs::read_dir(d.path()).expect("shard").count())
        .sum::<usize>();
    assert!(
        files >= 5,
        "at least the messages delivered before: {files}"
    );
    eprintln!("backup holds {files} messages; {during} deliveries ran meanwhile");
    // The two overlapped: of the deliveries acknowledged while the backup ran, some are in
    // it (acknowledged before its snapshot) and some are not (acknowledged after it, though
    // begun before the backup command returned).
    let in_backup = during_in(&dest.join("msg"));
    let (before, after): (Vec<usize>, Vec<usize>) =
        delivered.iter().partition(|n| in_backup.contains(n));
    assert!(
        !before.is_empty() && !after.is_empty(),
        "deliveries on both sides of the snapshot: in it {before:?}, after it {after:?}"
    );
    assert!(
        in_backup.iter().all(|n| delivered.contains(n)),
        "only acknowledged deliveries are in the backup: {in_backup:?} of {delivered:?}"
    );
    // A second backup into the same directory is refused.
    let again = tree.moxctl(&["backup", dest.to_str().expect("utf-8")]);
    assert!(!again.status.success());
    // verifydata refuses a directory that is not a store.
    let wrong = Command::new(common::MOXD)
        .arg("verifydata")
        .arg(tree.dir.path())
        .output()
        .expect("moxd");
    assert!(!wrong.status.success());
}
