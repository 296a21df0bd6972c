//! The supervisor's state machine: one task owns every role's slot and reacts to events
//! (instance connected, instance exited, retry due, admin request, signal), so no two decisions
//! ever race. Links between roles are created only between live instances, on start or when a
//! peer becomes ready, and torn down (PeerDown) when an instance exits.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use ipc::config::{ListenerSpec, RoleConfig};
use ipc::msg::admin::RoleState;
use ipc::msg::control::{self, ControlService};
use ipc::msg::setup::Bootstrap;
use ipc::{Client, Handle, Role};
use tokio::sync::mpsc;

use crate::clip::clip;
use crate::launch::{Connected, Outcome};
use crate::logs::LogControl;

mod dispatch;
mod event;
mod provision;
#[cfg(test)]
mod report_tests;
mod slots;
mod stop;

pub use event::{Event, Settings};
use slots::Slots;
use stop::{SHUTDOWN_PHASES, Stopping};

/// Never-ready roles: first delay, doubled per failure up to the cap.
const START_BACKOFF: Duration = Duration::from_secs(1);
const START_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Roles that were ready: first delay, doubled per consecutive crash up to the cap.
const CRASH_BACKOFF: Duration = Duration::from_millis(250);
const CRASH_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Ready this long, a role's crash counter starts over.
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// Failed starts in a row after which a core role stops the tree.
const CORE_START_FAILURES: u32 = 5;
/// The running tree.
pub struct Tree {
    settings: Settings,
    log: LogControl,
    slots: Slots,
    links: HashSet<(Role, Role)>,
    events_tx: mpsc::UnboundedSender<Event>,
    events: mpsc::UnboundedReceiver<Event>,
    started: Instant,
    stopping: Option<Stopping>,
    outcome: Result<(), String>,
    provisioned: bool,
}

impl std::fmt::Debug for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tree").field("slots", &self.slots).finish()
    }
}

impl Tree {
    pub fn new(settings: Settings, log: LogControl) -> Tree {
        let (events_tx, events) = mpsc::unbounded_channel();
        let slots = Slots::new(
            |role| {
                settings
                    .sandbox
                    .get(&role)
                    .and_then(|s| s.ids)
                    .map(|(uid, _)| uid)
                    .or_else(|| Some(nix::unistd::getuid().as_raw()))
            },
            &settings.log_filter,
        );
        Tree {
            settings,
            log,
            slots,
            links: HashSet::new(),
            events_tx,
            events,
            started: Instant::now(),
            stopping: None,
            outcome: Ok(()),
            provisioned: false,
        }
    }

    /// A sender for events from outside (admin socket, signals).
    pub fn events(&self) -> mpsc::UnboundedSender<Event> {
        self.events_tx.clone()
    }

    /// Starts every role and runs until the tree has stopped. `Err` when it stopped because a
    /// core role could not start.
    pub async fn run(mut self) -> Result<(), String> {
        for role in Role::ALL {
            self.start(role);
        }
        while let Some(event) = self.events.recv().await {
            self.on(event);
            if self
                .stopping
                .as_ref()
                .is_some_and(|s| s.phase >= SHUTDOWN_PHASES.len())
            {
                break;
            }
        }
        tracing::info!("all roles stopped");
        self.outcome
    }

