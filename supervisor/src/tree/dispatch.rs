//! `moxctl` requests as the tree answers them: status, restart, log level, reload, ping, and
//! the role operations it forwards. Kept apart from the state machine in `mod.rs` so that the
//! start/exit/shutdown logic reads without the admin surface in between; the state changes an
//! admin request causes still happen on the tree's one task.

use std::time::Duration;

use ipc::msg::admin::{self, AdminService, RolePings, RoleStatus};
use ipc::msg::control::{self, ControlService, RoleAdmin};
use ipc::msg::{auth, key, store};
use ipc::rpc::{Answer, Call};
use ipc::{Client, Handle, Role};
use tokio::sync::oneshot;

use super::{Event, RoleState, Tree};
use crate::clip::clip;

impl Tree {
    pub(super) fn on_admin(
        &mut self,
        request: admin::Request,
        fds: Vec<Handle>,
        uid: u32,
        reply: oneshot::Sender<Answer<AdminService>>,
    ) {
        use admin::{Error, Request};
        let answer = match request {
            Request::GetStatus(_) => admin::GetStatus::reply(&Ok(self.status()), Vec::new()),
            Request::Stop(_) => {
                tracing::info!("admin uid {uid}: stop");
                self.begin_shutdown(format!("moxctl stop by uid {uid}"));
                admin::Stop::reply(&Ok("stopping".into()), Vec::new())
            }
            Request::Restart(admin::Restart { role }) => {
                tracing::info!("admin uid {uid}: restart {role}");
                admin::Restart::reply(&self.restart(role), Vec::new())
            }
            Request::LogLevel(admin::LogLevel { role, filter }) => {
                tracing::info!(
                    "admin uid {uid}: loglevel {} {filter}",
                    role.map_or("all", |r| r.name())
                );
                match self.set_log_level(role, filter) {
                    Ok((line, running)) => {
                        // Answered once every running role has applied it, so that what
                        // the operator does next is logged under the new filter.
                        tokio::spawn(async move {
                            let answer = apply_log_level(running).await.map(|()| line);
                            let _ = reply.send(admin::LogLevel::reply(&answer, Vec::new()));
                        });
                        return;
                    }
                    Err(e) => admin::LogLevel::reply(&Err::<String, _>(e), Vec::new()),
                }
            }
            Request::ForRole(admin::ForRole {
                request: RoleAdmin::Key(key::Admin::LoadCertificates(_)),
            }) => admin::ForRole::reply(
                &Err(Error(
                    "certificates are loaded from the configuration: use `moxctl reload`".into(),
                )),
                Vec::new(),
            ),
            Request::ForRole(admin::ForRole { request: op }) => {
                let role = op.role();
                tracing::info!("admin uid {uid}: {}", clip(&format!("{op:?}")));
                let Some(control) = self.slots[role].control.clone() else {
                    let refused = Err(Error(format!("{role} is not running")));
                    let _ = reply.send(admin::ForRole::reply(&refused, Vec::new()));
                    return;
                };
                // Removing an account also removes its credentials at authd.
                let follow_up = match &op {
                    RoleAdmin::Store(store::Admin::RemoveAccount { name }) => {
                        self.slots[Role::Authd].control.clone().map(|authd| {
                            (
                                authd,
                                RoleAdmin::Auth(auth::Admin::RemoveCredentials {
                                    account: name.clone(),
                                }),
                            )
                        })
                    }
                    _ => None,
                };
                tokio::spawn(async move {
                    let response = role_admin(role, &control, op, fds).await;
                    if let (Ok(_), Some((authd, op))) = (&response, follow_up) {
                        let _ = role_admin(Role::Authd, &authd, op, Vec::new()).await;
                    }
                    let _ = reply.send(admin::ForRole::reply(&response, Vec::new()));
                });
                return;
            }
            Request::Reload(_) => {
                tracing::info!("admin uid {uid}: reload");
                self.reload(reply);
                return;
            }
            Request::Ping(_) => {
                let controls: Vec<(Role, Option<Client<ControlService>>)> = self
                    .slots
                    .iter()
                    .map(|(r, s)| (r, s.control.clone()))
                    .collect();
                tokio::spawn(async move {
                    let pings = Ok(ping_all(controls).await);
                    let _ = reply.send(admin::Ping::reply(&pings, Vec::new()));
                });
                return;
            }
        };
        let _ = reply.send(answer);
    }

    /// `moxctl reload`: reads the configuration file again; certificate files go to keyd (all
    /// checked there before any is served), the rest is compared and reported.
    fn reload(&mut self, reply: oneshot::Sender<Answer<AdminService>>) {
        use admin::Error;
        let send = |reply: oneshot::Sender<_>, result: Result<String, Error>| {
            let _ = reply.send(admin::Reload::reply(&result, Vec::new()));
        };
        let config = match crate::Config::load(&self.settings.config_path) {
            Ok(c) => c,
            Err(e) => return send(reply, Err(Error(format!("nothing changed: {e}")))),
        };
        let files = config.certificate_files();
        let fds = match crate::certfiles::open_all(&files) {
            Ok(fds) => fds,
            Err(e) => return send(reply, Err(Error(format!("nothing changed: {e}")))),
        };
        let Some(keyd) = self.slots[Role::Keyd].control.clone() else {
            return send(
                reply,
                Err(Error("nothing changed: keyd is not running".into())),
            );
        };
        let restart = config.needs_restart(&self.settings.config);
        let events = self.events_tx.clone();
        let count = files.len();
        tokio::spawn(async move {
            let op = RoleAdmin::Key(key::Admin::LoadCertificates(files));
            let result = match role_admin(Role::Keyd, &keyd, op, fds).await {
                Ok(_) => {
                    let _ = events.send(Event::Reloaded {
                        config: Box::new(config),
                    });
                    let mut line = format!("reloaded: {count} certificate file(s) served");
                    if !restart.is_empty() {
                        line += &format!(
                            "; changed {} (takes effect at the next restart of moxd)",
                            restart.join(", ")
                        );
                    }
                    Ok(line)
                }
                Err(e) => Err(Error(format!("nothing changed: {e}"))),
            };
            send(reply, result);
        });
    }

