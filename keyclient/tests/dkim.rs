//! DKIM through keyd: a message signed with keys that never leave keyd verifies with an
//! independent verifier (dkimpy, fed the published TXT record directly), for rsa-sha256 and
//! ed25519-sha256; the field keyd writes carries its own `t=` and `x=` (a week later) and no
//! `l=`, so an appended body breaks it; keyd signs only a From: address in the key's domain
//! that the session of the ticket owns (asked of a storaged stand-in that knows one session),
//! only postmaster@/mailer-daemon@ for queued, and nothing for links that may not sign mail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use ipc::grant::{KeydPeers, SubmissionPeers};
use ipc::msg::auth::Ticket;
use ipc::msg::key::{self, KeyService};
use ipc::msg::store::{self, StoreService};
use ipc::rpc::Client;
use ipc::{Link, PeerLinks, Role};

const MESSAGE: &str = "From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: DKIM through keyd\r\nDate: Sun, 22 Nov 2026 15:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n\r\nHello Bob,\r\n\r\nsigned in keyd.\r\n";

/// The one session the storaged stand-in knows: it owns alice@example.org only.
const ALICE: Ticket = Ticket([7; 16]);
const WEEK: u64 = 7 * 24 * 3600;

struct Keyd {
    _dir: tempfile::TempDir,
    /// The submission process's link (it signs mail).
    smtpd: SubmissionPeers,
    queued: Client<KeyService>,
    imapd: Client<KeyService>,
    /// The MX process's link: TLS only.
    mx: Client<KeyService>,
}

/// Answers keyd's one question as storaged would for a store where the session `ALICE` of
/// account alice has the address alice@example.org.
async fn storaged_stand_in() -> KeydPeers {
    let (a, b) = ipc::transport::socket_pair().unwrap();
    let (incoming_tx, incoming) = tokio::sync::mpsc::unbounded_channel();
    incoming_tx
        .send((Role::Keyd, Link::from_fd(b, "keyd→storaged").unwrap()))
        .unwrap();
    tokio::spawn(ipc::serve::accept_links::<StoreService, _, _, _>(
        incoming,
        tokio_util::sync::CancellationToken::new(),
        tokio_util::task::TaskTracker::new(),
        ipc::Reporter::detached(),
        |_peer, incoming: ipc::rpc::Incoming<StoreService>| async move {
            use ipc::rpc::Call;
            let answer = match incoming.request {
                store::Request::SessionOwnsAddress(store::SessionOwnsAddress {
                    ticket,
                    address,
                }) => {
                    let owns = ticket == ALICE && address == "alice@example.org";
                    store::SessionOwnsAddress::reply(&Ok(owns), Vec::new())
                }
                other => panic!("keyd asked storaged {other:?}"),
            };
            incoming.reply.send(answer).await.unwrap();
        },
        |_| {},
    ));
    std::mem::forget(incoming_tx);
    let peers = KeydPeers::default();
    peers
        .connect(Role::Storaged, Link::from_fd(a, "keyd→storaged").unwrap())
        .unwrap();
    peers
}

