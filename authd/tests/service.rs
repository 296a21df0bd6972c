#![allow(clippy::unwrap_used)]

//! authd over IPC, as smtpd sees it: a link to authd's service, and a fake storaged on authd's
//! own link that resolves logins and records the tickets it is given.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use ipc::config::RoleConfig;
use ipc::msg::auth::{AuthService, Failure, Request, Response};
use ipc::msg::store::{self, StoreService};
use ipc::rpc::{Client, Server};
use ipc::{Context, Link, Peers, Role};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

struct Harness {
    _dir: tempfile::TempDir,
    auth: Client<AuthService>,
    tickets: Arc<Mutex<Vec<(String, Role)>>>,
    shutdown: CancellationToken,
    _admin: mpsc::UnboundedSender<ipc::AdminCall>,
    _incoming: mpsc::UnboundedSender<(Role, Link)>,
}

async fn start() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut creds = authd::store::CredentialStore::open(dir.path()).unwrap();
        creds.set_password("bob", "correct horse").unwrap();
    }
    // A fake storaged: knows bob and bob@example.org, records tickets.
    let tickets = Arc::new(Mutex::new(Vec::new()));
    let (authd_side, storaged_side) = Link::memory_pair("authd→storaged", "storaged←authd");
    let peers = Peers::default();
    peers.connect(Role::Storaged, authd_side).unwrap();
    let recorded = tickets.clone();
    tokio::spawn(async move {
        let mut server = Server::<StoreService>::new(storaged_side);
        while let Ok(Some(incoming)) = server.next().await {
            let response = match incoming.request {
                store::Request::ResolveLogin { username } => store::Response::Login(
                    matches!(username.as_str(), "bob" | "bob@example.org")
                        .then(|| "bob".to_string()),
                ),
                store::Request::RegisterTicket { account, role, .. } => {
                    recorded.lock().unwrap().push((account, role));
                    store::Response::Done
                }
                _ => store::Response::Done,
            };
            incoming.reply.send(&response, Vec::new()).await.unwrap();
        }
    });
    let (incoming_tx, incoming) = mpsc::unbounded_channel();
    let (admin_tx, admin) = mpsc::unbounded_channel();
    let (smtpd_side, authd_side) = Link::memory_pair("smtpd→authd", "authd←smtpd");
    incoming_tx.send((Role::Submission, authd_side)).unwrap();
    let shutdown = CancellationToken::new();
    let ctx = Context {
        role: Role::Authd,
        config: RoleConfig {
            hostname: "mx.example.org".into(),
            dir: Some(dir.path().to_path_buf()),
            worker_threads: 2,
            fail_at_start: false,
            certificates: Vec::new(),
            smtp: Default::default(),
            auth: Default::default(),
            dns: Vec::new(),
            dkim: Default::default(),
        },
        listeners: Vec::new(),
        peers,
        incoming,
        admin,
        shutdown: shutdown.clone(),
        tasks: TaskTracker::new(),
        files: Vec::new(),
    };
    tokio::spawn(authd::run(ctx));
    let (auth, _events) = Client::<AuthService>::new(smtpd_side);
    Harness {
        _dir: dir,
        auth,
        tickets,
        shutdown,
        _admin: admin_tx,
        _incoming: incoming_tx,
    }
}

const REMOTE: &str = "192.0.2.7";

async fn call(h: &Harness, r: Request) -> Response {
    h.auth.call(&r, Vec::new()).await.unwrap().0
}

