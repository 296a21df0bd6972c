//! Checks of mail arriving on port 25 (mail-auth): SPF for the MAIL FROM (and HELO) identity,
//! DKIM signatures, DMARC with its policy, and iprev, summed up in an Authentication-Results
//! field (RFC 8601) placed above the message. A DMARC `reject` policy refuses the message;
//! `quarantine` files it in Junk.
//!
//! Nothing here holds a whole message: DKIM body hashes are computed as the body streams past
//! on its way to the store, and the verifier gets the header block (at most 64 KiB, held back
//! anyway) with those hashes.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use mail_auth::common::crypto::{HashAlgorithm, HashContext, HashImpl, Sha1, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::Canonicalization;
use mail_auth::dkim::canonicalize::BodyHasher;
use mail_auth::dmarc::Policy;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::hickory_resolver::TokioResolver;
use mail_auth::hickory_resolver::config::{
    NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use mail_auth::hickory_resolver::net::runtime::TokioRuntimeProvider;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DmarcResult, IprevOutput, MessageAuthenticator,
    SpfOutput,
};

use tracing::Instrument;

use crate::reply::Reply;

/// How long all checks of one message may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Checker {
    auth: MessageAuthenticator,
    hostname: String,
}

/// The reverse-DNS check of a connection's address, started when it connects and shared by
/// all its messages. Cancelled when dropped.
pub struct ConnectionChecks {
    ip: IpAddr,
    iprev: tokio::sync::watch::Receiver<Option<IprevOutput>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ConnectionChecks {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The checks of one message: SPF, started at MAIL FROM so that its lookups overlap the rest of
/// the transaction; the header block is kept once complete and the body hashed, as it streams
/// past, for the DKIM signatures the header carries. Cancelled when dropped unused.
pub struct MessageChecks {
    task: tokio::task::JoinHandle<SpfOutput>,
    iprev: tokio::sync::watch::Receiver<Option<IprevOutput>>,
    ip: IpAddr,
    helo: String,
    mail_from: String,
    head: Vec<u8>,
    hashes: BodyHashes,
}

/// The body hashes a header block's DKIM signatures ask for, fed the body as it streams by.
#[derive(Default)]
pub struct BodyHashes(Vec<BodyHash>);

/// A finished body hash: canonicalization, hash, length limit, digest (mail-auth's shape).
type Finished = (Canonicalization, HashAlgorithm, u64, Vec<u8>);

type HashCtx = <Sha256 as HashImpl>::Context;

/// One body hash the message's DKIM signatures ask for.
struct BodyHash {
    canonicalization: Canonicalization,
    algorithm: HashAlgorithm,
    length: u64,
    hasher: BodyHasher<HashCtx>,
}

impl Drop for MessageChecks {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl BodyHashes {
    /// One hasher per distinct (canonicalization, hash, length) the DKIM signatures of `head`
    /// name — mail-auth's own list, in its order. Where mail-auth sees the header block end
    /// before the empty line (a line without a colon ends it), the rest of `head` is body to
    /// it, and is hashed first: no byte is left out of both the header and the body hash.
    pub fn new(head: &[u8]) -> BodyHashes {
        let Some(m) = AuthenticatedMessage::parse(head) else {
            return BodyHashes::default();
        };
        let body_start = (m.body_offset as usize).min(head.len());
        let mut hashes = BodyHashes(
            m.body_hashes
                .iter()
                .map(|&(canonicalization, algorithm, length, _)| BodyHash {
                    canonicalization,
                    algorithm,
                    length,
                    hasher: BodyHasher::new(
                        match algorithm {
                            HashAlgorithm::Sha1 => Sha1::hasher(),
                            HashAlgorithm::Sha256 => Sha256::hasher(),
                        },
                        canonicalization,
                        length,
                    ),
                })
                .collect(),
        );
        hashes.write(&head[body_start..]);
        hashes
    }

    /// More of the body, in order.
    pub fn write(&mut self, bytes: &[u8]) {
        for h in &mut self.0 {
            h.hasher.write(bytes);
        }
    }

    pub fn finish(self) -> Vec<Finished> {
        self.0
            .into_iter()
            .map(|h| {
                let (ctx, _) = h.hasher.finish();
                (
                    h.canonicalization,
                    h.algorithm,
                    h.length,
                    ctx.complete().as_ref().to_vec(),
                )
            })
            .collect()
    }
}

/// `head` parsed for the verifier, the body's hashes filled in from `hashes` (computed for
/// the same header block, so the lists match entry for entry).
fn with_body_hashes<'a>(head: &'a [u8], hashes: &[Finished]) -> Option<AuthenticatedMessage<'a>> {
    AuthenticatedMessage::parse(head).map(|mut m| {
        for (want, got) in m.body_hashes.iter_mut().zip(hashes) {
            if (want.0, want.1, want.2) == (got.0, got.1, got.2) {
                want.3.clone_from(&got.3);
            }
        }
        m
    })
}

impl MessageChecks {
    /// The header block as the client sent it, up to and including the empty line.
    pub fn header_block(&mut self, head: &[u8]) {
        self.head = head.to_vec();
        self.hashes = BodyHashes::new(head);
    }

