//! Certificate files named in the configuration: the supervisor opens them (they sit in a
//! directory only root can enter) and passes them to keyd; `moxctl reload` serves new files at
//! once, without restarting a role; a bad file changes nothing; `moxctl tls status` shows
//! what is served.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Options, Tree, addr, python_tls};
use ipc::config::ListenerKind;

/// An ECDSA certificate for `names` made with openssl; returns the SHA-256 of its DER, hex.
fn openssl_cert(dir: &Path, stem: &str, names: &[&str]) -> String {
    let san = names
        .iter()
        .map(|n| format!("DNS:{n}"))
        .collect::<Vec<_>>()
        .join(",");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "30", "-subj"])
        .arg(format!("/CN={}", names[0]))
        .arg("-addext")
        .arg(format!("subjectAltName={san}"))
        .arg("-keyout")
        .arg(dir.join(format!("{stem}.key")))
        .arg("-out")
        .arg(dir.join(format!("{stem}.pem")))
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let der = Command::new("openssl")
        .args(["x509", "-outform", "der", "-in"])
        .arg(dir.join(format!("{stem}.pem")))
        .output()
        .expect("openssl x509");
    let hash = Command::new("python3")
        .args([
            "-c",
            "import hashlib,sys;print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(&der.stdout)?;
            c.wait_with_output()
        })
        .expect("sha256");
    String::from_utf8_lossy(&hash.stdout).trim().to_string()
}

/// The fingerprint served on `kind` (polls until it is `want`, for at most a generous 30 s).
fn served_until(tree: &Tree, kind: ListenerKind, want: &str) -> String {
    let start = Instant::now();
    loop {
        let got = python_tls(addr(tree, kind), "- -").expect("handshake");
        let fp = got.split(' ').nth(2).unwrap_or_default().to_string();
        if fp == want || start.elapsed() > Duration::from_secs(30) {
            return fp;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ctl(tree: &Tree, args: &[&str]) -> (bool, String) {
    let out = tree.moxctl(args);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn certificate_files_are_served_reloaded_and_a_bad_file_changes_nothing() {
    let certs = tempfile::tempdir().expect("tempdir");
    // Only root (the supervisor) may enter: keyd reads the files through the passed fds.
    std::fs::set_permissions(
        certs.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("chmod");
    let first = openssl_cert(certs.path(), "first", &["mx.test.example"]);
    let second = openssl_cert(
        certs.path(),
        "second",
        &["mx.test.example", "imap.test.example"],
    );
    let (live_cert, live_key) = (certs.path().join("live.pem"), certs.path().join("live.key"));
    std::fs::copy(certs.path().join("first.pem"), &live_cert).expect("copy");
    std::fs::copy(certs.path().join("first.key"), &live_key).expect("copy");
    let tree = Tree::start(Options {
        extra: format!(
            "\n[[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n",
            live_cert.display(),
            live_key.display()
        ),
        ..Options::default()
    });
    assert_eq!(served_until(&tree, ListenerKind::Imaps, &first), first);
    // No self-signed certificate is made when files are configured.
    assert!(
        !tree
            .dir
            .path()
            .join("data/keyd/selfsigned-ecdsa.cert.pem")
            .exists()
    );
    let (ok, status) = ctl(&tree, &["tls", "status"]);
    assert!(ok, "{status}");
    assert!(
        status.contains("mx.test.example") && status.contains(&live_cert.display().to_string()),
        "{status}"
    );
    assert!(
        status.contains("days left") && status.contains("ecdsa"),
        "{status}"
    );

    // New files, then reload: served at once, by the same role processes.
    let pid_before = tree
        .status()
        .expect("status")
        .roles
        .iter()
        .map(|r| r.pid)
        .collect::<Vec<_>>();
    std::fs::copy(certs.path().join("second.pem"), &live_cert).expect("copy");
    std::fs::copy(certs.path().join("second.key"), &live_key).expect("copy");
    let (ok, out) = ctl(&tree, &["reload"]);
    assert!(ok && out.contains("1 certificate file"), "{out}");
    assert_eq!(served_until(&tree, ListenerKind::Imaps, &second), second);
    assert_eq!(
        served_until(&tree, ListenerKind::Submissions, &second),
        second
    );
    let pid_after = tree
        .status()
        .expect("status")
        .roles
        .iter()
        .map(|r| r.pid)
        .collect::<Vec<_>>();
    assert_eq!(pid_before, pid_after, "no role restarted");
    let (_, status) = ctl(&tree, &["tls", "status"]);
    assert!(status.contains("imap.test.example"), "{status}");

    // A key that does not belong to the certificate: refused, nothing changes.
    std::fs::copy(certs.path().join("first.key"), &live_key).expect("copy");
    let (ok, out) = ctl(&tree, &["reload"]);
    assert!(
        !ok && out.contains("is not the key of the certificate"),
        "{out}"
    );
    assert_eq!(served_until(&tree, ListenerKind::Imaps, &second), second);
    // A missing file and a broken configuration: refused with the reason, nothing changes.
    std::fs::remove_file(&live_key).expect("rm");
    let (ok, out) = ctl(&tree, &["reload"]);
    assert!(
        !ok && out.contains("live.key") && out.contains("nothing changed"),
        "{out}"
    );
    let config = tree.dir.path().join("moxd.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, format!("{text}\n[tls]\nbogus = 1\n")).expect("write");
    let (ok, out) = ctl(&tree, &["reload"]);
    assert!(!ok && out.contains("unknown field `bogus`"), "{out}");
    std::fs::write(&config, &text).expect("restore");
    assert_eq!(served_until(&tree, ListenerKind::Imaps, &second), second);

    // keyd restarted: it gets the files of the last successful reload again.
    std::fs::copy(certs.path().join("second.key"), &live_key).expect("copy");
    let (ok, out) = ctl(&tree, &["restart", "keyd"]);
    assert!(ok, "{out}");
    tree.wait_ready(Duration::from_secs(20));
    assert_eq!(served_until(&tree, ListenerKind::Https, &second), second);
    // An admin client cannot hand keyd files of its own choosing: only the supervisor does.
    use ipc::msg::{admin, control::RoleAdmin, key};
    let answer = tree.request(admin::ForRole {
        request: RoleAdmin::Key(key::Admin::LoadCertificates(Vec::new())),
    });
    assert!(
        matches!(&answer, moxd::admin_client::Response::Error(e) if e.contains("moxctl reload")),
        "{answer:?}"
    );
    assert_eq!(served_until(&tree, ListenerKind::Imaps, &second), second);
}

#[test]
fn a_certificate_file_that_cannot_be_opened_stops_the_start_with_its_name() {
    let tree = Tree::spawn(Options {
        extra: "\n[[tls.certificate]]\ncert = \"/nonexistent/moxd-test.pem\"\nkey = \"/nonexistent/moxd-test.key\"\n".into(),
        ..Options::default()
    });
    let mut tree = tree;
    let code = tree.wait_exit(Duration::from_secs(20));
    assert!(code.is_some_and(|c| c != 0), "{code:?}");
    let log = tree.log_text();
    assert!(log.contains("/nonexistent/moxd-test.pem"), "{log}");
}