/// A keyd service with an RSA and an Ed25519 DKIM key for example.org, links from submission,
/// queued, smtpd and imapd as in the tree, and the storaged stand-in.
async fn keyd() -> Keyd {
    let dir = tempfile::tempdir().unwrap();
    let mut keys = keyd::keys::KeyStore::open(dir.path()).unwrap();
    keyd::dkim::generate(&mut keys, "example.org", "rsa1", "rsa").unwrap();
    keyd::dkim::generate(&mut keys, "example.org", "ed1", "ed25519").unwrap();
    keyd::certs::self_signed(dir.path(), &mut keys, &["mx.example.org".into()]).unwrap();
    let certs = keyd::certs::load(dir.path(), &keys).unwrap();
    let storaged = storaged_stand_in().await;
    let service = keyd::service::Keyd::new(
        dir.path().to_path_buf(),
        "mx.example.org".into(),
        keys,
        certs,
        keyd::dkim_policy::DkimPolicy::new(storaged.storaged.clone(), &Default::default()),
    );
    let (incoming_tx, incoming) = tokio::sync::mpsc::unbounded_channel();
    let mut ours = Vec::new();
    for role in [Role::Submission, Role::Queued, Role::Smtpd, Role::Imapd] {
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
        ipc::Reporter::detached(),
        move |peer, req| service.clone().handle(peer, req),
        |_| {},
    ));
    std::mem::forget(incoming_tx);
    std::mem::forget(storaged);
    let imapd_link = ours.pop().unwrap();
    let mx_link = ours.pop().unwrap();
    let queued_link = ours.pop().unwrap();
    let smtpd = SubmissionPeers::default();
    smtpd.connect(Role::Keyd, ours.pop().unwrap()).unwrap();
    Keyd {
        _dir: dir,
        smtpd,
        queued: Client::new(queued_link).0,
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

/// The value of tag `tag` in a DKIM-Signature field.
fn tag(field: &str, tag: &str) -> Option<String> {
    let unfolded = field.replace("\r\n\t", " ");
    unfolded
        .trim_end()
        .trim_start_matches("DKIM-Signature:")
        .split(';')
        .find_map(|t| {
            t.trim()
                .strip_prefix(&format!("{tag}="))
                .map(str::to_string)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_signed_through_keyd_carry_its_expiry_and_verify_with_dkimpy() {
    let keyd = keyd().await;
    let client = keyd.smtpd.keyd.wait().await;
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
        let fields = keyclient::dkim::sign(
            &client,
            Some(ALICE),
            std::slice::from_ref(k),
            MESSAGE.as_bytes().to_vec(),
        )
        .await
        .unwrap();
        let algorithm = if k.algorithm == "rsa" {
            "rsa-sha256"
        } else {
            "ed25519-sha256"
        };
        assert!(fields.starts_with("DKIM-Signature: "), "{fields}");
        assert_eq!(tag(&fields, "a").as_deref(), Some(algorithm), "{fields}");
        assert_eq!(tag(&fields, "d").as_deref(), Some("example.org"));
        assert_eq!(tag(&fields, "s"), Some(k.selector.clone()));
        // keyd's own time and expiry; no body length limit.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let t: u64 = tag(&fields, "t").unwrap().parse().unwrap();
        let x: u64 = tag(&fields, "x").unwrap().parse().unwrap();
        assert!(t.abs_diff(now) < 60, "t={t}, now {now}");
        assert_eq!(x, t + WEEK, "{fields}");
        assert_eq!(tag(&fields, "l"), None, "{fields}");
        let signed = format!("{fields}{MESSAGE}");
        let records = vec![(k.name.clone(), k.record.clone())];
        let Some(verdict) = dkimpy(signed.as_bytes(), &records) else {
            return;
        };
        assert_eq!(verdict, "PASS", "{algorithm}: {signed}");
        // The verifier can fail: a changed body, an appended one, a record with another key.
        let tampered = signed.replace("signed in keyd", "signed in keyd!");
        assert_eq!(
            dkimpy(tampered.as_bytes(), &records).unwrap(),
            "FAIL",
            "{algorithm}"
        );
        let appended = format!("{signed}Click here: http://evil.example/\r\n");
        assert_eq!(
            dkimpy(appended.as_bytes(), &records).unwrap(),
            "FAIL",
            "{algorithm}: the signature covers the whole body"
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
    let fields = keyclient::dkim::sign(&client, Some(ALICE), &keys, MESSAGE.as_bytes().to_vec())
        .await
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

/// What keyd answers `client` for `message` signed with key rsa1, for `ticket`.
async fn refusal(client: &Client<KeyService>, ticket: Option<Ticket>, message: &str) -> String {
    let canonical = keyclient::dkim::canonicalize(message.as_bytes()).unwrap();
    let request = key::SignDkim {
        request: key::DkimRequest {
            ticket,
            domain: "example.org".into(),
            selector: "rsa1".into(),
            signed: canonical.signed,
            headers: canonical.headers,
            body_hash: canonical.body_hash,
        },
    };
    match client.ask(request).await.unwrap() {
        Err(why) => why.0,
        other => panic!("signed: {other:?}"),
    }
}

fn from(address: &str) -> String {
    MESSAGE.replace("Alice <alice@example.org>", address)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyd_signs_only_for_addresses_the_session_owns_in_the_keys_domain() {
    let keyd = keyd().await;
    let smtpd = keyd.smtpd.keyd.wait().await;
    // Another address of the domain: storaged says the session does not own it.
    let why = refusal(&smtpd, Some(ALICE), &from("bob@example.org")).await;
    assert!(
        why.contains("does not belong to the session's account"),
        "{why}"
    );
    // A ticket storaged does not know (forged, expired, another role's).
    let why = refusal(&smtpd, Some(Ticket([9; 16])), MESSAGE).await;
    assert!(why.contains("does not belong"), "{why}");
    // No ticket at all: submission always signs for a session.
    let why = refusal(&smtpd, None, MESSAGE).await;
    assert!(why.contains("needs the session's ticket"), "{why}");
    // From: outside the key's domain, whoever owns it.
    let why = refusal(&smtpd, Some(ALICE), &from("alice@evil.example")).await;
    assert!(why.contains("not in example.org or below it"), "{why}");
    // Several authors, or a second From: field.
    let why = refusal(
        &smtpd,
        Some(ALICE),
        &from("alice@example.org, b@evil.example"),
    )
    .await;
    assert!(why.contains("several addresses"), "{why}");
    let two = format!("From: b@evil.example\r\n{MESSAGE}");
    let why = refusal(&smtpd, Some(ALICE), &two).await;
    assert!(why.contains("exactly one From"), "{why}");
    // queued has no session: only the domain's own system senders.
    let postmaster = from("Mail Delivery System <postmaster@example.org>");
    let canonical = keyclient::dkim::canonicalize(postmaster.as_bytes()).unwrap();
    let request = key::SignDkim {
        request: key::DkimRequest {
            ticket: None,
            domain: "example.org".into(),
            selector: "rsa1".into(),
            signed: canonical.signed,
            headers: canonical.headers,
            body_hash: canonical.body_hash,
        },
    };
    let signed = keyd.queued.ask(request).await.unwrap();
    assert!(signed.is_ok(), "{signed:?}");
    let why = refusal(&keyd.queued, None, MESSAGE).await;
    assert!(why.contains("postmaster@ or mailer-daemon@"), "{why}");
    let why = refusal(&keyd.queued, Some(ALICE), &postmaster).await;
    assert!(why.contains("postmaster@ or mailer-daemon@"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyd_refuses_arbitrary_bytes_and_links_that_may_not_sign_mail() {
    let keyd = keyd().await;
    let smtpd = keyd.smtpd.keyd.wait().await;
    let ask = |headers: &[u8]| key::SignDkim {
        request: key::DkimRequest {
            ticket: Some(ALICE),
            domain: "example.org".into(),
            selector: "rsa1".into(),
            signed: vec!["from".into(), "from".into()],
            headers: headers.to_vec(),
            body_hash: vec![0; 32],
        },
    };
    fn refused<T: std::fmt::Debug>(r: Result<T, key::Refused>) -> String {
        match r {
            Err(why) => why.0,
            other => panic!("signed: {other:?}"),
        }
    }
    let why = refused(smtpd.ask(ask(b"arbitrary bytes to sign")).await.unwrap());
    assert!(why.contains("not relaxed-canonicalized"), "{why}");
    let good = b"from:alice@example.org\r\n";
    let signed = smtpd.ask(ask(good)).await.unwrap();
    assert!(signed.is_ok(), "{signed:?}");
    // The MX process takes mail from the internet: it may never sign any.
    let why = refused(keyd.mx.ask(ask(good)).await.unwrap());
    assert!(why.contains("not permitted"), "{why}");
    // imapd serves TLS but never sends mail: no DKIM signatures, no DKIM keys.
    let why = refused(keyd.imapd.ask(ask(good)).await.unwrap());
    assert!(why.contains("not permitted"), "{why}");
    let why = refused(
        keyd.imapd
            .ask(key::DkimKeys {
                domain: "example.org".into(),
            })
            .await
            .unwrap(),
    );
    assert!(why.contains("not permitted"), "{why}");
}
