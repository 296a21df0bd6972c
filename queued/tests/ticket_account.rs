#![allow(clippy::unwrap_used)]

//! queued counts a submitted message against the sending limits of the account storaged names
//! for the submission's session ticket: the submitter cannot name an account, so it can
//! neither spend another account's limits nor dodge its own; a ticket storaged does not know
//! is refused for now (temporary), never guessed at.

use std::io::Write;

use ipc::grant::QueuedPeers;
use ipc::msg::auth::Ticket;
use ipc::msg::queue::{self, QueueService, SubmittedEnvelope};
use ipc::msg::store::{self, StoreService};
use ipc::rpc::Call;
use ipc::rpc::{Client, Incoming};
use ipc::{Link, PeerLinks, Role};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const ALICE: Ticket = Ticket([1; 16]);
const BOB: Ticket = Ticket([2; 16]);
const FORGED: Ticket = Ticket([3; 16]);

/// Names the account of a ticket as storaged does for the sessions authd registered.
fn storaged_stand_in() -> QueuedPeers {
    let (ours, theirs) = Link::memory_pair("queued→storaged", "storaged←queued");
    let (incoming_tx, incoming) = tokio::sync::mpsc::unbounded_channel();
    incoming_tx.send((Role::Queued, theirs)).unwrap();
    std::mem::forget(incoming_tx);
    tokio::spawn(ipc::serve::accept_links::<StoreService, _, _, _>(
        incoming,
        CancellationToken::new(),
        TaskTracker::new(),
        ipc::Reporter::detached(),
        |_peer, incoming: Incoming<StoreService>| async move {
            let answer = match incoming.request {
                store::Request::SubmissionAccount(store::SubmissionAccount { ticket }) => {
                    let account = [(ALICE, "alice"), (BOB, "bob")]
                        .into_iter()
                        .find(|(t, _)| *t == ticket)
                        .map(|(_, a)| store::AccountId::from(a));
                    store::SubmissionAccount::reply(&Ok(account), Vec::new())
                }
                other => panic!("queued asked storaged {other:?}"),
            };
            incoming.reply.send(answer).await.unwrap();
        },
        |_| {},
    ));
    let peers = QueuedPeers::default();
    peers.connect(Role::Storaged, ours).unwrap();
    peers
}

/// queued with a limit of one message a day per account, and submission's link to it.
fn queued(dir: &std::path::Path) -> Client<QueueService> {
    let queue = queued::store::Queue::open(dir).unwrap();
    let limits = queued::limits::Limits::open(dir, 1, 100).unwrap();
    let space = ipc::space::FreeSpace::open(dir, ipc::config::MinFree::Bytes(0)).unwrap();
    let service = queued::service::Queued::new(
        queue,
        limits,
        space,
        u64::MAX,
        u64::MAX,
        storaged_stand_in().storaged,
    );
    let (ours, theirs) = Link::memory_pair("submission→queued", "queued←submission");
    let (incoming_tx, incoming) = tokio::sync::mpsc::unbounded_channel();
    incoming_tx.send((Role::Submission, theirs)).unwrap();
    std::mem::forget(incoming_tx);
    tokio::spawn(ipc::serve::accept_links::<QueueService, _, _, _>(
        incoming,
        CancellationToken::new(),
        TaskTracker::new(),
        ipc::Reporter::detached(),
        move |peer, incoming| service.clone().handle(peer, incoming),
        |_| {},
    ));
    Client::new(ours).0
}

/// Writes a message into a temporary file of queued and enqueues it for `ticket`.
async fn submit(
    queued: &Client<QueueService>,
    ticket: Ticket,
) -> Result<queue::QueueId, queue::Refused> {
    let (response, mut fds) = queued
        .call(queue::OpenMessage {}, Vec::new())
        .await
        .unwrap();
    let Ok(file) = response else {
        panic!("{response:?}");
    };
    let mut f = std::fs::File::from(fds.pop().unwrap());
    f.write_all(b"From: alice@example.org\r\n\r\nhi\r\n")
        .unwrap();
    let request = queue::Enqueue {
        file,
        ticket,
        envelope: SubmittedEnvelope {
            from: "alice@example.org".into(),
            recipients: vec!["carol@example.net".into()],
            smtputf8: false,
            eight_bit: false,
            requiretls: false,
        },
        prepend: Vec::new(),
        held: false,
    };
    queued.ask(request).await.unwrap()
}

#[tokio::test]
async fn messages_count_against_the_account_of_the_session_ticket() {
    let dir = tempfile::tempdir().unwrap();
    let queued = queued(dir.path());
    let first = submit(&queued, ALICE).await;
    assert!(first.is_ok(), "{first:?}");
    // alice's one message a day is spent, whatever the envelope says of the sender.
    let over = submit(&queued, ALICE).await;
    assert!(
        matches!(&over, Err(queue::Refused::OverLimit { setting, .. }) if setting == "smtp.max_messages_per_day"),
        "{over:?}"
    );
    // bob's limits are his own: alice's message did not spend them.
    let bobs = submit(&queued, BOB).await;
    assert!(bobs.is_ok(), "{bobs:?}");
    let listed = queued::store::Queue::open(dir.path())
        .unwrap()
        .list()
        .unwrap();
    let mut accounts: Vec<&str> = listed.iter().map(|e| e.envelope.account.as_str()).collect();
    accounts.sort();
    assert_eq!(accounts, ["alice", "bob"]);
}

#[tokio::test]
async fn a_ticket_storaged_does_not_know_is_refused_for_now() {
    let dir = tempfile::tempdir().unwrap();
    let queued = queued(dir.path());
    let refused = submit(&queued, FORGED).await;
    assert!(
        matches!(&refused, Err(queue::Refused::Failed { temporary: true, message }) if message.contains("ticket")),
        "{refused:?}"
    );
    assert!(
        queued::store::Queue::open(dir.path())
            .unwrap()
            .list()
            .unwrap()
            .is_empty()
    );
}
