#![allow(clippy::unwrap_used)]

//! The identity questions storaged answers from the tickets authd registered: keyd may ask only
//! whether a submission session owns an address, queued only which account a submission
//! session is; a ticket of another role, an expired or an unknown one owns nothing and names
//! no account.

use ipc::config::StoragedConfig;
use ipc::msg::auth::Ticket;
use ipc::msg::store::{self, Refused, StoreService};
use ipc::rpc::Call;
use ipc::rpc::Client;
use ipc::{AdminCall, Context, Link, Role, grant};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const BOB: Ticket = Ticket([1; 16]);
const EVE_IMAP: Ticket = Ticket([2; 16]);
const BOB_EXPIRED: Ticket = Ticket([3; 16]);
const UNKNOWN: Ticket = Ticket([4; 16]);

struct H {
    _dir: tempfile::TempDir,
    links: Vec<(Role, Client<StoreService>)>,
    admin: mpsc::UnboundedSender<AdminCall>,
    _incoming: mpsc::UnboundedSender<(Role, Link)>,
    shutdown: CancellationToken,
}

impl H {
    fn link(&self, role: Role) -> &Client<StoreService> {
        &self.links.iter().find(|(r, _)| *r == role).unwrap().1
    }

    async fn ask<C: Call<Service = StoreService>>(&self, role: Role, request: C) -> C::Answer {
        self.link(role).ask(request).await.unwrap()
    }

    async fn admin(&self, op: store::Admin) {
        let (reply, rx) = oneshot::channel();
        self.admin
            .send(AdminCall {
                request: ipc::msg::control::RoleAdmin::Store(op),
                fds: Vec::new(),
                reply,
            })
            .unwrap();
        rx.await.unwrap().unwrap();
    }

    async fn register(&self, ticket: Ticket, account: &str, role: Role, expires: i64) {
        let r = store::RegisterTicket {
            ticket,
            account: account.into(),
            role,
            expires,
        };
        assert_eq!(self.ask(Role::Authd, r).await, Ok(()));
    }
}

/// storaged with bob (bob@example.org, catch-all of example.net) and eve (eve@example.org),
/// and the tickets above.
async fn start() -> H {
    let dir = tempfile::tempdir().unwrap();
    let (incoming_tx, incoming) = mpsc::unbounded_channel();
    let (admin, admin_rx) = mpsc::unbounded_channel();
    let mut links = Vec::new();
    for role in [Role::Authd, Role::Keyd, Role::Queued, Role::Submission] {
        let (ours, theirs) =
            Link::memory_pair(&format!("{role}→storaged"), &format!("storaged←{role}"));
        incoming_tx.send((role, theirs)).unwrap();
        links.push((role, Client::<StoreService>::new(ours).0));
    }
    let shutdown = CancellationToken::new();
    let ctx = Context::<grant::Storaged> {
        config: StoragedConfig {
            dir: dir.path().to_path_buf(),
            storage: Default::default(),
        },
        listeners: Vec::new(),
        peers: Default::default(),
        incoming,
        admin: admin_rx,
        shutdown: shutdown.clone(),
        tasks: TaskTracker::new(),
        files: Vec::new(),
        reporter: ipc::Reporter::detached(),
    };
    tokio::spawn(storaged::run(ctx));
    let h = H {
        _dir: dir,
        links,
        admin,
        _incoming: incoming_tx,
        shutdown,
    };
    for domain in ["example.org", "example.net"] {
        h.admin(store::Admin::AddDomain {
            domain: domain.into(),
            separator: Some('+'),
        })
        .await;
    }
    for (name, address) in [("bob", "bob@example.org"), ("eve", "eve@example.org")] {
        h.admin(store::Admin::AddAccount {
            name: name.into(),
            address: address.into(),
        })
        .await;
    }
    h.admin(store::Admin::AddAddress {
        address: "@example.net".into(),
        account: "bob".into(),
    })
    .await;
    let later = 4_000_000_000;
    h.register(BOB, "bob", Role::Submission, later).await;
    h.register(EVE_IMAP, "eve", Role::Imapd, later).await;
    h.register(BOB_EXPIRED, "bob", Role::Submission, 1).await;
    h
}

fn owns(ticket: Ticket, address: &str) -> store::SessionOwnsAddress {
    store::SessionOwnsAddress {
        ticket,
        address: address.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyd_learns_whether_a_submission_session_owns_an_address() {
    let h = start().await;
    for (ticket, address, expected) in [
        (BOB, "bob@example.org", true),
        (BOB, "bob+lists@example.org", true),
        (BOB, "anyone@example.net", true),
        (BOB, "eve@example.org", false),
        (BOB, "nobody@example.org", false),
        (BOB, "bob@elsewhere.example", false),
        // Only tickets issued to submission: eve's IMAP session signs nothing.
        (EVE_IMAP, "eve@example.org", false),
        (BOB_EXPIRED, "bob@example.org", false),
        (UNKNOWN, "bob@example.org", false),
    ] {
        assert_eq!(
            h.ask(Role::Keyd, owns(ticket, address)).await,
            Ok(expected),
            "{address}"
        );
    }
    h.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_learns_the_account_of_a_live_submission_session_only() {
    let h = start().await;
    let account = |ticket| store::SubmissionAccount { ticket };
    assert_eq!(
        h.ask(Role::Queued, account(BOB)).await,
        Ok(Some("bob".into()))
    );
    for ticket in [EVE_IMAP, BOB_EXPIRED, UNKNOWN] {
        assert_eq!(h.ask(Role::Queued, account(ticket)).await, Ok(None));
    }
    h.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_question_is_answered_on_its_own_link_only() {
    let h = start().await;
    fn refused<T>(r: Result<T, Refused>) -> bool {
        matches!(r, Err(Refused::Failed(f)) if !f.temporary)
    }
    // keyd asks one question and no other: not even where mail may go.
    let recipient = store::CheckRecipient {
        address: "bob@example.org".into(),
    };
    assert!(refused(h.ask(Role::Keyd, recipient).await));
    assert!(refused(
        h.ask(Role::Keyd, store::SubmissionAccount { ticket: BOB })
            .await
    ));
    assert!(refused(h.ask(Role::Keyd, store::OpenDelivery {}).await));
    // Nobody else may ask keyd's question, submission least of all.
    for role in [Role::Submission, Role::Queued, Role::Authd] {
        assert!(refused(h.ask(role, owns(BOB, "bob@example.org")).await));
    }
    for role in [Role::Submission, Role::Keyd, Role::Authd] {
        assert!(refused(
            h.ask(role, store::SubmissionAccount { ticket: BOB }).await
        ));
    }
    h.shutdown.cancel();
}
