//! `serve::accept_links`, the loop every serving role runs over the links its peers open: a
//! peer that sends a broken frame loses that link at once, for both sides, even while the role
//! still holds the link for pushing events, and the supervisor is told who broke it; the role
//! goes on serving its other links.

use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipc::Reporter;
use ipc::Role;
use ipc::codec;
use ipc::frame::{Header, Kind};
use ipc::msg::auth::{AuthService, Mechanisms, Request};
use ipc::msg::control::{self, ControlService};
use ipc::rpc::{Call, Client, EventSender, Incoming, Server};
use ipc::transport::{Link, socket_pair};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

type Subscribers = Arc<Mutex<Vec<EventSender<AuthService>>>>;

/// Answers `Mechanisms` and, like keyd's certificate subscriptions or storaged's change feed,
/// keeps the link's event sender.
async fn answer(subscribers: Subscribers, incoming: Incoming<AuthService>) {
    subscribers
        .lock()
        .expect("lock")
        .push(incoming.reply.events());
    let answer = Mechanisms::reply(&Ok(vec!["PLAIN".into()]), Vec::new());
    incoming.reply.send(answer).await.expect("reply");
}

/// Sends one raw datagram on `raw` and waits (blocking, off the runtime) for what comes back:
/// `Some(bytes)` for a datagram, `None` for end of file.
async fn exchange(raw: &Arc<std::os::fd::OwnedFd>, datagram: Vec<u8>) -> Option<Vec<u8>> {
    let raw = raw.clone();
    tokio::task::spawn_blocking(move || {
        sandbox::fdpass::send(raw.as_fd(), &datagram, &[]).expect("send");
        let mut poll = [nix::poll::PollFd::new(
            raw.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let ready =
            nix::poll::poll(&mut poll, nix::poll::PollTimeout::from(5000u16)).expect("poll");
        assert_eq!(ready, 1, "neither an answer nor end of file within 5 s");
        let mut buf = vec![0u8; ipc::frame::MAX_FRAME];
        let got = sandbox::fdpass::recv(raw.as_fd(), &mut buf).expect("recv");
        (got.len > 0).then(|| buf[..got.len].to_vec())
    })
    .await
    .expect("join")
}

fn mechanisms_request(id: u64) -> Vec<u8> {
    let payload = codec::encode(&Request::from(Mechanisms {
        channel_binding: false,
    }))
    .expect("encode");
    Header::encode(Kind::Request, id, 0, &payload).expect("frame")
}

/// Both ends of a control channel: the role's (serving it, reporting on it) and the
/// supervisor's (calling it, hearing its events). Both must be kept for the channel to stay open.
type Control = (
    (Server<ControlService>, Reporter),
    (
        Client<ControlService>,
        mpsc::UnboundedReceiver<control::Event>,
    ),
);

fn control_channel() -> Control {
    let (role_end, supervisor_end) = Link::memory_pair("role→supervisor", "supervisor→role");
    let server = Server::<ControlService>::new(role_end);
    let reporter = Reporter::new(server.events());
    (
        (server, reporter),
        Client::<ControlService>::new(supervisor_end),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_frame_closes_that_link_at_once_and_the_others_keep_working() {
    let (incoming_tx, incoming) = mpsc::unbounded_channel();
    let subscribers = Subscribers::default();
    let shutdown = CancellationToken::new();
    let handler_subscribers = subscribers.clone();
    let ((_role, reporter), (_supervisor, mut reports)) = control_channel();
    tokio::spawn(ipc::serve::accept_links::<AuthService, _, _, _>(
        incoming,
        shutdown.clone(),
        TaskTracker::new(),
        reporter,
        move |_peer, incoming| answer(handler_subscribers.clone(), incoming),
        |_| {},
    ));
    let mut raws = Vec::new();
    for peer in [Role::Imapd, Role::Httpd] {
        let (raw, served) = socket_pair().expect("socketpair");
        incoming_tx
            .send((peer, Link::from_fd(served, peer.name()).expect("link")))
            .expect("send link");
        raws.push(Arc::new(raw));
    }
    let (hostile, other) = (&raws[0], &raws[1]);
    assert!(exchange(hostile, mechanisms_request(1)).await.is_some());
    // A response sent by a client: the link is broken. Its event sender is still held.
    let broken = Header::encode(Kind::Response, 2, 0, b"").expect("frame");
    assert_eq!(
        exchange(hostile, broken).await,
        None,
        "the hostile link reads end of file"
    );
    let answer = exchange(other, mechanisms_request(1))
        .await
        .expect("answer");
    let (header, payload) = Header::decode(&answer, 0).expect("header");
    assert_eq!((header.kind, header.id), (Kind::Response, 1));
    assert_eq!(
        codec::decode::<<Mechanisms as Call>::Answer>(payload).expect("decode"),
        Ok(vec!["PLAIN".to_string()])
    );
    assert_eq!(subscribers.lock().expect("lock").len(), 2);
    // The supervisor hears who broke its link and how.
    let report = tokio::time::timeout(Duration::from_secs(5), reports.recv())
        .await
        .expect("a report within 5 s")
        .expect("the control channel is open");
    match report {
        control::Event::BrokenLink { peer, reason } => {
            assert_eq!(peer, Role::Imapd);
            assert!(reason.contains("Response"), "{reason}");
        }
    }
    // A peer closing its own end (here: an empty datagram, which reads the same) is not
    // reported: it costs nobody but itself.
    assert_eq!(exchange(other, Vec::new()).await, None);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(reports.try_recv().is_err(), "an orderly close was reported");
    shutdown.cancel();
}
