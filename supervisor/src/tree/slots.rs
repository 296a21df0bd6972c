//! Every role's slot, indexed by the role itself: a fixed array in [`Role::ALL`] order, so a
//! role always has its slot by construction and no lookup can miss (a map would need an
//! `expect` at every access for a case that cannot happen).

use std::ops::{Index, IndexMut};
use std::time::{Duration, Instant};

use ipc::msg::admin::RoleState;
use ipc::msg::control::ControlService;
use ipc::{Client, Role};

use crate::launch::Killer;

/// What the tree knows about one role: its current instance and its restart history.
#[derive(Debug)]
pub(super) struct Slot {
    pub(super) state: RoleState,
    pub(super) epoch: u64,
    pub(super) pid: Option<u32>,
    pub(super) uid: Option<u32>,
    pub(super) killer: Option<Killer>,
    pub(super) control: Option<Client<ControlService>>,
    pub(super) restarts: u32,
    pub(super) start_failures: u32,
    pub(super) crashes: u32,
    pub(super) ready_since: Option<Instant>,
    pub(super) backoff: Duration,
    pub(super) last_error: Option<String>,
    pub(super) sandbox: Vec<String>,
    pub(super) restart_requested: bool,
    /// Why the instance is being restarted on a peer's report, for its exit.
    pub(super) reported: Option<String>,
    pub(super) log_filter: String,
}

impl Slot {
    /// A role that has not been started yet.
    fn stopped(uid: Option<u32>, log_filter: String) -> Slot {
        Slot {
            state: RoleState::Stopped,
            epoch: 0,
            pid: None,
            uid,
            killer: None,
            control: None,
            restarts: 0,
            start_failures: 0,
            crashes: 0,
            ready_since: None,
            backoff: Duration::ZERO,
            last_error: None,
            sandbox: Vec::new(),
            restart_requested: false,
            reported: None,
            log_filter,
        }
    }
}

/// One slot per role; `slots[role]` is that role's.
#[derive(Debug)]
pub(super) struct Slots([Slot; Role::ALL.len()]);

impl Slots {
    /// Every role stopped, each with the uid it will run as and the initial log filter.
    pub(super) fn new(uid: impl Fn(Role) -> Option<u32>, log_filter: &str) -> Slots {
        Slots(Role::ALL.map(|role| Slot::stopped(uid(role), log_filter.to_string())))
    }

    /// Each role with its slot, in start order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (Role, &Slot)> {
        Role::ALL.into_iter().zip(self.0.iter())
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Slot> {
        self.0.iter()
    }
}

/// The slot's position: `Role::ALL` lists the roles in declaration order, so the discriminant
/// is the position (checked by a test below).
fn position(role: Role) -> usize {
    role as usize
}

impl Index<Role> for Slots {
    type Output = Slot;
    fn index(&self, role: Role) -> &Slot {
        &self.0[position(role)]
    }
}

impl IndexMut<Role> for Slots {
    fn index_mut(&mut self, role: Role) -> &mut Slot {
        &mut self.0[position(role)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_has_its_own_slot_in_start_order() {
        for (i, role) in Role::ALL.into_iter().enumerate() {
            assert_eq!(position(role), i, "{role}");
        }
        let slots = Slots::new(|role| Some(position(role) as u32), "info");
        for (role, slot) in slots.iter() {
            assert_eq!(slots[role].uid, Some(position(role) as u32));
            assert_eq!(slot.uid, slots[role].uid);
        }
        assert_eq!(slots.iter().count(), Role::ALL.len());
    }
}
