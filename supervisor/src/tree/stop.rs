//! Stopping roles: the whole tree in phases on shutdown, or one instance for a restart. Apart
//! from the start/exit logic in `mod.rs` because stopping has its own order and deadlines.

use std::time::Instant;

use ipc::Role;
use ipc::msg::admin::RoleState;
use ipc::msg::control;

use super::{Event, Tree};

/// Shutdown order: the network roles first, so that their in-flight work can still reach the
/// roles behind them.
pub(super) const SHUTDOWN_PHASES: &[&[Role]] = &[
    &[Role::Httpd, Role::Imapd, Role::Smtpd, Role::Submission],
    &[Role::Queued],
    &[Role::Authd],
    &[Role::Storaged],
    &[Role::Keyd],
];

/// A shutdown under way.
#[derive(Debug)]
pub(super) struct Stopping {
    /// Index into [`SHUTDOWN_PHASES`] of the roles being stopped now.
    pub(super) phase: usize,
    /// When whatever still runs is killed.
    pub(super) deadline: Instant,
}

impl Tree {
    /// Starts the phased shutdown (once; later calls change nothing) and arms the deadline
    /// after which whatever still runs is killed.
    pub(super) fn begin_shutdown(&mut self, reason: String) {
        if self.stopping.is_some() {
            return;
        }
        tracing::info!("shutting down: {reason}");
        let deadline = Instant::now() + self.settings.grace;
        self.stopping = Some(Stopping { phase: 0, deadline });
        let events = self.events_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(deadline.into()).await;
            let _ = events.send(Event::ShutdownDeadline);
        });
        self.advance_shutdown();
    }

    /// Stops the roles of the current phase; moves on when none of them is left running.
    pub(super) fn advance_shutdown(&mut self) {
        loop {
            let Some(phase) = self.stopping.as_ref().map(|s| s.phase) else {
                return;
            };
            let Some(roles) = SHUTDOWN_PHASES.get(phase) else {
                return;
            };
            let mut waiting = false;
            for role in *roles {
                let slot = &mut self.slots[*role];
                match slot.state {
                    RoleState::Stopped => {}
                    RoleState::Backoff => slot.state = RoleState::Stopped,
                    RoleState::Stopping => waiting = true,
                    RoleState::Starting | RoleState::Ready => {
                        self.stop_role(*role);
                        waiting = true;
                    }
                }
            }
            if waiting {
                return;
            }
            if let Some(s) = self.stopping.as_mut() {
                s.phase += 1;
            }
        }
    }

    /// Asks one role to stop gracefully; kills it if it cannot be asked.
    pub(super) fn stop_role(&mut self, role: Role) {
        let deadline = self.stopping.as_ref().map(|s| s.deadline);
        let slot = &mut self.slots[role];
        slot.state = RoleState::Stopping;
        let grace = deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(self.settings.grace);
        match slot.control.clone() {
            Some(control) => {
                tokio::spawn(async move {
                    let request = control::Shutdown {
                        grace_ms: grace.as_millis() as u64,
                    };
                    let _ = control.ask(request).await;
                });
            }
            None => {
                if let Some(k) = &slot.killer {
                    k.kill();
                }
            }
        }
    }

    /// Asks a running instance to stop within the grace period, then kills it; its exit
    /// starts the next one.
    pub(super) fn stop_for_restart(&mut self, role: Role) {
        let grace = self.settings.grace;
        let slot = &mut self.slots[role];
        slot.state = RoleState::Stopping;
        let epoch = slot.epoch;
        if let Some(control) = slot.control.clone() {
            tokio::spawn(async move {
                let request = control::Shutdown {
                    grace_ms: grace.as_millis() as u64,
                };
                let _ = control.ask(request).await;
            });
        } else if let Some(k) = &slot.killer {
            k.kill();
        }
        let events = self.events_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let _ = events.send(Event::KillIfStill { role, epoch });
        });
    }
}
