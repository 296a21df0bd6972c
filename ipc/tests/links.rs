//! Links, typed channels and rpc over both transports: the `SOCK_SEQPACKET` socketpair used
//! between processes and the in-memory queues used when roles are tasks of one process.
//!
//! Malformed datagrams can only be produced on a socket (the memory transport carries what
//! `LinkSender` builds, which always has a well-formed header), so those tests write raw datagrams
//! with `sandbox::fdpass::send` on one end of a socketpair. Frames that are well formed but wrong
//! for the receiver (an undecodable payload, a kind the receiver does not take) are tested on both.

use std::collections::HashSet;
use std::fs::File;
use std::future::Future;
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use ipc::Channel;
use ipc::codec::{self, CodecError};
use ipc::frame::{FrameError, HEADER_LEN, Header, Kind, MAX_FRAME};
use ipc::rpc::{Call, Client, Incoming, Server, Service};
use ipc::transport::{ChannelError, Link, socket_pair};
use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

// ---------------------------------------------------------------------------------------------
// Tests run on both transports.

macro_rules! on_both_transports {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn socket() {
                super::$name(super::Transport::Socket).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                super::$name(super::Transport::Memory).await
            }
        }
    )*};
}

on_both_transports!(
    channel_passes_working_fds,
    channel_reports_peer_close,
    channel_rejects_wrong_frames,
    rpc_matches_many_out_of_order_responses,
    rpc_passes_fds_both_ways,
    dropping_every_client_closes_the_link,
    server_sees_peer_close,
    server_rejects_wrong_frames,
    client_fails_pending_calls_when_the_server_goes_away,
    client_closes_on_wrong_frames,
    undecodable_response_fails_the_call,
    an_answer_too_large_for_a_frame_is_replaced_by_the_fallback,
);

/// An answer that cannot fit a frame would otherwise be dropped and leave the caller waiting.
async fn an_answer_too_large_for_a_frame_is_replaced_by_the_fallback(t: Transport) {
    let (a, b) = t.pair();
    let (client, _events) = Client::<EchoService>::new(a);
    let mut server = Server::<EchoService>::new(b);
    let call = tokio::spawn(async move { client.call(Echo { n: 1 }, vec![]).await });
    let incoming = within("request", server.next())
        .await
        .expect("next")
        .expect("a request");
    let huge = Err("x".repeat(ipc::frame::MAX_PAYLOAD + 1));
    within(
        "answer",
        incoming
            .reply
            .send(Echo::reply_or(&huge, vec![], || Err("too large".into()))),
    )
    .await
    .expect("the fallback is sent");
    let (answer, fds) = within("call", call)
        .await
        .expect("join")
        .expect("an answer");
    assert_eq!(answer, Err("too large".into()));
    assert!(fds.is_empty());
}

async fn channel_passes_working_fds(t: Transport) {
    let (a, b) = t.pair();
    let mut near: Channel<Note, Note> = Channel::new(a);
    let mut far: Channel<Note, Note> = Channel::new(b);

    let mut file = tempfile::tempfile().expect("tempfile");
    file.write_all(b"near;").expect("write");
    let (mut pipe_r, pipe_w) = std::io::pipe().expect("pipe");
    let fds = vec![
        OwnedFd::from(file.try_clone().expect("dup")),
        OwnedFd::from(pipe_w),
    ];
    let note = Note::Files {
        names: vec!["file".into(), "pipe".into()],
    };
    within("send", near.send(&note, fds)).await.expect("send");

    let (got, fds) = within("recv", far.recv()).await.expect("recv");
    assert_eq!(got, note);
    let [file_far, pipe_far] = <[OwnedFd; 2]>::try_from(fds).expect("two fds, in order");
    // The far side writes through both; the near side reads it back from its own ends.
    File::from(file_far).write_all(b"far").expect("write file");
    File::from(pipe_far)
        .write_all(b"via pipe")
        .expect("write pipe");
    file.seek(SeekFrom::Start(0)).expect("seek");
    assert_eq!(read_all(&mut file), "near;far");
    assert_eq!(read_all(&mut pipe_r), "via pipe");

    // And back the other way, without fds.
    within("send back", far.send(&Note::Text("ack".into()), vec![]))
        .await
        .expect("send back");
    let (got, fds) = within("recv back", near.recv()).await.expect("recv back");
    assert_eq!((got, fds.len()), (Note::Text("ack".into()), 0));
}

