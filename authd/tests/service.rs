#![allow(clippy::unwrap_used)]

//! authd over IPC, as smtpd sees it: a link to authd's service, and a fake storaged on authd's
//! own link that resolves logins and records the tickets it is given.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use ipc::config::{AuthSettings, AuthdConfig};
use ipc::msg::auth::{self, AuthService, Failure, Progress};
use ipc::msg::store::{self, StoreService};
use ipc::rpc::{Call, Client, Server};
use ipc::{Context, Link, PeerLinks, Role, grant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

struct Harness {
    _dir: tempfile::TempDir,
    auth: Client<AuthService>,
    tickets: Arc<Mutex<Vec<(String, Role)>>>,
    shutdown: CancellationToken,
    admin: mpsc::UnboundedSender<ipc::AdminCall>,
    _incoming: mpsc::UnboundedSender<(Role, Link)>,
}

async fn start() -> Harness {
    start_with(AuthSettings::default()).await
}

async fn start_with(auth: AuthSettings) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut creds = authd::store::CredentialStore::open(dir.path()).unwrap();
        creds.set_password("bob", "correct horse").unwrap();
    }
    // A fake storaged: knows bob and bob@example.org, records tickets.
    let tickets = Arc::new(Mutex::new(Vec::new()));
    let (authd_side, storaged_side) = Link::memory_pair("authd→storaged", "storaged←authd");
    let peers = grant::AuthdPeers::default();
    peers.connect(Role::Storaged, authd_side).unwrap();
    let recorded = tickets.clone();
    tokio::spawn(async move {
        let mut server = Server::<StoreService>::new(storaged_side);
        while let Ok(Some(incoming)) = server.next().await {
            let answer = match incoming.request {
                store::Request::ResolveLogin(store::ResolveLogin { username }) => {
                    let known = matches!(username.as_str(), "bob" | "bob@example.org");
                    let account = known.then(|| store::AccountId::from("bob"));
                    store::ResolveLogin::reply(&Ok(account), Vec::new())
                }
                store::Request::RegisterTicket(store::RegisterTicket { account, role, .. }) => {
                    recorded.lock().unwrap().push((account.into_string(), role));
                    store::RegisterTicket::reply(&Ok(()), Vec::new())
                }
                store::Request::RevokeAccountTickets(store::RevokeAccountTickets { account }) => {
                    // Recorded as the account with the supervisor's "role" as a marker.
                    recorded
                        .lock()
                        .unwrap()
                        .push((account.into_string(), Role::Keyd));
                    store::RevokeAccountTickets::reply(&Ok(()), Vec::new())
                }
                store::Request::RevokeTicket(_) => store::RevokeTicket::reply(&Ok(()), Vec::new()),
                other => other.refuse(store::Refused::permanent("not in this test")),
            };
            incoming.reply.send(answer).await.unwrap();
        }
    });
    let (incoming_tx, incoming) = mpsc::unbounded_channel();
    let (admin_tx, admin) = mpsc::unbounded_channel();
    let (smtpd_side, authd_side) = Link::memory_pair("smtpd→authd", "authd←smtpd");
    incoming_tx.send((Role::Submission, authd_side)).unwrap();
    let shutdown = CancellationToken::new();
    let ctx = Context::<grant::Authd> {
        config: AuthdConfig {
            hostname: "mx.example.org".into(),
            dir: dir.path().to_path_buf(),
            auth,
        },
        listeners: Vec::new(),
        peers,
        incoming,
        admin,
        shutdown: shutdown.clone(),
        tasks: TaskTracker::new(),
        files: Vec::new(),
        reporter: ipc::Reporter::detached(),
    };
    tokio::spawn(authd::run(ctx));
    let (auth, _events) = Client::<AuthService>::new(smtpd_side);
    Harness {
        _dir: dir,
        auth,
        tickets,
        shutdown,
        admin: admin_tx,
        _incoming: incoming_tx,
    }
}

const REMOTE: &str = "192.0.2.7";

async fn call<C: Call<Service = AuthService>>(h: &Harness, r: C) -> C::Answer {
    h.auth.ask(r).await.unwrap()
}

