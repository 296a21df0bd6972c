//! The key service offered by keyd, the only holder of private keys: certificates (public) and
//! signatures made with keys the caller never sees.
//!
//! keyd signs for TLS only inputs shaped like a TLS 1.3 server CertificateVerify or a TLS 1.2
//! ServerKeyExchange, with keys the calling link may use, at a bounded rate.

use serde::{Deserialize, Serialize};

use crate::rpc::Service;

/// Marker for the service keyd offers to its peers.
#[derive(Debug)]
pub enum KeyService {}

impl Service for KeyService {
    const NAME: &'static str = "key";
    type Request = Request;
    type Response = Response;
    type Event = Event;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// smtpd, imapd, httpd → keyd: the certificates to serve, with their keys' public parts.
    Certificates,
    /// smtpd, imapd, httpd → keyd: a socket of its own for signing from a thread that may
    /// block (rustls signs synchronously); keyd serves it with the same rights as this link.
    OpenSigner,
    /// smtpd, imapd, httpd → keyd: sign a TLS handshake message with key `key`.
    SignTls {
        key: String,
        /// The TLS SignatureScheme code point.
        scheme: u16,
        message: Vec<u8>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// keyd → caller: every certificate chain keyd serves.
    Certificates(Vec<Certificate>),
    /// keyd → caller: the signature.
    Signature(Vec<u8>),
    /// keyd → caller: the signing socket is attached.
    SignerOpened,
    /// keyd → caller: refused (wrong shape, unknown key, not permitted, rate limited).
    Refused(String),
}

/// A certificate chain and what its key can do; the private key stays in keyd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    /// Host names it is valid for (SNI matching).
    pub names: Vec<String>,
    /// DER certificates, leaf first.
    pub chain: Vec<Vec<u8>>,
    /// The name of the key in keyd.
    pub key: String,
    /// The key's SubjectPublicKeyInfo, DER.
    pub public_key: Vec<u8>,
    /// The TLS SignatureScheme code points the key can sign with.
    pub schemes: Vec<u16>,
    /// `ecdsa`, `ed25519` or `rsa`.
    pub algorithm: String,
}

/// keyd → smtpd, imapd, httpd: pushed when certificates change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    CertificatesChanged,
}

/// Administration of keyd, forwarded by the supervisor from moxctl. Private keys never leave
/// keyd: only public parts and DNS records come back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Admin {
    /// moxctl → keyd: a new DKIM key for `domain` under `selector` (`ed25519` or `rsa`).
    DkimGenKey {
        domain: String,
        selector: String,
        algorithm: String,
    },
    /// moxctl → keyd: every DKIM key with the TXT record to publish.
    DkimList,
}

/// keyd's answer to an [`Admin`] request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminReply {
    Dkim(Vec<DkimKey>),
}

/// A DKIM key's public side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkimKey {
    pub domain: String,
    pub selector: String,
    pub algorithm: String,
    /// The name of the TXT record (`selector._domainkey.domain`).
    pub name: String,
    /// Its value (`v=DKIM1; k=…; p=…`).
    pub record: String,
}