async fn channel_reports_peer_close(t: Transport) {
    let (a, b) = t.pair();
    let mut near: Channel<Note, Note> = Channel::new(a);
    drop(Channel::<Note, Note>::new(b));
    let err = within("recv", near.recv()).await.expect_err("closed");
    assert!(matches!(err, ChannelError::Closed), "{err:?}");
    let err = within("send", near.send(&Note::Text("x".into()), vec![]))
        .await
        .expect_err("closed");
    assert!(matches!(err, ChannelError::Closed), "{err:?}");
}

async fn channel_rejects_wrong_frames(t: Transport) {
    let valid = codec::encode(&Note::Text("x".into())).expect("encode");
    for (kind, payload, expected) in wrong_frames(Kind::Message, Kind::Request, &valid) {
        let (a, b) = t.pair();
        let mut near: Channel<Note, Note> = Channel::new(a);
        within("send", b.tx.send(kind, 0, &payload, vec![]))
            .await
            .expect("send");
        let err = within("recv", near.recv()).await.expect_err("rejected");
        assert!(expected(&err), "{kind:?} {payload:?}: {err:?}");
    }
}

async fn rpc_matches_many_out_of_order_responses(t: Transport) {
    const IN_FLIGHT: usize = 100;
    const EVENTS: u32 = 3;
    let (a, b) = t.pair();
    let (client, mut events) = Client::<EchoService>::new(a);
    let mut server = Server::<EchoService>::new(b);

    let server_task = tokio::spawn(async move {
        // Hold every request before answering any: all IN_FLIGHT calls are then waiting at once.
        let mut held = Vec::new();
        while held.len() < IN_FLIGHT {
            held.push(server.next().await?.expect("client stayed"));
        }
        // 37 is coprime with 100: this answers every request once, scrambled.
        let mut held: Vec<Option<Incoming<EchoService>>> = held.into_iter().map(Some).collect();
        for i in 0..IN_FLIGHT {
            answer(held[i * 37 % IN_FLIGHT].take().expect("answered once")).await;
        }
        let events = server.events();
        for n in 0..EVENTS {
            events.send(&EchoEvent::Tick(n)).await?;
        }
        serve(server).await
    });

    let mut calls = JoinSet::new();
    for n in 0..IN_FLIGHT as u32 {
        let client = client.clone();
        calls.spawn(async move { (n, client.call(Echo { n }, vec![]).await) });
    }
    let mut answered = HashSet::new();
    while let Some(joined) = within("calls", calls.join_next()).await {
        let (n, result) = joined.expect("call task");
        let (response, fds) = result.expect("call");
        assert_eq!(response, Ok(n));
        assert!(fds.is_empty());
        answered.insert(n);
    }
    assert_eq!(answered.len(), IN_FLIGHT);

    for n in 0..EVENTS {
        let event = within("event", events.recv()).await;
        assert_eq!(event, Some(EchoEvent::Tick(n)));
    }
    within("ping", client.ping()).await.expect("ping");
    let (response, _) = within("call", client.call(Echo { n: 7 }, vec![]))
        .await
        .expect("call after the burst");
    assert_eq!(response, Ok(7));
    assert!(!client.is_closed());
    server_task.abort();
}

async fn rpc_passes_fds_both_ways(t: Transport) {
    let (a, b) = t.pair();
    let (client, _events) = Client::<EchoService>::new(a);
    let server = tokio::spawn(serve(Server::<EchoService>::new(b)));

    // Client → server: the server writes through the pipe end it was given.
    let (mut pipe_r, pipe_w) = std::io::pipe().expect("pipe");
    let request = WriteThrough {
        text: "through the fd".into(),
    };
    let (response, _) = within("write through", client.call(request, vec![pipe_w.into()]))
        .await
        .expect("call");
    assert_eq!(response, Ok(()));
    assert_eq!(read_all(&mut pipe_r), "through the fd");

    // Server → client: the response carries the read end of a pipe the server filled.
    let request = OpenPipe {
        text: "from the server".into(),
    };
    let (response, fds) = within("open pipe", client.call(request, vec![]))
        .await
        .expect("call");
    assert_eq!(response, Ok(()));
    let [fd] = <[OwnedFd; 1]>::try_from(fds).expect("one fd");
    assert_eq!(read_all(&mut File::from(fd)), "from the server");
    server.abort();
}

