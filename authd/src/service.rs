//! authd's requests: SASL exchanges for the network roles, with throttling and tickets, and
//! password administration forwarded from moxctl. Who may ask is decided by the link.

use ipc::sync::{lock, read, write};
use std::collections::HashMap;
use std::io::Read;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use ipc::context::PeerSlot;
use ipc::msg::auth::{self, AuthService, Failure, Progress, Request, Ticket};
use ipc::msg::control::{AdminReply, RoleAdmin};
use ipc::msg::store::{self, StoreService};
use ipc::rpc::{Answer, Call, Incoming};
use ipc::{AdminCall, Handle, Role};

use crate::credentials::{CredentialLookup, Decoy, Entry};
use crate::sasl::{self, AuthFailure, Mechanism, SaslContext, Session, Step};
use crate::store::CredentialStore;
use crate::throttle::{Attempt, Decision, Throttle};
use crate::ticket::Tickets;

/// How long a session ticket lives unless revoked first (logout, connection close).
pub const TICKET_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Exchanges a peer may have open at once.
const MAX_EXCHANGES: usize = 1024;
/// Longest password accepted from moxctl.
const MAX_PASSWORD: u64 = 1024;

/// Everything authd's handlers share.
#[derive(Debug)]
pub struct Auth {
    hostname: String,
    dir: PathBuf,
    creds: RwLock<CredentialStore>,
    throttle: Mutex<Throttle>,
    tickets: Mutex<Tickets>,
    exchanges: Mutex<HashMap<(Role, u64), Exchange>>,
    next_exchange: AtomicU64,
    storaged: PeerSlot<StoreService>,
    /// Failures recorded since the throttle state was last saved.
    throttle_dirty: std::sync::atomic::AtomicBool,
}

#[derive(Debug)]
struct Exchange {
    session: Session,
    remote: IpAddr,
    /// Why the host's or the link's limits refuse this exchange, if they do: it runs its
    /// course and fails as bad credentials.
    refusal: Option<String>,
    started: std::time::Instant,
}

/// How long an exchange may stay open between steps.
const EXCHANGE_LIFETIME: Duration = Duration::from_secs(60);
/// Open exchanges one remote address may have.
const MAX_EXCHANGES_PER_REMOTE: usize = 8;

