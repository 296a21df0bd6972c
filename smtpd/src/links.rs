//! The links of one smtpd process, as its grant has them. Both processes run the same code,
//! but only submission has links to authd and queued: the MX process's grant
//! (`ipc::grant::Smtpd`) has no such field, so here it has no [`SubmissionLinks`] at all.

use ipc::msg::{auth::AuthService, key::KeyService, queue::QueueService, store::StoreService};
use ipc::{Client, PeerSlot, grant};

/// The links of this process.
#[derive(Debug, Clone)]
pub struct Links {
    pub keyd: PeerSlot<KeyService>,
    pub storaged: PeerSlot<StoreService>,
    /// Submission only.
    pub submission: Option<SubmissionLinks>,
}

/// The links only submission has: SASL at authd, the outbound queue.
#[derive(Debug, Clone)]
pub struct SubmissionLinks {
    pub authd: PeerSlot<AuthService>,
    pub queued: PeerSlot<QueueService>,
}

impl Links {
    /// The MX process's links: keyd and storaged.
    pub fn mx(peers: grant::SmtpdPeers) -> Links {
        Links {
            keyd: peers.keyd,
            storaged: peers.storaged,
            submission: None,
        }
    }

    /// The submission process's links: all four.
    pub fn submission(peers: grant::SubmissionPeers) -> Links {
        Links {
            keyd: peers.keyd,
            storaged: peers.storaged,
            submission: Some(SubmissionLinks {
                authd: peers.authd,
                queued: peers.queued,
            }),
        }
    }

    /// authd, if this is submission and authd is up.
    pub fn authd(&self) -> Option<Client<AuthService>> {
        self.submission.as_ref()?.authd.current()
    }

    /// queued, if this is submission and queued is up.
    pub fn queued(&self) -> Option<Client<QueueService>> {
        self.submission.as_ref()?.queued.current()
    }
}
