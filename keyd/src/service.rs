//! keyd's requests: certificates for the network roles, and TLS signatures — only for keys
//! that belong to a served certificate, only over inputs shaped like a TLS server handshake
//! signature, from links that serve TLS, at a bounded rate; DKIM signatures for the roles that
//! send mail, written by keyd with bounded validity for a sender the asking session owns
//! ([`crate::dkim_policy`]).

use ipc::sync::{lock, read, write};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use ipc::Role;
use ipc::msg::key::{self as msg, Certificate, DkimKey, Event, KeyService, Refused, Request};
use ipc::rpc::{Answer, Call, Named};
use ipc::rpc::{EventSender, Incoming};
use rustls::SignatureScheme;

use crate::certs::CertEntry;
use crate::dkim_policy::DkimPolicy;
use crate::keys::KeyStore;
use crate::lanes::{Lanes, Limits};

/// Signing sockets one role may hold (Unix only: Windows has none yet).
#[cfg_attr(not(unix), allow(dead_code))]
const MAX_SIGNERS: usize = 16;

/// The schemes keyd offers, strongest first within each key type.
const SCHEMES: &[SignatureScheme] = &[
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::ED25519,
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::RSA_PSS_SHA384,
    SignatureScheme::RSA_PSS_SHA512,
    SignatureScheme::RSA_PKCS1_SHA256,
    SignatureScheme::RSA_PKCS1_SHA384,
    SignatureScheme::RSA_PKCS1_SHA512,
];

/// Everything keyd's handlers share.
#[derive(Debug)]
pub struct Keyd {
    pub dir: PathBuf,
    /// The server's host name, for self-signed certificates.
    hostname: String,
    keys: RwLock<KeyStore>,
    certs: RwLock<Vec<CertEntry>>,
    /// The set served before the last reload.
    retired: RwLock<Vec<CertEntry>>,
    reloading: tokio::sync::Mutex<()>,
    /// Each asking role's signing budget, slots and workers.
    lanes: Lanes,
    /// Signing sockets each role holds (Unix only: Windows has none yet).
    #[cfg_attr(not(unix), allow(dead_code))]
    signers: Mutex<HashMap<Role, usize>>,
    /// Links that fetched certificates, told when they change.
    subscribers: Mutex<Vec<EventSender<KeyService>>>,
    /// The bounds on DKIM signatures, and the link to storaged that checks their senders.
    dkim: DkimPolicy,
}

/// What each peer may ask of keyd.
fn permitted(peer: Role, request: &Request) -> bool {
    let tls = matches!(
        peer,
        Role::Smtpd | Role::Submission | Role::Imapd | Role::Httpd
    );
    // The roles that send mail sign it (on the link itself: keyd asks storaged about the
    // sender first). Never the MX instance: mail from the internet is not ours to sign.
    let dkim = matches!(peer, Role::Submission | Role::Queued);
    match request {
        Request::Certificates(_) | Request::SignTls(_) => tls,
        Request::OpenSigner(_) => tls || dkim,
        Request::SignDkim(_) | Request::DkimKeys(_) => dkim,
    }
}

impl Keyd {
    pub fn new(
        dir: PathBuf,
        hostname: String,
        keys: KeyStore,
        certs: Vec<CertEntry>,
        dkim: DkimPolicy,
    ) -> Arc<Keyd> {
        Keyd::with_limits(dir, hostname, keys, certs, dkim, Limits::default())
    }

    /// As [`Keyd::new`], each asking role's signing bounded by `limits`.
    pub fn with_limits(
        dir: PathBuf,
        hostname: String,
        keys: KeyStore,
        certs: Vec<CertEntry>,
        dkim: DkimPolicy,
        limits: Limits,
    ) -> Arc<Keyd> {
        Arc::new(Keyd {
            dir,
            hostname,
            keys: RwLock::new(keys),
            certs: RwLock::new(certs),
            retired: RwLock::default(),
            reloading: tokio::sync::Mutex::default(),
            lanes: Lanes::new(limits),
            signers: Mutex::default(),
            subscribers: Mutex::default(),
            dkim,
        })
    }

