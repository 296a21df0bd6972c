//! Signing lanes: each asking role signs within a budget and on signing slots of its own, so a
//! role that floods keyd (a compromised smtpd on port 25, say) spends its own share and cannot
//! hold up another role's handshakes past their 2 s timeout.
//!
//! Two things used to be shared by every role: the processor time of however many threads a
//! role could keep busy (one per signing socket, sixteen each, plus the runtime's blocking
//! pool), and the blocking pool's one queue, where one role's slow signatures stood in front of
//! everyone else's. Now a role's signatures run only while holding one of its own
//! [`Limits::slots`] (so a flood is at most that many running threads, which the kernel shares
//! fairly with the other roles' threads), and the signatures asked on a role's async link run on
//! that role's own worker threads behind its own bounded queue.

use ipc::sync::lock;
use std::collections::HashMap;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ipc::Role;

/// How a lane is bounded.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Signatures of one role being computed at once.
    pub slots: usize,
    /// Signatures one role may ask for per second, on average.
    pub per_second: u32,
    /// Signatures one role may ask for at once after a quiet spell.
    pub burst: u32,
}

impl Default for Limits {
    /// Two slots (half the processors on larger machines): a flooding role keeps at most that
    /// many threads running, so one more role's signature still gets a processor at once or a
    /// fair turn of one. The budget is far above what one role's handshakes need and what keyd
    /// can sign (ECDSA ≈ 25,000/s per processor): it bounds runaway loops, not load.
    fn default() -> Limits {
        let processors = std::thread::available_parallelism().map_or(2, |n| n.get());
        Limits {
            slots: (processors / 2).max(2),
            per_second: 20_000,
            burst: 20_000,
        }
    }
}

/// Why a lane did not sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Busy {
    #[error("too many signatures; slow down")]
    OverBudget,
    #[error("this link's signing slots stayed busy past the client's timeout")]
    NoSlot,
    #[error("this link's signing queue is full")]
    QueueFull,
    #[error("no signing thread: {0}")]
    NoThread(String),
}

/// Every role's lane, made at first use.
#[derive(Debug)]
pub struct Lanes {
    limits: Limits,
    lanes: Mutex<HashMap<Role, Arc<Lane>>>,
}

impl Lanes {
    pub fn new(limits: Limits) -> Lanes {
        Lanes {
            limits,
            lanes: Mutex::default(),
        }
    }

    /// The lane of `role`.
    pub fn lane(&self, role: Role) -> Arc<Lane> {
        let mut lanes = lock(&self.lanes);
        lanes
            .entry(role)
            .or_insert_with(|| Arc::new(Lane::new(role, self.limits)))
            .clone()
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// One role's budget, slots and workers.
#[derive(Debug)]
pub struct Lane {
    role: Role,
    limits: Limits,
    budget: Mutex<Bucket>,
    /// Free signing slots.
    free: Mutex<usize>,
    freed: Condvar,
    /// The queue of the role's workers, started at first use.
    queue: OnceLock<Result<SyncSender<Job>, String>>,
}

/// How long a signature waits for a slot: as long as the client waits for its answer
/// (keyclient's `SIGN_TIMEOUT`); after that nobody reads the signature.
const SLOT_WAIT: Duration = Duration::from_secs(2);

/// Async-link signatures waiting per worker before the lane refuses more.
const QUEUE_PER_WORKER: usize = 32;

impl Lane {
    fn new(role: Role, limits: Limits) -> Lane {
        Lane {
            role,
            limits,
            budget: Mutex::new(Bucket {
                tokens: f64::from(limits.burst),
                at: Instant::now(),
            }),
            free: Mutex::new(limits.slots.max(1)),
            freed: Condvar::new(),
            queue: OnceLock::new(),
        }
    }

    /// Takes one signature from the role's budget; `false` when it is spent.
    pub fn spend(&self) -> bool {
        let mut bucket = lock(&self.budget);
        bucket.take(self.limits)
    }

    /// Runs `sign` on this thread while holding one of the role's slots, waiting for one at most
    /// as long as the client waits.
    pub fn sign_here<T>(&self, sign: impl FnOnce() -> T) -> Result<T, Busy> {
        let _slot = self.slot()?;
        Ok(sign())
    }

    /// Runs `job` on one of the role's own workers, for callers that must not block (the async
    /// link). A full queue refuses at once: the role is asking faster than its slots sign.
    pub async fn on_worker<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let queue = self
            .queue
            .get_or_init(|| self.start_workers())
            .as_ref()
            .map_err(|e| Busy::NoThread(e.clone()))?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job = ipc::span::in_current_span(job);
        let job: Job = Box::new(move || {
            let _ = tx.send(job());
        });
        match queue.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(Busy::QueueFull),
            Err(TrySendError::Disconnected(_)) => {
                return Err(Busy::NoThread("the workers ended".into()));
            }
        }
        rx.await
            .map_err(|_| Busy::NoThread("the job was dropped".into()))
    }

