//! Signing through keyd from synchronous code (rustls' `Signer::sign`, mail-auth's
//! `SigningKey::sign`): one blocking round trip on a signing socket of our own, bounded by
//! [`SIGN_TIMEOUT`], or the shared async link when every socket is busy. Windows has no
//! signing sockets (no socketpairs, keyd refuses `OpenSigner`): there every signature takes the
//! link.

#[cfg(unix)]
use ipc::sync::lock;
#[cfg(unix)]
use std::os::fd::OwnedFd;
#[cfg(unix)]
use std::sync::{Arc, Mutex};
#[cfg(unix)]
use tracing::Instrument;

use ipc::context::PeerSlot;
use ipc::msg::key::{self, KeyService};
use rustls::pki_types::SubjectPublicKeyInfoDer;
use rustls::sign::{Signer, SigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};

use crate::SIGN_TIMEOUT;

/// Signing sockets to open per keyd instance (rustls signs on the async workers, two by
/// default; a few more cover DKIM signatures from blocking threads). Unix only: on Windows
/// there are none and every signature takes the link.
#[cfg(unix)]
pub(crate) const SIGNERS: usize = 4;

/// keyd as seen from synchronous code: signing sockets, and the shared link as a fallback.
#[derive(Debug, Clone)]
pub struct KeydSigner {
    keyd: PeerSlot<KeyService>,
    runtime: tokio::runtime::Handle,
    /// Sockets of the current keyd instance, one caller each at a time.
    #[cfg(unix)]
    sockets: Arc<Mutex<Vec<OwnedFd>>>,
}

impl KeydSigner {
    /// Must be called within the runtime that serves `keyd`'s link.
    pub fn new(keyd: PeerSlot<KeyService>) -> KeydSigner {
        KeydSigner {
            keyd,
            runtime: tokio::runtime::Handle::current(),
            #[cfg(unix)]
            sockets: Arc::default(),
        }
    }

    /// Opens fresh signing sockets at the current keyd and drops the old ones (after keyd
    /// restarted they lead nowhere).
    #[cfg(unix)]
    pub async fn reopen(&self, client: &ipc::Client<KeyService>) {
        let mut fresh = Vec::new();
        for _ in 0..SIGNERS {
            match client.call(key::OpenSigner {}, Vec::new()).await {
                Ok((Ok(()), mut fds)) if fds.len() == 1 => fresh.push(fds.remove(0)),
                Ok((Ok(()), fds)) => {
                    tracing::warn!("keyd gave {} signing sockets for one", fds.len());
                    drop(fds);
                }
                Ok((Err(refused), _)) => tracing::warn!("keyd gave no signing socket: {refused}"),
                Err(e) => tracing::warn!("keyd gave no signing socket: {e}"),
            }
        }
        *lock(&self.sockets) = fresh;
    }

    /// Keeps no signing sockets: they are socketpairs served by a blocking thread of keyd's,
    /// and Windows has neither (keyd refuses `OpenSigner` there). Every signature takes the
    /// shared link.
    #[cfg(windows)]
    pub async fn reopen(&self, client: &ipc::Client<KeyService>) {
        let _ = client;
    }

    /// Opens one signing socket in place of one that failed.
    #[cfg(unix)]
    fn replace_one(&self) {
        let (keyd, sockets) = (self.keyd.clone(), self.sockets.clone());
        self.runtime.spawn(
            async move {
                let Some(client) = keyd.current() else {
                    return;
                };
                if let Ok((Ok(()), mut fds)) = client.call(key::OpenSigner {}, Vec::new()).await
                    && fds.len() == 1
                {
                    lock(&sockets).push(fds.remove(0));
                }
            }
            .in_current_span(),
        );
    }

    #[cfg(unix)]
    fn take(&self) -> Option<OwnedFd> {
        lock(&self.sockets).pop()
    }

    #[cfg(unix)]
    fn put(&self, fd: OwnedFd) {
        lock(&self.sockets).push(fd);
    }

    /// One signature, synchronously. Call from a runtime worker (rustls) or a blocking thread.
    pub fn sign(&self, request: key::SignTls) -> Result<Vec<u8>, String> {
        #[cfg(unix)]
        let answer = match self.take() {
            Some(fd) => self.sign_on_socket(fd, request),
            // All signing sockets busy: the shared link.
            None => self.sign_on_link(request),
        };
        // Windows has no signing sockets (see `reopen`): always the shared link.
        #[cfg(windows)]
        let answer = self.sign_on_link(request);
        answer?.map_err(|why| format!("keyd refused: {why}"))
    }