    /// Serves `certs` from now on and tells every subscribed link.
    pub async fn replace_certificates(&self, certs: Vec<CertEntry>) {
        let old = std::mem::replace(&mut *write(&self.certs), certs);
        // Handshakes of roles that have not fetched the new set yet still sign with the old
        // keys until the next reload.
        *write(&self.retired) = old;
        let subscribers: Vec<EventSender<KeyService>> =
            std::mem::take(&mut *lock(&self.subscribers));
        let mut alive = Vec::new();
        for s in subscribers {
            match s.send(&Event::CertificatesChanged).await {
                Ok(()) => alive.push(s),
                Err(e) => tracing::debug!(link = s.link_name(), "{e}; unsubscribed"),
            }
        }
        lock(&self.subscribers).extend(alive);
    }

    /// Remembers the link that asked for certificates; a link of the same name (the role
    /// restarted) replaces the old one.
    fn subscribe(&self, events: EventSender<KeyService>) {
        let mut subscribers = lock(&self.subscribers);
        subscribers.retain(|s| s.link_name() != events.link_name());
        subscribers.push(events);
    }

    /// Answers one request from `peer`.
    pub async fn handle(self: Arc<Self>, peer: Role, incoming: Incoming<KeyService>) {
        let Incoming {
            request,
            reply,
            fds,
        } = incoming;
        fds.into_iter().for_each(sandbox::fdpass::discard);
        let answer = if permitted(peer, &request) {
            match request {
                Request::OpenSigner(_) => {
                    let (answer, fds) = self.open_signer(peer);
                    msg::OpenSigner::reply(&answer, fds)
                }
                Request::Certificates(_) => {
                    self.subscribe(reply.events());
                    msg::Certificates::reply_or(&Ok(self.certificates()), Vec::new(), || {
                        Err(Refused("the answer is too large for one message".into()))
                    })
                }
                other => self.answer(peer, other).await,
            }
        } else {
            tracing::warn!("refused {}: not permitted on this link", request.name());
            request.refuse(Refused("not permitted on this link".into()))
        };
        if let Err(e) = reply.send(answer).await {
            tracing::warn!("answering: {e}");
        }
    }