    /// One thread per slot, named after the role, taking jobs from one bounded queue.
    fn start_workers(&self) -> Result<SyncSender<Job>, String> {
        let workers = self.limits.slots.max(1);
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(workers * QUEUE_PER_WORKER);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("sign-{}-{i}", self.role))
                .spawn(move || {
                    loop {
                        let job = lock(&rx).recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|e| e.to_string())?;
        }
        Ok(tx)
    }

    fn slot(&self) -> Result<Slot<'_>, Busy> {
        let free = lock(&self.free);
        let (mut free, waited) = self
            .freed
            .wait_timeout_while(free, SLOT_WAIT, |free| *free == 0)
            .unwrap_or_else(|e| e.into_inner());
        if waited.timed_out() && *free == 0 {
            return Err(Busy::NoSlot);
        }
        *free -= 1;
        Ok(Slot(self))
    }
}

/// A held signing slot, given back when dropped.
struct Slot<'a>(&'a Lane);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *lock(&self.0.free) += 1;
        self.0.freed.notify_one();
    }
}

/// A token bucket: `burst` tokens, refilled at `per_second`.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn take(&mut self, limits: Limits) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * f64::from(limits.per_second);
        self.tokens = (self.tokens + refill).min(f64::from(limits.burst));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    fn limits(slots: usize) -> Limits {
        Limits {
            slots,
            per_second: 1,
            burst: 3,
        }
    }

    #[test]
    fn a_budget_is_spent_per_role() {
        let lanes = Lanes::new(limits(1));
        let smtpd = lanes.lane(Role::Smtpd);
        assert_eq!([(); 4].map(|()| smtpd.spend()), [true, true, true, false]);
        assert!(lanes.lane(Role::Imapd).spend(), "imapd's budget is its own");
        assert!(!lanes.lane(Role::Smtpd).spend(), "the same lane again");
    }

    #[test]
    fn a_role_signs_on_at_most_its_slots_and_others_are_not_held_up() {
        let lanes = Arc::new(Lanes::new(limits(2)));
        // (running now, most running at once, entered so far)
        let count = Arc::new(Mutex::new((0usize, 0usize, 0usize)));
        let release = Arc::new(Barrier::new(2 + 1));
        // The first two smtpd signatures hold both its slots until released; a third waits.
        let mut holders = Vec::new();
        for _ in 0..3 {
            let (lanes, count, release) = (lanes.clone(), count.clone(), release.clone());
            holders.push(std::thread::spawn(move || {
                lanes.lane(Role::Smtpd).sign_here(|| {
                    let entered = {
                        let mut c = count.lock().unwrap();
                        c.0 += 1;
                        c.1 = c.1.max(c.0);
                        c.2 += 1;
                        c.2
                    };
                    if entered <= 2 {
                        release.wait();
                    }
                    count.lock().unwrap().0 -= 1;
                })
            }));
        }
        while count.lock().unwrap().0 < 2 {
            std::thread::yield_now();
        }
        // With smtpd's slots taken, imapd signs at once, on this thread.
        assert_eq!(lanes.lane(Role::Imapd).sign_here(|| 7), Ok(7));
        assert_eq!(count.lock().unwrap().2, 2, "smtpd's third waits for a slot");
        release.wait();
        for h in holders {
            assert_eq!(h.join().unwrap(), Ok(()));
        }
        assert_eq!(
            *count.lock().unwrap(),
            (0, 2, 3),
            "never more than smtpd's two slots"
        );
    }

    #[tokio::test]
    async fn a_full_worker_queue_refuses_without_blocking_another_role() {
        let lanes = Arc::new(Lanes::new(limits(1)));
        let smtpd = lanes.lane(Role::Smtpd);
        let gate = Arc::new(Barrier::new(2));
        let release = gate.clone();
        // smtpd's one worker is stuck; its queue fills up, and then it is refused at once.
        let stuck = smtpd.on_worker(move || gate.wait());
        tokio::pin!(stuck);
        // Polled once, it is queued first.
        assert!(
            tokio::time::timeout(Duration::from_millis(1), &mut stuck)
                .await
                .is_err()
        );
        // Each queued request is left waiting (its answer dropped); the one past the queue's
        // capacity is refused at once.
        let mut queued = 0;
        let refused = loop {
            match tokio::time::timeout(Duration::from_millis(10), smtpd.on_worker(|| ())).await {
                Err(_waiting) => queued += 1,
                Ok(answer) => break answer,
            }
            assert!(queued <= QUEUE_PER_WORKER + 1, "never refused");
        };
        assert_eq!(refused, Err(Busy::QueueFull));
        // imapd's worker answers meanwhile.
        assert_eq!(lanes.lane(Role::Imapd).on_worker(|| 9).await, Ok(9));
        release.wait();
        assert!(stuck.await.is_ok());
    }
}
