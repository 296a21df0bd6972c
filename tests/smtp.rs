//! smtpd through the real tree, with real clients (Python's smtplib, swaks, raw sockets): MX
//! delivery byte for byte behind a Received line, pipelining, 8BITMIME and SMTPUTF8, the size
//! limit, relay refusal, smuggling attempts, malformed commands, STARTTLS + AUTH for every
//! mechanism, wrong passwords, a slow client, and kill -9 during a load run.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Options, SmtpClient as Client, Tree, addr};
use ipc::config::ListenerKind;

/// A tree with example.org (`+` separator), account bob (bob@, jøran@) and its password.
fn tree_with_bob(extra: &str) -> Tree {
    let tree = Tree::start(Options {
        extra: extra.into(),
        ..Options::default()
    });
    for args in [
        &["domain", "add", "example.org", "--separator", "+"][..],
        &["account", "add", "bob", "bob@example.org"],
        &["address", "add", "jøran@example.org", "bob"],
    ] {
        let out = tree.moxctl(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut child = Command::new(common::MOXCTL)
        .arg("--socket")
        .arg(&tree.socket)
        .args(["password", "set", "bob", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("moxctl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"correct horse\n")
        .expect("write");
    assert!(child.wait().expect("moxctl").success());
    tree
}

/// Every stored message file whose text contains `marker`.
fn stored_with(tree: &Tree, marker: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let Ok(shards) = std::fs::read_dir(tree.dir.path().join("data/storaged/msg")) else {
        return out;
    };
    for shard in shards.flatten() {
        for file in std::fs::read_dir(shard.path()).expect("shard").flatten() {
            let bytes = std::fs::read(file.path()).expect("read");
            if bytes.windows(marker.len()).any(|w| w == marker.as_bytes()) {
                out.push(bytes);
            }
        }
    }
    out
}

fn python(script: &str, args: &[String]) -> (bool, String) {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn mx_delivers_byte_for_byte_behind_a_received_line_with_smtplib() {
    let tree = tree_with_bob("");
    let smtp = addr(&tree, ListenerKind::Smtp);
    let message = "From: Sender <sender@example.net>\r\nTo: bob@example.org\r\nSubject: marker-8bit-1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße aus Köln.\r\n.a line that starts with a dot\r\n..and one with two\r\n";
    let file = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(file.path(), message).expect("write");
    let script = r#"
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=20)
s.ehlo("client.test")
for ext in ["pipelining", "8bitmime", "smtputf8", "enhancedstatuscodes", "size", "starttls", "limits"]:
    assert s.has_extn(ext), ext
assert not s.has_extn("auth")
msg = open(sys.argv[3], "rb").read()
refused = s.sendmail("sender@example.net", ["bob@example.org", "bob+lists@example.org", "Bob@Example.ORG"], msg, mail_options=["BODY=8BITMIME"])
assert refused == {}, refused
utf8 = "From: jøran@example.net\r\nSubject: marker-utf8-2\r\n\r\nhei\r\n".encode()
refused = s.sendmail("jøran@example.net", ["jøran@example.org"], utf8, mail_options=["SMTPUTF8"])
assert refused == {}, refused
print(s.quit())
"#;
    let (ok, out) = python(
        script,
        &[
            smtp.ip().to_string(),
            smtp.port().to_string(),
            file.path().display().to_string(),
        ],
    );
    assert!(ok, "{out}\n{}", tree.log_text());
    let stored = stored_with(&tree, "marker-8bit-1");
    assert_eq!(stored.len(), 1, "three addresses of one account: one copy");
    for bytes in &stored {
        let text = String::from_utf8(bytes.clone()).expect("utf-8");
        // Authentication-Results (the checks, here without DNS), then our Received line.
        assert!(
            text.starts_with("Authentication-Results: mx.test.example;"),
            "{text}"
        );
        assert!(text.contains("\r\nReceived: from client.test ([127.0.0.1])\r\n\tby mx.test.example (moxd) with ESMTP id "), "{text}");
        assert!(
            text.ends_with(message),
            "the message follows byte for byte, dots unstuffed:\n{text}"
        );
    }
    let utf8 = stored_with(&tree, "marker-utf8-2");
    assert_eq!(utf8.len(), 1);
    assert!(
        String::from_utf8_lossy(&utf8[0]).contains("with UTF8SMTP id"),
        "{}",
        String::from_utf8_lossy(&utf8[0])
    );
}

#[test]
fn pipelined_commands_errors_relay_size_and_smuggling_over_a_raw_socket() {
    let tree = tree_with_bob("\n[smtp]\nmax_message_size = 2000\n");
    let mut c = Client::connect(addr(&tree, ListenerKind::Smtp));
    let ehlo = c.cmd("EHLO raw.test");
    assert!(
        ehlo.contains("250-SIZE 2000\r\n") && ehlo.contains("250-PIPELINING\r\n"),
        "{ehlo}"
    );
    // Malformed commands: answered, the connection stays.
    assert!(c.cmd("HELLO there").starts_with("500 5.5.1 "));
    assert!(
        c.cmd("MAIL FROM:no-brackets@example.net")
            .starts_with("553 5.1.7 ")
    );
    assert!(
        c.cmd("MAIL FROM:<a@example.net> FOO=BAR")
            .starts_with("555 5.5.4 ")
    );
    assert!(
        c.cmd("MAIL FROM:<a@example.net> SIZE=2001")
            .starts_with("552 5.3.4 ")
    );
    // Pipelined: one write, the replies in order.
    c.send(b"MAIL FROM:<a@example.net>\r\nRCPT TO:<bob@example.org>\r\nRCPT TO:<nobody@example.org>\r\nRCPT TO:<someone@elsewhere.example>\r\nDATA\r\n");
    let replies: Vec<String> = (0..5).map(|_| c.reply()).collect();
    let codes: Vec<&str> = replies.iter().map(|r| &r[..9]).collect();
    assert_eq!(
        codes,
        [
            "250 2.1.0",
            "250 2.1.5",
            "550 5.1.1",
            "554 5.7.1",
            "354 start"
        ],
        "{replies:?}"
    );
    c.send(b"Subject: marker-pipelined\r\n\r\nhello\r\n.\r\nNOOP\r\n");
    let done = c.reply();
    assert!(done.starts_with("250 2.0.0 "), "{done}");
    assert!(c.reply().starts_with("250 2.0.0 ok"));
    // Too large once sent (no SIZE given): refused, nothing stored.
    c.cmd("MAIL FROM:<a@example.net>");
    c.cmd("RCPT TO:<bob@example.org>");
    assert!(c.cmd("DATA").starts_with("354 "));
    c.send(
        format!(
            "Subject: marker-large\r\n\r\n{}\r\n.\r\n",
            "x".repeat(900)
                .repeat(3)
                .chars()
                .collect::<Vec<_>>()
                .chunks(900)
                .map(|c| c.iter().collect::<String>())
                .collect::<Vec<_>>()
                .join("\r\n")
        )
        .as_bytes(),
    );
    assert!(c.reply().starts_with("552 5.3.4 "));
    // Smuggling: a bare-LF "end" and a command behind it are message text; the message is
    // refused at its real end and nothing of it is stored.
    c.cmd("MAIL FROM:<a@example.net>");
    c.cmd("RCPT TO:<bob@example.org>");
    assert!(c.cmd("DATA").starts_with("354 "));
    c.send(b"Subject: marker-outer\r\n\r\nbody\n.\nMAIL FROM:<evil@example.net>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nSubject: marker-smuggled\r\n\r\n.\r\n");
    let smuggle = c.reply();
    assert!(smuggle.starts_with("554 5.6.0 "), "{smuggle}");
    assert!(c.cmd("QUIT").starts_with("221 2.0.0 "));
    assert_eq!(stored_with(&tree, "marker-pipelined").len(), 1);
    assert!(stored_with(&tree, "marker-large").is_empty());
    assert!(
        stored_with(&tree, "marker-smuggled").is_empty()
            && stored_with(&tree, "marker-outer").is_empty()
    );
}

#[test]
fn a_silent_client_is_timed_out_and_too_many_errors_close_the_connection() {
    let tree = tree_with_bob("\n[smtp]\ntimeout_secs = 1\nmax_errors = 3\n");
    // Silent: the next thing read is the server's 421 once its 1 s timeout has run (the read
    // itself waits up to 20 s).
    let mut c = Client::connect(addr(&tree, ListenerKind::Smtp));
    let bye = c.reply();
    assert!(bye.starts_with("421 4.4.2 "), "{bye}");
    let mut c = Client::connect(addr(&tree, ListenerKind::Smtp));
    assert!(c.cmd("BOGUS").starts_with("500 "));
    assert!(c.cmd("BOGUS").starts_with("500 "));
    let last = c.cmd("BOGUS");
    assert!(last.starts_with("421 4.7.0 "), "{last}");
    assert_eq!(c.reply(), "<closed>");
}

/// Authenticates on submission (STARTTLS on 587, implicit TLS on 465) with every mechanism
/// smtplib has, and SCRAM-SHA-256 with Python's scramp; sends a message to a local recipient.
#[test]
fn submission_requires_tls_then_auth_with_every_mechanism_and_own_sender() {
    let tree = tree_with_bob("");
    let sub = addr(&tree, ListenerKind::Submission);
    let subs = addr(&tree, ListenerKind::Submissions);
    let script = r#"
import base64, smtplib, ssl, sys
host, port, tls_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP(host, port, timeout=20)
s.ehlo("client.test")
assert not s.has_extn("auth"), "no AUTH before TLS"
code, text = s.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0bob\0correct horse").decode())
assert code == 538, (code, text)
code, _ = s.docmd("MAIL", "FROM:<bob@example.org>")
assert code == 530, code
s.starttls(context=ctx)
s.ehlo("client.test")
mechs = s.esmtp_features["auth"].split()
print("mechanisms", mechs)
for m in ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256", "SCRAM-SHA-1"]:
    assert m in mechs, m
try:
    s.login("bob", "wrong password")
    raise SystemExit("a wrong password was accepted")
except smtplib.SMTPAuthenticationError as e:
    assert e.smtp_code == 535 and b"5.7.8" in e.smtp_error, e
s.quit()
for mech in ["PLAIN", "LOGIN", "CRAM-MD5"]:
    s = smtplib.SMTP(host, port, timeout=20)
    s.starttls(context=ctx)
    s.ehlo("client.test")
    s.user, s.password = "bob@example.org", "correct horse"
    code, text = s.auth(mech, getattr(s, "auth_" + mech.lower().replace("-", "_")), initial_response_ok=(mech != "CRAM-MD5"))
    assert code == 235, (mech, code, text)
    code, text = s.docmd("MAIL", "FROM:<someone@elsewhere.example>")
    assert code == 550, ("not bob's address", code, text)
    refused = s.sendmail("bob+out@example.org", ["bob@example.org"], ("From: bob@example.org\r\nSubject: marker-sub-" + mech + "\r\n\r\nhi\r\n").encode())
    assert refused == {}, refused
    s.quit()
# SCRAM-SHA-1 and SCRAM-SHA-256 with an independent client (scramp), on the implicit-TLS port.
import scramp
s = smtplib.SMTP_SSL(host, tls_port, timeout=20, context=ctx)
s.ehlo("client.test")
c = scramp.ScramClient(["SCRAM-SHA-1"], "bob", "correct horse")
code, text = s.docmd("AUTH", "SCRAM-SHA-1 " + base64.b64encode(c.get_client_first().encode()).decode())
assert code == 334, (code, text)
c.set_server_first(base64.b64decode(text).decode())
code, text = s.docmd(base64.b64encode(c.get_client_final().encode()).decode())
assert code == 334, ("server-final as a challenge", code, text)
c.set_server_final(base64.b64decode(text).decode())
code, text = s.docmd("")
assert code == 235, ("SCRAM-SHA-1", code, text)
s.quit()
s = smtplib.SMTP_SSL(host, tls_port, timeout=20, context=ctx)
s.ehlo("client.test")
c = scramp.ScramClient(["SCRAM-SHA-256"], "bob", "correct horse")
first = c.get_client_first()
code, text = s.docmd("AUTH", "SCRAM-SHA-256 " + base64.b64encode(first.encode()).decode())
assert code == 334, (code, text)
c.set_server_first(base64.b64decode(text).decode())
code, text = s.docmd(base64.b64encode(c.get_client_final().encode()).decode())
assert code == 334, ("server-final as a challenge", code, text)
c.set_server_final(base64.b64decode(text).decode())
code, text = s.docmd("")
assert code == 235, (code, text)
refused = s.sendmail("bob@example.org", ["bob@example.org"], b"From: <bob+x@example.org>\r\nSubject: marker-sub-SCRAM\r\n\r\nhi\r\n")
assert refused == {}, refused
# An authenticated sender may name a remote recipient (submission relays; MX refuses).
code, text = s.docmd("MAIL", "FROM:<bob@example.org>")
assert code == 250, ("MAIL for a remote recipient", code, text)
code, text = s.docmd("RCPT", "TO:<x@elsewhere.example>")
assert code == 250 and text.startswith(b"2.1.5 "), ("remote RCPT", code, text)
code, text = s.docmd("RSET")
assert code == 250, ("RSET", code, text)
s.quit()
print("ok")
"#;
    let (ok, out) = python(
        script,
        &[
            sub.ip().to_string(),
            sub.port().to_string(),
            subs.port().to_string(),
        ],
    );
    assert!(ok && out.contains("ok"), "{out}\n{}", tree.log_text());
    for m in ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM"] {
        let stored = stored_with(&tree, &format!("marker-sub-{m}"));
        assert_eq!(stored.len(), 1, "{m}");
        let text = String::from_utf8_lossy(&stored[0]).into_owned();
        assert!(
            text.contains(" with ESMTPSA id ") && text.contains("(using TLSv1.3 with cipher "),
            "{text}"
        );
    }
}

/// swaks, the admin's SMTP tool, as a second independent client: STARTTLS and AUTH PLAIN on
/// submission, plain MX delivery.
#[test]
fn swaks_delivers_over_mx_and_submission() {
    if Command::new("swaks").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("MOXD_REQUIRE_PEERS").is_none(),
            "swaks is required (apt-get install swaks)"
        );
        eprintln!("SKIPPED: swaks not installed");
        return;
    }
    let tree = tree_with_bob("");
    let run = |args: &[&str]| {
        let out = Command::new("swaks").args(args).output().expect("swaks");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let mx = addr(&tree, ListenerKind::Smtp).to_string();
    let (ok, out) = run(&[
        "--server",
        &mx,
        "--from",
        "a@example.net",
        "--to",
        "bob@example.org",
        "--header",
        "Subject: marker-swaks-mx",
        "--helo",
        "swaks.test",
    ]);
    assert!(ok, "{out}");
    let sub = addr(&tree, ListenerKind::Submission).to_string();
    let (ok, out) = run(&[
        "--server",
        &sub,
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "bob",
        "--auth-password",
        "correct horse",
        "--from",
        "bob@example.org",
        "--to",
        "bob@example.org",
        "--header",
        "Subject: marker-swaks-sub",
    ]);
    assert!(ok, "{out}");
    let (ok, out) = run(&[
        "--server",
        &mx,
        "--from",
        "a@example.net",
        "--to",
        "x@elsewhere.example",
    ]);
    assert!(!ok && out.contains("554 5.7.1"), "{out}");
    assert_eq!(stored_with(&tree, "marker-swaks-mx").len(), 1);
    assert_eq!(stored_with(&tree, "marker-swaks-sub").len(), 1);
}

/// Sends messages in a loop on one connection after another; records each one smtpd
/// acknowledged with 250.
fn load_sender(
    mx: SocketAddr,
    id: usize,
    stop: &std::sync::atomic::AtomicBool,
    acked: &std::sync::Mutex<Vec<String>>,
) -> usize {
    use std::sync::atomic::Ordering;
    let mut attempts = 0;
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let Ok(s) = TcpStream::connect(mx) else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let Ok(mut c) = Client::over(s) else {
            continue;
        };
        if !c.reply().starts_with("220") || !c.cmd("EHLO load.test").starts_with("250") {
            continue;
        }
        for _ in 0..20 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            n += 1;
            attempts += 1;
            let marker = format!("load-{id}-{n}");
            c.send(b"MAIL FROM:<l@example.net>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n");
            let (m, r, d) = (c.reply(), c.reply(), c.reply());
            if !(m.starts_with("250") && r.starts_with("250") && d.starts_with("354")) {
                break;
            }
            c.send(
                format!(
                    "Subject: {marker}\r\n\r\n{}\r\n.\r\n",
                    "load line\r\n".repeat(50)
                )
                .as_bytes(),
            );
            let done = c.reply();
            if done.starts_with("250") {
                acked.lock().expect("lock").push(marker);
            } else {
                break;
            }
        }
    }
    attempts
}

/// Waits (under a generous deadline) until `more` further messages have been acknowledged.
fn wait_for_more_acks(acked: &std::sync::Mutex<Vec<String>>, more: usize, tree: &Tree) {
    let count = || acked.lock().expect("lock").len();
    let (from, start) = (count(), std::time::Instant::now());
    while count() < from + more {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no {more} more messages acknowledged (at {})\n{}",
            count(),
            tree.log_text()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn killing_smtpd_during_a_load_run_loses_no_acknowledged_message() {
    load_run_with_kills(ipc::Role::Smtpd);
}

/// storaged killed while small messages (which ride in the database log until their files are
/// checkpointed) are delivered: every acknowledged one is there after each restart.
#[test]
fn killing_storaged_during_a_load_run_loses_no_acknowledged_message() {
    load_run_with_kills(ipc::Role::Storaged);
}

/// Four senders deliver over port 25 while `role` is killed four times; then every message
/// acknowledged with 250 must be stored, and `verifydata` must find nothing wrong.
fn load_run_with_kills(role: ipc::Role) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let tree = tree_with_bob("\n[smtp]\nconnections_per_ip = 100\n");
    let mx = addr(&tree, ListenerKind::Smtp);
    let stop = AtomicBool::new(false);
    let acked = std::sync::Mutex::new(Vec::new());
    let attempts: usize = std::thread::scope(|scope| {
        let senders: Vec<_> = (0..4)
            .map(|id| {
                let (stop, acked) = (&stop, &acked);
                scope.spawn(move || load_sender(mx, id, stop, acked))
            })
            .collect();
        for _ in 0..4 {
            // Kill while mail flows: a few more messages acknowledged since the last restart.
            wait_for_more_acks(&acked, 5, &tree);
            if let Some(pid) = role_pid(&tree, role) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                // Until its successor is ready (the status may still show the killed one).
                let deadline = std::time::Instant::now() + Duration::from_secs(20);
                while std::time::Instant::now() < deadline
                    && !tree.status().is_ok_and(|s| {
                        s.roles.iter().any(|r| {
                            r.role == role
                                && r.state == ipc::msg::admin::RoleState::Ready
                                && r.pid.is_some_and(|p| p != pid)
                        })
                    })
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            tree.wait_ready(Duration::from_secs(20));
        }
        // Mail flows again after the last restart.
        wait_for_more_acks(&acked, 5, &tree);
        stop.store(true, Ordering::Relaxed);
        senders.into_iter().map(|s| s.join().expect("sender")).sum()
    });
    let acked = acked.into_inner().expect("lock");
    let mut stored = std::collections::BTreeSet::new();
    for shard in std::fs::read_dir(tree.dir.path().join("data/storaged/msg"))
        .expect("msg")
        .flatten()
    {
        for file in std::fs::read_dir(shard.path()).expect("shard").flatten() {
            let text =
                String::from_utf8_lossy(&std::fs::read(file.path()).expect("read")).into_owned();
            if let Some(subject) = text.lines().find_map(|l| l.strip_prefix("Subject: ")) {
                stored.insert(subject.to_string());
            }
        }
    }
    let lost: Vec<&String> = acked.iter().filter(|m| !stored.contains(*m)).collect();
    eprintln!(
        "{attempts} messages tried, {} acknowledged, {} stored, {role} killed 4 times",
        acked.len(),
        stored.len()
    );
    assert!(
        acked.len() > 20,
        "the load ran: {} acknowledged",
        acked.len()
    );
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    let out = tree.moxctl(&["verifydata"]);
    assert!(
        out.status.success(),
        "{}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        tree.log_text()
    );
}

/// The TXT records `moxctl dkim list` prints, by record name (zone-file chunks joined).
fn dkim_records(tree: &Tree) -> Vec<(String, String)> {
    let out = tree.moxctl(&["dkim", "list"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.split_once(". IN TXT ( ")?;
            let value: String = rest
                .trim_end_matches(" )")
                .split("\" \"")
                .map(|c| c.trim_matches('"'))
                .collect();
            Some((name.to_string(), value))
        })
        .collect()
}

#[test]
fn submitted_mail_for_other_domains_is_dkim_signed_in_keyd_and_queued_durably() {
    let tree = tree_with_bob("");
    for args in [
        &[
            "dkim",
            "genkey",
            "example.org",
            "--selector",
            "rsa1",
            "--alg",
            "rsa",
        ][..],
        &[
            "dkim",
            "genkey",
            "example.org",
            "--selector",
            "ed1",
            "--alg",
            "ed25519",
        ],
    ] {
        assert!(tree.moxctl(args).status.success());
    }
    let records = dkim_records(&tree);
    assert_eq!(records.len(), 2, "{records:?}");
    let sub = addr(&tree, ListenerKind::Submission);
    let script = r#"
import smtplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=20)
s.starttls(context=ctx)
s.login("bob", "correct horse")
msg = b"From: Bob <bob@example.org>\r\nTo: carol@elsewhere.example, bob@example.org\r\nSubject: marker-queued\r\nMessage-ID: <q1@example.org>\r\nDate: Sun, 22 Nov 2026 16:00:00 +0000\r\n\r\nHello Carol.\r\n"
s.mail("bob@example.org")
s.rcpt("carol@elsewhere.example")
s.rcpt("bob@example.org")
code, text = s.data(msg)
print("data", code, text.decode())
assert code == 250 and b"queued as" in text, (code, text)
forged = b"From: Mallory <mallory@elsewhere.example>\r\nSubject: forged\r\n\r\nx\r\n"
try:
    s.sendmail("bob@example.org", ["carol@elsewhere.example"], forged)
    raise SystemExit("a forged From: was accepted")
except smtplib.SMTPDataError as e:
    assert e.smtp_code == 550 and b"5.7.1" in e.smtp_error, e
s.quit()
"#;
    let (ok, out) = python(script, &[sub.ip().to_string(), sub.port().to_string()]);
    assert!(ok, "{out}\n{}", tree.log_text());
    // The local recipient has it; the remote one is in the queue.
    assert_eq!(stored_with(&tree, "marker-queued").len(), 1);
    let list = tree.moxctl(&["queue", "list"]);
    let listing = String::from_utf8_lossy(&list.stdout).into_owned();
    assert!(
        listing.contains("<bob@example.org> → carol@elsewhere.example"),
        "{listing}"
    );
    assert_eq!(
        listing.lines().count(),
        2,
        "one message queued (the forged one is not): {listing}"
    );
    let id: String = listing
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .expect("id")
        .into();
    // Rebuild what queued will send: the DKIM-Signature fields, then the queued file.
    let env =
        std::fs::read(tree.dir.path().join(format!("data/queued/env/{id}"))).expect("envelope");
    let record: queued::store::Record = ipc::codec::decode_unbounded(&env).expect("record");
    assert!(!record.held, "released once the local copy was delivered");
    assert_eq!(record.envelope.recipients, ["carol@elsewhere.example"]);
    assert_eq!(
        record.envelope.account, "bob",
        "the account of bob's session ticket"
    );
    let body =
        std::fs::read(tree.dir.path().join(format!("data/queued/msg/{id}"))).expect("message");
    let mut full = record.prepend.clone();
    full.extend_from_slice(&body);
    let text = String::from_utf8_lossy(&full).into_owned();
    assert_eq!(text.matches("DKIM-Signature:").count(), 2, "{text}");
    // keyd's own timestamps: valid for the default week, no body length limit.
    let unfolded = text.replace("\r\n\t", " ");
    for field in unfolded
        .lines()
        .filter(|l| l.starts_with("DKIM-Signature:"))
    {
        let tag = |name: &str| {
            field
                .split(';')
                .find_map(|t| t.trim().strip_prefix(&format!("{name}=")))
                .map(|v| v.parse::<u64>().expect("number"))
        };
        let (t, x) = (tag("t").expect("t="), tag("x").expect("x="));
        assert_eq!(x - t, 7 * 24 * 3600, "{field}");
        assert!(!field.contains(" l="), "{field}");
    }
    let file = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(file.path(), &full).expect("write");
    let verify = r#"
import sys
try:
    import dkim
except ImportError:
    print("MISSING"); sys.exit(0)
records = dict(a.split("=", 1) for a in sys.argv[2:])
def dns(name, timeout=5):
    name = name.decode() if isinstance(name, bytes) else name
    return records.get(name.rstrip("."), "").encode()
msg = open(sys.argv[1], "rb").read()
d = dkim.DKIM(msg)
print(" ".join("PASS" if d.verify(idx=i, dnsfunc=dns) else "FAIL" for i in range(2)))
"#;
    let mut args = vec![file.path().display().to_string()];
    args.extend(records.iter().map(|(n, r)| format!("{n}={r}")));
    let (ok, out) = python(verify, &args);
    assert!(ok, "{out}");
    if out.trim() == "MISSING" {
        assert!(
            std::env::var_os("MOXD_REQUIRE_PEERS").is_none(),
            "dkimpy is required"
        );
        return;
    }
    assert_eq!(
        out.trim(),
        "PASS PASS",
        "both signatures verify with dkimpy:\n{text}"
    );
}

#[test]
fn per_account_sending_limits_refuse_with_the_setting_named() {
    let tree = tree_with_bob(
        "\n[smtp]\nmax_messages_per_day = 3\nmax_first_time_recipients_per_day = 2\n",
    );
    let sub = addr(&tree, ListenerKind::Submission);
    let script = r#"
import smtplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=20)
s.starttls(context=ctx)
s.login("bob", "correct horse")
def send(rcpts):
    try:
        s.sendmail("bob@example.org", rcpts, b"From: bob@example.org\r\nSubject: limits\r\n\r\nhi\r\n")
        return "250"
    except smtplib.SMTPDataError as e:
        return "%d %s" % (e.smtp_code, e.smtp_error.decode())
print("1:", send(["a@elsewhere.example"]))
print("2:", send(["b@elsewhere.example", "c@elsewhere.example"]))
print("3:", send(["a@elsewhere.example", "b@elsewhere.example"]))
print("4:", send(["A@elsewhere.example"]))
print("5:", send(["a@elsewhere.example"]))
s.quit()
"#;
    let (ok, out) = python(script, &[sub.ip().to_string(), sub.port().to_string()]);
    assert!(ok, "{out}");
    assert!(out.contains("1: 250"), "{out}");
    assert!(
        out.contains(
            "2: 451 4.7.0 sending limit reached: smtp.max_first_time_recipients_per_day = 2"
        ),
        "two new recipients after one: {out}"
    );
    assert!(out.contains("3: 250") && out.contains("4: 250"), "{out}");
    assert!(
        out.contains("5: 451 4.7.0 sending limit reached: smtp.max_messages_per_day = 3"),
        "{out}"
    );
    let list = tree.moxctl(&["queue", "list"]);
    assert_eq!(
        String::from_utf8_lossy(&list.stdout).lines().count(),
        4,
        "three queued"
    );
}

