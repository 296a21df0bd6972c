//! `moxd localserve` as a newcomer runs it: no root, no config, one directory, loopback ports
//! 1000 + the standard ones, Ctrl-C to stop. As root (CI) the test drops to `nobody` first so
//! that the no-root path is what runs.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{MOXCTL, MOXD, proc_field};

/// Runs `program args` as `nobody` when we are root, as ourselves otherwise.
fn as_user(program: &str) -> Command {
    if common::is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid",
            "nobody",
            "--regid",
            "nogroup",
            "--clear-groups",
            program,
        ]);
        c
    } else {
        Command::new(program)
    }
}

/// localserve listens on fixed ports: one at a time.
static PORTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn localserve_runs_the_tree_without_root_and_stops_on_ctrl_c() {
    let _ports = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let dir = tmp.path().join("ls");
    let mut child = as_user(MOXD)
        .args(["localserve", "--dir"])
        .arg(&dir)
        .env_remove("HOME")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("localserve");
    let stderr = child.stderr.take().expect("stderr");
    let log = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = BufReader::new(stderr).read_to_string(&mut s);
        s
    });
    let mut banner = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    for line in lines.by_ref() {
        let line = line.expect("line");
        let done = line.starts_with("Stop with Ctrl-C");
        banner.push(line);
        if done {
            break;
        }
    }
    let banner = banner.join("\n");
    assert!(
        banner.contains(&format!("configuration and data in {}", dir.display())),
        "{banner}"
    );
    for (name, port) in [
        ("smtp", 1025),
        ("submission", 1587),
        ("submissions", 1465),
        ("imap", 1143),
        ("imaps", 1993),
        ("http", 1080),
        ("https", 1443),
    ] {
        assert!(
            banner.contains(&format!("{name:<12} 127.0.0.1:{port}")),
            "{name}: {banner}"
        );
    }
    let socket = dir.join("run/admin.sock");
    assert!(banner.contains(&format!("moxctl --socket {} status", socket.display())));
    // Once every role is ready, the newcomer's account exists, with the documented password.
    let account = lines.next().expect("account line").expect("line");
    assert_eq!(
        account,
        "localserve account: mox@localhost, password moxmoxmox"
    );

    // The user who started it administers it.
    let start = Instant::now();
    let status = loop {
        let out = as_user(MOXCTL)
            .arg("--socket")
            .arg(&socket)
            .arg("status")
            .output()
            .expect("moxctl");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if out.status.success() && text.lines().filter(|l| l.contains(" ready ")).count() == 8 {
            break text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "not ready: {text} {out:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let me = if common::is_root() {
        "65534".to_string()
    } else {
        nix::unistd::getuid().to_string()
    };
    for line in status.lines().filter(|l| l.contains(" ready ")) {
        let pid: u32 = line
            .split_whitespace()
            .nth(2)
            .expect("pid")
            .parse()
            .expect("pid");
        let uids = proc_field(pid, "Uid").expect("uid");
        assert!(uids.split_whitespace().all(|u| u == me), "{line}: {uids}");
        assert_eq!(
            proc_field(pid, "NoNewPrivs").as_deref(),
            Some("1"),
            "{line}"
        );
        assert_eq!(proc_field(pid, "Seccomp").as_deref(), Some("2"), "{line}");
    }
    let mut smtp = TcpStream::connect("127.0.0.1:1025").expect("smtp");
    smtp.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    smtp.write_all(b"QUIT\r\n").expect("quit");
    let mut greeting = String::new();
    let _ = smtp.read_to_string(&mut greeting);
    assert!(
        greeting.starts_with("220 localhost ESMTP moxd\r\n221 "),
        "{greeting}"
    );
    // Mail for any address reaches the local account; the documented local parts fail on
    // purpose; submission takes the printed credentials.
    let script = r#"
import smtplib, ssl, time
def send(rcpt):
    s = smtplib.SMTP("127.0.0.1", 1025, timeout=20)
    try:
        s.sendmail("someone@example.net", [rcpt], b"Subject: localserve\r\n\r\nhi\r\n")
        return "250"
    except smtplib.SMTPRecipientsRefused as e:
        return str(list(e.recipients.values())[0][0])
    finally:
        s.close()
deadline = time.time() + 15
while True:
    r = send("anyone@anywhere.example")
    if r == "250" or time.time() > deadline:
        break
    time.sleep(0.2)  # the account is created once every role is ready
print("any", r)
print("tempfail", send("tempfail@x.example"))
print("permfail", send("permfail@x.example"))
print("unknown", send("unknown@x.example"))
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP("127.0.0.1", 1587, timeout=20)
s.starttls(context=ctx)
s.login("mox@localhost", "moxmoxmox")
s.sendmail("mox@localhost", ["friend@example.com"], b"From: mox@localhost\r\nSubject: sub\r\n\r\nhi\r\n")
s.quit()
print("submission ok")
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .output()
        .expect("python3");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    for want in [
        "any 250",
        "tempfail 451",
        "permfail 550",
        "unknown 550",
        "submission ok",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }

    let code = ctrl_c(&mut child);
    let log = log.join().expect("log");
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("shutting down: SIGINT received") && log.contains("all roles stopped"),
        "{log}"
    );
    assert!(dir.join("moxd.toml").exists());
    assert!(!socket.exists());
}

/// The README's first command as root, whose home directory (0700 on Debian) the role users
/// cannot pass through: it starts without options, says where its data is, and stops on Ctrl-C.
#[test]
fn localserve_as_root_with_a_private_home_starts_and_says_where_its_data_is() {
    if common::skip_unless_root(
        "localserve_as_root_with_a_private_home_starts_and_says_where_its_data_is",
    ) {
        return;
    }
    let _ports = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let home = tempfile::tempdir().expect("home");
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let mut child = Command::new(MOXD)
        .arg("localserve")
        .env("HOME", home.path())
        .env_remove("XDG_DATA_HOME")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("localserve");
    let stderr = child.stderr.take().expect("stderr");
    let log = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = BufReader::new(stderr).read_to_string(&mut s);
        s
    });
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut banner = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("line");
        let account = line.starts_with("localserve account:");
        banner.push(line);
        if account {
            break;
        }
    }
    let banner = banner.join("\n");
    let dir = supervisor::localserve::ROOT_DIR;
    assert!(
        banner.contains(&format!("configuration and data in {dir}")),
        "{banner}"
    );
    assert!(
        banner.contains("localserve account: mox@localhost"),
        "every role became ready: {banner}"
    );
    let mut smtp = TcpStream::connect("127.0.0.1:1025").expect("smtp");
    smtp.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    smtp.write_all(b"QUIT\r\n").expect("quit");
    let mut greeting = String::new();
    let _ = smtp.read_to_string(&mut greeting);
    assert!(
        greeting.starts_with("220 localhost ESMTP moxd"),
        "{greeting}"
    );
    let code = ctrl_c(&mut child);
    let log = log.join().expect("log");
    assert_eq!(code, Some(0), "{log}");
    assert!(std::path::Path::new(dir).join("moxd.toml").exists());
}

/// Sends SIGINT (Ctrl-C) and waits, generously, for localserve to exit; its exit code.
fn ctrl_c(child: &mut std::process::Child) -> Option<i32> {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "localserve did not stop"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}