    fn on(&mut self, event: Event) {
        match event {
            Event::Launched(Outcome::Connected {
                role,
                epoch,
                result,
            }) => self.on_connected(role, epoch, result),
            Event::Launched(Outcome::Exited {
                role,
                epoch,
                status,
            }) => self.on_exited(role, epoch, status),
            Event::Retry { role, epoch } => {
                let slot = &self.slots[role];
                if slot.epoch == epoch
                    && slot.state == RoleState::Backoff
                    && self.stopping.is_none()
                {
                    self.start(role);
                }
            }
            Event::ControlClosed { role, epoch } => {
                let slot = &self.slots[role];
                // A role closes its channel as it exits; one that stays alive without it can no
                // longer be managed: give it a moment to exit, then kill it.
                if slot.epoch == epoch && slot.pid.is_some() && slot.state != RoleState::Stopping {
                    tracing::warn!("{role} closed its control channel");
                    let events = self.events_tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        let _ = events.send(Event::KillIfStill { role, epoch });
                    });
                }
            }
            Event::Reported { role, epoch, event } => self.on_report(role, epoch, event),
            Event::KillIfStill { role, epoch } => {
                let slot = &self.slots[role];
                if slot.epoch == epoch && slot.pid.is_some() {
                    tracing::warn!("{role} did not stop in time; killing it");
                    if let Some(k) = &slot.killer {
                        k.kill();
                    }
                }
            }
            Event::Admin {
                request,
                fds,
                uid,
                reply,
            } => self.on_admin(request, fds, uid, reply),
            Event::Shutdown { reason } => self.begin_shutdown(reason),
            Event::Reloaded { config } => {
                if let Some(RoleConfig::Keyd(keyd)) =
                    self.settings.role_configs.get_mut(&Role::Keyd)
                {
                    keyd.certificates = config.certificate_files();
                }
                self.settings.config.tls = config.tls.clone();
            }
            Event::ShutdownDeadline => {
                for slot in self.slots.values() {
                    if let (Some(pid), Some(k)) = (slot.pid, &slot.killer) {
                        tracing::warn!("shutdown deadline passed; killing pid {pid}");
                        k.kill();
                    }
                }
            }
        }
    }

    fn start(&mut self, role: Role) {
        let epoch = self.slots[role].epoch + 1;
        let mut fds: Vec<Handle> = Vec::new();
        let mut listeners: Vec<ListenerSpec> = Vec::new();
        for bound in self
            .settings
            .listeners
            .iter()
            .filter(|b| b.spec.kind.role() == role)
        {
            match bound.dup() {
                Ok(fd) => {
                    fds.push(fd);
                    listeners.push(bound.spec);
                }
                Err(e) => tracing::error!("{e}"),
            }
        }
        // Links to the peers that are up now; the others follow when they become ready.
        let mut peers = Vec::new();
        for (peer, _) in role.peers() {
            if let Some(theirs) = self.link_to(peer, role) {
                match theirs {
                    Ok(ours) => {
                        peers.push(peer);
                        fds.push(ours);
                    }
                    Err(e) => tracing::error!("linking {role} and {peer}: {e}"),
                }
            }
        }
        let mut config = self.settings.role_configs[&role].clone();
        if let RoleConfig::Keyd(keyd) = &mut config
            && !keyd.certificates.is_empty()
        {
            let (kept, files) = crate::certfiles::open_available(&keyd.certificates);
            keyd.certificates = kept;
            fds.extend(files);
        }
        let slot = &mut self.slots[role];
        let boot = Bootstrap {
            role,
            sandbox: self.settings.sandbox[&role].clone(),
            process: self.settings.processes[&role].clone(),
            config,
            listeners,
            peers,
            log_filter: slot.log_filter.clone(),
        };
        slot.epoch = epoch;
        slot.state = RoleState::Starting;
        match self.settings.launcher.start(
            role,
            epoch,
            boot,
            fds,
            self.settings.build_id.clone(),
            self.events_tx.clone(),
        ) {
            Ok(started) => {
                tracing::debug!("{role} started as pid {}", started.pid);
                slot.pid = Some(started.pid);
                slot.killer = Some(started.killer);
            }
            Err(e) => {
                tracing::error!("starting {role}: {e}");
                slot.last_error = Some(e.clone());
                let _ = self.events_tx.send(Event::Launched(Outcome::Exited {
                    role,
                    epoch,
                    status: e,
                }));
            }
        }
    }

    /// If `peer` is up, creates a socketpair for the edge with `role`, hands one end to `peer`
    /// (PeerUp) and returns the other.
    fn link_to(&mut self, peer: Role, role: Role) -> Option<Result<Handle, String>> {
        let control = self.slots[peer].control.clone()?;
        if self.slots[peer].state != RoleState::Ready {
            return None;
        }
        let (ours, theirs) = match ipc::transport::socket_pair() {
            Ok(pair) => pair,
            Err(e) => return Some(Err(e.to_string())),
        };
        self.links.insert(edge_key(role, peer));
        tokio::spawn(async move {
            let request = control::PeerUp { peer: role };
            match control.call(request, vec![theirs]).await {
                Ok((Ok(()), _)) => {}
                Ok((Err(refused), _)) => tracing::warn!("PeerUp({role}) to {peer}: {refused}"),
                Err(e) => tracing::debug!("PeerUp({role}) to {peer}: {e}"),
            }
        });
        Some(Ok(ours))
    }

    fn on_connected(&mut self, role: Role, epoch: u64, result: Result<Connected, String>) {
        let slot = &mut self.slots[role];
        if slot.epoch != epoch || slot.pid.is_none() {
            return;
        }
        match result {
            Ok(_) if slot.state == RoleState::Stopping && self.stopping.is_none() => {
                // A restart was asked for while it started: finish the job.
                if let Some(k) = &slot.killer {
                    k.kill();
                }
            }
            Ok(connected) => {
                tracing::info!("{role} ready (pid {})", connected.pid);
                watch_control(role, epoch, &connected.control, self.events_tx.clone());
                forward_reports(role, epoch, connected.reports, self.events_tx.clone());
                slot.state = RoleState::Ready;
                slot.pid = Some(connected.pid);
                slot.control = Some(connected.control);
                slot.ready_since = Some(Instant::now());
                slot.start_failures = 0;
                slot.backoff = Duration::ZERO;
                slot.sandbox = connected
                    .ready
                    .sandbox
                    .iter()
                    .take(MAX_ROLE_LINES)
                    .map(|l| clip(l))
                    .collect();
                for w in connected.ready.warnings.iter().take(MAX_ROLE_LINES) {
                    tracing::warn!("{role}: sandbox step unsupported: {}", clip(w));
                }
                if self.stopping.is_some() {
                    self.stop_role(role);
                    return;
                }
                // Peers that became ready since this instance was started.
                for (peer, _) in role.peers() {
                    if self.links.contains(&edge_key(role, peer)) {
                        continue;
                    }
                    if let Some(Ok(ours)) = self.link_to(peer, role) {
                        let control = self.slots[role].control.clone();
                        if let Some(control) = control {
                            tokio::spawn(async move {
                                let request = control::PeerUp { peer };
                                match control.call(request, vec![ours]).await {
                                    Ok((Ok(()), _)) => {}
                                    Ok((Err(refused), _)) => {
                                        tracing::warn!("PeerUp({peer}) to {role}: {refused}")
                                    }
                                    Err(e) => tracing::debug!("PeerUp({peer}) to {role}: {e}"),
                                }
                            });
                        }
                    }
                }
            }
            Err(e) => {
                let e = clip(&e);
                tracing::error!("{role} failed to start: {e}");
                slot.last_error = Some(e);
                if let Some(k) = &slot.killer {
                    k.kill();
                }
            }
        }
        if self.settings.localserve && !self.provisioned {
            self.provision_localserve();
        }
    }

    fn on_exited(&mut self, role: Role, epoch: u64, status: String) {
        let status = clip(&status);
        let stopping = self.stopping.is_some();
        let slot = &mut self.slots[role];
        if slot.epoch != epoch {
            return;
        }
        let was_ready = slot.state == RoleState::Ready || slot.state == RoleState::Stopping;
        let ready_for = slot.ready_since.map(|t| t.elapsed());
        slot.pid = None;
        slot.killer = None;
        slot.control = None;
        slot.ready_since = None;
        self.links.retain(|(a, b)| *a != role && *b != role);
        for (peer, _) in role.peers() {
            if let Some(control) = self.slots[peer].control.clone() {
                tokio::spawn(async move {
                    let _ = control.ask(control::PeerDown { peer: role }).await;
                });
            }
        }
        let slot = &mut self.slots[role];
        if stopping {
            tracing::info!("{role} stopped ({status})");
            slot.state = RoleState::Stopped;
            self.advance_shutdown();
            return;
        }
        let reported = slot.reported.take();
        let delay = if std::mem::take(&mut slot.restart_requested) {
            Duration::ZERO
        } else if was_ready {
            // A restart on a peer's report counts as a crash: the same backoff bounds how often
            // a lying server can make its client restart.
            if ready_for.is_some_and(|d| d >= STABLE_AFTER) {
                slot.crashes = 0;
            }
            slot.crashes += 1;
            slot.last_error = Some(reported.unwrap_or_else(|| status.clone()));
            doubling(CRASH_BACKOFF, slot.crashes, CRASH_BACKOFF_MAX)
        } else {
            slot.start_failures += 1;
            if slot.last_error.is_none() {
                slot.last_error = Some(status.clone());
            }
            doubling(START_BACKOFF, slot.start_failures, START_BACKOFF_MAX)
        };
        slot.restarts += 1;
        slot.state = RoleState::Backoff;
        slot.backoff = delay;
        tracing::warn!("{role} exited ({status}); restarting in {delay:?}");
        if role.is_core() && slot.start_failures >= CORE_START_FAILURES {
            let why = format!(
                "{role} failed to start {} times in a row (last error: {}); stopping",
                slot.start_failures,
                slot.last_error.as_deref().unwrap_or("unknown")
            );
            tracing::error!("{why}");
            self.outcome = Err(why.clone());
            self.begin_shutdown(why);
            return;
        }
        let events = self.events_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = events.send(Event::Retry { role, epoch });
        });
    }

    /// A role says a peer broke the protocol on its link: restart that peer if the report can
    /// be true (see `reports.rs`), else log it and do nothing.
    fn on_report(&mut self, reporter: Role, epoch: u64, event: control::Event) {
        let control::Event::BrokenLink { peer, reason } = event;
        let reason = clip(&reason);
        let slot = &self.slots[reporter];
        if slot.epoch != epoch || slot.pid.is_none() || self.stopping.is_some() {
            tracing::debug!("{reporter} (gone or stopping) reported {peer}: {reason}");
            return;
        }
        match crate::reports::judge(reporter, peer, self.slots[peer].state) {
            Ok(()) => {
                tracing::warn!(
                    "{reporter} closed the link from {peer} ({reason}); restarting {peer}"
                );
                let offender = &mut self.slots[peer];
                offender.reported = Some(format!("{reporter} closed its link: {reason}"));
                self.stop_for_restart(peer);
            }
            Err(why) => tracing::warn!(
                "ignoring a report from {reporter} that {peer} broke its link ({reason}): {why}"
            ),
        }
    }
}