/// RFC 3207 §4.2 (CVE-2011-0411): commands pipelined after STARTTLS, before the handshake,
/// must be dropped, not executed inside the TLS session; the session starts over.
#[test]
fn commands_pipelined_behind_starttls_are_dropped() {
    let tree = tree_with_bob("");
    let sub = addr(&tree, ListenerKind::Submission);
    let script = r#"
import socket, ssl, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
f = s.makefile("rb")
def reply():
    lines = []
    while True:
        l = f.readline().decode()
        lines.append(l.strip())
        if len(l) < 4 or l[3] != "-":
            return lines
reply()
s.sendall(b"EHLO client.test\r\n")
reply()
s.sendall(b"STARTTLS\r\nMAIL FROM:<bob@example.org>\r\n")
r = reply()
assert r[-1].startswith("220"), r
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
t = ctx.wrap_socket(s, server_hostname="mx.test.example")
f = t.makefile("rb")
t.sendall(b"RCPT TO:<bob@example.org>\r\n")
print("rcpt:", reply()[-1])
t.sendall(b"MAIL FROM:<bob@example.org>\r\n")
print("mail:", reply()[-1])
"#;
    let (ok, out) = python(script, &[sub.ip().to_string(), sub.port().to_string()]);
    assert!(ok, "{out}");
    // The injected MAIL was not carried into TLS, and EHLO is needed again.
    assert!(out.contains("rcpt: 503 5.5.1"), "{out}");
    assert!(out.contains("mail: 503 5.5.1 send EHLO first"), "{out}");
}

