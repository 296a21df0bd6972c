//! keyclient — what smtpd, imapd and httpd use of keyd: a rustls `ServerConfig` whose private
//! keys stay in keyd. Certificates and public keys come from keyd; each handshake signature is
//! one round trip to keyd, bounded by [`SIGN_TIMEOUT`], so a stopped keyd fails handshakes
//! quickly instead of hanging them. TLS 1.3 session tickets let resumed sessions skip keyd.

use std::sync::Arc;
use std::time::Duration;

use ipc::context::PeerSlot;
use ipc::msg::key::{self, KeyService};
use rustls::pki_types::{CertificateDer, SubjectPublicKeyInfoDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{ServerConfig, SignatureAlgorithm, SignatureScheme};

mod serve;

pub use serve::{answer_tls_unavailable, serve_unavailable, spawn_tls_unavailable};

/// How long a signature may take before the handshake fails.
pub const SIGN_TIMEOUT: Duration = Duration::from_secs(2);
/// How long to wait for keyd's link and certificates at start.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds the TLS configuration from keyd's certificates.
pub async fn server_config(keyd: &PeerSlot<KeyService>) -> Result<Arc<ServerConfig>, String> {
    let client = tokio::time::timeout(SETUP_TIMEOUT, keyd.wait())
        .await
        .map_err(|_| "no link to keyd".to_string())?;
    let certs = match tokio::time::timeout(
        SETUP_TIMEOUT,
        client.call(&key::Request::Certificates, Vec::new()),
    )
    .await
    {
        Ok(Ok((key::Response::Certificates(c), _))) => c,
        Ok(Ok((other, _))) => return Err(format!("keyd: {other:?}")),
        Ok(Err(e)) => return Err(format!("keyd: {e}")),
        Err(_) => return Err("keyd did not answer".into()),
    };
    // Blocking signing sockets: a signature from a handshake is then one plain round trip.
    let pool = Arc::new(SignerPool::default());
    for _ in 0..SIGNERS {
        match client.call(&key::Request::OpenSigner, Vec::new()).await {
            Ok((key::Response::SignerOpened, mut fds)) if fds.len() == 1 => pool.put(fds.remove(0)),
            Ok((other, _)) => tracing::warn!("keyd gave no signing socket: {other:?}"),
            Err(e) => tracing::warn!("keyd gave no signing socket: {e}"),
        }
    }
    let mut entries = Vec::new();
    for cert in certs {
        let remote = RemoteKey {
            name: cert.key.clone(),
            public: cert.public_key.clone(),
            schemes: cert
                .schemes
                .iter()
                .map(|s| SignatureScheme::from(*s))
                .collect(),
            algorithm: algorithm(&cert.algorithm),
            keyd: keyd.clone(),
            runtime: tokio::runtime::Handle::current(),
            pool: pool.clone(),
        };
        let chain: Vec<CertificateDer<'static>> = cert
            .chain
            .iter()
            .map(|d| CertificateDer::from(d.clone()))
            .collect();
        let certified = CertifiedKey::new(chain, Arc::new(remote));
        // keyd's public key must be the one in the certificate.
        certified.keys_match().map_err(|e| {
            format!(
                "certificate {} does not match its key in keyd: {e}",
                cert.key
            )
        })?;
        entries.push(Entry {
            names: cert.names,
            algorithm: certified.key.algorithm(),
            key: Arc::new(certified),
        });
    }
    if entries.is_empty() {
        return Err("keyd has no certificates".into());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Resolver { entries }));
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| e.to_string())?;
    Ok(Arc::new(config))
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

