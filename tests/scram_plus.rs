//! SCRAM-SHA-256-PLUS over SMTP submission (port 465) with a Rust client: the channel binding
//! (RFC 9266 tls-exporter) that smtpd reads from its TLS session and passes to authd matches
//! the client's, so the exchange succeeds and the server's signature verifies; a client bound
//! to another channel is refused.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::{Options, Tree, addr};
use hmac::{Hmac, Mac};
use ipc::config::ListenerKind;
use sha2::{Digest, Sha256};

#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn reply(tls: &mut Tls) -> String {
    let mut all = String::new();
    loop {
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while tls.read(&mut b).unwrap_or(0) == 1 {
            line.push(b[0]);
            if b[0] == b'\n' {
                break;
            }
        }
        let line = String::from_utf8_lossy(&line).into_owned();
        all += &line;
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            return all;
        }
    }
}

fn cmd(tls: &mut Tls, line: &str) -> String {
    tls.write_all(format!("{line}\r\n").as_bytes())
        .expect("write");
    reply(tls)
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("hmac");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// One SCRAM-SHA-256-PLUS exchange; `binding` is what the client claims as the channel.
/// Returns the final reply.
fn scram_plus(tls: &mut Tls, binding: &[u8]) -> String {
    let nonce = "rOprNGfwEbeRWgbNEkqO";
    let gs2 = "p=tls-exporter,,";
    let first_bare = format!("n=bob,r={nonce}");
    let r = cmd(
        tls,
        &format!(
            "AUTH SCRAM-SHA-256-PLUS {}",
            B64.encode(format!("{gs2}{first_bare}"))
        ),
    );
    let Some(challenge) = r.strip_prefix("334 ") else {
        return r;
    };
    let server_first =
        String::from_utf8(B64.decode(challenge.trim()).expect("b64")).expect("utf-8");
    let field = |k: &str| {
        server_first
            .split(',')
            .find_map(|f| f.strip_prefix(k))
            .expect("field")
            .to_string()
    };
    let (r_full, salt, iterations) = (
        field("r="),
        B64.decode(field("s=")).expect("salt"),
        field("i=").parse::<u32>().expect("i"),
    );
    assert!(r_full.starts_with(nonce));
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(b"correct horse", &salt, iterations, &mut salted);
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(&client_key);
    let cbind = B64.encode([gs2.as_bytes(), binding].concat());
    let without_proof = format!("c={cbind},r={r_full}");
    let auth_message = format!("{first_bare},{server_first},{without_proof}");
    let signature = hmac(&stored_key, auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&signature)
        .map(|(a, b)| a ^ b)
        .collect();
    let r = cmd(
        tls,
        &B64.encode(format!("{without_proof},p={}", B64.encode(proof))),
    );
    let Some(challenge) = r.strip_prefix("334 ") else {
        return r;
    };
    let server_final =
        String::from_utf8(B64.decode(challenge.trim()).expect("b64")).expect("utf-8");
    let server_key = hmac(&salted, b"Server Key");
    let expected = B64.encode(hmac(&server_key, auth_message.as_bytes()));
    assert_eq!(
        server_final,
        format!("v={expected}"),
        "the server proves it knows the password"
    );
    cmd(tls, "")
}

fn connect(tree: &Tree) -> Tls {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    let conn = rustls::ClientConnection::new(
        Arc::new(config),
        "mx.test.example".try_into().expect("name"),
    )
    .expect("client");
    let tcp = TcpStream::connect(addr(tree, ListenerKind::Submissions)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    assert!(reply(&mut tls).starts_with("220 "));
    let ehlo = cmd(&mut tls, "EHLO client.test");
    assert!(ehlo.contains("SCRAM-SHA-256-PLUS"), "{ehlo}");
    tls
}

#[test]
fn scram_plus_binds_the_smtp_tls_channel() {
    let tree = Tree::start(Options::default());
    for args in [
        &["domain", "add", "example.org"][..],
        &["account", "add", "bob", "bob@example.org"],
    ] {
        assert!(tree.moxctl(args).status.success());
    }
    let mut child = std::process::Command::new(common::MOXCTL)
        .arg("--socket")
        .arg(&tree.socket)
        .args(["password", "set", "bob", "--stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("moxctl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"correct horse\n")
        .expect("write");
    assert!(child.wait().expect("moxctl").success());

    let mut tls = connect(&tree);
    let exporter = tls
        .conn
        .export_keying_material(vec![0u8; 32], b"EXPORTER-Channel-Binding", None)
        .expect("exporter");
    let done = scram_plus(&mut tls, &exporter);
    assert!(done.starts_with("235 2.7.0"), "{done}");
    // Another channel's binding (a man in the middle's) is refused.
    let mut tls = connect(&tree);
    let done = scram_plus(&mut tls, &[0u8; 32]);
    assert!(
        done.starts_with("501 5.5.2") && done.contains("channel bindings don't match"),
        "{done}"
    );
}