impl Auth {
    pub fn new(
        hostname: String,
        dir: PathBuf,
        creds: CredentialStore,
        throttle: Throttle,
        storaged: PeerSlot<StoreService>,
    ) -> Arc<Auth> {
        Arc::new(Auth {
            hostname,
            dir,
            creds: RwLock::new(creds),
            throttle: Mutex::new(throttle),
            tickets: Mutex::new(Tickets::new()),
            exchanges: Mutex::default(),
            next_exchange: AtomicU64::new(1),
            storaged,
            throttle_dirty: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Answers one request from `peer`.
    pub async fn handle(self: Arc<Self>, peer: Role, incoming: Incoming<AuthService>) {
        let Incoming {
            request,
            reply,
            fds,
        } = incoming;
        fds.into_iter().for_each(sandbox::fdpass::discard);
        let answer = if matches!(peer, Role::Submission | Role::Imapd | Role::Httpd) {
            self.answer(peer, request).await
        } else {
            tracing::warn!("refused authentication: not permitted on this link");
            request.refuse(Failure::Malformed("not permitted on this link".into()))
        };
        if let Err(e) = reply.send(answer).await {
            tracing::warn!("answering: {e}");
        }
    }

    async fn answer(self: Arc<Self>, peer: Role, request: Request) -> Answer<AuthService> {
        match request {
            Request::Mechanisms(auth::Mechanisms { channel_binding }) => {
                let names = sasl::advertised(channel_binding)
                    .into_iter()
                    .map(|m| m.name().to_string())
                    .collect();
                auth::Mechanisms::reply(&Ok(names), Vec::new())
            }
            Request::Start(start) => auth::Start::reply(&self.start(peer, start).await, Vec::new()),
            Request::Step(step) => auth::Step::reply(&self.step(peer, step).await, Vec::new()),
            Request::Abort(auth::Abort { exchange }) => {
                lock(&self.exchanges).remove(&(peer, exchange));
                auth::Abort::reply(&Ok(()), Vec::new())
            }
            Request::Logout(auth::Logout { ticket }) => {
                let id = crate::ticket::TicketId::from_bytes(ticket.0);
                lock(&self.tickets).revoke(&id);
                // Always tell storaged: after a restart of authd it may hold tickets authd no
                // longer remembers.
                if let Some(storaged) = self.storaged.current() {
                    let _ = storaged.ask(store::RevokeTicket { ticket }).await;
                }
                auth::Logout::reply(&Ok(()), Vec::new())
            }
        }
    }

    /// Starts an exchange.
    async fn start(
        self: Arc<Self>,
        peer: Role,
        auth::Start {
            mechanism,
            initial_response,
            channel_binding,
            remote,
        }: auth::Start,
    ) -> Result<Progress, Failure> {
        {
            let Some(mechanism) = Mechanism::parse(&mechanism) else {
                return Err(Failure::Malformed(format!("unknown mechanism {mechanism}")));
            };
            {
                let mut exchanges = lock(&self.exchanges);
                exchanges.retain(|_, e| e.started.elapsed() < EXCHANGE_LIFETIME);
                if exchanges.keys().filter(|(p, _)| *p == peer).count() >= MAX_EXCHANGES
                    || exchanges.values().filter(|e| e.remote == remote).count()
                        >= MAX_EXCHANGES_PER_REMOTE
                {
                    return Err(Failure::Temporary("too many exchanges in progress".into()));
                }
            }
            // A refusal is not answered now: the exchange runs its course and fails as bad
            // credentials would, at the same step.
            let refusal = self.refusal(Attempt::new(remote, None).through(peer.name()));
            let ctx = SaslContext {
                hostname: self.hostname.clone(),
                channel_binding,
            };
            let this = self.clone();
            let gate = Gate {
                remote,
                link: peer,
                refusal: refusal.clone(),
            };
            let run = move || {
                let creds = read(&this.creds);
                let lookup = Lookup::new(&creds, &this, gate);
                let initial = initial_response.as_ref().map(|r| r.expose().as_slice());
                sasl::start(mechanism, &ctx, initial, &lookup)
            };
            let Ok((session, step)) = ipc::span::spawn_blocking(run).await else {
                return Err(Failure::Temporary("authentication task failed".into()));
            };
            self.finish(
                peer,
                None,
                Exchange {
                    session,
                    remote,
                    refusal,
                    started: std::time::Instant::now(),
                },
                step,
            )
            .await
        }
    }

    /// Takes an exchange one step on.
    async fn step(
        self: Arc<Self>,
        peer: Role,
        auth::Step { exchange, response }: auth::Step,
    ) -> Result<Progress, Failure> {
        {
            let Some(mut ex) = lock(&self.exchanges).remove(&(peer, exchange)) else {
                return Err(Failure::Malformed(format!("no exchange {exchange}")));
            };
            if ex.started.elapsed() >= EXCHANGE_LIFETIME {
                return Err(Failure::Malformed("the exchange took too long".into()));
            }
            if ex.refusal.is_none() {
                ex.refusal = self.refusal(Attempt::new(ex.remote, None).through(peer.name()));
            }
            let this = self.clone();
            let gate = Gate {
                remote: ex.remote,
                link: peer,
                refusal: ex.refusal.clone(),
            };
            let run = move || {
                let step = {
                    let creds = read(&this.creds);
                    let lookup = Lookup::new(&creds, &this, gate);
                    ex.session.step(response.expose(), &lookup)
                };
                (ex, step)
            };
            let Ok((ex, step)) = ipc::span::spawn_blocking(run).await else {
                return Err(Failure::Temporary("authentication task failed".into()));
            };
            self.finish(peer, Some(exchange), ex, step).await
        }
    }

    /// Turns a SASL step into the answer, keeping the exchange when it continues.
    async fn finish(
        &self,
        peer: Role,
        id: Option<u64>,
        ex: Exchange,
        step: Step,
    ) -> Result<Progress, Failure> {
        let mechanism = ex.session.mechanism();
        match step {
            Step::Continue(challenge) => {
                let id = id.unwrap_or_else(|| self.next_exchange.fetch_add(1, Ordering::Relaxed));
                lock(&self.exchanges).insert((peer, id), ex);
                Ok(Progress::Continue {
                    exchange: id,
                    challenge,
                })
            }
            Step::Success {
                account,
                additional,
            } => {
                // The limits were consulted before the password was checked (Lookup::refusal).
                lock(&self.throttle)
                    .record_success(Attempt::new(ex.remote, Some(&account)), SystemTime::now());
                match self.issue_ticket(peer, &account).await {
                    Ok(ticket) => {
                        tracing::info!(
                            "authenticated: mechanism={mechanism} account=\"{}\" remote={} protocol={peer}",
                            account.escape_debug(),
                            ex.remote
                        );
                        Ok(Progress::Success {
                            account: account.into(),
                            ticket,
                            additional,
                        })
                    }
                    Err(e) => {
                        tracing::error!("issuing a ticket for {account}: {e}");
                        Err(Failure::Temporary(e))
                    }
                }
            }
            Step::Failure(AuthFailure::BadCredentials {
                username,
                account,
                refused,
            }) => {
                // Failures count against the account the name resolved to (an unknown name
                // counts for itself, so that known and unknown names behave alike).
                let key = account.as_deref().unwrap_or(&username);
                let attempt = Attempt::new(ex.remote, Some(key)).through(peer.name());
                let delay = {
                    let mut throttle = lock(&self.throttle);
                    let delay = match throttle.check(attempt, SystemTime::now()) {
                        Decision::Allow { delay } | Decision::Refuse { delay, .. } => delay,
                    };
                    // A refused attempt tested nothing: it is not one more failure.
                    if refused.is_none() {
                        throttle.record_failure(attempt, SystemTime::now());
                        self.throttle_dirty.store(true, Ordering::Relaxed);
                    }
                    delay
                };
                // The fixed, greppable line fail2ban-style tools act on; only it says whether
                // a limit refused the attempt (the client hears "bad credentials" either way).
                tracing::warn!(
                    "authentication failed: mechanism={mechanism} username=\"{}\" remote={} protocol={peer} reason=\"{}\"",
                    username.escape_debug(),
                    ex.remote,
                    refused.as_deref().unwrap_or("bad credentials")
                );
                tokio::time::sleep(delay).await;
                Err(Failure::Credentials)
            }
            Step::Failure(AuthFailure::Malformed(e)) => Err(Failure::Malformed(e.to_string())),
            Step::Failure(AuthFailure::Internal(e)) => {
                tracing::error!("authentication: {e}");
                Err(Failure::Temporary("internal error".into()))
            }
        }
    }

    /// Why the limits refuse `attempt` now (for the log), if they do.
    fn refusal(&self, attempt: Attempt<'_>) -> Option<String> {
        match lock(&self.throttle).check(attempt, SystemTime::now()) {
            Decision::Allow { .. } => None,
            Decision::Refuse {
                reason,
                retry_after,
                ..
            } => Some(format!(
                "{reason}; refused for {} s",
                retry_after.as_secs().max(1)
            )),
        }
    }

    /// Issues a ticket and registers it with storaged before anyone may use it.
    async fn issue_ticket(&self, peer: Role, account: &str) -> Result<Ticket, String> {
        let now = SystemTime::now();
        let issued = lock(&self.tickets)
            .issue(account, peer.name(), TICKET_LIFETIME, now)
            .map_err(|e| e.to_string())?
            .clone();
        let ticket = Ticket(issued.id.to_bytes());
        let expires = issued
            .expires
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let storaged = self.storaged.current().ok_or("storaged is not reachable")?;
        let request = store::RegisterTicket {
            ticket,
            account: account.into(),
            role: peer,
            expires,
        };
        match storaged.ask(request).await {
            Ok(Ok(())) => Ok(ticket),
            Ok(Err(refused)) => Err(format!("storaged: {refused}")),
            Err(e) => Err(format!("storaged: {e}")),
        }
    }

    /// Saves the throttle counters if failures were recorded since the last save, so that they
    /// survive a restart of authd.
    pub async fn save_throttle(self: &Arc<Self>) {
        if !self.throttle_dirty.swap(false, Ordering::Relaxed) {
            return;
        }
        let this = self.clone();
        let saved = ipc::span::spawn_blocking(move || {
            let throttle = lock(&this.throttle);
            throttle.save(&this.dir)
        })
        .await;
        if let Ok(Err(e)) = saved {
            tracing::error!("saving throttle state: {e}");
            self.throttle_dirty.store(true, Ordering::Relaxed);
        }
    }

    /// Forgets every ticket and exchange of `peer` (its link closed: the role exited with all
    /// connections; storaged ends those sessions itself).
    pub fn end_sessions(&self, peer: Role) {
        let revoked = lock(&self.tickets).revoke_channel(peer.name());
        lock(&self.exchanges).retain(|(p, _), _| *p != peer);
        if !revoked.is_empty() {
            tracing::info!("{} tickets revoked with the link", revoked.len());
        }
    }

    /// Drops expired tickets here and at storaged.
    pub async fn expire_tickets(&self) {
        let expired = lock(&self.tickets).remove_expired(SystemTime::now());
        if let Some(storaged) = self.storaged.current() {
            for t in expired {
                let ticket = Ticket(t.id.to_bytes());
                let _ = storaged.ask(store::RevokeTicket { ticket }).await;
            }
        }
    }

    /// Carries out one administrative request.
    pub async fn admin(self: Arc<Self>, call: AdminCall) {
        let AdminCall {
            request,
            fds,
            reply,
        } = call;
        let result = match request {
            RoleAdmin::Auth(request) => {
                self.admin_request(request, fds).await.map(AdminReply::Auth)
            }
            other => Err(format!("not an authd request: {other:?}")),
        };
        let _ = reply.send(result);
    }

    async fn admin_request(
        self: Arc<Self>,
        request: auth::Admin,
        fds: Vec<Handle>,
    ) -> Result<auth::AdminReply, String> {
        match request {
            auth::Admin::SetPassword { account } => {
                let fd = fds.into_iter().next().ok_or("no password attached")?;
                self.check_account(&account).await?;
                let this = self.clone();
                let name = account.clone();
                ipc::span::spawn_blocking(move || {
                    let password = read_password(fd)?;
                    write(&this.creds)
                        .set_password(&name, &password)
                        .map_err(|e| e.to_string())
                })
                .await
                .map_err(|e| e.to_string())??;
                tracing::info!("password set for account \"{}\"", account.escape_debug());
                // Sessions opened with the old password end.
                self.revoke_account(&account).await?;
                Ok(auth::AdminReply::Done(format!(
                    "password set for {account}"
                )))
            }
            auth::Admin::RemoveCredentials { account } => {
                let this = self.clone();
                let name = account.clone();
                let removed = ipc::span::spawn_blocking(move || {
                    write(&this.creds).remove(&name).map_err(|e| e.to_string())
                })
                .await
                .map_err(|e| e.to_string())??;
                self.revoke_account(&account).await?;
                Ok(auth::AdminReply::Done(if removed {
                    format!("credentials of {account} removed")
                } else {
                    format!("{account} had no credentials")
                }))
            }
        }
    }

    /// Revokes every ticket of `account`, here and at storaged (which may hold tickets that a
    /// restarted authd no longer remembers). Fails if storaged cannot be told: the admin sees
    /// that the old sessions may live on.
    async fn revoke_account(&self, account: &str) -> Result<(), String> {
        let revoked = lock(&self.tickets).revoke_account(account);
        if !revoked.is_empty() {
            tracing::info!(
                "{} tickets of account \"{}\" revoked",
                revoked.len(),
                account.escape_debug()
            );
        }
        let storaged = self
            .storaged
            .current()
            .ok_or("storaged is not reachable to end the account's sessions")?;
        let request = store::RevokeAccountTickets {
            account: account.into(),
        };
        match storaged.ask(request).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(refused)) => Err(format!("storaged: {refused}")),
            Err(e) => Err(format!("storaged: {e}")),
        }
    }

    /// Refuses to set a password for an account storaged does not know.
    async fn check_account(&self, account: &str) -> Result<(), String> {
        let storaged = self
            .storaged
            .current()
            .ok_or("storaged is not reachable to check the account")?;
        let request = store::ResolveLogin {
            username: account.into(),
        };
        match storaged.ask(request).await {
            Ok(Ok(Some(a))) if a == account => Ok(()),
            Ok(Ok(_)) => Err(format!("no such account `{account}`")),
            Ok(Err(refused)) => Err(format!("storaged: {refused}")),
            Err(e) => Err(format!("storaged: {e}")),
        }
    }
}

/// Where an exchange comes from, for the limits a lookup consults.
struct Gate {
    remote: IpAddr,
    link: Role,
    /// The host's or link's refusal, found when the exchange started or stepped.
    refusal: Option<String>,
}

/// Credentials by account name, or by address through storaged (from a blocking thread), and
/// the limits for the account found.
struct Lookup<'a> {
    store: &'a CredentialStore,
    auth: &'a Auth,
    gate: Gate,
    runtime: Option<tokio::runtime::Handle>,
}