/// From the review: a second From field must not slip past the sender check, and an
/// Authentication-Results field claiming our host name is renamed (RFC 8601 §5).
#[test]
fn a_second_from_is_refused_and_forged_results_are_renamed() {
    let tree = tree_with_bob("");
    let sub = addr(&tree, ListenerKind::Submission);
    let mx = addr(&tree, ListenerKind::Smtp);
    let script = r#"
import smtplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=20)
s.starttls(context=ctx)
s.login("bob", "correct horse")
try:
    s.sendmail("bob@example.org", ["bob@example.org"], b"From: ceo@bank.example\r\nFrom: bob@example.org\r\nSubject: two\r\n\r\nx\r\n")
    print("two-from: 250")
except smtplib.SMTPDataError as e:
    print("two-from:", e.smtp_code, e.smtp_error.decode())
s.quit()
m = smtplib.SMTP(sys.argv[1], int(sys.argv[3]), timeout=20)
m.sendmail("a@example.net", ["bob@example.org"], b"Authentication-Results: mx.test.example; dmarc=pass header.from=bank.example\r\nSubject: marker-forged-ar\r\n\r\nx\r\n")
m.quit()
print("mx ok")
"#;
    let (ok, out) = python(
        script,
        &[
            sub.ip().to_string(),
            sub.port().to_string(),
            mx.port().to_string(),
        ],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("two-from: 550 5.6.0 a message needs exactly one From: field, not 2"),
        "{out}"
    );
    let stored = stored_with(&tree, "marker-forged-ar");
    assert_eq!(stored.len(), 1);
    let text = String::from_utf8_lossy(&stored[0]).into_owned();
    assert!(
        text.contains("\r\nX-Forged-Authentication-Results: mx.test.example; dmarc=pass"),
        "{text}"
    );
    assert_eq!(
        text.matches("\nAuthentication-Results: mx.test.example;")
            .count()
            + usize::from(text.starts_with("Authentication-Results: mx.test.example;")),
        1,
        "only ours: {text}"
    );
}

