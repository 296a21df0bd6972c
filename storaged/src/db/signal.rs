//! Wakes the checkpointer when deliveries left bodies in the database.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use ipc::sync::lock;

/// Wakes the checkpointer: a count of deliveries that left bodies behind, whether it should
/// stop, and whether it sleeps until the next delivery (otherwise it is waiting for a pause,
/// which it checks on waking by itself: a delivery does not wake it).
#[derive(Debug, Default)]
pub struct Signal {
    state: Mutex<SignalState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct SignalState {
    deliveries: u64,
    stop: bool,
    idle: bool,
}

impl Signal {
    /// Says that bodies were added.
    pub fn poke(&self) {
        let mut state = lock(&self.state);
        state.deliveries += 1;
        if state.idle {
            state.idle = false;
            self.changed.notify_one();
        }
    }

    /// Tells the checkpointer to stop after its next round.
    pub fn stop(&self) {
        lock(&self.state).stop = true;
        self.changed.notify_one();
    }

    /// Sleeps until deliveries beyond `seen` left bodies (or a stop), then until they pause
    /// for `idle` (at most `max_wait` from the first): a checkpoint then takes a whole burst.
    /// Returns the deliveries counted so far and whether to stop after this round.
    pub fn wait_for_pause(&self, seen: u64, idle: Duration, max_wait: Duration) -> (u64, bool) {
        let mut state = lock(&self.state);
        while state.deliveries == seen && !state.stop {
            state.idle = true;
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        state.idle = false;
        let stopping = state.stop;
        let first = Instant::now();
        while !state.stop {
            let before = state.deliveries;
            let left = max_wait.saturating_sub(first.elapsed());
            if left.is_zero() {
                break;
            }
            let (s, _) = self
                .changed
                .wait_timeout(state, idle.min(left))
                .unwrap_or_else(|e| e.into_inner());
            state = s;
            if state.deliveries == before {
                break;
            }
        }
        (state.deliveries, stopping || state.stop)
    }
}
