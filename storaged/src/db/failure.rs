//! The database's failure latch: set by the first flush that fails, or by the first write that
//! finds sled's log unwritable, and never cleared in this process.
//!
//! Why never: after a failed `fdatasync` the kernel may have dropped the pages it could not
//! write, so a later sync that succeeds proves nothing (PostgreSQL panics on an fsync error for
//! the same reason); and once sled fails to write its log (ENOSPC, EIO) it keeps that error and
//! refuses every later write. What recovers is a new process: sled rebuilds its state from the
//! log, which holds everything a successful flush made durable — every delivery that was
//! acknowledged. So storaged answers what is waiting with a temporary failure and exits, and the
//! supervisor starts it again (see `crate::run`).

use std::sync::OnceLock;

use tokio_util::sync::CancellationToken;

/// Set once, by the first failure; watched by storaged's main task.
#[derive(Debug, Default)]
pub struct Failure {
    why: OnceLock<String>,
    tripped: CancellationToken,
}

impl Failure {
    /// Records that the database failed (`why`); later calls keep the first reason.
    pub fn trip(&self, why: &str) {
        if self.why.set(why.to_string()).is_ok() {
            tracing::error!(
                "the database failed: {why}; nothing more can be made durable in this process"
            );
        }
        self.tripped.cancel();
    }

    /// The reason, once the database failed.
    pub fn why(&self) -> Option<&str> {
        self.why.get().map(String::as_str)
    }

    /// Waits until the database has failed; returns the reason.
    pub async fn tripped(&self) -> String {
        self.tripped.cancelled().await;
        self.why().unwrap_or("unknown").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::Failure;

    #[tokio::test]
    async fn keeps_the_first_reason_and_wakes_the_watcher() {
        let failure = std::sync::Arc::new(Failure::default());
        assert_eq!(failure.why(), None);
        let watcher = tokio::spawn({
            let failure = failure.clone();
            async move { failure.tripped().await }
        });
        failure.trip("No space left on device");
        failure.trip("something later");
        assert_eq!(watcher.await.unwrap(), "No space left on device");
        assert_eq!(failure.why(), Some("No space left on device"));
    }
}