fn start_plain(authcid: &str, password: &str) -> Request {
    Request::Start {
        mechanism: "PLAIN".into(),
        initial_response: Some(format!("\0{authcid}\0{password}").into_bytes()),
        channel_binding: None,
        remote: REMOTE.parse::<IpAddr>().unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_login_by_account_and_by_address_issues_registered_tickets() {
    let h = start().await;
    for user in ["bob", "bob@example.org"] {
        match call(&h, start_plain(user, "correct horse")).await {
            Response::Success {
                account,
                additional,
                ..
            } => {
                assert_eq!(account, "bob");
                assert_eq!(additional, None);
            }
            other => panic!("{user}: {other:?}"),
        }
    }
    assert_eq!(
        *h.tickets.lock().unwrap(),
        [
            ("bob".to_string(), Role::Submission),
            ("bob".to_string(), Role::Submission)
        ],
        "each ticket is registered at storaged for the role that asked"
    );
    h.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_user_fail_alike() {
    let h = start().await;
    assert_eq!(
        call(&h, start_plain("bob", "wrong")).await,
        Response::Failure(Failure::Credentials)
    );
    assert_eq!(
        call(&h, start_plain("nobody", "x")).await,
        Response::Failure(Failure::Credentials)
    );
    assert!(h.tickets.lock().unwrap().is_empty());
    h.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_takes_two_steps_and_unknown_exchanges_are_refused() {
    let h = start().await;
    let start = Request::Start {
        mechanism: "LOGIN".into(),
        initial_response: None,
        channel_binding: None,
        remote: REMOTE.parse::<IpAddr>().unwrap(),
    };
    let Response::Continue {
        exchange,
        challenge,
    } = call(&h, start).await
    else {
        panic!("no challenge")
    };
    assert_eq!(challenge, b"Username:");
    let Response::Continue {
        exchange: same,
        challenge,
    } = call(
        &h,
        Request::Step {
            exchange,
            response: b"bob".to_vec(),
        },
    )
    .await
    else {
        panic!("no second challenge")
    };
    assert_eq!((same, challenge.as_slice()), (exchange, &b"Password:"[..]));
    let done = call(
        &h,
        Request::Step {
            exchange,
            response: b"correct horse".to_vec(),
        },
    )
    .await;
    assert!(
        matches!(done, Response::Success { ref account, .. } if account == "bob"),
        "{done:?}"
    );
    // The exchange is over; stepping it again, or a made-up one, is refused.
    for id in [exchange, 999] {
        let r = call(
            &h,
            Request::Step {
                exchange: id,
                response: b"x".to_vec(),
            },
        )
        .await;
        assert!(
            matches!(r, Response::Failure(Failure::Malformed(_))),
            "{r:?}"
        );
    }
    h.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advertises_plus_mechanisms_only_with_channel_binding_and_rejects_unknown_ones() {
    let h = start().await;
    let Response::Mechanisms(with) = call(
        &h,
        Request::Mechanisms {
            channel_binding: true,
        },
    )
    .await
    else {
        panic!()
    };
    let Response::Mechanisms(without) = call(
        &h,
        Request::Mechanisms {
            channel_binding: false,
        },
    )
    .await
    else {
        panic!()
    };
    assert!(with.iter().any(|m| m == "SCRAM-SHA-256-PLUS"), "{with:?}");
    assert!(!without.iter().any(|m| m.ends_with("-PLUS")), "{without:?}");
    assert!(without.iter().any(|m| m == "PLAIN"));
    let r = call(
        &h,
        Request::Start {
            mechanism: "GSSAPI".into(),
            initial_response: None,
            channel_binding: None,
            remote: REMOTE.parse::<IpAddr>().unwrap(),
        },
    )
    .await;
    assert!(
        matches!(r, Response::Failure(Failure::Malformed(_))),
        "{r:?}"
    );
    h.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_one_account_from_many_addresses_throttles_the_account() {
    let h = start().await;
    let from = |i: u32| Request::Start {
        mechanism: "PLAIN".into(),
        initial_response: Some(b"\0bob\0wrong".to_vec()),
        channel_binding: None,
        remote: IpAddr::from([10, (i % 250) as u8, (i / 250) as u8, 1]),
    };
    for i in 0..authd::throttle::Limits::default().account_failures_per_minute {
        assert_eq!(
            call(&h, from(i)).await,
            Response::Failure(Failure::Credentials),
            "attempt {i}"
        );
    }
    // The right password, from yet another address: the account is over its limit, so the
    // answer reveals nothing.
    let right = Request::Start {
        mechanism: "PLAIN".into(),
        initial_response: Some(b"\0bob\0correct horse".to_vec()),
        channel_binding: None,
        remote: "198.51.100.9".parse::<IpAddr>().unwrap(),
    };
    let r = call(&h, right).await;
    assert!(
        matches!(r, Response::Failure(Failure::Throttled { .. })),
        "{r:?}"
    );
    assert!(h.tickets.lock().unwrap().is_empty());
    h.shutdown.cancel();
}
