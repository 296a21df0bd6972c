//! Per-account sending limits (mox's, with its defaults): messages to other domains per 24
//! hours, and recipients the account never sent to before per 24 hours — a compromised
//! password should not turn the server into a spam cannon. Each account's ledger is kept in
//! `accounts/` in the queue directory (written atomically after each queued message).

use ipc::sync::lock;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

const DAY: i64 = 24 * 60 * 60;

/// What one account sent to other domains.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Ledger {
    /// (when, how many first-time recipients) per message of the last 24 hours.
    sent: Vec<(i64, u32)>,
    /// Every recipient it ever sent to, lowercased.
    known: BTreeSet<String>,
}

/// A limit that would be exceeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverLimit {
    pub setting: &'static str,
    pub limit: u32,
    pub retry_after_secs: u64,
}

#[derive(Debug)]
pub struct Limits {
    dir: PathBuf,
    max_messages: u32,
    max_first_time: u32,
    ledgers: Mutex<HashMap<String, Ledger>>,
    writing: Mutex<()>,
}

/// A message admitted under the limits: already counted (so that concurrent messages see it);
/// [`Limits::save`] once it is queued, [`Limits::rollback`] if it is not.
#[derive(Debug)]
pub struct Admitted {
    account: String,
    first_time: Vec<String>,
    at: i64,
}

impl Limits {
    pub fn open(
        queue_dir: &Path,
        max_messages: u32,
        max_first_time: u32,
    ) -> Result<Limits, String> {
        let dir = queue_dir.join("accounts");
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        Ok(Limits {
            dir,
            max_messages,
            max_first_time,
            ledgers: Mutex::default(),
            writing: Mutex::default(),
        })
    }

    fn path(&self, account: &str) -> PathBuf {
        let name: String = account.bytes().map(|b| format!("{b:02x}")).collect();
        self.dir.join(name)
    }

    fn with_ledger<T>(&self, account: &str, f: impl FnOnce(&mut Ledger) -> T) -> T {
        let mut ledgers = lock(&self.ledgers);
        let ledger = ledgers.entry(account.to_string()).or_insert_with(|| {
            let path = self.path(account);
            match std::fs::read(&path) {
                Ok(bytes) => ipc::codec::decode_unbounded(&bytes).unwrap_or_else(|e| {
                    tracing::error!(
                        "sending ledger {} is unreadable ({e}); {account}'s limits start over",
                        path.display()
                    );
                    Ledger::default()
                }),
                Err(_) => Ledger::default(),
            }
        });
        f(ledger)
    }

    /// Whether `account` may send one more message to `recipients` at `now`.
    pub fn admit(
        &self,
        account: &str,
        recipients: &[String],
        now: i64,
    ) -> Result<Admitted, OverLimit> {
        self.with_ledger(account, |ledger| {
            ledger.sent.retain(|(t, _)| now - t < DAY);
            let retry = |ledger: &Ledger| {
                ledger
                    .sent
                    .first()
                    .map_or(0, |(t, _)| u64::try_from(t + DAY - now).unwrap_or(0))
            };
            if ledger.sent.len() as u64 >= u64::from(self.max_messages) {
                return Err(OverLimit {
                    setting: "smtp.max_messages_per_day",
                    limit: self.max_messages,
                    retry_after_secs: retry(ledger),
                });
            }
            let mut first_time: Vec<String> = recipients
                .iter()
                .map(|r| r.to_lowercase())
                .filter(|r| !ledger.known.contains(r))
                .collect();
            first_time.sort();
            first_time.dedup();
            let recent: u64 = ledger.sent.iter().map(|(_, n)| u64::from(*n)).sum();
            if !first_time.is_empty()
                && recent + first_time.len() as u64 > u64::from(self.max_first_time)
            {
                return Err(OverLimit {
                    setting: "smtp.max_first_time_recipients_per_day",
                    limit: self.max_first_time,
                    retry_after_secs: retry(ledger),
                });
            }
            ledger.sent.push((now, first_time.len() as u32));
            ledger.known.extend(first_time.iter().cloned());
            Ok(Admitted {
                account: account.to_string(),
                first_time,
                at: now,
            })
        })
    }

    /// Takes back an admitted message that was not queued (in memory; [`Limits::save`]
    /// writes it).
    pub fn rollback(&self, admitted: &Admitted) {
        self.with_ledger(&admitted.account, |ledger| {
            let n = admitted.first_time.len() as u32;
            if let Some(i) = ledger.sent.iter().rposition(|e| *e == (admitted.at, n)) {
                ledger.sent.remove(i);
            }
            for r in &admitted.first_time {
                ledger.known.remove(r);
            }
        });
    }

    /// Saves the ledger of an admitted message's account (it is queued now). Writes are
    /// serialized, so concurrent saves never interleave in the temporary file.
    pub fn save(&self, admitted: &Admitted) -> Result<(), String> {
        let _writing = lock(&self.writing);
        let account = &admitted.account;
        let bytes = self.with_ledger(account, |ledger| {
            ipc::codec::encode_unbounded(&*ledger).map_err(|e| e.to_string())
        })?;
        let path = self.path(account);
        crate::store::write_atomic(&path.with_extension("tmp"), &path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rcpts(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn counts_messages_and_first_time_recipients_per_day_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits::open(dir.path(), 3, 2).unwrap();
        let t = 1_000_000;
        let a = limits
            .admit("alice", &rcpts(&["x@a.example", "X@A.example"]), t)
            .unwrap();
        limits.save(&a).unwrap();
        // Known recipients are free; new ones count.
        let a = limits
            .admit("alice", &rcpts(&["x@a.example"]), t + 1)
            .unwrap();
        limits.save(&a).unwrap();
        let over = limits
            .admit("alice", &rcpts(&["y@b.example", "z@c.example"]), t + 2)
            .unwrap_err();
        assert_eq!(
            (over.setting, over.limit),
            ("smtp.max_first_time_recipients_per_day", 2)
        );
        // A message that was not queued after all is taken back.
        let a = limits
            .admit("alice", &rcpts(&["y@b.example"]), t + 2)
            .unwrap();
        limits.rollback(&a);
        let a = limits
            .admit("alice", &rcpts(&["y@b.example"]), t + 2)
            .unwrap();
        limits.save(&a).unwrap();
        let over = limits
            .admit("alice", &rcpts(&["x@a.example"]), t + 3)
            .unwrap_err();
        assert_eq!(over.setting, "smtp.max_messages_per_day");
        assert_eq!(over.retry_after_secs, (DAY - 3) as u64);
        // Another account has its own ledger; a day later the first message has aged out.
        assert!(limits.admit("bob", &rcpts(&["x@a.example"]), t + 3).is_ok());
        let reopened = Limits::open(dir.path(), 3, 2).unwrap();
        assert!(
            reopened
                .admit("alice", &rcpts(&["x@a.example"]), t + 3)
                .is_err(),
            "persisted"
        );
        assert!(
            reopened
                .admit("alice", &rcpts(&["x@a.example"]), t + DAY)
                .is_ok()
        );
    }
}
