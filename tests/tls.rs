//! TLS through keyd: the implicit-TLS listeners complete real handshakes (Python's `ssl` as the
//! client) whose signatures keyd makes; a stopped keyd fails handshakes within the signing
//! timeout instead of hanging them.

mod common;

use std::time::{Duration, Instant};

use common::{Options, Tree, addr, python_tls};
use ipc::Role;
use ipc::config::ListenerKind;

#[test]
fn implicit_tls_listeners_handshake_through_keyd() {
    let tree = Tree::start(Options::default());
    let imaps = python_tls(addr(&tree, ListenerKind::Imaps), "- -").expect("imaps");
    assert!(imaps.starts_with("TLSv1.3 "), "{imaps}");
    assert!(imaps.ends_with("* BYE [UNAVAILABLE]"), "{imaps}");
    let ecdsa_fp = imaps.split(' ').nth(2).expect("fingerprint").to_string();
    let https = python_tls(addr(&tree, ListenerKind::Https), "1.2 -").expect("https");
    assert!(
        https.starts_with("TLSv1.2 ECDHE-ECDSA-"),
        "ECDSA by default: {https}"
    );
    assert!(https.ends_with("HTTP/1.1 503 Service"), "{https}");
    // A client that cannot do ECDSA gets the RSA certificate.
    let rsa = python_tls(
        addr(&tree, ListenerKind::Submissions),
        "1.2 ECDHE-RSA-AES128-GCM-SHA256",
    )
    .expect("submissions with RSA");
    assert!(
        rsa.starts_with("TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256"),
        "{rsa}"
    );
    assert_ne!(
        rsa.split(' ').nth(2),
        Some(ecdsa_fp.as_str()),
        "another certificate"
    );
    assert!(rsa.ends_with("220 mx.test.example"), "{rsa}");
    // Nothing but keyd holds the keys: the keyd directory is the only place they exist.
    let keyd_dir = tree.dir.path().join("data/keyd");
    let names: Vec<String> = std::fs::read_dir(&keyd_dir)
        .expect("keyd dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().any(|n| n == "selfsigned-ecdsa.key.pem"),
        "{names:?}"
    );
    let meta = std::fs::metadata(keyd_dir.join("selfsigned-ecdsa.key.pem")).expect("key");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
}

#[test]
fn a_stopped_keyd_fails_handshakes_quickly_instead_of_hanging_them() {
    let tree = Tree::start(Options::default());
    let imaps = addr(&tree, ListenerKind::Imaps);
    python_tls(imaps, "- -").expect("a first handshake while keyd runs");
    let keyd = tree
        .status()
        .expect("status")
        .roles
        .iter()
        .find(|r| r.role == Role::Keyd)
        .and_then(|r| r.pid)
        .expect("keyd pid");
    let pid = nix::unistd::Pid::from_raw(keyd as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
    let start = Instant::now();
    let stopped = python_tls(imaps, "- -");
    let took = start.elapsed();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).expect("SIGCONT");
    // Failed, not hung: the server ended the handshake (an alert or a close), not the
    // client's own 15 s timeout. How fast that is belongs in a benchmark, not here.
    let err = stopped.expect_err("no key, no handshake");
    assert!(
        !err.contains("timed out") && (err.contains("ALERT") || err.contains("EOF")),
        "the server ended the handshake: {err}"
    );
    eprintln!("handshake with keyd stopped failed after {took:?}: {err}");
    python_tls(imaps, "- -").expect("handshakes work again once keyd continues");
}

#[test]
fn private_keys_are_in_keyd_memory_and_nowhere_else_in_the_tree() {
    if common::skip_unless_root("private_keys_are_in_keyd_memory_and_nowhere_else_in_the_tree") {
        return;
    }
    let tree = Tree::start(Options::default());
    // Handshakes on every TLS port first: the network roles have done their part.
    for kind in [
        ListenerKind::Imaps,
        ListenerKind::Https,
        ListenerKind::Submissions,
    ] {
        python_tls(addr(&tree, kind), "- -").expect("handshake");
    }
    let pem = std::fs::read_to_string(tree.dir.path().join("data/keyd/selfsigned-ecdsa.key.pem"))
        .expect("key file");
    let scalar = common::ec_scalar(&pem);
    let status = tree.status().expect("status");
    let mut holders = Vec::new();
    for pid in std::iter::once(tree.pid()).chain(status.roles.iter().filter_map(|r| r.pid)) {
        if common::memory_holds(pid, &scalar) {
            holders.push(pid);
        }
    }
    let keyd = status
        .roles
        .iter()
        .find(|r| r.role == Role::Keyd)
        .and_then(|r| r.pid)
        .expect("keyd");
    assert_eq!(
        holders,
        [keyd],
        "the private key is in keyd (proving the scan works) and in no other process"
    );
}

#[test]
fn a_rustls_client_completes_tls_12_and_13_with_both_key_types() {
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};
    use std::io::{Read, Write};
    use std::sync::Arc;

    /// Accepts the self-signed certificate but checks every handshake signature for real.
    #[derive(Debug)]
    struct SelfSigned(
        Arc<rustls::crypto::CryptoProvider>,
        Vec<SignatureScheme>,
        std::sync::Mutex<Option<SignatureScheme>>,
    );
    impl rustls::client::danger::ServerCertVerifier for SelfSigned {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            *self.2.lock().expect("lock") = Some(dss.scheme);
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            *self.2.lock().expect("lock") = Some(dss.scheme);
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.1.clone()
        }
    }

    let tree = Tree::start(Options::default());
    let https = addr(&tree, ListenerKind::Https);
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    for (version, schemes, expect) in [
        (
            &rustls::version::TLS13,
            vec![SignatureScheme::ECDSA_NISTP256_SHA256],
            SignatureScheme::ECDSA_NISTP256_SHA256,
        ),
        (
            &rustls::version::TLS13,
            vec![SignatureScheme::RSA_PSS_SHA256],
            SignatureScheme::RSA_PSS_SHA256,
        ),
        (
            &rustls::version::TLS12,
            vec![SignatureScheme::ECDSA_NISTP256_SHA256],
            SignatureScheme::ECDSA_NISTP256_SHA256,
        ),
        (
            &rustls::version::TLS12,
            vec![SignatureScheme::RSA_PKCS1_SHA256],
            SignatureScheme::RSA_PKCS1_SHA256,
        ),
    ] {
        let verifier = Arc::new(SelfSigned(
            provider.clone(),
            schemes,
            std::sync::Mutex::new(None),
        ));
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[version])
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        let mut conn = rustls::ClientConnection::new(
            Arc::new(config),
            ServerName::try_from("mx.test.example").expect("name"),
        )
        .expect("client");
        let mut sock = std::net::TcpStream::connect(https).expect("connect");
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut tls = rustls::Stream::new(&mut conn, &mut sock);
        tls.write_all(b"GET / HTTP/1.0\r\n\r\n")
            .expect("handshake and request");
        let mut answer = Vec::new();
        let _ = tls.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 503 "),
            "{version:?} {expect:?}: {answer}"
        );
        assert_eq!(conn.protocol_version(), Some(version.version));
        // The signature keyd made was checked, with the scheme the client asked for.
        assert_eq!(
            *verifier.2.lock().expect("lock"),
            Some(expect),
            "{version:?}"
        );
    }
}
