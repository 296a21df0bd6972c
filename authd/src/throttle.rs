//! Brute-force throttling shared by SMTP, IMAP and HTTP authentication.
//!
//! Failed attempts are counted per remote address class — IPv4 /32 and /24, IPv6 /64 and /48
//! (an IPv4-mapped IPv6 address counts as IPv4) —, per account (the account a name or address
//! resolved to, whatever the client typed), and per link (the network role that relayed the
//! attempt, whatever address it claims for its client), each in a one-minute and a one-day
//! window. The link's budget is what stops a compromised network role from inventing a fresh
//! address per guess. Before an attempt the caller asks [`Throttle::check`]: past a limit in any
//! window the attempt is refused until that window ends; below it, the attempt may proceed after
//! a delay that doubles with each recent failure of the host or account (the first
//! [`FREE_FAILURES`] cost nothing, then 1 s, 2 s, … up to [`MAX_DELAY`]). A success clears the
//! host's minute counter (a user who mistyped once is not slowed down afterwards); the daily
//! counts and the account's counts remain.
//!
//! Windows are fixed: one starts at the first failure after the previous one ended. Time is a
//! parameter everywhere, so the behaviour is deterministic in tests. The counters survive a
//! restart through [`Throttle::save`] and [`Throttle::load`] (atomic, fsynced writes).

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::persist;

/// The limits, by default 10 per minute and 50 per day from one IPv4 address or IPv6 /64,
/// three times that from one IPv4 /24 or IPv6 /48, 20 and 100 for one account from anywhere,
/// 100 and 20,000 through one link (`[auth]` in the configuration).
pub use ipc::config::AuthSettings as Limits;
/// Recent failures that cost no delay.
pub const FREE_FAILURES: u32 = 3;
/// The delay after the first failure beyond [`FREE_FAILURES`]; it doubles with each one more.
pub const FIRST_DELAY: Duration = Duration::from_secs(1);
/// The longest delay.
pub const MAX_DELAY: Duration = Duration::from_secs(15);

/// The state file's name in authd's directory.
pub const FILE_NAME: &str = "throttle";
const MAGIC: &[u8; 8] = b"moxdthrt";
const VERSION: u32 = 1;
const MINUTE: u64 = 60;
const DAY: u64 = 24 * 60 * 60;
/// Above this many counters, expired ones are dropped, then the oldest.
const MAX_COUNTERS: usize = 200_000;

/// Whether an attempt may proceed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead after waiting `delay`.
    Allow {
        /// How long to wait before answering the client.
        delay: Duration,
    },
    /// Refuse without checking the password; the client may retry after `retry_after`. The
    /// refusal is answered like wrong credentials, after `delay`, so it tells a guesser nothing.
    Refuse {
        /// How long to wait before answering the client.
        delay: Duration,
        /// When the window that is over its limit ends.
        retry_after: Duration,
        /// Which limit was reached.
        reason: RefuseReason,
    },
}

/// The limit a refused attempt ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefuseReason {
    /// What the failures were counted for.
    pub scope: Scope,
    /// Over which window.
    pub window: Window,
}

/// What a counter counts failures for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// One IPv4 address (/32).
    Ipv4Host,
    /// One IPv4 /24.
    Ipv4Network,
    /// One IPv6 /64.
    Ipv6Host,
    /// One IPv6 /48.
    Ipv6Network,
    /// One account.
    Account,
    /// One link to authd (one network role).
    Link,
}

/// A counting window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// One minute.
    Minute,
    /// One day.
    Day,
}

impl fmt::Display for RefuseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scope = match self.scope {
            Scope::Ipv4Host => "this IPv4 address",
            Scope::Ipv4Network => "this IPv4 /24",
            Scope::Ipv6Host => "this IPv6 /64",
            Scope::Ipv6Network => "this IPv6 /48",
            Scope::Account => "this account",
            Scope::Link => "this protocol's link to authd",
        };
        let window = match self.window {
            Window::Minute => "minute",
            Window::Day => "day",
        };
        write!(f, "too many failed logins for {scope} in the last {window}")
    }
}

