//! Deliveries that arrive through a pipe (on Unix), and the budgets of open deliveries.
//!
//! smtpd writes a message into a pipe while its client sends it; storaged reads the other end
//! as the bytes come and keeps them in memory — or, past a per-delivery cap or a budget shared
//! by all open deliveries, in an anonymous file only storaged holds — until smtpd commits.
//! Compared with a temporary file both processes hold:
//! - nothing smtpd writes once it has committed can reach a stored message (it never held a
//!   descriptor of a file storaged keeps);
//! - an ordinary message is never read back from a file before it is stored, and no file is
//!   created and deleted per message (on an ext4 without a journal every inode allocation
//!   skips the inodes freed in the last minutes, so that churn grows costly under load).
//!
//! The writer ends a delivery by closing its end of the pipe; [`Pump::finish`] waits for that.
//!
//! What one peer link's open deliveries hold together, in memory or in files, is capped
//! ([`Limits::peer`], `[storage] max_open_per_peer`): one compromised or flooding role cannot
//! take all the memory or disk, and the others' deliveries go on. What goes into a file is
//! checked against the free-space floor first.
//!
//! Windows has no pipes between roles (every link is in memory, and a handle that travels is a
//! file): there a delivery is the temporary file an upload gets, measured and filed at the
//! commit, and the pump is Unix only.

use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(unix)]
mod pump;
#[cfg(unix)]
pub use pump::{Limits, MEMORY_PER_DELIVERY, Pump, SpoolError, pipe};

/// Bytes all open deliveries keep in memory together.
pub const MEMORY_BUDGET: u64 = 64 * 1024 * 1024;

/// Bytes several deliveries may hold together (the memory of all open deliveries; what one
/// peer's open deliveries hold).
#[derive(Debug)]
pub struct Budget {
    left: AtomicU64,
    size: u64,
}

impl Budget {
    pub fn new(bytes: u64) -> Arc<Budget> {
        Arc::new(Budget {
            left: AtomicU64::new(bytes),
            size: bytes,
        })
    }

    /// A reservation of nothing yet, to grow.
    pub fn none(self: &Arc<Self>) -> Reservation {
        Reservation {
            budget: self.clone(),
            bytes: 0,
        }
    }

    /// The whole budget.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// What is left (for tests).
    pub fn left(&self) -> u64 {
        self.left.load(Ordering::Acquire)
    }
}

/// Budget held by one delivery, given back when it is dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<Budget>,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.left.fetch_add(self.bytes, Ordering::AcqRel);
    }
}

/// A delivery's bytes once the writer has closed its end.
#[derive(Debug)]
pub enum Spooled {
    /// The whole message in memory (its budget is given back when this is dropped).
    Memory {
        bytes: Vec<u8>,
        _budget: Reservation,
    },
    /// The message in an anonymous file, `len` bytes.
    File(File, u64),
}

impl Spooled {
    pub fn len(&self) -> u64 {
        match self {
            Spooled::Memory { bytes, .. } => bytes.len() as u64,
            Spooled::File(_, len) => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
