//! keyd's TLS signing over its links, as the tree wires them (one socketpair per asking role,
//! signing sockets opened on it): who may ask, what it signs, and how much.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ipc::msg::key::{self, KeyService, Refused};
use ipc::rpc::Call;
use ipc::rpc::Client;
use ipc::{Link, Role};
use keyd::lanes::Limits;

/// keyclient's `SIGN_TIMEOUT`: how long a network role waits for a signature.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

const ECDSA_P256_SHA256: u16 = 0x0403;
const RSA_PSS_SHA256: u16 = 0x0804;

struct Harness {
    _dir: tempfile::TempDir,
    links: HashMap<Role, Client<KeyService>>,
    /// Names of the self-signed certificates' keys.
    ecdsa: String,
    rsa: String,
    /// Each key's certificate, whose public key checks the signatures.
    leaves: Leaves,
}

/// The leaf certificate of each key, by key name.
type Leaves = Arc<HashMap<String, Vec<u8>>>;

/// keyd with self-signed ECDSA and RSA certificates, bounded by `limits`, and a link from each
/// of `roles`.
async fn start(limits: Limits, roles: &[Role]) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let mut keys = keyd::keys::KeyStore::open(dir.path()).unwrap();
    keyd::certs::self_signed(dir.path(), &mut keys, &["mx.example.org".into()]).unwrap();
    let certs = keyd::certs::load(dir.path(), &keys).unwrap();
    let key_of = |algorithm: &str| {
        let keys = certs
            .iter()
            .filter_map(|c| c.signing_key(&keys).map(|k| (c, k)));
        keys.filter(|(_, k)| format!("{:?}", k.algorithm()).eq_ignore_ascii_case(algorithm))
            .map(|(c, _)| c.key.clone())
            .next()
            .unwrap()
    };
    let (ecdsa, rsa) = (key_of("ecdsa"), key_of("rsa"));
    let leaves: Leaves = Arc::new(
        certs
            .iter()
            .map(|c| (c.key.clone(), c.chain[0].to_vec()))
            .collect(),
    );
    let service = keyd::service::Keyd::with_limits(
        dir.path().to_path_buf(),
        "mx.example.org".into(),
        keys,
        certs,
        // No storaged: these tests are about TLS signing.
        keyd::dkim_policy::DkimPolicy::new(Default::default(), &Default::default()),
        limits,
    );
    let (incoming_tx, incoming) = tokio::sync::mpsc::unbounded_channel();
    let mut links = HashMap::new();
    for &role in roles {
        let (ours, theirs) = ipc::transport::socket_pair().unwrap();
        let name = format!("{role}→keyd");
        incoming_tx
            .send((role, Link::from_fd(theirs, name.clone()).unwrap()))
            .unwrap();
        links.insert(role, Client::new(Link::from_fd(ours, name).unwrap()).0);
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
    Harness {
        _dir: dir,
        links,
        ecdsa,
        rsa,
        leaves,
    }
}

impl Harness {
    async fn call<C: Call<Service = KeyService> + Clone>(
        &self,
        role: Role,
        request: &C,
    ) -> C::Answer {
        self.links[&role].ask(request.clone()).await.unwrap()
    }

    /// A signing socket of `role`'s own.
    async fn signer(&self, role: Role) -> OwnedFd {
        match self.links[&role].call(key::OpenSigner {}, Vec::new()).await {
            Ok((Ok(()), mut fds)) if fds.len() == 1 => fds.remove(0),
            other => panic!("{role}: no signing socket: {other:?}"),
        }
    }
}

/// One signature on a signing socket, as keyclient asks for it.
fn sign_on(fd: &OwnedFd, request: &key::SignTls) -> Result<Vec<u8>, Refused> {
    ipc::blocking::call(fd.as_fd(), request.clone(), CLIENT_TIMEOUT).unwrap()
}

/// A TLS 1.3 server CertificateVerify input with a SHA-256 transcript hash.
fn certificate_verify() -> Vec<u8> {
    let mut m = vec![b' '; 64];
    m.extend_from_slice(b"TLS 1.3, server CertificateVerify\0");
    m.extend([0x5a; 32]);
    m
}

