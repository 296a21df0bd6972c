//! `moxctl` requests as the tree answers them: status, restart, log level, reload, ping, and
//! the role operations it forwards. Kept apart from the state machine in `mod.rs` so that the
//! start/exit/shutdown logic reads without the admin surface in between; the state changes an
//! admin request causes still happen on the tree's one task.

use std::time::Duration;

use ipc::msg::admin::{self, RolePings, RoleStatus};
use ipc::msg::control::{self, ControlService, RoleAdmin};
use ipc::msg::{auth, key, store};
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
        reply: oneshot::Sender<admin::Response>,
    ) {
        use admin::{Request, Response};
        let response = match request {
            Request::Status => Response::Status(self.status()),
            Request::Stop => {
                tracing::info!("admin uid {uid}: stop");
                self.begin_shutdown(format!("moxctl stop by uid {uid}"));
                Response::Done("stopping".into())
            }
            Request::Restart { role } => {
                tracing::info!("admin uid {uid}: restart {role}");
                self.restart(role)
            }
            Request::LogLevel { role, filter } => {
                tracing::info!(
                    "admin uid {uid}: loglevel {} {filter}",
                    role.map_or("all", |r| r.name())
                );
                self.set_log_level(role, filter)
            }
            Request::Role(RoleAdmin::Key(key::Admin::LoadCertificates(_))) => Response::Error(
                "certificates are loaded from the configuration: use `moxctl reload`".into(),
            ),
            Request::Role(op) => {
                let role = op.role();
                tracing::info!("admin uid {uid}: {}", clip(&format!("{op:?}")));
                let Some(control) = self.slots[role].control.clone() else {
                    let _ = reply.send(Response::Error(format!("{role} is not running")));
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
                    if let (Response::Role(_), Some((authd, op))) = (&response, follow_up) {
                        let _ = role_admin(Role::Authd, &authd, op, Vec::new()).await;
                    }
                    let _ = reply.send(response);
                });
                return;
            }
            Request::Reload => {
                tracing::info!("admin uid {uid}: reload");
                self.reload(reply);
                return;
            }
            Request::Ping => {
                let controls: Vec<(Role, Option<Client<ControlService>>)> = self
                    .slots
                    .iter()
                    .map(|(r, s)| (r, s.control.clone()))
                    .collect();
                tokio::spawn(async move {
                    let _ = reply.send(Response::Pings(ping_all(controls).await));
                });
                return;
            }
        };
        let _ = reply.send(response);
    }

    /// `moxctl reload`: reads the configuration file again; certificate files go to keyd (all
    /// checked there before any is served), the rest is compared and reported.
    fn reload(&mut self, reply: oneshot::Sender<admin::Response>) {
        use admin::Response;
        let config = match crate::Config::load(&self.settings.config_path) {
            Ok(c) => c,
            Err(e) => {
                let _ = reply.send(Response::Error(format!("nothing changed: {e}")));
                return;
            }
        };
        let files = config.certificate_files();
        let fds = match crate::certfiles::open_all(&files) {
            Ok(fds) => fds,
            Err(e) => {
                let _ = reply.send(Response::Error(format!("nothing changed: {e}")));
                return;
            }
        };
        let Some(keyd) = self.slots[Role::Keyd].control.clone() else {
            let _ = reply.send(Response::Error(
                "nothing changed: keyd is not running".into(),
            ));
            return;
        };
        let restart = config.needs_restart(&self.settings.config);
        let events = self.events_tx.clone();
        let count = files.len();
        tokio::spawn(async move {
            let op = RoleAdmin::Key(key::Admin::LoadCertificates(files));
            let response = match role_admin(Role::Keyd, &keyd, op, fds).await {
                Response::Role(_) => {
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
                    Response::Done(line)
                }
                Response::Error(e) => Response::Error(format!("nothing changed: {e}")),
                other => other,
            };
            let _ = reply.send(response);
        });
    }

    fn restart(&mut self, role: Role) -> admin::Response {
        if self.stopping.is_some() {
            return admin::Response::Error("the server is shutting down".into());
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
        admin::Response::Done(format!("restarting {role}"))
    }

    fn set_log_level(&mut self, role: Option<Role>, filter: String) -> admin::Response {
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&filter) {
            return admin::Response::Error(format!("invalid log filter `{filter}`: {e}"));
        }
        let targets: Vec<Role> = match role {
            Some(r) => vec![r],
            None => {
                if let Err(e) = (self.log)(&filter) {
                    return admin::Response::Error(e);
                }
                Role::ALL.to_vec()
            }
        };
        for r in &targets {
            let slot = &mut self.slots[*r];
            slot.log_filter = filter.clone();
            if let Some(control) = slot.control.clone() {
                let request = control::Request::SetLogLevel {
                    filter: filter.clone(),
                };
                tokio::spawn(async move {
                    let _ = control.call(&request, Vec::new()).await;
                });
            }
        }
        admin::Response::Done(format!(
            "log filter `{filter}` for {}",
            role.map_or("every role and the supervisor".to_string(), |r| r
                .to_string())
        ))
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

/// Forwards an administrative request to its role and translates the answer.
pub(super) async fn role_admin(
    role: Role,
    control: &Client<ControlService>,
    op: RoleAdmin,
    fds: Vec<Handle>,
) -> admin::Response {
    use admin::Response;
    match control.call(&control::Request::Admin(op), fds).await {
        Ok((control::Response::Admin(r), fds)) if fds.is_empty() => Response::Role(r),
        Ok((control::Response::Refused(e), fds)) if fds.is_empty() => Response::Error(clip(&e)),
        Ok((other, fds)) => {
            fds.into_iter().for_each(sandbox::fdpass::discard);
            Response::Error(clip(&format!("unexpected answer from {role}: {other:?}")))
        }
        Err(e) => Response::Error(format!("{role}: {e}")),
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
        let peers = match tokio::time::timeout(
            timeout,
            control.call(&control::Request::PingPeers, Vec::new()),
        )
        .await
        {
            Ok(Ok((control::Response::Pings(p), fds))) if fds.is_empty() => p
                .into_iter()
                .map(|mut p| {
                    p.result = p.result.map_err(|e| clip(&e));
                    p
                })
                .collect(),
            Ok(Ok((other, fds))) => {
                fds.into_iter().for_each(sandbox::fdpass::discard);
                vec![control::PeerPing {
                    peer: role,
                    result: Err(clip(&format!("unexpected answer {other:?}"))),
                }]
            }
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