    fn restart(&mut self, role: Role) -> Result<String, admin::Error> {
        if self.stopping.is_some() {
            return Err(admin::Error("the server is shutting down".into()));
        }
        let slot = &mut self.slots[role];
        match slot.state {
            RoleState::Backoff | RoleState::Stopped => {
                slot.start_failures = 0;
                self.start(role);
            }
            RoleState::Starting | RoleState::Ready | RoleState::Stopping => {
                slot.restart_requested = true;
                self.stop_for_restart(role);
            }
        }
        Ok(format!("restarting {role}"))
    }

    /// Records `filter` for `role` (or every role and the supervisor) and returns the line for
    /// the operator and the running roles that must apply it now.
    fn set_log_level(
        &mut self,
        role: Option<Role>,
        filter: String,
    ) -> Result<(String, Vec<FilterChange>), admin::Error> {
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&filter) {
            return Err(admin::Error(format!("invalid log filter `{filter}`: {e}")));
        }
        let targets: Vec<Role> = match role {
            Some(r) => vec![r],
            None => {
                if let Err(e) = (self.log)(&filter) {
                    return Err(admin::Error(e));
                }
                Role::ALL.to_vec()
            }
        };
        let mut running = Vec::new();
        for r in &targets {
            let slot = &mut self.slots[*r];
            // A role not running takes it at its next start.
            slot.log_filter = filter.clone();
            if let Some(control) = slot.control.clone() {
                running.push((*r, control, filter.clone()));
            }
        }
        let line = format!(
            "log filter `{filter}` for {}",
            role.map_or("every role and the supervisor".to_string(), |r| r
                .to_string())
        );
        Ok((line, running))
    }

    fn status(&self) -> admin::Status {
        admin::Status {
            supervisor_pid: std::process::id(),
            uptime_ms: self.started.elapsed().as_millis() as u64,
            single_process: self.settings.single_process,
            listeners: self.settings.listeners.iter().map(|b| b.spec).collect(),
            roles: self
                .slots
                .iter()
                .map(|(role, s)| RoleStatus {
                    role,
                    state: s.state,
                    pid: s.pid,
                    uid: s.uid,
                    restarts: s.restarts,
                    uptime_ms: s.ready_since.map(|t| t.elapsed().as_millis() as u64),
                    backoff_ms: s.backoff.as_millis() as u64,
                    last_error: s.last_error.clone(),
                    sandbox: s.sandbox.clone(),
                })
                .collect(),
        }
    }
}

/// A running role, its control channel and the log filter it is to apply.
type FilterChange = (Role, Client<ControlService>, String);

/// Has every role in `running` apply its new log filter; the roles that could not, and why.
async fn apply_log_level(running: Vec<FilterChange>) -> Result<(), admin::Error> {
    let mut failed = Vec::new();
    for (role, control, filter) in running {
        let asked = control.ask(control::SetLogLevel { filter });
        match tokio::time::timeout(Duration::from_secs(5), asked).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(refused))) => failed.push(format!("{role}: {}", clip(&refused.0))),
            Ok(Err(e)) => failed.push(format!("{role}: {e}")),
            Err(_) => failed.push(format!("{role}: no answer within 5 s")),
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(admin::Error(format!(
            "the filter was not applied by {}",
            failed.join("; ")
        )))
    }
}

/// Forwards an administrative request to its role and translates the answer.
pub(super) async fn role_admin(
    role: Role,
    control: &Client<ControlService>,
    op: RoleAdmin,
    fds: Vec<Handle>,
) -> Result<control::AdminReply, admin::Error> {
    match control.call(control::Admin { request: op }, fds).await {
        Ok((answer, fds)) => {
            // No administrative answer carries descriptors.
            fds.into_iter().for_each(sandbox::fdpass::discard);
            answer.map_err(|refused| admin::Error(clip(&refused.0)))
        }
        Err(e) => Err(admin::Error(format!("{role}: {e}"))),
    }
}

async fn ping_all(controls: Vec<(Role, Option<Client<ControlService>>)>) -> Vec<RolePings> {
    let mut out = Vec::new();
    for (role, control) in controls {
        let Some(control) = control else {
            out.push(RolePings {
                role,
                control: Err("not running".into()),
                peers: Vec::new(),
            });
            continue;
        };
        let timeout = Duration::from_secs(2);
        let rtt = match tokio::time::timeout(timeout, control.ping()).await {
            Ok(Ok(d)) => Ok(d.as_micros() as u64),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".into()),
        };
        let peers = match tokio::time::timeout(timeout, control.ask(control::PingPeers {})).await {
            Ok(Ok(Ok(p))) => p
                .into_iter()
                .map(|mut p| {
                    p.result = p.result.map_err(|e| clip(&e));
                    p
                })
                .collect(),
            Ok(Ok(Err(refused))) => vec![control::PeerPing {
                peer: role,
                result: Err(clip(&refused.0)),
            }],
            Ok(Err(e)) => vec![control::PeerPing {
                peer: role,
                result: Err(e.to_string()),
            }],
            Err(_) => vec![control::PeerPing {
                peer: role,
                result: Err("timed out".into()),
            }],
        };
        out.push(RolePings {
            role,
            control: rtt,
            peers,
        });
    }
    out
}