#[test]
fn a_recipient_removed_after_rcpt_fails_the_whole_message_until_the_retry() {
    let tree = tree_with_bob("");
    assert!(
        tree.moxctl(&["address", "add", "extra@example.org", "bob"])
            .status
            .success()
    );
    let mut c = Client::connect(addr(&tree, ListenerKind::Smtp));
    c.cmd("EHLO raw.test");
    assert!(c.cmd("MAIL FROM:<a@example.net>").starts_with("250 "));
    assert!(c.cmd("RCPT TO:<bob@example.org>").starts_with("250 "));
    assert!(c.cmd("RCPT TO:<extra@example.org>").starts_with("250 "));
    let out = tree.moxctl(&["address", "remove", "extra@example.org"]);
    assert!(out.status.success(), "{out:?}");
    assert!(c.cmd("DATA").starts_with("354 "));
    c.send(b"Subject: marker-vanished\r\n\r\nhello\r\n.\r\n");
    let reply = c.reply();
    assert!(
        reply.starts_with("451 4.3.0 ") && reply.contains("extra@example.org"),
        "{reply}"
    );
    assert!(
        stored_with(&tree, "marker-vanished").is_empty(),
        "nothing delivered, not even to bob"
    );
    // The client's retry: the gone address refused at RCPT, the rest delivered once.
    assert!(c.cmd("MAIL FROM:<a@example.net>").starts_with("250 "));
    assert!(c.cmd("RCPT TO:<bob@example.org>").starts_with("250 "));
    assert!(
        c.cmd("RCPT TO:<extra@example.org>")
            .starts_with("550 5.1.1 ")
    );
    assert!(c.cmd("DATA").starts_with("354 "));
    c.send(b"Subject: marker-vanished\r\n\r\nhello\r\n.\r\n");
    let reply = c.reply();
    assert!(reply.starts_with("250 2.0.0 "), "{reply}");
    assert_eq!(stored_with(&tree, "marker-vanished").len(), 1);
}