    /// A socket of `peer`'s own for blocking signatures, served with the same rights.
    #[cfg(unix)]
    fn open_signer(self: Arc<Self>, peer: Role) -> (Result<(), Refused>, Vec<ipc::Handle>) {
        {
            let mut signers = lock(&self.signers);
            let count = signers.entry(peer).or_insert(0);
            if *count >= MAX_SIGNERS {
                return (Err(Refused("too many signing sockets".into())), Vec::new());
            }
            *count += 1;
        }
        let (ours, theirs) = match ipc::transport::socket_pair() {
            Ok(pair) => pair,
            Err(e) => return (Err(Refused(e.to_string())), Vec::new()),
        };
        // A thread of its own, blocking on the socket: a signature is then one wakeup of one
        // thread, with no async scheduling between the socket and the key.
        let this = self.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("signer-{peer}"))
            // In the span of the request that opened it: its lines name the link.
            .spawn(ipc::span::in_current_span(move || {
                let served = ipc::blocking::serve::<KeyService>(ours, |request| {
                    if permitted(peer, &request) {
                        this.answer_now(peer, request)
                    } else {
                        tracing::warn!("refused {} on a signing socket", request.name());
                        request.refuse(Refused("not permitted on this link".into()))
                    }
                });
                if let Err(e) = served {
                    tracing::warn!("signing socket: {e}; closed");
                }
                let mut signers = lock(&this.signers);
                if let Some(count) = signers.get_mut(&peer) {
                    *count = count.saturating_sub(1);
                }
            }));
        if let Err(e) = spawned {
            let mut signers = lock(&self.signers);
            if let Some(count) = signers.get_mut(&peer) {
                *count = count.saturating_sub(1);
            }
            return (Err(Refused(format!("no signing thread: {e}"))), Vec::new());
        }
        (Ok(()), vec![theirs])
    }

    /// Blocking signing sockets are Unix sockets; Windows has none yet (docs/windows.md).
    #[cfg(not(unix))]
    fn open_signer(self: Arc<Self>, peer: Role) -> (Result<(), Refused>, Vec<ipc::Handle>) {
        let _ = peer;
        let why = "blocking signing sockets are not available on Windows yet";
        (Err(Refused(why.into())), Vec::new())
    }

    /// Answers on the async link: TLS signatures on the asking role's own workers (never in a
    /// queue shared with other roles), DKIM signatures after storaged vouched for the sender,
    /// the rest inline.
    async fn answer(self: Arc<Self>, peer: Role, request: Request) -> Answer<KeyService> {
        match request {
            Request::SignTls(sign) => {
                let lane = self.lanes.lane(peer);
                let signature = lane
                    .on_worker(move || self.sign_tls(peer, sign))
                    .await
                    .unwrap_or_else(|e| {
                        tracing::warn!("a TLS signature: {e}; refused");
                        Err(Refused(e.to_string()))
                    });
                msg::SignTls::reply(&signature, Vec::new())
            }
            Request::SignDkim(msg::SignDkim { request }) => {
                let field = if self.within_rate(peer) {
                    self.dkim.sign(&self.keys, peer, request).await
                } else {
                    Err(Refused("too many signatures; slow down".into()))
                };
                msg::SignDkim::reply(&field, Vec::new())
            }
            other => self.answer_now(peer, other),
        }
    }

    /// Answers a request of `peer` (already known to be permitted) on this thread.
    fn answer_now(&self, peer: Role, request: Request) -> Answer<KeyService> {
        match request {
            Request::OpenSigner(_) => msg::OpenSigner::reply(
                &Err(Refused("signers are opened on the main link".into())),
                Vec::new(),
            ),
            Request::Certificates(_) => {
                msg::Certificates::reply_or(&Ok(self.certificates()), Vec::new(), || {
                    Err(Refused("the answer is too large for one message".into()))
                })
            }
            Request::DkimKeys(msg::DkimKeys { domain }) => {
                msg::DkimKeys::reply(&Ok(self.dkim_keys(&domain)), Vec::new())
            }
            // It may wait for storaged: served on the async link only.
            Request::SignDkim(_) => msg::SignDkim::reply(
                &Err(Refused(
                    "DKIM signatures are asked on the link, not a signing socket".into(),
                )),
                Vec::new(),
            ),
            Request::SignTls(sign) => msg::SignTls::reply(&self.sign_tls(peer, sign), Vec::new()),
        }
    }

    /// The DKIM keys of `domain`, public parts.
    fn dkim_keys(&self, domain: &str) -> Vec<DkimKey> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        crate::dkim::list(&read(&self.keys))
            .into_iter()
            .filter(|k| k.domain == domain)
            .collect()
    }

    /// A TLS handshake signature of `peer` (already known to be permitted), on this thread.
    fn sign_tls(
        &self,
        peer: Role,
        msg::SignTls {
            key,
            scheme,
            message,
        }: msg::SignTls,
    ) -> Result<Vec<u8>, Refused> {
        {
            {
                if let Err(e) = crate::shape::classify(&message) {
                    tracing::warn!(
                        "asked to sign {} bytes with {key}: {e}; refused",
                        message.len()
                    );
                    return Err(Refused(e.to_string()));
                }
                let signing_key = {
                    let keys = read(&self.keys);
                    let (current, retired) = (read(&self.certs), read(&self.retired));
                    current
                        .iter()
                        .chain(retired.iter())
                        .find(|c| c.key == key)
                        .and_then(|c| c.signing_key(&keys))
                };
                let Some(signing_key) = signing_key else {
                    return Err(Refused(format!("no certificate key `{key}`")));
                };
                if !self.within_rate(peer) {
                    return Err(Refused("too many signatures; slow down".into()));
                }
                let lane = self.lanes.lane(peer);
                match lane.sign_here(|| signing_key.sign(SignatureScheme::from(scheme), &message)) {
                    Ok(Ok(signature)) => Ok(signature),
                    Ok(Err(e)) => Err(Refused(e.to_string())),
                    Err(busy) => {
                        tracing::warn!("a TLS signature: {busy}; refused");
                        Err(Refused(busy.to_string()))
                    }
                }
            }
        }
    }

    fn certificates(&self) -> Vec<Certificate> {
        let keys = read(&self.keys);
        read(&self.certs)
            .iter()
            .filter_map(|c| {
                let key = c.signing_key(&keys)?;
                Some(Certificate {
                    names: c.names.clone(),
                    chain: c.chain.iter().map(|d| d.as_ref().to_vec()).collect(),
                    key: c.key.clone(),
                    public_key: key.public.clone(),
                    schemes: key.schemes(SCHEMES).into_iter().map(u16::from).collect(),
                    algorithm: format!("{:?}", key.algorithm()).to_ascii_lowercase(),
                })
            })
            .collect()
    }

    /// Takes one signature from `peer`'s budget (TLS and DKIM alike).
    fn within_rate(&self, peer: Role) -> bool {
        self.lanes.lane(peer).spend()
    }
}

