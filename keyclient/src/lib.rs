//! keyclient — what the network roles (smtpd, imapd, httpd) use of keyd: a rustls
//! `ServerConfig` whose private keys stay in keyd, and DKIM signatures that keyd writes over
//! what mail-auth canonicalized and hashed here ([`dkim`]).
//! Certificates and public keys come from keyd; each handshake signature is one round trip to
//! keyd, bounded by [`SIGN_TIMEOUT`], so a stopped keyd fails handshakes quickly instead of
//! hanging them. TLS 1.3 session tickets let resumed sessions skip keyd. Certificates are
//! swapped atomically when keyd says they changed (`moxctl reload`) or keyd restarts.

use ipc::sync::{read, write};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ipc::context::PeerSlot;
use ipc::msg::key::{self, KeyService};
use rustls::pki_types::CertificateDer;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, SignatureAlgorithm, SignatureScheme};
use tracing::Instrument;

pub mod dkim;
mod error;
mod serve;
mod signer;

pub use error::SetupError;

pub use serve::{answer_tls_unavailable, serve_unavailable, spawn_tls_unavailable};
pub use signer::KeydSigner;

/// How long a signature may take before the handshake fails.
pub const SIGN_TIMEOUT: Duration = Duration::from_secs(2);
/// How long to wait for keyd's link and certificates at start.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds the TLS configuration from keyd's certificates, and keeps its certificates current.
pub async fn server_config(keyd: &PeerSlot<KeyService>) -> Result<Arc<ServerConfig>, SetupError> {
    let client = tokio::time::timeout(SETUP_TIMEOUT, keyd.wait())
        .await
        .map_err(|_| SetupError::NoLink(SETUP_TIMEOUT))?;
    let signer = KeydSigner::new(keyd.clone());
    let resolver = Arc::new(Resolver::default());
    // Subscribe before the first fetch, so that no change can slip in between.
    let events = keyd.events();
    let links = keyd.links();
    signer.reopen(&client).await;
    resolver.install(fetch(&client, &signer).await?);
    tokio::spawn(keep_current(events, links, Arc::downgrade(&resolver), signer).in_current_span());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(SetupError::Tls)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().map_err(SetupError::Tls)?;
    Ok(Arc::new(config))
}

/// A blocking signer whose signing sockets are reopened whenever keyd's link changes (DKIM
/// signatures are not served on it: they are asked on the link, see [`dkim::sign`]).
pub async fn keyd_signer(keyd: &PeerSlot<KeyService>) -> KeydSigner {
    let signer = KeydSigner::new(keyd.clone());
    // Subscribe first: a link change between the two steps is then seen.
    let mut links = keyd.links();
    if let Some(client) = keyd.current() {
        signer.reopen(&client).await;
    }
    let fresh = signer.clone();
    tokio::spawn(
        async move {
            while links.changed().await.is_ok() {
                let client = links.borrow_and_update().clone();
                if let Some(client) = client.filter(|c| !c.is_closed()) {
                    fresh.reopen(&client).await;
                }
            }
        }
        .in_current_span(),
    );
    signer
}