    /// One round trip on signing socket `fd`.
    #[cfg(unix)]
    fn sign_on_socket(&self, fd: OwnedFd, request: key::SignTls) -> Result<SignAnswer, String> {
        use std::os::fd::AsFd;
        // The socket is served by a thread of keyd's own (never a task of this runtime), so a
        // quick answer is waited for right here; only a slow one (keyd busy or stopped) hands
        // this worker's tasks to another thread first.
        let answer = ipc::blocking::send_request(fd.as_fd(), request)
            .and_then(|()| {
                let started = std::time::Instant::now();
                if ipc::blocking::answered_within(fd.as_fd(), QUICK) {
                    ipc::blocking::wait_answer::<key::SignTls>(fd.as_fd(), SIGN_TIMEOUT)
                } else {
                    let left = SIGN_TIMEOUT.saturating_sub(started.elapsed());
                    in_place(|| {
                        ipc::blocking::wait_answer::<key::SignTls>(fd.as_fd(), left)
                            .map_err(|e| e.to_string())
                    })
                    .map_err(ipc::ChannelError::Protocol)
                }
            })
            .map_err(|e| format!("keyd: {e}"));
        // After an error the socket's state is unknown (a late answer may come): it is
        // dropped, and a fresh one asked for in the background.
        if answer.is_ok() {
            self.put(fd);
        } else {
            drop(fd);
            self.replace_one();
        }
        answer
    }

    /// One round trip on the shared async link, bounded by [`SIGN_TIMEOUT`].
    fn sign_on_link(&self, request: key::SignTls) -> Result<SignAnswer, String> {
        let client = self.keyd.current().ok_or("keyd is not reachable")?;
        let call = async move {
            match tokio::time::timeout(SIGN_TIMEOUT, client.ask(request)).await {
                Ok(answer) => answer.map(Some),
                Err(_) => Ok(None),
            }
        };
        in_place(|| match self.runtime.block_on(call) {
            Ok(Some(answer)) => Ok(answer),
            Err(e) => Err(format!("keyd: {e}")),
            Ok(None) => Err(format!("keyd did not sign within {SIGN_TIMEOUT:?}")),
        })
    }
}

/// keyd's answer to one signature request.
type SignAnswer = <key::SignTls as ipc::rpc::Call>::Answer;

/// Runs `f`, which waits, on this thread. On a runtime's worker `block_in_place` first hands
/// the worker's queued tasks to another thread: keyd may be a task of this very runtime
/// (single-process mode) and must not wait behind us.
fn in_place<T>(f: impl FnOnce() -> T) -> T {
    if tokio::runtime::Handle::try_current().is_ok() {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

/// How long a signature is waited for on a runtime's worker (asleep in the kernel, or spinning
/// when a processor is free) before the worker's other tasks are handed to another thread.
/// `block_in_place` costs more than an ECDSA signature: measured with two workers on two
/// processors, handing off after 200 µs left 0.59× the in-process handshake rate, after 2 ms
/// 0.77×. A signature in process holds its worker as long (an RSA-2048 one about a
/// millisecond); only a stopped or swamped keyd holds it the full 5 ms.
#[cfg(unix)]
const QUICK: std::time::Duration = std::time::Duration::from_millis(5);

/// A TLS private key that lives in keyd.
pub(crate) struct RemoteKey {
    pub(crate) name: String,
    pub(crate) public: Vec<u8>,
    pub(crate) schemes: Vec<SignatureScheme>,
    pub(crate) algorithm: SignatureAlgorithm,
    pub(crate) signer: KeydSigner,
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
            signer: self.signer.clone(),
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
    signer: KeydSigner,
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
    /// rustls signs synchronously: one blocking round trip to keyd, bounded by
    /// [`SIGN_TIMEOUT`].
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let request = key::SignTls {
            key: self.name.clone(),
            scheme: u16::from(self.scheme),
            message: message.to_vec(),
        };
        self.signer.sign(request).map_err(rustls::Error::General)
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}