/// Picks a certificate by SNI, preferring ECDSA and falling back to RSA for clients that
/// cannot verify ECDSA.
#[derive(Debug)]
struct Resolver {
    entries: Vec<Entry>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = hello.server_name().map(str::to_ascii_lowercase);
        let offered = hello.signature_schemes();
        let named: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| {
                sni.as_ref()
                    .is_some_and(|s| e.names.iter().any(|n| n.eq_ignore_ascii_case(s)))
            })
            .collect();
        let candidates: Vec<&Entry> = if named.is_empty() {
            self.entries.iter().collect()
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

/// Blocking signing sockets opened at keyd, one caller each at a time.
#[derive(Debug, Default)]
struct SignerPool {
    sockets: std::sync::Mutex<Vec<std::os::fd::OwnedFd>>,
}

impl SignerPool {
    fn take(&self) -> Option<std::os::fd::OwnedFd> {
        self.sockets.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    fn put(&self, fd: std::os::fd::OwnedFd) {
        self.sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(fd);
    }
}

/// Signing sockets per configuration (rustls signs on the async workers, two by default).
const SIGNERS: usize = 4;

/// A private key that lives in keyd.
struct RemoteKey {
    name: String,
    public: Vec<u8>,
    schemes: Vec<SignatureScheme>,
    algorithm: SignatureAlgorithm,
    keyd: PeerSlot<KeyService>,
    runtime: tokio::runtime::Handle,
    pool: Arc<SignerPool>,
}

impl std::fmt::Debug for RemoteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteKey")
            .field("name", &self.name)
            .finish()
    }
}

impl SigningKey for RemoteKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        let scheme = *self.schemes.iter().find(|s| offered.contains(s))?;
        Some(Box::new(RemoteSigner {
            name: self.name.clone(),
            scheme,
            keyd: self.keyd.clone(),
            runtime: self.runtime.clone(),
            pool: self.pool.clone(),
        }))
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        Some(SubjectPublicKeyInfoDer::from(self.public.as_slice()))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        self.algorithm
    }
}

struct RemoteSigner {
    name: String,
    scheme: SignatureScheme,
    keyd: PeerSlot<KeyService>,
    runtime: tokio::runtime::Handle,
    pool: Arc<SignerPool>,
}

impl std::fmt::Debug for RemoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSigner")
            .field("name", &self.name)
            .field("scheme", &self.scheme)
            .finish()
    }
}

impl Signer for RemoteSigner {
    /// rustls signs synchronously: one blocking round trip to keyd, off the async workers'
    /// duty (block_in_place), bounded by [`SIGN_TIMEOUT`].
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let request = key::Request::SignTls {
            key: self.name.clone(),
            scheme: u16::from(self.scheme),
            message: message.to_vec(),
        };
        let answer = match self.pool.take() {
            // One blocking round trip on a signing socket of our own. `block_in_place` first
            // hands this worker's queued tasks to another thread: keyd may be a task of this
            // very runtime (single-process mode) and must not wait behind us.
            Some(fd) => {
                use std::os::fd::AsFd;
                let answer = tokio::task::block_in_place(|| {
                    ipc::blocking::call::<KeyService>(fd.as_fd(), &request, SIGN_TIMEOUT)
                });
                match answer {
                    Ok(answer) => {
                        self.pool.put(fd);
                        Ok(answer)
                    }
                    // The socket's state is unknown (a late answer may come): let it go.
                    Err(e) => Err(format!("keyd: {e}")),
                }
            }
            // All signing sockets busy: the shared link, without blocking the async workers.
            None => {
                let client = self
                    .keyd
                    .current()
                    .ok_or_else(|| rustls::Error::General("keyd is not reachable".into()))?;
                let call = async {
                    tokio::time::timeout(SIGN_TIMEOUT, client.call(&request, Vec::new())).await
                };
                match tokio::task::block_in_place(|| self.runtime.block_on(call)) {
                    Ok(Ok((answer, _))) => Ok(answer),
                    Ok(Err(e)) => Err(format!("keyd: {e}")),
                    Err(_) => Err(format!("keyd did not sign within {SIGN_TIMEOUT:?}")),
                }
            }
        };
        match answer.map_err(rustls::Error::General)? {
            key::Response::Signature(sig) => Ok(sig),
            key::Response::Refused(why) => {
                Err(rustls::Error::General(format!("keyd refused: {why}")))
            }
            other => Err(rustls::Error::General(format!("keyd: {other:?}"))),
        }
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}