    /// More of the body, in order.
    pub fn body(&mut self, bytes: &[u8]) {
        self.hashes.write(bytes);
    }
}

/// What to do with a checked message.
pub struct Verdict {
    /// The Authentication-Results field, with its CRLF.
    pub header: String,
    pub junk: bool,
    pub reject: Option<Reply>,
}

impl Checker {
    /// A checker asking `resolvers` (UDP, TCP for long answers).
    pub fn new(resolvers: &[SocketAddr], hostname: &str) -> Result<Checker, String> {
        let servers = resolvers
            .iter()
            .map(|a| {
                let mut ns = NameServerConfig::udp_and_tcp(a.ip());
                for c in &mut ns.connections {
                    c.port = a.port();
                }
                ns
            })
            .collect();
        let config = ResolverConfig::from_parts(None, Vec::new(), servers);
        let mut opts = ResolverOpts::default();
        opts.timeout = Duration::from_secs(5);
        opts.attempts = 2;
        // The sandbox has no files: no /etc/hosts.
        opts.use_hosts_file = ResolveHosts::Never;
        // hickory builds a TLS client for DNS-over-TLS from the system's CA files, which the
        // sandbox cannot open; plain DNS is all that is used, so it gets one with no roots.
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let resolver = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .with_tls_config(tls)
            .build()
            .map_err(|e| e.to_string())?;
        let auth = MessageAuthenticator(resolver);
        Ok(Checker {
            auth,
            hostname: hostname.to_string(),
        })
    }

    /// Starts the reverse-DNS check of a client at `ip`.
    pub fn connected(&self, ip: IpAddr) -> ConnectionChecks {
        let auth = self.auth.clone();
        let (tx, iprev) = tokio::sync::watch::channel(None);
        let task = tokio::spawn(
            async move {
                let _ = tx.send(Some(auth.verify_iprev(ip).await));
            }
            .in_current_span(),
        );
        ConnectionChecks { ip, iprev, task }
    }

    /// Starts the checks of a message on `connection`, whose client said HELO `helo` and MAIL
    /// FROM `mail_from` (empty for `<>`).
    pub fn start(
        &self,
        connection: &ConnectionChecks,
        helo: String,
        mail_from: String,
    ) -> MessageChecks {
        let (auth, host) = (self.auth.clone(), self.hostname.clone());
        let (h, m) = (helo.clone(), mail_from.clone());
        let ip = connection.ip;
        let task = tokio::spawn(
            async move {
                auth.verify_spf(SpfParameters::verify(ip, &h, &host, &m))
                    .await
            }
            .in_current_span(),
        );
        MessageChecks {
            task,
            iprev: connection.iprev.clone(),
            ip,
            helo,
            mail_from,
            head: Vec::new(),
            hashes: BodyHashes::default(),
        }
    }

    /// Finishes `checks` once the whole message went past.
    pub async fn check(&self, mut checks: MessageChecks) -> Verdict {
        let body_hashes = std::mem::take(&mut checks.hashes).finish();
        let head = std::mem::take(&mut checks.head);
        match tokio::time::timeout(
            CHECK_TIMEOUT,
            self.check_inner(&head, body_hashes, &mut checks),
        )
        .await
        {
            Ok(v) => v,
            Err(_) => Verdict {
                header: format!(
                    "Authentication-Results: {}; none (checks timed out)\r\n",
                    self.hostname
                ),
                junk: false,
                reject: None,
            },
        }
    }