/// Python's smtplib over implicit TLS from a chosen loopback source address: `plain(src, user,
/// password)` and `login(src, user, password)` print each reply code.
const AUTH_FROM: &str = r#"
import base64, smtplib, ssl, sys
host, port = sys.argv[1], int(sys.argv[2])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
def connect(src):
    s = smtplib.SMTP_SSL(host, port, timeout=60, context=ctx, source_address=(src, 0))
    s.ehlo("client.test")
    return s
def plain(src, user, password):
    s = connect(src)
    code, _ = s.docmd("AUTH", "PLAIN " + base64.b64encode(("\0%s\0%s" % (user, password)).encode()).decode())
    print("plain", src, user, code)
    s.close()
    return code
def login(src, user, password):
    s = connect(src)
    replies = [s.docmd("AUTH", "LOGIN")]
    replies.append(s.docmd(base64.b64encode(user.encode()).decode()))
    replies.append(s.docmd(base64.b64encode(password.encode()).decode()))
    print("login", src, user, " ".join("%d %s" % (c, t.decode()) for c, t in replies))
    s.close()
    return replies
"#;

#[test]
fn guessing_from_many_networks_gets_535_for_the_right_password_too() {
    // A guesser spreads over many /24s (127.N.0.1) and over the account's names and addresses;
    // the account's limit (three a minute here) counts them all, and from then on the right
    // password gets exactly the reply a wrong one gets.
    let tree = tree_with_bob("\n[auth]\naccount_failures_per_minute = 3\n");
    let subs = addr(&tree, ListenerKind::Submissions);
    let script = format!(
        r#"{AUTH_FROM}
# Below the limit the right password works, from anywhere.
assert plain("127.20.0.1", "bob", "correct horse") == 235
for i, user in enumerate(["bob", "bob@example.org", "jøran@example.org"]):
    assert plain("127.%d.0.1" % (i + 1), user, "guess %d" % i) == 535
for i, user in enumerate(["bob", "bob@example.org"]):
    assert plain("127.%d.0.1" % (i + 10), user, "correct horse") == 535, "the right password"
wrong = login("127.30.0.1", "bob", "guess")
right = login("127.31.0.1", "bob", "correct horse")
assert [c for c, _ in wrong] == [334, 334, 535], wrong
assert wrong == right, (wrong, right)
"#
    );
    let (ok, out) = python(&script, &[subs.ip().to_string(), subs.port().to_string()]);
    assert!(ok, "{out}\n{}", tree.log_text());
    let log = tree.log_text();
    for want in [
        // Counted: the guesses, under the name typed.
        "authentication failed: mechanism=PLAIN username=\"bob@example.org\" remote=127.2.0.1 protocol=submission reason=\"bad credentials\"",
        // Refused before the password was checked; only the log says so.
        "authentication failed: mechanism=PLAIN username=\"bob\" remote=127.10.0.1 protocol=submission reason=\"too many failed logins for this account in the last minute",
        "authentication failed: mechanism=LOGIN username=\"bob\" remote=127.31.0.1 protocol=submission reason=\"too many failed logins for this account",
    ] {
        assert!(log.contains(want), "missing {want:?} in\n{log}");
    }
}