impl<'a> Lookup<'a> {
    fn new(store: &'a CredentialStore, auth: &'a Auth, gate: Gate) -> Self {
        Lookup {
            store,
            auth,
            gate,
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }
}

impl CredentialLookup for Lookup<'_> {
    fn lookup(&self, username: &str) -> Option<Entry<'_>> {
        if let Some(entry) = self.store.lookup(username) {
            return Some(entry);
        }
        if !username.contains('@') {
            return None;
        }
        let (runtime, storaged) = (self.runtime.as_ref()?, self.auth.storaged.current()?);
        let request = store::ResolveLogin {
            username: username.into(),
        };
        let call =
            async { tokio::time::timeout(Duration::from_secs(5), storaged.ask(request)).await };
        match runtime.block_on(call) {
            Ok(Ok(Ok(Some(account)))) => self.store.lookup(account.as_str()),
            _ => None,
        }
    }

    fn decoy(&self) -> &Decoy {
        self.store.decoy()
    }

    fn refusal(&self, username: &str, account: Option<&str>) -> Option<String> {
        if let Some(refusal) = &self.gate.refusal {
            return Some(refusal.clone());
        }
        let key = account.unwrap_or(username);
        let attempt = Attempt::new(self.gate.remote, Some(key)).through(self.gate.link.name());
        self.auth.refusal(attempt)
    }
}

fn read_password(fd: Handle) -> Result<String, String> {
    let mut bytes = Vec::new();
    std::fs::File::from(fd)
        .take(MAX_PASSWORD + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("reading the password: {e}"))?;
    if bytes.len() as u64 > MAX_PASSWORD {
        return Err(format!("password longer than {MAX_PASSWORD} bytes"));
    }
    while matches!(bytes.last(), Some(b'\n' | b'\r')) {
        bytes.pop();
    }
    let password = String::from_utf8(bytes).map_err(|_| "the password is not UTF-8".to_string())?;
    if password.is_empty() {
        return Err("empty password".into());
    }
    Ok(password)
}
