//! DKIM through keyd: a message signed with keys that never leave keyd verifies with an
//! independent verifier (dkimpy, fed the published TXT record directly), for rsa-sha256 and
//! ed25519-sha256; a tampered message does not; keyd refuses arbitrary bytes, other domains'
//! templates and links that may not sign mail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use ipc::msg::key::{self, KeyService};
use ipc::rpc::Client;
use ipc::{Link, Peers, Role};

const MESSAGE: &str = "From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: DKIM through keyd\r\nDate: Sun, 22 Nov 2026 15:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n\r\nHello Bob,\r\n\r\nsigned in keyd.\r\n";

struct Keyd {
    _dir: tempfile::TempDir,
    /// The submission process's link (it signs mail).
    smtpd: Peers,
    imapd: Client<KeyService>,
    /// The MX process's link: TLS only.
    mx: Client<KeyService>,
}

/// A keyd service with an RSA and an Ed25519 DKIM key for example.org, and links from smtpd
/// and imapd as in the tree.
async fn keyd() -> Keyd {
    let dir = tempfile::tempdir().unwrap();
    let mut keys = keyd::keys::KeyStore::open(dir.path()).unwrap();
    keyd::dkim::generate(&mut keys, "example.org", "rsa1", "rsa").unwrap();
    keyd::dkim::generate(&mut keys, "example.org", "ed1", "ed25519").unwrap();
    keyd::certs::self_signed(dir.path(), &mut keys, &["mx.example.org".into()]).unwrap();
    let certs = keyd::certs::load(dir.path(), &keys).unwrap();
    let service = keyd::service::Keyd::new(
        dir.path().to_path_buf(),
        "mx.example.org".into(),
        keys,
        certs,
    );
    let (incoming_tx, incoming) = tokio::sync::mpsc::unbounded_channel();
    let mut ours = Vec::new();
    for role in [Role::Submission, Role::Smtpd, Role::Imapd] {
        let (a, b) = ipc::transport::socket_pair().unwrap();
        incoming_tx
            .send((role, Link::from_fd(b, format!("{role}→keyd")).unwrap()))
            .unwrap();
        ours.push(Link::from_fd(a, format!("{role}→keyd")).unwrap());
    }
    tokio::spawn(ipc::serve::accept_links::<KeyService, _, _, _>(
        incoming,
        tokio_util::sync::CancellationToken::new(),
        tokio_util::task::TaskTracker::new(),
        move |peer, req| service.clone().handle(peer, req),
        |_| {},
    ));
    std::mem::forget(incoming_tx);
    let imapd_link = ours.pop().unwrap();
    let mx_link = ours.pop().unwrap();
    let smtpd = Peers::default();
    smtpd.connect(Role::Keyd, ours.pop().unwrap()).unwrap();
    Keyd {
        _dir: dir,
        smtpd,
        imapd: Client::new(imapd_link).0,
        mx: Client::new(mx_link).0,
    }
}