#[test]
fn a_host_over_its_limit_gets_535_for_the_right_password() {
    // Three failures a minute from one address (the default is 10, with growing delays that
    // would make this test take a minute).
    let tree = tree_with_bob("\n[auth]\nhost_failures_per_minute = 3\n");
    let subs = addr(&tree, ListenerKind::Submissions);
    let script = format!(
        r#"{AUTH_FROM}
for i in range(3):
    assert plain("127.0.0.1", "bob", "guess %d" % i) == 535
assert plain("127.0.0.1", "bob", "correct horse") == 535, "the right password"
# Another address is not affected.
assert plain("127.0.1.1", "bob", "correct horse") == 235
"#
    );
    let (ok, out) = python(&script, &[subs.ip().to_string(), subs.port().to_string()]);
    assert!(ok, "{out}\n{}", tree.log_text());
    let want = "username=\"bob\" remote=127.0.0.1 protocol=submission reason=\"too many failed logins for this IPv4 address in the last minute";
    assert!(tree.log_text().contains(want), "{}", tree.log_text());
}

#[test]
fn an_accounts_limit_survives_authd_killed_and_the_refusal_is_logged() {
    let tree = tree_with_bob("\n[auth]\naccount_failures_per_minute = 3\n");
    let subs = addr(&tree, ListenerKind::Submissions);
    let args = [subs.ip().to_string(), subs.port().to_string()];
    let guesses = format!(
        r#"{AUTH_FROM}
for i in range(3):
    assert plain("127.%d.0.1" % (i + 1), "bob", "guess %d" % i) == 535
"#
    );
    let (ok, out) = python(&guesses, &args);
    assert!(ok, "{out}\n{}", tree.log_text());
    let guessed = std::time::SystemTime::now();
    // authd saves its counters (atomically, fsync'd) within seconds of a failure; wait for the
    // save that holds all three, then kill it without warning.
    let state = tree.dir.path().join("data/authd/throttle");
    let saved = || {
        std::fs::metadata(&state)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= guessed)
    };
    let start = std::time::Instant::now();
    while !saved() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "authd never saved its counters to {}\n{}",
            state.display(),
            tree.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let old = role_pid(&tree, ipc::Role::Authd).expect("authd pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill authd");
    tree.wait_for(Duration::from_secs(60), "authd restarted", |s| {
        s.roles.iter().any(|r| {
            r.role == ipc::Role::Authd
                && r.pid.is_some_and(|p| p != old)
                && r.state == ipc::msg::admin::RoleState::Ready
        })
    });
    // The right password from a network never seen: still refused, answered like a wrong one.
    // (454 means submission has not yet reached the new authd: ask again.)
    let right = format!(
        r#"{AUTH_FROM}
import time
for _ in range(100):
    code = plain("127.50.0.1", "bob", "correct horse")
    if code != 454:
        break
    time.sleep(0.1)
assert code == 535, code
"#
    );
    let (ok, out) = python(&right, &args);
    assert!(ok, "{out}\n{}", tree.log_text());
    let log = tree.log_text();
    for want in [
        "authentication failed: mechanism=PLAIN username=\"bob\" remote=127.1.0.1 protocol=submission reason=\"bad credentials\"",
        "authentication failed: mechanism=PLAIN username=\"bob\" remote=127.50.0.1 protocol=submission reason=\"too many failed logins for this account in the last minute",
    ] {
        assert!(log.contains(want), "missing {want:?} in\n{log}");
    }
}

