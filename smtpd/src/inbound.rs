//! Checks of mail arriving on port 25 (mail-auth): SPF for the MAIL FROM (and HELO) identity,
//! DKIM signatures, DMARC with its policy, and iprev, summed up in an Authentication-Results
//! field (RFC 8601) placed above the message. A DMARC `reject` policy refuses the message;
//! `quarantine` files it in Junk.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use mail_auth::common::headers::HeaderWriter;
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
use tokio::sync::Semaphore;

use crate::reply::Reply;

/// Message bytes under verification at once, across all connections: 256 MiB in 64 KiB units.
const UNIT: u64 = 64 * 1024;
const MEMORY_UNITS: u32 = 4096;

/// How long a message waits for room in that budget before the client is told to retry.
const RESERVE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long all checks of one message may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Checker {
    auth: MessageAuthenticator,
    hostname: String,
    memory: Arc<Semaphore>,
}

/// SPF and iprev, which need only the connection and the envelope: started when the message
/// begins, so that their lookups overlap its transfer. Cancelled when dropped unused.
pub struct EnvelopeChecks {
    task: tokio::task::JoinHandle<(SpfOutput, IprevOutput)>,
    ip: IpAddr,
    helo: String,
    mail_from: String,
}

impl Drop for EnvelopeChecks {
    fn drop(&mut self) {
        self.task.abort();
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
            memory: Arc::new(Semaphore::new(MEMORY_UNITS as usize)),
        })
    }

    /// Permits for holding a message of `size` octets in memory (in 64 KiB units), waiting at
    /// most [`RESERVE_TIMEOUT`]; `None` when the budget stayed exhausted.
    pub async fn reserve(&self, size: u64) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let units = u32::try_from(size.div_ceil(UNIT))
            .unwrap_or(u32::MAX)
            .clamp(1, MEMORY_UNITS);
        tokio::time::timeout(
            RESERVE_TIMEOUT,
            self.memory.clone().acquire_many_owned(units),
        )
        .await
        .ok()?
        .ok()
    }

    /// Starts the envelope checks for a client at `ip` that said HELO `helo` and MAIL FROM
    /// `mail_from` (empty for `<>`).
    pub fn start(&self, ip: IpAddr, helo: String, mail_from: String) -> EnvelopeChecks {
        let (auth, host) = (self.auth.clone(), self.hostname.clone());
        let (h, m) = (helo.clone(), mail_from.clone());
        let task = tokio::spawn(async move {
            tokio::join!(
                auth.verify_spf(SpfParameters::verify(ip, &h, &host, &m)),
                auth.verify_iprev(ip)
            )
        });
        EnvelopeChecks {
            task,
            ip,
            helo,
            mail_from,
        }
    }

    /// Checks `message`, finishing `envelope`'s checks.
    pub async fn check(&self, message: &[u8], mut envelope: EnvelopeChecks) -> Verdict {
        match tokio::time::timeout(CHECK_TIMEOUT, self.check_inner(message, &mut envelope)).await {
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

    async fn check_inner(&self, message: &[u8], envelope: &mut EnvelopeChecks) -> Verdict {
        let (ip, helo, mail_from) = (
            envelope.ip,
            envelope.helo.as_str(),
            envelope.mail_from.as_str(),
        );
        let parsed = AuthenticatedMessage::parse(message);
        let dkim_of = async {
            match &parsed {
                Some(msg) => self.auth.verify_dkim(msg).await,
                None => Vec::new(),
            }
        };
        let (started, dkim) = tokio::join!(&mut envelope.task, dkim_of);
        let (spf, iprev) = match started {
            Ok(outputs) => outputs,
            Err(_) => {
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
