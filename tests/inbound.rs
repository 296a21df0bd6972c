//! Mail on port 25 is checked against DNS — a real resolver (dnsmasq) on a loopback port serves
//! the SPF, DKIM, DMARC and reverse-DNS records: a message DKIM-signed by an independent signer
//! (dkimpy) passes everything and says so in Authentication-Results; a DMARC `reject` domain's
//! forgery is refused; a `quarantine` domain's lands in Junk.

mod common;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Options, Tree, addr};
use ipc::config::ListenerKind;

/// dnsmasq on 127.0.0.1:`port` with `records` (its own options), killed on drop.
struct Dns(Child);

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .expect("udp")
        .local_addr()
        .expect("addr")
        .port()
}

fn dnsmasq(port: u16, records: &[String]) -> Option<Dns> {
    let mut cmd = Command::new("dnsmasq");
    cmd.args([
        "--keep-in-foreground",
        "--no-resolv",
        "--no-hosts",
        "--conf-file=/dev/null",
        "--bind-interfaces",
        "--listen-address=127.0.0.1",
        "--pid-file=",
        "--log-facility=-",
    ])
    .arg(format!("--port={port}"))
    .args(records)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if common::is_root() {
        cmd.arg("--user=root");
    }
    let child = cmd.spawn().ok()?;
    // Wait until it answers.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        let out = Command::new("python3")
            .args(["-c", "import socket,sys; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(0.2); q=bytes.fromhex('abcd01000001000000000000076578616d706c65036e65740000100001'); s.sendto(q,('127.0.0.1',int(sys.argv[1]))); s.recv(512); print('ok')"])
            .arg(port.to_string())
            .output();
        if out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("ok")) {
            return Some(Dns(child));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("dnsmasq did not answer");
}