/// A submission to another domain and a local recipient whose local delivery fails after the
/// queue took its copy: the queued copy is discarded, so the client's retry sends one copy out.
#[test]
fn a_failed_local_delivery_discards_the_held_queued_copy() {
    let tree = tree_with_bob("");
    assert!(
        tree.moxctl(&["address", "add", "extra@example.org", "bob"])
            .status
            .success()
    );
    let sub = addr(&tree, ListenerKind::Submission);
    let script = r#"
import smtplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=20)
s.starttls(context=ctx)
s.login("bob", "correct horse")
s.mail("bob@example.org")
s.rcpt("carol@elsewhere.example")
s.rcpt("extra@example.org")
print("ready", flush=True)
sys.stdin.readline()
code, text = s.data(b"From: bob@example.org\r\nSubject: marker-held\r\n\r\nhi\r\n")
print("data", code, text.decode(), flush=True)
s.quit()
"#;
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args([sub.ip().to_string(), sub.port().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    assert_eq!(first, "ready", "{}", tree.log_text());
    // The local address goes away between RCPT and DATA: storaged refuses the delivery.
    assert!(
        tree.moxctl(&["address", "remove", "extra@example.org"])
            .status
            .success()
    );
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"go\n")
        .expect("write");
    let reply = lines.next().and_then(Result::ok).unwrap_or_default();
    assert!(child.wait().expect("python3").success());
    assert!(reply.starts_with("data 451 4.3.0"), "{reply}");
    let list = tree.moxctl(&["queue", "list"]);
    let listing = String::from_utf8_lossy(&list.stdout).into_owned();
    assert!(
        !listing.contains("carol@elsewhere.example"),
        "the held copy is discarded: {listing}\n{}",
        tree.log_text()
    );
    assert!(stored_with(&tree, "marker-held").is_empty());
}