    async fn check_inner(
        &self,
        head: &[u8],
        body_hashes: Vec<Finished>,
        envelope: &mut MessageChecks,
    ) -> Verdict {
        let (ip, helo, mail_from) = (
            envelope.ip,
            envelope.helo.as_str(),
            envelope.mail_from.as_str(),
        );
        let parsed = with_body_hashes(head, &body_hashes);
        let dkim_of = async {
            match &parsed {
                Some(msg) => self.auth.verify_dkim(msg).await,
                None => Vec::new(),
            }
        };
        let iprev_of = async {
            match envelope.iprev.wait_for(Option::is_some).await {
                Ok(v) => v.clone(),
                Err(_) => None,
            }
        };
        let (spf, iprev, dkim) = tokio::join!(&mut envelope.task, iprev_of, dkim_of);
        let (spf, iprev) = match (spf, iprev) {
            (Ok(spf), Some(iprev)) => (spf, iprev),
            _ => {
                return Verdict {
                    header: format!(
                        "Authentication-Results: {}; none (checks failed)\r\n",
                        self.hostname
                    ),
                    junk: false,
                    reject: None,
                };
            }
        };
        let Some(msg) = &parsed else {
            let header = AuthenticationResults::new(&self.hostname)
                .with_spf_mailfrom_result(&spf, ip, mail_from, helo)
                .with_iprev_result(&iprev, ip)
                .to_header();
            return Verdict {
                header,
                junk: false,
                reject: None,
            };
        };
        let mail_from_domain = mail_from.rsplit_once('@').map_or(helo, |(_, d)| d);
        let dmarc = self
            .auth
            .verify_dmarc(DmarcParameters::new(msg, &dkim, mail_from_domain, &spf))
            .await;
        let header = AuthenticationResults::new(&self.hostname)
            .with_dkim_results(&dkim, msg.from())
            .with_spf_mailfrom_result(&spf, ip, mail_from, helo)
            .with_dmarc_result(&dmarc)
            .with_iprev_result(&iprev, ip)
            .to_header();
        let failed = matches!(dmarc.result(), DmarcResult::Fail(_));
        let (junk, reject) = match (failed, dmarc.policy()) {
            (true, Policy::Reject) => (
                false,
                Some(Reply::new(
                    550,
                    "5.7.1",
                    format!("rejected by the DMARC policy of {}", dmarc.domain()),
                )),
            ),
            (true, Policy::Quarantine) => (true, None),
            _ => (false, None),
        };
        Verdict {
            header,
            junk,
            reject,
        }
    }
}

#[cfg(test)]
mod tests {
    use mail_auth::AuthenticatedMessage;

    use super::{BodyHashes, with_body_hashes};

    /// A header block with signatures asking for four different body hashes, the last one
    /// the same as the first's (the b= and bh= values need only parse).
    const HEAD: &[u8] = b"DKIM-Signature: v=1; a=rsa-sha256; d=a.test; s=s; c=relaxed/relaxed;\r\n\
        \th=from; bh=AAAA; b=AAAA\r\n\
        DKIM-Signature: v=1; a=rsa-sha256; d=a.test; s=t; c=simple/simple; h=from; bh=AAAA; b=AAAA\r\n\
        DKIM-Signature: v=1; a=rsa-sha1; d=a.test; s=u; c=simple/relaxed; h=from; bh=AAAA; b=AAAA\r\n\
        DKIM-Signature: v=1; a=rsa-sha1; d=a.test; s=w; c=relaxed/simple; h=from; bh=AAAA; b=AAAA\r\n\
        DKIM-Signature: v=1; a=ed25519-sha256; d=a.test; s=v; c=simple/relaxed; h=from; bh=AAAA;\r\n\
        \tb=AAAA\r\n\
        From: x@a.test\r\n\
        \r\n";

    fn bodies() -> Vec<Vec<u8>> {
        let mut long = Vec::new();
        for i in 0..5000 {
            long.extend_from_slice(format!("line {i}  with \t spaces \t \r\n").as_bytes());
            if i % 7 == 0 {
                long.extend_from_slice(b"\r\n\r\n");
            }
        }
        long.extend_from_slice(b"\r\n\r\n\r\n");
        vec![
            Vec::new(),
            b"\r\n".to_vec(),
            b"\r\n\r\n\r\n".to_vec(),
            b"no final line break".to_vec(),
            b" a  b \t\r\n\r\n c\r\n \r\n\t\r\n".to_vec(),
            long,
        ]
    }

    /// Hashes computed over the body in chunks of any size equal mail-auth's over the whole
    /// message — also when a line without a colon ends mail-auth's header block before the
    /// empty line (what follows it is body to mail-auth, and must be hashed as such).
    #[test]
    fn streamed_body_hashes_match_whole_message() {
        let mut tricky = HEAD[..HEAD.len() - 2].to_vec();
        tricky.extend_from_slice(b"NOCOLON\r\nWire the money to X.\r\n\r\n");
        for head in [HEAD, tricky.as_slice()] {
            for body in bodies() {
                let mut whole = head.to_vec();
                whole.extend_from_slice(&body);
                let expected = AuthenticatedMessage::parse(&whole).unwrap().body_hashes;
                assert_eq!(expected.len(), 4);
                for size in [1, 2, 3, 17, 4096, 65536, usize::MAX] {
                    let mut hashes = BodyHashes::new(head);
                    for chunk in body.chunks(size.min(body.len().max(1))) {
                        hashes.write(chunk);
                    }
                    let got = with_body_hashes(head, &hashes.finish()).unwrap();
                    assert_eq!(got.body_hashes, expected, "chunks of {size}");
                }
            }
        }
    }
}