async fn dropping_every_client_closes_the_link(t: Transport) {
    let (a, b) = t.pair();
    let (client, events) = Client::<EchoService>::new(a);
    let second = client.clone();
    let server = tokio::spawn(serve(Server::<EchoService>::new(b)));
    let (response, _) = within("call", second.call(Echo { n: 1 }, vec![]))
        .await
        .expect("call");
    assert_eq!(response, Ok(1));
    drop((client, second, events));
    let served = within("server sees the close", server)
        .await
        .expect("server task")
        .expect("orderly close");
    assert_eq!(served, 1);
}

async fn server_sees_peer_close(t: Transport) {
    let (a, b) = t.pair();
    let mut server = Server::<EchoService>::new(b);
    drop(a);
    let next = within("next", server.next()).await.expect("orderly close");
    assert!(next.is_none());
}

async fn server_rejects_wrong_frames(t: Transport) {
    let valid = codec::encode(&EchoRequest::from(Echo { n: 7 })).expect("encode");
    let mut cases = wrong_frames(Kind::Request, Kind::Message, &valid);
    for kind in [Kind::Response, Kind::Event, Kind::Pong] {
        cases.push((kind, valid.clone(), is_protocol));
    }
    for (kind, payload, expected) in cases {
        let (a, b) = t.pair();
        let mut server = Server::<EchoService>::new(b);
        within("send", a.tx.send(kind, 1, &payload, vec![]))
            .await
            .expect("send");
        let err = within("next", server.next()).await.expect_err("rejected");
        assert!(expected(&err), "{kind:?} {payload:?}: {err:?}");
    }
}

async fn client_fails_pending_calls_when_the_server_goes_away(t: Transport) {
    let (a, b) = t.pair();
    let (client, _events) = Client::<EchoService>::new(a);
    let mut server = Server::<EchoService>::new(b);
    let calls = start_calls(&client, 10);
    let mut held = Vec::new();
    while held.len() < 10 {
        held.push(
            within("next", server.next())
                .await
                .expect("next")
                .expect("request"),
        );
    }
    // Dropping the server and every responder closes the link without an answer.
    drop((held, server));
    assert_client_gave_up(&client, calls).await;
}

async fn client_closes_on_wrong_frames(t: Transport) {
    let garbage: [(Kind, &[u8]); 4] = [
        (Kind::Request, &[0]),
        (Kind::Message, &[0]),
        (Kind::Event, &[0xff; 4]),
        (Kind::Event, &[0, 1, 0]),
    ];
    for (kind, payload) in garbage {
        let (a, b) = t.pair();
        let (client, _events) = Client::<EchoService>::new(a);
        let mut peer = b;
        let calls = start_calls(&client, 3);
        for _ in 0..3 {
            within("request", peer.rx.recv())
                .await
                .expect("recv")
                .expect("frame");
        }
        within("garbage", peer.tx.send(kind, 0, payload, vec![]))
            .await
            .expect("send");
        assert_client_gave_up(&client, calls).await;
    }
}

/// A response that does not decode means a broken peer: the channel closes and the call fails.
async fn undecodable_response_fails_the_call(t: Transport) {
    let (a, b) = t.pair();
    let (client, _events) = Client::<EchoService>::new(a);
    let mut peer = b;
    let call = {
        let client = client.clone();
        tokio::spawn(async move { client.call(Echo { n: 1 }, vec![]).await })
    };
    let frame = within("request", peer.rx.recv())
        .await
        .expect("recv")
        .expect("frame");
    within(
        "garbage",
        peer.tx
            .send(Kind::Response, frame.header.id, &[0xff; 3], vec![]),
    )
    .await
    .expect("send");
    let err = within("call", call)
        .await
        .expect("join")
        .expect_err("garbage");
    // The call hears why; the link is shut, so every other call fails too.
    assert!(matches!(err, ChannelError::Codec(_)), "{err:?}");
    within("client closes", client.closed()).await;
    assert!(client.is_closed());
}