fn start_plain(authcid: &str, password: &str) -> auth::Start {
    auth::Start {
        mechanism: "PLAIN".into(),
        initial_response: Some(format!("\0{authcid}\0{password}").into_bytes().into()),
        channel_binding: None,
        remote: REMOTE.parse::<IpAddr>().unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_login_by_account_and_by_address_issues_registered_tickets() {
    let h = start().await;
    for user in ["bob", "bob@example.org"] {
        match call(&h, start_plain(user, "correct horse")).await {
            Ok(Progress::Success {
                account,
                additional,
                ..
            }) => {
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
        Err(Failure::Credentials)
    );
    assert_eq!(
        call(&h, start_plain("nobody", "x")).await,
        Err(Failure::Credentials)
    );
    assert!(h.tickets.lock().unwrap().is_empty());
    h.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_takes_two_steps_and_unknown_exchanges_are_refused() {
    let h = start().await;
    let start = auth::Start {
        mechanism: "LOGIN".into(),
        initial_response: None,
        channel_binding: None,
        remote: REMOTE.parse::<IpAddr>().unwrap(),
    };
    let Ok(Progress::Continue {
        exchange,
        challenge,
    }) = call(&h, start).await
    else {
        panic!("no challenge")
    };
    assert_eq!(challenge, b"Username:");
    let Ok(Progress::Continue {
        exchange: same,
        challenge,
    }) = call(
        &h,
        auth::Step {
            exchange,
            response: b"bob".to_vec().into(),
        },
    )
    .await
    else {
        panic!("no second challenge")
    };
    assert_eq!((same, challenge.as_slice()), (exchange, &b"Password:"[..]));
    let done = call(
        &h,
        auth::Step {
            exchange,
            response: b"correct horse".to_vec().into(),
        },
    )
    .await;
    assert!(
        matches!(done, Ok(Progress::Success { ref account, .. }) if account == "bob"),
        "{done:?}"
    );
    // The exchange is over; stepping it again, or a made-up one, is refused.
    for id in [exchange, 999] {
        let r = call(
            &h,
            auth::Step {
                exchange: id,
                response: b"x".to_vec().into(),
            },
        )
        .await;
        assert!(matches!(r, Err(Failure::Malformed(_))), "{r:?}");
    }
    h.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advertises_plus_mechanisms_only_with_channel_binding_and_rejects_unknown_ones() {
    let h = start().await;
    let Ok(with) = call(
        &h,
        auth::Mechanisms {
            channel_binding: true,
        },
    )
    .await
    else {
        panic!()
    };
    let Ok(without) = call(
        &h,
        auth::Mechanisms {
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
        auth::Start {
            mechanism: "GSSAPI".into(),
            initial_response: None,
            channel_binding: None,
            remote: REMOTE.parse::<IpAddr>().unwrap(),
        },
    )
    .await;
    assert!(matches!(r, Err(Failure::Malformed(_))), "{r:?}");
    h.shutdown.cancel();
}

/// Limits low enough that no delay (it starts after three recent failures) slows the tests.
fn low_limits() -> AuthSettings {
    AuthSettings {
        account_failures_per_minute: 3,
        link_failures_per_minute: 6,
        ..AuthSettings::default()
    }
}

fn plain_from(authcid: &str, password: &str, remote: [u8; 4]) -> auth::Start {
    auth::Start {
        mechanism: "PLAIN".into(),
        initial_response: Some(format!("\0{authcid}\0{password}").into_bytes().into()),
        channel_binding: None,
        remote: IpAddr::from(remote),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_one_account_by_name_and_address_from_many_networks_is_refused_like_a_wrong_password()
 {
    let h = start_with(low_limits()).await;
    // Three guesses from three /24s, by account name and by address: all count for bob.
    for (i, name) in ["bob", "bob@example.org", "BOB"].into_iter().enumerate() {
        assert_eq!(
            call(&h, plain_from(name, "wrong", [10, i as u8, 0, 1])).await,
            Err(Failure::Credentials),
            "guess {i}"
        );
    }
    // The right password, from yet another network: the account is over its limit, and the
    // answer is the one a wrong password gets.
    for name in ["bob", "bob@example.org"] {
        assert_eq!(
            call(&h, plain_from(name, "correct horse", [198, 51, 100, 9])).await,
            Err(Failure::Credentials),
            "{name}"
        );
    }
    assert!(h.tickets.lock().unwrap().is_empty(), "no ticket was issued");
    h.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_login_exchange_asks_every_question_before_failing() {
    let h = start_with(low_limits()).await;
    for i in 0..3 {
        assert_eq!(
            call(&h, plain_from("bob", "wrong", [10, i, 0, 1])).await,
            Err(Failure::Credentials)
        );
    }
    let start = auth::Start {
        mechanism: "LOGIN".into(),
        initial_response: None,
        channel_binding: None,
        remote: IpAddr::from([198, 51, 100, 9]),
    };
    let Ok(Progress::Continue {
        exchange,
        challenge,
    }) = call(&h, start).await
    else {
        panic!("no challenge")
    };
    assert_eq!(challenge, b"Username:");
    let step = |response: &[u8]| auth::Step {
        exchange,
        response: response.to_vec().into(),
    };
    assert_eq!(
        call(&h, step(b"bob")).await,
        Ok(Progress::Continue {
            exchange,
            challenge: b"Password:".to_vec()
        })
    );
    assert_eq!(
        call(&h, step(b"correct horse")).await,
        Err(Failure::Credentials)
    );
    assert!(h.tickets.lock().unwrap().is_empty());
    h.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_that_invents_an_address_per_guess_runs_out_of_its_budget() {
    let h = start_with(low_limits()).await;
    // A compromised network role sprays names (known and unknown) from invented addresses in
    // different networks: no host and no account reaches its limit, the link does.
    for i in 0..6u8 {
        let name = ["alice", "carol", "bob", "dave", "erin", "frank"][usize::from(i)];
        assert_eq!(
            call(&h, plain_from(name, "guess", [10, i, 0, 1])).await,
            Err(Failure::Credentials)
        );
    }
    assert_eq!(
        call(&h, plain_from("bob", "correct horse", [172, 16, 0, 1])).await,
        Err(Failure::Credentials),
        "the link is out of its budget, whatever address it claims"
    );
    assert!(h.tickets.lock().unwrap().is_empty());
    h.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_the_limits_the_right_password_still_works_after_failures() {
    let h = start_with(low_limits()).await;
    for i in 0..2 {
        assert_eq!(
            call(&h, plain_from("bob@example.org", "wrong", [10, i, 0, 1])).await,
            Err(Failure::Credentials)
        );
    }
    assert!(matches!(
        call(&h, plain_from("bob", "correct horse", [10, 9, 0, 1])).await,
        Ok(Progress::Success { .. })
    ));
    h.shutdown.cancel();
}

async fn admin(
    h: &Harness,
    op: ipc::msg::auth::Admin,
    password: Option<&str>,
) -> Result<(), String> {
    let mut fds = Vec::new();
    if let Some(password) = password {
        let (reader, mut writer) = std::io::pipe().unwrap();
        std::io::Write::write_all(&mut writer, password.as_bytes()).unwrap();
        drop(writer);
        fds.push(std::os::fd::OwnedFd::from(reader));
    }
    let (reply, rx) = tokio::sync::oneshot::channel();
    h.admin
        .send(ipc::AdminCall {
            request: ipc::msg::control::RoleAdmin::Auth(op),
            fds,
            reply,
        })
        .unwrap();
    rx.await.unwrap().map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_password_or_removed_credentials_revoke_the_accounts_tickets() {
    let h = start().await;
    assert!(matches!(
        call(&h, start_plain("bob", "correct horse")).await,
        Ok(Progress::Success { .. })
    ));
    let set = ipc::msg::auth::Admin::SetPassword {
        account: "bob".into(),
    };
    admin(&h, set, Some("battery staple\n")).await.unwrap();
    let revoked = ("bob".to_string(), Role::Keyd);
    assert_eq!(
        *h.tickets.lock().unwrap(),
        [("bob".to_string(), Role::Submission), revoked.clone()],
        "storaged was told to end bob's sessions"
    );
    // The old password no longer works; the new one does.
    assert_eq!(
        call(&h, start_plain("bob", "correct horse")).await,
        Err(Failure::Credentials)
    );
    assert!(matches!(
        call(&h, start_plain("bob", "battery staple")).await,
        Ok(Progress::Success { .. })
    ));
    let remove = ipc::msg::auth::Admin::RemoveCredentials {
        account: "bob".into(),
    };
    admin(&h, remove, None).await.unwrap();
    assert_eq!(h.tickets.lock().unwrap().last(), Some(&revoked));
    h.shutdown.cancel();
}