/// Failure counters, keyed by address class and account.
#[derive(Debug, Default)]
pub struct Throttle {
    counters: HashMap<Key, Counter>,
    limits: Limits,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
enum Key {
    Ipv4Host([u8; 4]),
    Ipv4Network([u8; 3]),
    Ipv6Host([u8; 8]),
    Ipv6Network([u8; 6]),
    /// Lower-cased, so that case variants share a counter.
    Account(String),
    /// The name of the role whose link relayed the attempts (a restarted role keeps its count).
    Link(String),
}

/// One login attempt as the throttle sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempt<'a> {
    /// The client's address, as the network role reports it.
    pub ip: IpAddr,
    /// The account the client named (resolved from an address where possible), once known.
    pub account: Option<&'a str>,
    /// The role whose link to authd relayed the attempt, if any.
    pub link: Option<&'a str>,
}

impl<'a> Attempt<'a> {
    /// An attempt from `ip`, for `account` if known; no link.
    pub fn new(ip: IpAddr, account: Option<&'a str>) -> Self {
        Attempt {
            ip,
            account,
            link: None,
        }
    }

    /// The same attempt, relayed by the link of role `link`.
    pub fn through(self, link: &'a str) -> Self {
        Attempt {
            link: Some(link),
            ..self
        }
    }
}

/// Failures in the current minute and day windows, each started at its first failure.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
struct Counter {
    minute_start: u64,
    minute: u32,
    day_start: u64,
    day: u32,
}

impl Throttle {
    /// No failures recorded; the default limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// The same counters under `limits`.
    pub fn with_limits(self, limits: Limits) -> Self {
        Throttle { limits, ..self }
    }

    /// Decides whether `attempt` may proceed. The delay follows the recent failures of its host
    /// and account, not its link's: other clients' failures must not slow a user down.
    pub fn check(&self, attempt: Attempt<'_>, now: SystemTime) -> Decision {
        let now = unix_secs(now);
        let mut refusal: Option<(u64, RefuseReason)> = None;
        let mut recent = 0;
        for key in keys(attempt) {
            let Some(counter) = self.counters.get(&key) else {
                continue;
            };
            let (per_minute, per_day) = key.limits(&self.limits);
            let windows = [
                (
                    Window::Minute,
                    counter.minute_start,
                    MINUTE,
                    counter.in_minute(now),
                    per_minute,
                ),
                (
                    Window::Day,
                    counter.day_start,
                    DAY,
                    counter.in_day(now),
                    per_day,
                ),
            ];
            for (window, start, length, failures, limit) in windows {
                if failures >= limit {
                    let left = length - now.saturating_sub(start).min(length);
                    let reason = RefuseReason {
                        scope: key.scope(),
                        window,
                    };
                    if refusal.is_none_or(|(longest, _)| left > longest) {
                        refusal = Some((left, reason));
                    }
                }
            }
            if matches!(
                key.scope(),
                Scope::Ipv4Host | Scope::Ipv6Host | Scope::Account
            ) {
                recent = recent.max(counter.in_minute(now));
            }
        }
        match refusal {
            Some((left, reason)) => Decision::Refuse {
                delay: delay_after(recent),
                retry_after: Duration::from_secs(left),
                reason,
            },
            None => Decision::Allow {
                delay: delay_after(recent),
            },
        }
    }

    /// Counts a failed attempt (wrong password, unknown user).
    pub fn record_failure(&mut self, attempt: Attempt<'_>, now: SystemTime) {
        let now = unix_secs(now);
        for key in keys(attempt) {
            self.counters.entry(key).or_default().add(now);
        }
        if self.counters.len() > MAX_COUNTERS {
            self.shrink(now);
        }
    }

    /// A successful login: clears the minute counter of the host it came from.
    pub fn record_success(&mut self, attempt: Attempt<'_>, _now: SystemTime) {
        if let Some(host) = keys(Attempt::new(attempt.ip, None)).into_iter().next()
            && let Some(counter) = self.counters.get_mut(&host)
        {
            counter.minute = 0;
        }
    }

    /// Drops counters whose windows have all ended.
    pub fn prune(&mut self, now: SystemTime) {
        let now = unix_secs(now);
        self.counters
            .retain(|_, c| c.in_minute(now) > 0 || c.in_day(now) > 0);
    }

    /// Writes the counters to `dir`, atomically and durably.
    pub fn save(&self, dir: &Path) -> Result<(), StoreError> {
        let entries: Vec<(&Key, &Counter)> = self.counters.iter().collect();
        let bytes = persist::encode(MAGIC, VERSION, "throttle state", &entries)?;
        persist::write_atomic(dir, FILE_NAME, &bytes)
    }

