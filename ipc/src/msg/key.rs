//! The key service offered by keyd, the only holder of private keys: certificates (public) and
//! signatures made with keys the caller never sees.
//!
//! keyd signs for TLS only inputs shaped like a TLS 1.3 server CertificateVerify or a TLS 1.2
//! ServerKeyExchange, with keys the calling link may use, at a bounded rate. For DKIM it writes
//! the signature field itself, with a bounded validity, for a sender the asking session owns.

use serde::{Deserialize, Serialize};

use crate::rpc::Service;

/// Marker for the service keyd offers to its peers.
#[derive(Debug)]
pub enum KeyService {}

impl Service for KeyService {
    const NAME: &'static str = "key";
    type Request = Request;
    type Event = Event;
}

crate::requests! {
    /// A request to keyd.
    pub enum Request for KeyService, refused: Refused {
        /// smtpd, submission, imapd, httpd → keyd: every certificate chain keyd serves, with
        /// its key's public part.
        Certificates {} -> Vec<Certificate>,
        /// smtpd, submission, imapd, httpd → keyd: a socket of its own for signing from a
        /// thread that may block (rustls signs synchronously), attached to the answer; keyd
        /// serves it with the same rights as this link.
        OpenSigner {} -> (),
        /// smtpd, submission, imapd, httpd → keyd: sign a TLS handshake message with key `key`;
        /// the answer is the signature.
        SignTls {
            key: String,
            /// The TLS SignatureScheme code point.
            scheme: u16,
            message: Vec<u8>,
        } -> Vec<u8>,
        /// submission, queued → keyd: a DKIM-Signature field for a message, made with key
        /// `selector` of `domain`. The caller canonicalized the header fields and hashed the
        /// body (relaxed/relaxed); keyd writes the field itself — `t=` now, `x=` after the
        /// configured validity, never `l=` — and signs only a message whose one From: address
        /// is in `domain` or below it and, from submission, owned by the session of `ticket`
        /// (asked of storaged); from queued (no session), only `postmaster@` or
        /// `mailer-daemon@` of `domain`. The answer is the complete `DKIM-Signature: …` field
        /// with its CRLF, to prepend.
        SignDkim { request: DkimRequest } -> String,
        /// submission, queued → keyd: the DKIM keys of `domain` (public parts).
        DkimKeys { domain: String } -> Vec<DkimKey>,
    }
}

/// keyd → caller: refused (wrong shape, unknown key, not permitted, rate limited), and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a DKIM signature covers, as the signer computed it (RFC 6376 §3.7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkimRequest {
    /// The submission session the message comes from; `None` from queued.
    pub ticket: Option<crate::msg::auth::Ticket>,
    pub domain: String,
    pub selector: String,
    /// The header field names of `h=`, in order (a name listed more often than the field
    /// occurs guards against added fields; From must be listed so).
    pub signed: Vec<String>,
    /// The fields `signed` selects, relaxed-canonicalized (`name:value` + CRLF each), in the
    /// order of `signed`.
    pub headers: Vec<u8>,
    /// SHA-256 of the relaxed-canonicalized body (`bh=`).
    pub body_hash: Vec<u8>,
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

/// keyd → smtpd, submission, imapd, httpd: pushed when certificates change.
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
    /// supervisor → keyd (at `moxctl reload`): the certificate files of the configuration,
    /// two fds per entry (chain, key). All are checked before any is served: one bad file
    /// changes nothing. Refused when it comes from moxctl rather than the supervisor.
    LoadCertificates(Vec<crate::config::CertificateFiles>),
    /// moxctl → keyd: the certificates served, with names, validity and source.
    TlsStatus,
}

/// keyd's answer to an [`Admin`] request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminReply {
    Dkim(Vec<DkimKey>),
    Tls(Vec<CertificateStatus>),
}

/// What `moxctl tls status` shows of one certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateStatus {
    /// The names it is served for.
    pub names: Vec<String>,
    /// `ecdsa`, `ed25519` or `rsa`.
    pub algorithm: String,
    /// Where it came from: a file path, `self-signed` or `acme`.
    pub source: String,
    pub subject: String,
    pub issuer: String,
    /// Seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    /// SHA-256 of the leaf certificate, `AB:CD:…`.
    pub fingerprint: String,
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