/// dkimpy's verdict on `message`, with `records` as the only DNS ("name=TXT" pairs); `None`
/// when dkimpy is not installed (an error under MOXD_REQUIRE_PEERS).
fn dkimpy(message: &[u8], records: &[(String, String)]) -> Option<String> {
    let script = r#"
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
count = len([h for h in d.headers if h[0].lower() == b"dkim-signature"])
def one(i):
    try:
        return d.verify(idx=i, dnsfunc=dns)
    except Exception as e:  # dkimpy lets nacl's BadSignatureError through
        print(e, file=sys.stderr)
        return False
ok = count > 0 and all(one(i) for i in range(count))
print("PASS" if ok else "FAIL")
"#;
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), message).unwrap();
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(file.path())
        .args(records.iter().map(|(n, r)| format!("{n}={r}")))
        .output()
        .expect("python3");
    let verdict = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if verdict == "MISSING" {
        assert!(
            std::env::var_os("MOXD_REQUIRE_PEERS").is_none(),
            "dkimpy is required (pip install dkimpy pynacl)"
        );
        eprintln!("SKIPPED: dkimpy not installed (pip install dkimpy pynacl)");
        return None;
    }
    Some(verdict)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_signed_through_keyd_verify_with_dkimpy_for_both_algorithms() {
    let keyd = keyd().await;
    let client = keyd.smtpd.keyd.wait().await;
    let signer = keyclient::KeydSigner::new(keyd.smtpd.keyd.clone());
    signer.reopen(&client).await;
    let keys = keyclient::dkim::keys_for(&client, "Example.ORG")
        .await
        .unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(
        keyclient::dkim::keys_for(&client, "example.net")
            .await
            .unwrap()
            .is_empty()
    );
    for k in &keys {
        let (signer, one) = (signer.clone(), vec![k.clone()]);
        let fields = tokio::task::spawn_blocking(move || {
            keyclient::dkim::sign(&signer, &one, MESSAGE.as_bytes())
        })
        .await
        .unwrap()
        .unwrap();
        let algorithm = if k.algorithm == "rsa" {
            "rsa-sha256"
        } else {
            "ed25519-sha256"
        };
        assert!(fields.starts_with("DKIM-Signature: "), "{fields}");
        assert!(fields.contains(&format!("a={algorithm}")), "{fields}");
        assert!(fields.contains("d=example.org") && fields.contains(&format!("s={}", k.selector)));
        let signed = format!("{fields}{MESSAGE}");
        let records = vec![(k.name.clone(), k.record.clone())];
        let Some(verdict) = dkimpy(signed.as_bytes(), &records) else {
            return;
        };
        assert_eq!(verdict, "PASS", "{algorithm}: {signed}");
        // The verifier can fail: a changed body, and a record with another key.
        let tampered = signed.replace("signed in keyd", "signed in keyd!");
        assert_eq!(
            dkimpy(tampered.as_bytes(), &records).unwrap(),
            "FAIL",
            "{algorithm}"
        );
        let other = keys.iter().find(|o| o.selector != k.selector).unwrap();
        let wrong = vec![(k.name.clone(), other.record.clone())];
        assert_eq!(
            dkimpy(signed.as_bytes(), &wrong).unwrap(),
            "FAIL",
            "{algorithm}"
        );
    }
    // Both at once: two DKIM-Signature fields, both valid.
    let (s, all) = (signer.clone(), keys.clone());
    let fields =
        tokio::task::spawn_blocking(move || keyclient::dkim::sign(&s, &all, MESSAGE.as_bytes()))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(fields.matches("DKIM-Signature: ").count(), 2);
    let records: Vec<(String, String)> = keys
        .iter()
        .map(|k| (k.name.clone(), k.record.clone()))
        .collect();
    assert_eq!(
        dkimpy(format!("{fields}{MESSAGE}").as_bytes(), &records).unwrap(),
        "PASS"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyd_refuses_arbitrary_bytes_other_domains_and_links_that_may_not_sign_mail() {
    let keyd = keyd().await;
    let smtpd = keyd.smtpd.keyd.wait().await;
    let ask = |data: &str| key::Request::SignDkim {
        domain: "example.org".into(),
        selector: "rsa1".into(),
        data: data.as_bytes().to_vec(),
    };
    let refused = |r: (key::Response, Vec<ipc::Handle>)| match r.0 {
        key::Response::Refused(why) => why,
        other => panic!("signed: {other:?}"),
    };
    let why = refused(
        smtpd
            .call(&ask("arbitrary bytes to sign"), Vec::new())
            .await
            .unwrap(),
    );
    assert!(why.contains("no colon"), "{why}");
    let other_domain = "from:a@example.org\r\ndkim-signature:v=1; a=rsa-sha256; d=example.net; s=rsa1; h=from; bh=x; b=";
    let why = refused(smtpd.call(&ask(other_domain), Vec::new()).await.unwrap());
    assert!(why.contains("d= must be example.org"), "{why}");
    let good = "from:a@example.org\r\ndkim-signature:v=1; a=rsa-sha256; d=example.org; s=rsa1; h=from; bh=x; b=";
    assert!(matches!(
        smtpd.call(&ask(good), Vec::new()).await.unwrap().0,
        key::Response::Signature(_)
    ));
    // The MX process takes mail from the internet: it may never sign any.
    let why = refused(keyd.mx.call(&ask(good), Vec::new()).await.unwrap());
    assert!(why.contains("not permitted"), "{why}");
    // imapd serves TLS but never sends mail: no DKIM signatures, no DKIM keys.
    let why = refused(keyd.imapd.call(&ask(good), Vec::new()).await.unwrap());
    assert!(why.contains("not permitted"), "{why}");
    let why = refused(
        keyd.imapd
            .call(
                &key::Request::DkimKeys {
                    domain: "example.org".into(),
                },
                Vec::new(),
            )
            .await
            .unwrap(),
    );
    assert!(why.contains("not permitted"), "{why}");
}