fn sign_tls(key: &str, scheme: u16, message: Vec<u8>) -> key::SignTls {
    key::SignTls {
        key: key.into(),
        scheme,
        message,
    }
}

/// `r` is a signature of `request`'s message, with its scheme, that the public key of the
/// requested key's certificate verifies.
fn is_signature(leaves: &Leaves, request: &key::SignTls, r: &Result<Vec<u8>, Refused>) -> bool {
    let key::SignTls {
        key,
        scheme,
        message,
    } = request;
    let Ok(signature) = r else {
        return false;
    };
    let (_, cert) = x509_parser::parse_x509_certificate(&leaves[key]).unwrap();
    let public_key = &cert.public_key().subject_public_key.data;
    let scheme = rustls::SignatureScheme::from(*scheme);
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let (_, algorithms) = provider
        .signature_verification_algorithms
        .mapping
        .iter()
        .find(|(s, _)| *s == scheme)
        .unwrap();
    algorithms
        .iter()
        .any(|a| a.verify_signature(public_key, message, signature).is_ok())
}

fn generous() -> Limits {
    Limits {
        slots: 2,
        per_second: 1_000_000,
        burst: 1_000_000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_signing_is_refused_to_roles_that_serve_no_tls() {
    let roles = [Role::Storaged, Role::Authd, Role::Queued, Role::Smtpd];
    let h = start(generous(), &roles).await;
    let good = sign_tls(&h.ecdsa, ECDSA_P256_SHA256, certificate_verify());
    assert!(
        is_signature(&h.leaves, &good, &h.call(Role::Smtpd, &good).await),
        "the input is signable"
    );
    for role in [Role::Storaged, Role::Authd, Role::Queued] {
        assert!(h.call(role, &good).await.is_err(), "{role}: {good:?}");
        assert!(
            h.call(role, &key::Certificates {}).await.is_err(),
            "{role}: certificates"
        );
    }
    for role in [Role::Storaged, Role::Authd] {
        assert!(
            h.call(role, &key::OpenSigner {}).await.is_err(),
            "{role} gets no signing socket"
        );
    }
    // queued signs DKIM on its signing socket, never TLS.
    let queued = h.signer(Role::Queued).await;
    assert!(sign_on(&queued, &good).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_not_shaped_like_a_handshake_are_refused_on_both_paths() {
    let h = start(generous(), &[Role::Smtpd]).await;
    let mut client_verify = vec![b' '; 64];
    client_verify.extend_from_slice(b"TLS 1.3, client CertificateVerify\0");
    client_verify.extend([0x5a; 32]);
    let mut compressed = vec![7u8; 64];
    compressed.extend([3, 0x00, 0x17, 65, 0x02]);
    compressed.extend([0x5a; 64]);
    let mut trailing = certificate_verify();
    trailing.push(0);
    let garbage = [
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        Vec::new(),
        vec![0u8; 130],
        client_verify,
        compressed,
        trailing,
    ];
    let signer = h.signer(Role::Smtpd).await;
    for message in garbage {
        for (key, scheme) in [(&h.ecdsa, ECDSA_P256_SHA256), (&h.rsa, RSA_PSS_SHA256)] {
            let request = sign_tls(key, scheme, message.clone());
            assert!(
                h.call(Role::Smtpd, &request).await.is_err(),
                "async link: {message:?}"
            );
            assert!(
                sign_on(&signer, &request).is_err(),
                "signing socket: {message:?}"
            );
        }
    }
    let good = sign_tls(&h.rsa, RSA_PSS_SHA256, certificate_verify());
    assert!(is_signature(&h.leaves, &good, &sign_on(&signer, &good)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signing_budget_holds_per_role_across_its_links() {
    // Five signatures at once, then one a second: the sixth, asked at once, is refused.
    let limits = Limits {
        slots: 2,
        per_second: 1,
        burst: 5,
    };
    let h = start(limits, &[Role::Smtpd, Role::Imapd]).await;
    let good = sign_tls(&h.ecdsa, ECDSA_P256_SHA256, certificate_verify());
    let signer = h.signer(Role::Smtpd).await;
    for i in 0..5 {
        let answer = if i % 2 == 0 {
            h.call(Role::Smtpd, &good).await
        } else {
            sign_on(&signer, &good)
        };
        assert!(
            is_signature(&h.leaves, &good, &answer),
            "signature {i}: {answer:?}"
        );
    }
    for answer in [h.call(Role::Smtpd, &good).await, sign_on(&signer, &good)] {
        assert_eq!(
            answer,
            Err(Refused("too many signatures; slow down".into()))
        );
    }
    assert!(
        is_signature(&h.leaves, &good, &h.call(Role::Imapd, &good).await),
        "imapd's budget is its own"
    );
}

/// A flood of RSA signatures from every signing socket smtpd may open and from its async link
/// does not keep imapd's handshakes from being signed: each of imapd's signatures comes back
/// signed (not refused, not timed out), within the 2 s a network role waits. That bound is the
/// protocol's, the behaviour under test, not a performance figure: here the slowest answer takes
/// tens of milliseconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_role_does_not_hold_up_another_roles_signatures() {
    let h = Arc::new(start(generous(), &[Role::Smtpd, Role::Imapd]).await);
    let request = sign_tls(&h.rsa, RSA_PSS_SHA256, certificate_verify());
    let stop = Arc::new(AtomicBool::new(false));
    let flooded = Arc::new(AtomicUsize::new(0));
    let mut flooders = Vec::new();
    for _ in 0..16 {
        let fd = h.signer(Role::Smtpd).await;
        let (request, stop, flooded) = (request.clone(), stop.clone(), flooded.clone());
        let leaves = h.leaves.clone();
        flooders.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                // A flooding smtpd may wait past its own timeout: that is its loss.
                let answer = ipc::blocking::call(fd.as_fd(), request.clone(), CLIENT_TIMEOUT);
                if answer.is_ok_and(|a| is_signature(&leaves, &request, &a)) {
                    flooded.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for _ in 0..32 {
        let (h, request, stop) = (h.clone(), request.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let _ = h.call(Role::Smtpd, &request).await;
            }
        });
    }
    // imapd signs as a busy imapd does: two handshakes at a time on signing sockets, now and
    // then one on the async link, each answered before it asks again.
    let imapd = [h.signer(Role::Imapd).await, h.signer(Role::Imapd).await];
    // The flood is under way (some of its signatures made) before imapd starts.
    let start = Instant::now();
    while flooded.load(Ordering::Relaxed) < 16 {
        assert!(start.elapsed() < Duration::from_secs(30), "no flood");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let flooded_before = flooded.load(Ordering::Relaxed);
    let until = Instant::now() + Duration::from_secs(2);
    let sockets: Vec<_> = imapd
        .into_iter()
        .map(|fd| {
            let (request, leaves) = (request.clone(), h.leaves.clone());
            std::thread::spawn(move || {
                let (mut signed, mut slowest) = (0usize, Duration::ZERO);
                while Instant::now() < until {
                    let started = Instant::now();
                    let answer = sign_on(&fd, &request);
                    assert!(
                        is_signature(&leaves, &request, &answer),
                        "imapd's signature: {answer:?}"
                    );
                    slowest = slowest.max(started.elapsed());
                    signed += 1;
                }
                (signed, slowest)
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    while Instant::now() < until {
        let started = Instant::now();
        let answer = h.call(Role::Imapd, &request).await;
        assert!(
            is_signature(&h.leaves, &request, &answer),
            "imapd's signature: {answer:?}"
        );
        slowest = slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut signed = 0;
    for t in sockets {
        let (n, slow) = t.join().unwrap();
        signed += n;
        slowest = slowest.max(slow);
    }
    let flooded = flooded.load(Ordering::Relaxed) - flooded_before;
    stop.store(true, Ordering::Relaxed);
    for f in flooders {
        f.join().unwrap();
    }
    assert!(
        slowest < CLIENT_TIMEOUT,
        "an imapd signature took {slowest:?}"
    );
    assert!(
        signed > 0 && flooded > 0,
        "both roles signed: imapd {signed}, smtpd {flooded}"
    );
}