impl Keyd {
    /// Carries out one administrative request from moxctl.
    pub async fn admin(self: Arc<Self>, call: ipc::AdminCall) {
        use ipc::msg::control::{AdminReply, RoleAdmin};
        use ipc::msg::key::{Admin, AdminReply as KeyReply};
        let ipc::AdminCall {
            request,
            fds,
            reply,
        } = call;
        let RoleAdmin::Key(request) = request else {
            fds.into_iter().for_each(sandbox::fdpass::discard);
            let _ = reply.send(Err("not a keyd request".into()));
            return;
        };
        if let Admin::LoadCertificates(files) = request {
            let result = self.clone().load_files(files, fds).await;
            let _ = reply.send(result.map(AdminReply::Key));
            return;
        }
        fds.into_iter().for_each(sandbox::fdpass::discard);
        let this = self.clone();
        let result = ipc::span::spawn_blocking(move || match request {
            Admin::DkimGenKey {
                domain,
                selector,
                algorithm,
            } => {
                let mut keys = write(&this.keys);
                crate::dkim::generate(&mut keys, &domain, &selector, &algorithm)
                    .map(|k| KeyReply::Dkim(vec![k]))
                    .map_err(|e| e.to_string())
            }
            Admin::DkimList => Ok(KeyReply::Dkim(crate::dkim::list(&read(&this.keys)))),
            Admin::TlsStatus => {
                let keys = read(&this.keys);
                Ok(KeyReply::Tls(
                    read(&this.certs).iter().map(|c| c.status(&keys)).collect(),
                ))
            }
            Admin::LoadCertificates(_) => Err("invariant: handled above".into()),
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r)
        .map(AdminReply::Key);
        let _ = reply.send(result);
    }
}

impl Keyd {
    /// Reads the certificate files of a reloaded configuration; all or nothing.
    async fn load_files(
        self: Arc<Self>,
        files: Vec<ipc::config::CertificateFiles>,
        fds: Vec<ipc::Handle>,
    ) -> Result<ipc::msg::key::AdminReply, String> {
        // One reload at a time: load, swap and notify belong together.
        let _one = self.reloading.lock().await;
        let this = self.clone();
        let certs = ipc::span::spawn_blocking(move || {
            let from_files = crate::certs::from_files(&files, fds)?;
            let mut keys = write(&this.keys);
            crate::certs::serving(&this.dir, &mut keys, from_files, &this.hostname)
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| format!("loading task: {e}"))??;
        tracing::info!("serving {} certificates", certs.len());
        let status = {
            let keys = read(&self.keys);
            certs.iter().map(|c| c.status(&keys)).collect()
        };
        self.replace_certificates(certs).await;
        Ok(ipc::msg::key::AdminReply::Tls(status))
    }
}