/// Most sandbox lines kept per role.
const MAX_ROLE_LINES: usize = 32;

/// Reports when an instance's control link closes.
fn watch_control(
    role: Role,
    epoch: u64,
    control: &Client<ControlService>,
    events: mpsc::UnboundedSender<Event>,
) {
    let control = control.clone();
    tokio::spawn(async move {
        control.closed().await;
        let _ = events.send(Event::ControlClosed { role, epoch });
    });
}

/// Hands the tree what an instance reports over its control link, until that link closes.
fn forward_reports(
    role: Role,
    epoch: u64,
    mut reports: mpsc::UnboundedReceiver<control::Event>,
    events: mpsc::UnboundedSender<Event>,
) {
    tokio::spawn(async move {
        while let Some(event) = reports.recv().await {
            if events.send(Event::Reported { role, epoch, event }).is_err() {
                return;
            }
        }
    });
}

fn edge_key(a: Role, b: Role) -> (Role, Role) {
    if a < b { (a, b) } else { (b, a) }
}

fn doubling(base: Duration, n: u32, cap: Duration) -> Duration {
    base.saturating_mul(1u32 << n.saturating_sub(1).min(16))
        .min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap() {
        let seq: Vec<u64> = (1..=8)
            .map(|n| doubling(START_BACKOFF, n, START_BACKOFF_MAX).as_secs())
            .collect();
        assert_eq!(seq, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(
            doubling(CRASH_BACKOFF, 1, CRASH_BACKOFF_MAX),
            Duration::from_millis(250)
        );
        assert_eq!(
            doubling(CRASH_BACKOFF, 10, CRASH_BACKOFF_MAX),
            CRASH_BACKOFF_MAX
        );
    }
}