    /// Reads the counters saved in `dir`; none if nothing was saved.
    pub fn load(dir: &Path) -> Result<Self, StoreError> {
        let Some(bytes) = persist::read(dir, FILE_NAME)? else {
            return Ok(Throttle::new());
        };
        let path = dir.join(FILE_NAME);
        let entries: Vec<(Key, Counter)> =
            persist::decode(MAGIC, VERSION, "throttle state", &path, &bytes)?;
        Ok(Throttle {
            counters: entries.into_iter().collect(),
            limits: Limits::default(),
        })
    }

    /// Keeps memory bounded under a flood of addresses: drop expired, then the oldest half.
    fn shrink(&mut self, now: u64) {
        self.counters
            .retain(|_, c| c.in_minute(now) > 0 || c.in_day(now) > 0);
        if self.counters.len() > MAX_COUNTERS {
            let mut starts: Vec<u64> = self.counters.values().map(|c| c.day_start).collect();
            starts.sort_unstable();
            let cutoff = starts[starts.len() / 2];
            self.counters.retain(|_, c| c.day_start > cutoff);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.counters.len()
    }
}

impl Key {
    fn scope(&self) -> Scope {
        match self {
            Key::Ipv4Host(_) => Scope::Ipv4Host,
            Key::Ipv4Network(_) => Scope::Ipv4Network,
            Key::Ipv6Host(_) => Scope::Ipv6Host,
            Key::Ipv6Network(_) => Scope::Ipv6Network,
            Key::Account(_) => Scope::Account,
            Key::Link(_) => Scope::Link,
        }
    }

    /// (per minute, per day).
    fn limits(&self, l: &Limits) -> (u32, u32) {
        match self.scope() {
            Scope::Ipv4Host | Scope::Ipv6Host => {
                (l.host_failures_per_minute, l.host_failures_per_day)
            }
            Scope::Ipv4Network | Scope::Ipv6Network => (
                l.host_failures_per_minute.saturating_mul(3),
                l.host_failures_per_day.saturating_mul(3),
            ),
            Scope::Account => (l.account_failures_per_minute, l.account_failures_per_day),
            Scope::Link => (l.link_failures_per_minute, l.link_failures_per_day),
        }
    }
}

impl Counter {
    fn in_minute(&self, now: u64) -> u32 {
        if now.saturating_sub(self.minute_start) < MINUTE {
            self.minute
        } else {
            0
        }
    }

    fn in_day(&self, now: u64) -> u32 {
        if now.saturating_sub(self.day_start) < DAY {
            self.day
        } else {
            0
        }
    }

    fn add(&mut self, now: u64) {
        if self.in_minute(now) == 0 {
            self.minute_start = now;
            self.minute = 0;
        }
        if self.in_day(now) == 0 {
            self.day_start = now;
            self.day = 0;
        }
        self.minute = self.minute.saturating_add(1);
        self.day = self.day.saturating_add(1);
    }
}

/// The counters an attempt touches: host class first, then network class, the account, the link.
fn keys(attempt: Attempt<'_>) -> Vec<Key> {
    let mut keys = match attempt.ip.to_canonical() {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            vec![Key::Ipv4Host(o), Key::Ipv4Network([o[0], o[1], o[2]])]
        }
        IpAddr::V6(v6) => {
            let o = v6.octets();
            let mut host = [0u8; 8];
            host.copy_from_slice(&o[..8]);
            let mut network = [0u8; 6];
            network.copy_from_slice(&o[..6]);
            vec![Key::Ipv6Host(host), Key::Ipv6Network(network)]
        }
    };
    if let Some(account) = attempt.account {
        keys.push(Key::Account(account.to_lowercase()));
    }
    if let Some(link) = attempt.link {
        keys.push(Key::Link(link.to_owned()));
    }
    keys
}

/// The delay after `failures` recent failures.
fn delay_after(failures: u32) -> Duration {
    let Some(doublings) = failures.checked_sub(FREE_FAILURES) else {
        return Duration::ZERO;
    };
    let factor = 1u32.checked_shl(doublings).unwrap_or(u32::MAX);
    FIRST_DELAY.saturating_mul(factor).min(MAX_DELAY)
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