/// smtpd remembers confirmed local addresses for a few seconds, never refusals: an address
/// added a moment after a 550 is accepted at once.
#[test]
fn an_address_added_after_a_refusal_is_accepted_at_once() {
    let tree = tree_with_bob("");
    let mut c = Client::connect(addr(&tree, ListenerKind::Smtp));
    c.cmd("EHLO raw.test");
    assert!(c.cmd("MAIL FROM:<a@example.net>").starts_with("250 "));
    assert!(c.cmd("RCPT TO:<new@example.org>").starts_with("550 5.1.1 "));
    assert!(
        tree.moxctl(&["address", "add", "new@example.org", "bob"])
            .status
            .success()
    );
    assert!(c.cmd("RCPT TO:<new@example.org>").starts_with("250 "));
    assert!(c.cmd("DATA").starts_with("354 "));
    c.send(b"Subject: marker-new-address\r\n\r\nhello\r\n.\r\n");
    let reply = c.reply();
    assert!(reply.starts_with("250 2.0.0 "), "{reply}");
    assert_eq!(stored_with(&tree, "marker-new-address").len(), 1);
}

/// The pid of `role`'s current process, as the tree reports it.
fn role_pid(tree: &Tree, role: ipc::Role) -> Option<u32> {
    tree.status()
        .expect("status")
        .roles
        .iter()
        .find(|r| r.role == role)
        .and_then(|r| r.pid)
}

/// Descriptors storaged holds open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// smtpd opens a delivery at storaged as soon as a transaction has a local recipient. One not
/// used (RSET, a refused DATA) is kept for the connection's next transaction, and given back
/// when the connection ends (QUIT or dropped). storaged lets one role hold at most 1024 open
/// deliveries: after 4200 transactions given up on one connection and 1100 connections that
/// ended after RCPT, a message is still delivered (without the reuse or the giving back it
/// hears 451), and storaged's open descriptors are back where they were.
#[test]
fn deliveries_opened_for_transactions_given_up_before_data_are_given_back() {
    let tree = tree_with_bob("");
    let storaged = role_pid(&tree, ipc::Role::Storaged).expect("storaged's pid");
    // One delivery first, so that whatever storaged opens once (files, threads) is open.
    let mut c = Client::connect(addr(&tree, ListenerKind::Smtp));
    c.cmd("EHLO raw.test");
    assert!(c.cmd("MAIL FROM:<a@example.net>").starts_with("250 "));
    assert!(c.cmd("RCPT TO:<bob@example.org>").starts_with("250 "));
    assert!(c.cmd("DATA").starts_with("354 "));
    c.send(b"Subject: marker-first\r\n\r\nhello\r\n.\r\n");
    assert!(c.reply().starts_with("250 "));
    let before = open_fds(storaged);
    // Pipelined, 100 transactions at a time.
    let batch = "MAIL FROM:<a@example.net>\r\nRCPT TO:<bob@example.org>\r\nRSET\r\n".repeat(100);
    for _ in 0..42 {
        c.send(batch.as_bytes());
        for _ in 0..300 {
            let reply = c.reply();
            assert!(reply.starts_with("250 "), "{reply}");
        }
    }
    // A DATA refused for a bare LF, then a new transaction.
    assert!(c.cmd("MAIL FROM:<a@example.net>").starts_with("250 "));
    assert!(c.cmd("RCPT TO:<bob@example.org>").starts_with("250 "));
    assert!(c.cmd("DATA").starts_with("354 "));
    c.send(b"Subject: bare\nLF\r\n.\r\n");
    assert!(c.reply().starts_with("554 "));
    for quit in [true, false] {
        for _ in 0..550 {
            let mut d = Client::connect(addr(&tree, ListenerKind::Smtp));
            d.cmd("EHLO raw.test");
            assert!(d.cmd("MAIL FROM:<a@example.net>").starts_with("250 "));
            assert!(d.cmd("RCPT TO:<bob@example.org>").starts_with("250 "));
            if quit {
                assert!(d.cmd("QUIT").starts_with("221 "));
            }
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while open_fds(storaged) > before && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        open_fds(storaged) <= before,
        "storaged holds {} descriptors, {before} before",
        open_fds(storaged)
    );
    assert!(c.cmd("MAIL FROM:<a@example.net>").starts_with("250 "));
    assert!(c.cmd("RCPT TO:<bob@example.org>").starts_with("250 "));
    assert!(c.cmd("DATA").starts_with("354 "));
    c.send(b"Subject: marker-after\r\n\r\nhello\r\n.\r\n");
    assert!(c.reply().starts_with("250 "));
    assert_eq!(stored_with(&tree, "marker-after").len(), 1);
}

/// A delivery opened ahead belongs to the storaged that opened it: if storaged restarts
/// between RCPT and DATA, the message goes to a delivery opened at the new one (never an id
/// the new one may have given to someone else), and is delivered.
#[test]
fn a_storaged_restart_between_rcpt_and_data_loses_nothing() {
    let tree = tree_with_bob("");
    let mut c = Client::connect(addr(&tree, ListenerKind::Smtp));
    c.cmd("EHLO raw.test");
    assert!(c.cmd("MAIL FROM:<a@example.net>").starts_with("250 "));
    assert!(c.cmd("RCPT TO:<bob@example.org>").starts_with("250 "));
    let old = role_pid(&tree, ipc::Role::Storaged).expect("storaged's pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while role_pid(&tree, ipc::Role::Storaged).is_none_or(|p| p == old)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    tree.wait_ready(Duration::from_secs(20));
    let data = c.cmd("DATA");
    assert!(data.starts_with("354 "), "{data}");
    c.send(b"Subject: marker-restart\r\n\r\nhello\r\n.\r\n");
    let reply = c.reply();
    assert!(reply.starts_with("250 "), "{reply}");
    assert_eq!(stored_with(&tree, "marker-restart").len(), 1);
}