/// Fetches the certificates again when keyd says they changed, and after keyd restarted
/// (with fresh signing sockets), until the configuration is dropped.
async fn keep_current(
    mut events: tokio::sync::broadcast::Receiver<key::Event>,
    mut links: tokio::sync::watch::Receiver<Option<ipc::Client<KeyService>>>,
    resolver: std::sync::Weak<Resolver>,
    signer: KeydSigner,
) {
    loop {
        let new_link = tokio::select! {
            event = events.recv() => match event {
                Ok(key::Event::CertificatesChanged)
                | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => false,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            changed = links.changed() => {
                if changed.is_err() {
                    return;
                }
                true
            }
        };
        let Some(resolver) = resolver.upgrade() else {
            return;
        };
        let client = links.borrow_and_update().clone();
        let Some(client) = client.filter(|c| !c.is_closed()) else {
            continue;
        };
        if new_link {
            signer.reopen(&client).await;
        }
        match fetch(&client, &signer).await {
            Ok(entries) => {
                tracing::info!("TLS certificates from keyd: {}", describe(&entries));
                resolver.install(entries);
            }
            Err(e) => tracing::warn!("keeping the current certificates: {}", e.chain()),
        }
    }
}

/// keyd's certificates as rustls keys whose signatures are made in keyd.
async fn fetch(
    client: &ipc::Client<KeyService>,
    signer: &KeydSigner,
) -> Result<Vec<Entry>, SetupError> {
    let certs = match tokio::time::timeout(SETUP_TIMEOUT, client.ask(key::Certificates {})).await {
        Ok(Ok(Ok(c))) => c,
        Ok(Ok(Err(refused))) => return Err(SetupError::Refused(refused)),
        Ok(Err(e)) => return Err(SetupError::Link(e)),
        Err(_) => return Err(SetupError::Silent(SETUP_TIMEOUT)),
    };
    let mut entries = Vec::new();
    for cert in certs {
        let remote = signer::RemoteKey {
            name: cert.key.clone(),
            public: cert.public_key.clone(),
            schemes: cert
                .schemes
                .iter()
                .map(|s| SignatureScheme::from(*s))
                .collect(),
            algorithm: algorithm(&cert.algorithm),
            signer: signer.clone(),
        };
        let chain: Vec<CertificateDer<'static>> = cert
            .chain
            .iter()
            .map(|d| CertificateDer::from(d.clone()))
            .collect();
        let certified = CertifiedKey::new(chain, Arc::new(remote));
        // keyd's public key must be the one in the certificate.
        certified
            .keys_match()
            .map_err(|source| SetupError::KeyMismatch {
                key: cert.key.clone(),
                source,
            })?;
        entries.push(Entry {
            names: cert.names,
            algorithm: certified.key.algorithm(),
            key: Arc::new(certified),
        });
    }
    if entries.is_empty() {
        return Err(SetupError::NoCertificates);
    }
    Ok(entries)
}

fn describe(entries: &[Entry]) -> String {
    entries
        .iter()
        .map(|e| format!("{} ({:?})", e.names.join(","), e.algorithm))
        .collect::<Vec<_>>()
        .join("; ")
}

fn algorithm(name: &str) -> SignatureAlgorithm {
    match name {
        "ecdsa" => SignatureAlgorithm::ECDSA,
        "ed25519" => SignatureAlgorithm::ED25519,
        _ => SignatureAlgorithm::RSA,
    }
}

#[derive(Debug)]
struct Entry {
    names: Vec<String>,
    algorithm: SignatureAlgorithm,
    key: Arc<CertifiedKey>,
}

impl Entry {
    /// Exact names, and `*.example.org` for one more label.
    fn serves(&self, sni: &str) -> bool {
        self.names.iter().any(|n| {
            n.eq_ignore_ascii_case(sni)
                || n.strip_prefix("*.").is_some_and(|parent| {
                    sni.split_once('.')
                        .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(parent))
                })
        })
    }
}

/// Picks a certificate by SNI, preferring ECDSA and falling back to RSA for clients that
/// cannot verify ECDSA. The set is replaced as a whole: a handshake sees the old or the new.
#[derive(Debug, Default)]
struct Resolver {
    entries: RwLock<Arc<Vec<Entry>>>,
}

impl Resolver {
    fn install(&self, entries: Vec<Entry>) {
        *write(&self.entries) = Arc::new(entries);
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let entries = read(&self.entries).clone();
        let sni = hello.server_name().map(str::to_ascii_lowercase);
        let offered = hello.signature_schemes();
        let named: Vec<&Entry> = entries
            .iter()
            .filter(|e| sni.as_ref().is_some_and(|s| e.serves(s)))
            .collect();
        let candidates: Vec<&Entry> = if named.is_empty() {
            entries.iter().collect()
        } else {
            named
        };
        let usable = |e: &Entry| e.key.key.choose_scheme(offered).is_some();
        candidates
            .iter()
            .find(|e| usable(e) && e.algorithm == SignatureAlgorithm::ECDSA)
            .or_else(|| candidates.iter().find(|e| usable(e)))
            .map(|e| e.key.clone())
    }
}