// ---------------------------------------------------------------------------------------------
// Tests on the socket transport only: raw datagrams and descriptor flags.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_rejects_malformed_datagrams() {
    let valid = codec::encode(&EchoRequest::from(Echo { n: 7 })).expect("encode");
    for case in malformed(Kind::Request, &valid) {
        let (raw, link) = raw_and_link();
        let mut server = Server::<EchoService>::new(link);
        let leak_probe = case.send_on(raw.as_fd());
        let err = within(case.name, server.next()).await.expect_err(case.name);
        assert!((case.expected)(&err), "{}: {err:?}", case.name);
        leak_probe.assert_closed(case.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_rejects_malformed_datagrams() {
    let valid = codec::encode(&Note::Text("x".into())).expect("encode");
    for case in malformed(Kind::Message, &valid) {
        let (raw, link) = raw_and_link();
        let mut channel: Channel<Note, Note> = Channel::new(link);
        let leak_probe = case.send_on(raw.as_fd());
        let err = within(case.name, channel.recv())
            .await
            .expect_err(case.name);
        assert!((case.expected)(&err), "{}: {err:?}", case.name);
        leak_probe.assert_closed(case.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_closes_on_malformed_datagrams() {
    let valid = codec::encode(&EchoEvent::Tick(1)).expect("encode");
    for case in malformed(Kind::Event, &valid) {
        let (a, b) = socket_pair().expect("socketpair");
        let raw = a.try_clone().expect("dup");
        let mut peer = Link::from_fd(a, "server").expect("link");
        let (client, _events) =
            Client::<EchoService>::new(Link::from_fd(b, "client").expect("link"));
        let calls = start_calls(&client, 3);
        for _ in 0..3 {
            within("request", peer.rx.recv())
                .await
                .expect("recv")
                .expect("frame");
        }
        let leak_probe = case.send_on(raw.as_fd());
        assert_client_gave_up(&client, calls).await;
        leak_probe.assert_closed(case.name);
    }
}

/// On `SOCK_SEQPACKET` an empty datagram cannot be told from the peer's close (both read as 0
/// bytes): it reads as an orderly close, which drops the link all the same.
#[tokio::test]
async fn empty_datagram_reads_as_close() {
    let (raw, link) = raw_and_link();
    let mut server = Server::<EchoService>::new(link);
    sandbox::fdpass::send(raw.as_fd(), &[], &[]).expect("send");
    let next = within("next", server.next()).await.expect("no error");
    assert!(next.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn received_fds_are_close_on_exec() {
    // Typed channel.
    let (a, b) = Transport::Socket.pair();
    let near: Channel<Note, Note> = Channel::new(a);
    let mut far: Channel<Note, Note> = Channel::new(b);
    let (_pipe_r, pipe_w) = std::io::pipe().expect("pipe");
    let pipe_w = inheritable(pipe_w.into());
    within("send", near.send(&Note::Text("fd".into()), vec![pipe_w]))
        .await
        .expect("send");
    let (_, fds) = within("recv", far.recv()).await.expect("recv");
    assert_eq!(fds.len(), 1);
    assert!(is_close_on_exec(fds[0].as_fd()), "channel fd inheritable");

    // Request (server side) and response (client side).
    let (a, b) = Transport::Socket.pair();
    let (client, _events) = Client::<EchoService>::new(a);
    let server = tokio::spawn(serve(Server::<EchoService>::new(b)));
    let (_pipe_r, pipe_w) = std::io::pipe().expect("pipe");
    let (response, _) = within(
        "probe",
        client.call(Probe {}, vec![inheritable(pipe_w.into())]),
    )
    .await
    .expect("call");
    assert_eq!(response, Ok(true), "request fd");
    let request = OpenPipe { text: "x".into() };
    let (_, fds) = within("open pipe", client.call(request, vec![]))
        .await
        .expect("call");
    assert_eq!(fds.len(), 1);
    assert!(is_close_on_exec(fds[0].as_fd()), "response fd inheritable");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_server_answers_requests_and_pings_and_refuses_fds() {
    let (ours, theirs) = socket_pair().unwrap();
    let server = std::thread::spawn(move || {
        ipc::blocking::serve::<EchoService>(theirs, |request| match request {
            EchoRequest::Echo(Echo { n }) => Echo::reply(&Ok(n + 1), Vec::new()),
            other => other.refuse("unexpected".into()),
        })
    });
    for n in [1, 41] {
        let answer = ipc::blocking::call(ours.as_fd(), Echo { n }, Duration::from_secs(2)).unwrap();
        assert_eq!(answer, Ok(n + 1));
    }
    // An async client on the same kind of socket: pings are answered too.
    let client = Client::<EchoService>::new(Link::from_fd(ours, "blocking").unwrap()).0;
    client.ping().await.unwrap();
    assert_eq!(
        client.call(Echo { n: 7 }, Vec::new()).await.unwrap().0,
        Ok(8)
    );
    // A descriptor on a request socket is a protocol error: the server stops.
    let (r, _w) = nix::unistd::pipe().unwrap();
    assert!(client.call(Probe {}, vec![r]).await.is_err());
    let ended = tokio::task::spawn_blocking(move || server.join().unwrap())
        .await
        .unwrap();
    assert!(matches!(ended, Err(ChannelError::Protocol(_))), "{ended:?}");
}

// ---------------------------------------------------------------------------------------------
// The test service and messages.

#[derive(Debug)]
pub enum EchoService {}

impl Service for EchoService {
    const NAME: &'static str = "echo";
    type Request = EchoRequest;
    type Event = EchoEvent;
}

ipc::requests! {
    /// The test service's requests.
    pub enum EchoRequest for EchoService, refused: String {
        /// Answered with `n`.
        Echo { n: u32 } -> u32,
        /// One fd attached, writable: the server writes `text` through it.
        WriteThrough { text: String } -> (),
        /// The answer carries the read end of a pipe holding `text`, made inheritable by the
        /// server so that the client's close-on-exec check means something.
        OpenPipe { text: String } -> (),
        /// One fd attached: the server says whether it arrived close-on-exec.
        Probe {} -> bool,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EchoEvent {
    Tick(u32),
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Note {
    Text(String),
    /// One fd attached per name.
    Files {
        names: Vec<String>,
    },
}

async fn serve(mut server: Server<EchoService>) -> Result<usize, ChannelError> {
    let mut served = 0;
    while let Some(incoming) = server.next().await? {
        answer(incoming).await;
        served += 1;
    }
    Ok(served)
}

async fn answer(incoming: Incoming<EchoService>) {
    let Incoming {
        request,
        mut fds,
        reply,
    } = incoming;
    let answer = match (request, fds.len()) {
        (EchoRequest::Echo(Echo { n }), 0) => Echo::reply(&Ok(n), vec![]),
        (EchoRequest::WriteThrough(WriteThrough { text }), 1) => {
            let mut file = File::from(fds.remove(0));
            file.write_all(text.as_bytes()).expect("write through");
            WriteThrough::reply(&Ok(()), vec![])
        }
        (EchoRequest::OpenPipe(OpenPipe { text }), 0) => {
            let (r, mut w) = std::io::pipe().expect("pipe");
            w.write_all(text.as_bytes()).expect("fill pipe");
            OpenPipe::reply(&Ok(()), vec![inheritable(r.into())])
        }
        (EchoRequest::Probe(_), 1) => Probe::reply(&Ok(is_close_on_exec(fds[0].as_fd())), vec![]),
        (request, n) => request.refuse(format!("{request:?} with {n} fds")),
    };
    reply.send(answer).await.expect("reply");
}

// ---------------------------------------------------------------------------------------------
// Helpers.

#[derive(Debug, Clone, Copy)]
enum Transport {
    Socket,
    Memory,
}

impl Transport {
    /// Two connected links (inside a runtime).
    fn pair(self) -> (Link, Link) {
        match self {
            Transport::Socket => {
                let (a, b) = socket_pair().expect("socketpair");
                (
                    Link::from_fd(a, "a").expect("link a"),
                    Link::from_fd(b, "b").expect("link b"),
                )
            }
            Transport::Memory => Link::memory_pair("a", "b"),
        }
    }
}

/// A raw (blocking) socket and a link on its peer.
fn raw_and_link() -> (OwnedFd, Link) {
    let (raw, other) = socket_pair().expect("socketpair");
    (raw, Link::from_fd(other, "under test").expect("link"))
}

async fn within<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out"))
}

type CallResult = Result<(<Echo as Call>::Answer, Vec<OwnedFd>), ChannelError>;

fn start_calls(client: &Client<EchoService>, n: u32) -> JoinSet<CallResult> {
    let mut calls = JoinSet::new();
    for i in 0..n {
        let client = client.clone();
        calls.spawn(async move { client.call(Echo { n: i }, vec![]).await });
    }
    calls
}

/// The client marked itself closed, failed every pending call and refuses new ones.
async fn assert_client_gave_up(client: &Client<EchoService>, mut calls: JoinSet<CallResult>) {
    within("closed()", client.closed()).await;
    assert!(client.is_closed());
    while let Some(joined) = within("pending calls", calls.join_next()).await {
        let err = joined.expect("call task").expect_err("no answer");
        assert!(matches!(err, ChannelError::Closed), "{err:?}");
    }
    let err = within("new call", client.call(Echo { n: 0 }, vec![]))
        .await
        .expect_err("closed");
    assert!(matches!(err, ChannelError::Closed), "{err:?}");
    let err = within("ping", client.ping()).await.expect_err("closed");
    assert!(matches!(err, ChannelError::Closed), "{err:?}");
}

type Expected = fn(&ChannelError) -> bool;

/// Well-formed frames that the receiver must refuse: `wrong` is a kind it does not take, the
/// others carry `right` with a bad payload.
fn wrong_frames(right: Kind, wrong: Kind, valid: &[u8]) -> Vec<(Kind, Vec<u8>, Expected)> {
    let mut trailing = valid.to_vec();
    trailing.push(0);
    vec![
        (wrong, valid.to_vec(), is_protocol),
        (right, vec![0xff; 8], |e| {
            matches!(e, ChannelError::Codec(CodecError::Decode(_)))
        }),
        (right, vec![], |e| {
            matches!(e, ChannelError::Codec(CodecError::Decode(_)))
        }),
        (right, trailing, |e| {
            matches!(e, ChannelError::Codec(CodecError::TrailingBytes(1)))
        }),
    ]
}

fn is_protocol(e: &ChannelError) -> bool {
    matches!(e, ChannelError::Protocol(_))
}

/// A datagram that breaks the frame rules, sent raw with `fds` pipe write ends attached.
struct Malformed {
    name: &'static str,
    datagram: Vec<u8>,
    fds: usize,
    expected: Expected,
}

fn malformed(kind: Kind, valid: &[u8]) -> Vec<Malformed> {
    let frame = |fds: usize| Header::encode(kind, 1, fds, valid).expect("encode");
    let edit = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut d = frame(0);
        f(&mut d);
        d
    };
    let case = |name, datagram, fds, expected| Malformed {
        name,
        datagram,
        fds,
        expected,
    };
    vec![
        case(
            "truncated frame",
            frame(0)[..HEADER_LEN - 1].to_vec(),
            0,
            |e| matches!(e, ChannelError::Frame(FrameError::ShortHeader(15))),
        ),
        case("fds but no bytes", vec![], 1, |e| {
            matches!(e, ChannelError::Frame(FrameError::ShortHeader(0)))
        }),
        case(
            "payload shorter than header says",
            edit(&|d| {
                d.pop();
            }),
            0,
            |e| matches!(e, ChannelError::Frame(FrameError::Length { .. })),
        ),
        case(
            "payload longer than header says",
            edit(&|d| d.push(0)),
            0,
            |e| matches!(e, ChannelError::Frame(FrameError::Length { .. })),
        ),
        case("header says 1 fd, none attached", frame(1), 0, |e| {
            matches!(
                e,
                ChannelError::Frame(FrameError::FdCount {
                    declared: 1,
                    actual: 0
                })
            )
        }),
        case("header says 0 fds, one attached", frame(0), 1, |e| {
            matches!(
                e,
                ChannelError::Frame(FrameError::FdCount {
                    declared: 0,
                    actual: 1
                })
            )
        }),
        case("header says 1 fd, two attached", frame(1), 2, |e| {
            matches!(
                e,
                ChannelError::Frame(FrameError::FdCount {
                    declared: 1,
                    actual: 2
                })
            )
        }),
        case(
            "oversize by one byte",
            edit(&|d| d.resize(MAX_FRAME + 1, 0)),
            0,
            |e| matches!(e, ChannelError::Frame(FrameError::Oversize)),
        ),
        case(
            "oversize beyond the buffer",
            edit(&|d| d.resize(MAX_FRAME + 4096, 0)),
            1,
            |e| matches!(e, ChannelError::Frame(FrameError::Oversize)),
        ),
        case("unknown frame kind", edit(&|d| d[2] = 0x77), 0, |e| {
            matches!(e, ChannelError::Frame(FrameError::Kind(0x77)))
        }),
        case("frame kind zero", edit(&|d| d[2] = 0), 0, |e| {
            matches!(e, ChannelError::Frame(FrameError::Kind(0)))
        }),
        case("other protocol version", edit(&|d| d[0] = 0xfe), 0, |e| {
            matches!(e, ChannelError::Frame(FrameError::Version { got: 0xfe }))
        }),
        case(
            "garbage payload",
            Header::encode(kind, 1, 0, &[0xff; 8]).expect("encode"),
            0,
            |e| matches!(e, ChannelError::Codec(_)),
        ),
    ]
}

impl Malformed {
    /// Sends the datagram on `raw` and returns the read ends of the pipes attached to it.
    fn send_on(&self, raw: BorrowedFd<'_>) -> LeakProbe {
        let mut readers = Vec::new();
        let mut writers = Vec::new();
        for _ in 0..self.fds {
            let (r, w) = std::io::pipe().expect("pipe");
            let r = OwnedFd::from(r);
            fcntl(&r, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).expect("nonblocking");
            readers.push(File::from(r));
            writers.push(OwnedFd::from(w));
        }
        let borrowed: Vec<BorrowedFd<'_>> = writers.iter().map(|w| w.as_fd()).collect();
        sandbox::fdpass::send(raw, &self.datagram, &borrowed).expect(self.name);
        LeakProbe(readers)
    }
}

/// Read ends of pipes whose only write ends travelled with a rejected datagram.
struct LeakProbe(Vec<File>);

impl LeakProbe {
    /// The receiver closed every fd that came with the bad datagram: the pipes read as ended.
    fn assert_closed(mut self, case: &str) {
        for reader in &mut self.0 {
            match reader.read(&mut [0u8; 1]) {
                Ok(0) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    panic!("{case}: an fd of the rejected datagram is still open")
                }
                other => panic!("{case}: unexpected read {other:?}"),
            }
        }
    }
}

fn read_all(r: &mut impl Read) -> String {
    let mut s = String::new();
    r.read_to_string(&mut s).expect("read");
    s
}

/// Clears close-on-exec, so that the receiver's flag is its own doing.
fn inheritable(fd: OwnedFd) -> OwnedFd {
    fcntl(&fd, FcntlArg::F_SETFD(FdFlag::empty())).expect("F_SETFD");
    assert!(!is_close_on_exec(fd.as_fd()));
    fd
}

fn is_close_on_exec(fd: BorrowedFd<'_>) -> bool {
    let flags = fcntl(fd, FcntlArg::F_GETFD).expect("F_GETFD");
    FdFlag::from_bits_truncate(flags).contains(FdFlag::FD_CLOEXEC)
}