/// The base64 SubjectPublicKeyInfo of an RSA private key file, for the DKIM record.
fn public_key_b64(key: &std::path::Path) -> String {
    let out = Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(key)
        .output()
        .expect("openssl");
    let mut b64 = Command::new("base64")
        .arg("-w0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("base64");
    b64.stdin
        .take()
        .expect("stdin")
        .write_all(&out.stdout)
        .expect("write");
    String::from_utf8(b64.wait_with_output().expect("base64").stdout).expect("utf-8")
}

#[test]
fn spf_dkim_dmarc_and_iprev_decide_and_are_recorded() {
    let have = |c: &str| {
        Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {c}"))
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let dkimpy = Command::new("python3")
        .args(["-c", "import dkim"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have("dnsmasq") || !dkimpy {
        assert!(
            std::env::var_os("MOXD_REQUIRE_PEERS").is_none(),
            "dnsmasq and dkimpy are required"
        );
        eprintln!("SKIPPED: needs dnsmasq and dkimpy");
        return;
    }
    let keys = tempfile::tempdir().expect("tmp");
    let key = keys.path().join("dkim.pem");
    assert!(
        Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(&key)
            .arg("2048")
            .output()
            .expect("openssl")
            .status
            .success()
    );
    let p = public_key_b64(&key);
    let (p1, p2) = p.split_at(200);
    let port = free_udp_port();
    let records = vec![
        // Authoritative for whole TLDs: DMARC's tree walk asks _dmarc.net too, and an
        // unanswered query would be a DNS error (temperror), not "no record".
        "--local=/net/".into(),
        "--local=/test/".into(),
        "--local=/in-addr.arpa/".into(),
        // On the command line a comma separates the strings of one TXT record.
        "--txt-record=example.net,v=spf1 ip4:127.0.0.1 -all".into(),
        format!("--txt-record=sel._domainkey.example.net,v=DKIM1; k=rsa; p={p1},{p2}"),
        "--txt-record=_dmarc.example.net,v=DMARC1; p=reject".into(),
        "--txt-record=bank.test,v=spf1 -all".into(),
        "--txt-record=_dmarc.bank.test,v=DMARC1; p=reject".into(),
        "--txt-record=shady.test,v=spf1 -all".into(),
        "--txt-record=_dmarc.shady.test,v=DMARC1; p=quarantine".into(),
        "--host-record=client.example.net,127.0.0.1".into(),
    ];
    let _dns = dnsmasq(port, &records).expect("dnsmasq");
    let tree = Tree::start(Options {
        extra: format!("\n[dns]\nresolvers = [\"127.0.0.1:{port}\"]"),
        ..Options::default()
    });
    for args in [
        &["domain", "add", "example.org"][..],
        &["account", "add", "bob", "bob@example.org"],
    ] {
        assert!(tree.moxctl(args).status.success());
    }
    let mx = addr(&tree, ListenerKind::Smtp);
    let script = r#"
import smtplib, sys, dkim
host, port, keyfile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def send(mail_from, msg):
    s = smtplib.SMTP(host, port, timeout=60)
    s.ehlo("client.example.net")
    try:
        s.sendmail(mail_from, ["bob@example.org"], msg)
        r = "250"
    except smtplib.SMTPDataError as e:
        r = "%d %s" % (e.smtp_code, e.smtp_error.decode())
    s.quit()
    return r
good = b"From: Alice <alice@example.net>\r\nTo: bob@example.org\r\nSubject: marker-good\r\nDate: Sun, 22 Nov 2026 16:00:00 +0000\r\nMessage-ID: <g1@example.net>\r\n\r\nSigned by dkimpy.\r\n"
sig = dkim.sign(good, b"sel", b"example.net", open(keyfile, "rb").read(), include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
print("good", send("alice@example.net", sig + good))
# A body of many 64 KiB chunks, hashed as it streams past (relaxed canonicalization, with
# trailing whitespace and empty lines it must fold away), and a copy changed after signing.
body = b"".join(b"line %d \t with  spaces \t\r\n%s" % (i, b"\r\n" if i % 9 == 0 else b"") for i in range(12000)) + b"\r\n\r\n"
big = b"From: Alice <alice@example.net>\r\nTo: bob@example.org\r\nSubject: marker-big\r\nDate: Sun, 22 Nov 2026 16:00:00 +0000\r\nMessage-ID: <g2@example.net>\r\n\r\n" + body
sig = dkim.sign(big, b"sel", b"example.net", open(keyfile, "rb").read(), canonicalize=(b"relaxed", b"relaxed"), include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
print("big", send("alice@example.net", sig + big))
changed = (sig + big).replace(b"Subject: marker-big", b"Subject: marker-changed").replace(b"line 11000 ", b"line 11000 (changed) ")
print("changed", send("alice@example.net", changed))
forged = b"From: CEO <ceo@bank.test>\r\nTo: bob@example.org\r\nSubject: marker-forged\r\n\r\nPay now.\r\n"
print("forged", send("ceo@bank.test", forged))
shady = b"From: <x@shady.test>\r\nTo: bob@example.org\r\nSubject: marker-shady\r\n\r\nHm.\r\n"
print("shady", send("x@shady.test", shady))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args([
            mx.ip().to_string(),
            mx.port().to_string(),
            key.display().to_string(),
        ])
        .output()
        .expect("python3");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}\n{}", tree.log_text());
    let dump = std::fs::read_dir(tree.dir.path().join("data/storaged/msg"))
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .map(|f| String::from_utf8_lossy(&std::fs::read(f.path()).unwrap_or_default()).into_owned())
        .collect::<Vec<_>>()
        .join("\n----\n");
    let text = format!("{text}\nstored:\n{dump}");
    assert!(text.contains("good 250"), "{text}");
    assert!(text.contains("big 250"), "{text}");
    assert!(text.contains("changed 250"), "{text}");
    assert!(
        text.contains("forged 550 5.7.1 rejected by the DMARC policy of bank.test"),
        "{text}"
    );
    assert!(text.contains("shady 250"), "{text}");
    let stored = |marker: &str| -> Vec<String> {
        let mut out = Vec::new();
        for shard in std::fs::read_dir(tree.dir.path().join("data/storaged/msg"))
            .expect("msg")
            .flatten()
        {
            for f in std::fs::read_dir(shard.path()).expect("shard").flatten() {
                let t =
                    String::from_utf8_lossy(&std::fs::read(f.path()).expect("read")).into_owned();
                if t.contains(marker) {
                    out.push(t);
                }
            }
        }
        out
    };
    let good = stored("marker-good");
    assert_eq!(good.len(), 1);
    let head = good[0].split("\r\n\r\n").next().unwrap_or_default();
    assert!(
        head.starts_with("Authentication-Results: mx.test.example;"),
        "{head}"
    );
    for want in [
        "dkim=pass",
        "header.i=@example.net",
        "header.s=sel",
        "spf=pass",
        "smtp.mailfrom=alice@example.net",
        "dmarc=pass",
        "iprev=pass",
    ] {
        assert!(head.contains(want), "{want} in:\n{head}");
    }
    let big = stored("marker-big");
    assert_eq!(big.len(), 1);
    assert!(big[0].len() > 300_000);
    let head = big[0].split("\r\n\r\n").next().unwrap_or_default();
    assert!(head.contains("dkim=pass"), "{head}");
    let changed = stored("marker-changed");
    assert_eq!(changed.len(), 1);
    let head = changed[0].split("\r\n\r\n").next().unwrap_or_default();
    assert!(
        head.contains("dkim=") && !head.contains("dkim=pass"),
        "{head}"
    );
    assert!(stored("marker-forged").is_empty(), "refused, not stored");
    let shady = stored("marker-shady");
    assert_eq!(shady.len(), 1);
    assert!(
        shady[0].contains("dmarc=fail") && shady[0].contains("spf=fail"),
        "{}",
        shady[0]
    );
    let list = tree.moxctl(&["mailbox", "list", "bob"]);
    let listing = String::from_utf8_lossy(&list.stdout).into_owned();
    let junk = listing
        .lines()
        .find(|l| l.starts_with("Junk"))
        .unwrap_or_default()
        .to_string();
    assert!(
        junk.split_whitespace().nth(4) == Some("1"),
        "quarantined into Junk (TOTAL 1):\n{listing}"
    );
}
