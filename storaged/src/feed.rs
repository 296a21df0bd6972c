//! The change feed: watchers (imapd and httpd sessions, per link and account) get each durable
//! change of their account, in modseq order.
//!
//! Changes are written to the `feed` tree by the transaction that makes them. Before each group
//! flush, [`Feed::watermark`] notes every account's committed modseq; after the flush,
//! [`Feed::publish`] announces exactly the records up to that mark, in key (account, modseq)
//! order, and removes them. So nothing is announced before it is durable, and a change that
//! committed during the flush waits for the next one.

use ipc::sync::lock;
use std::collections::HashMap;
use std::sync::Mutex;

use ipc::msg::auth::Ticket;
use ipc::msg::store::{Change, Event, MailboxId, ModSeq, StoreService, Uid};
use ipc::rpc::EventSender;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::db::record::{self, Account, FeedRecord};
use crate::db::{Db, keys};
use crate::error::Result;

/// Events queued for one watcher before it is dropped as too slow (it can catch up with
/// `Changes`).
const QUEUE: usize = 4096;
/// Expunged UIDs per event (a frame holds 64 KiB).
const EVENT_UIDS: usize = 4096;

/// The watchers.
#[derive(Debug, Default)]
pub struct Feed {
    watchers: Mutex<Vec<Watcher>>,
}

#[derive(Debug)]
struct Watcher {
    account: String,
    /// The sessions that asked; the watch ends when the last of them logs out.
    tickets: Vec<Ticket>,
    link: String,
    tx: mpsc::Sender<Event>,
}

impl Feed {
    /// Sends `account`'s changes to `events` (on the link named `link`) until `ticket` is
    /// revoked or the link closes. A second watch of the same account on the same link shares
    /// the first (the link demultiplexes by account itself) and keeps it alive.
    pub fn watch(
        &self,
        account: &str,
        ticket: Ticket,
        events: EventSender<StoreService>,
        link: &str,
    ) {
        let mut watchers = lock(&self.watchers);
        watchers.retain(|w| !w.tx.is_closed());
        if let Some(w) = watchers
            .iter_mut()
            .find(|w| w.account == account && w.link == link)
        {
            if !w.tickets.contains(&ticket) {
                w.tickets.push(ticket);
            }
            return;
        }
        let (tx, mut rx) = mpsc::channel::<Event>(QUEUE);
        tokio::spawn(
            async move {
                while let Some(event) = rx.recv().await {
                    if events.send(&event).await.is_err() {
                        break;
                    }
                }
            }
            .in_current_span(),
        );
        tracing::debug!("watching {account}");
        watchers.push(Watcher {
            account: account.to_string(),
            tickets: vec![ticket],
            link: link.to_string(),
            tx,
        });
    }

    /// Forgets `ticket`'s interest; a watch ends when no session wants it any more.
    pub fn unwatch(&self, ticket: &Ticket) {
        let mut watchers = lock(&self.watchers);
        for w in watchers.iter_mut() {
            w.tickets.retain(|t| t != ticket);
        }
        watchers.retain(|w| !w.tickets.is_empty());
    }

    /// Every account's committed modseq, taken before a flush.
    pub fn watermark(db: &Db) -> Result<HashMap<String, u64>> {
        let mut out = HashMap::new();
        for e in db.accounts.iter() {
            let (k, v) = e?;
            let account: Account = record::decode("accounts", &v)?;
            out.insert(String::from_utf8_lossy(&k).into_owned(), account.modseq);
        }
        Ok(out)
    }

    /// Announces and removes the changes up to `watermark` (now durable).
    pub fn publish(&self, db: &Db, watermark: &HashMap<String, u64>) -> Result<usize> {
        let mut published = Vec::new();
        for e in db.feed.iter() {
            let (key, value) = e?;
            let (account, modseq) = keys::split_feed(&key)?;
            match watermark.get(&account) {
                Some(mark) if modseq <= *mark => {}
                // Not durable yet: later records of this account wait too, and others are
                // independent; keep scanning.
                Some(_) => continue,
                // The account is gone; so is the interest in its changes.
                None => {
                    published.push(key);
                    continue;
                }
            }
            let record: FeedRecord = record::decode("feed", &value)?;
            self.send(&account, modseq, record);
            published.push(key);
        }
        let count = published.len();
        let mut batch = sled::Batch::default();
        for key in published {
            batch.remove(key);
        }
        db.feed.apply_batch(batch)?;
        Ok(count)
    }

    fn send(&self, account: &str, modseq: u64, record: FeedRecord) {
        let changes: Vec<Change> = match record {
            FeedRecord::New { mailbox, uid } => vec![Change::New {
                mailbox: MailboxId(mailbox),
                uid: Uid(uid),
            }],
            FeedRecord::Flags {
                mailbox,
                uid,
                flags,
                keywords,
            } => vec![Change::Flags {
                mailbox: MailboxId(mailbox),
                uid: Uid(uid),
                flags,
                keywords,
            }],
            // Several events for a large expunge, each within a frame.
            FeedRecord::Expunged { mailbox, uids } => uids
                .chunks(EVENT_UIDS)
                .map(|chunk| Change::Expunged {
                    mailbox: MailboxId(mailbox),
                    uids: chunk.iter().copied().map(Uid).collect(),
                })
                .collect(),
        };
        let mut watchers = lock(&self.watchers);
        for change in changes {
            let event = Event::Changed {
                account: account.into(),
                modseq: ModSeq(modseq),
                change,
            };
            watchers.retain(|w| {
                if w.account != account {
                    return true;
                }
                match w.tx.try_send(event.clone()) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::warn!(
                            "dropping the watch of {account} on {}: too far behind",
                            w.link
                        );
                        false
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                }
            });
        }
    }
}
