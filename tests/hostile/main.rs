//! A compromised network role against the serving roles (keyd, storaged, authd, queued), each
//! under its real sandbox in a running tree (root only).
//!
//! For each serving role, a network role that calls it is frozen and its link taken over
//! (see `link.rs`), and every kind of bad frame is sent on it: descriptors a request does not
//! take, a ping with descriptors, more descriptors than a frame carries, a wrong descriptor
//! count, an unknown kind, a kind a client does not send, a wrong version, a truncated header,
//! a short payload, an oversize datagram, an empty datagram, an undecodable payload, trailing
//! bytes, and a request the sending role may not make. What is expected (the policy of
//! `ipc::serve::accept_links`):
//! - the serving role keeps running, the same process (no restart), and answers a good
//!   request from another role at once;
//! - a broken frame costs the sender that link: the serving role shuts it down (the sender
//!   reads end of file), logs why and tells the supervisor, which logs it and restarts the
//!   sender (DESIGN.md §3); the sender's fresh link answers a good request. An empty datagram
//!   reads like the sender closing its own end and is not reported: that sender is restarted
//!   here, as an operator would;
//! - a good request with descriptors is answered, the descriptors closed unread;
//! - a request the link may not make is refused in an answer, the link kept;
//! - every descriptor sent is closed by the serving role, none kept.
//!
//! Before the fix in `sandbox::fdpass::discard`, the first case killed keyd, storaged, authd
//! and queued with SIGSYS.

mod client_side;
#[path = "../common/mod.rs"]
mod common;
mod link;

use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use common::{Options, Tree, alive, skip_unless_root};
use ipc::Role;
use ipc::codec;
use ipc::frame::{HEADER_LEN, Header, Kind, MAX_PAYLOAD, PROTOCOL_VERSION};
use ipc::msg::admin::{self, RoleState};
use ipc::msg::{auth, key, queue, store};
use ipc::rpc::Call;
use link::Hijacked;

/// A serving role and the requests that show it working.
struct Target {
    role: Role,
    /// The network role whose link is attacked.
    attacker: Role,
    /// Another role calling `role`, whose link must keep working meanwhile.
    witness: Role,
    /// A request both `attacker` and `witness` may make.
    good: Vec<u8>,
    /// Whether a payload is the right answer to `good` for the role that asked.
    answered: fn(Role, &[u8]) -> bool,
    /// A request that `not_allowed.0`'s link may not make, and how its refusal reads.
    not_allowed: (Role, Vec<u8>),
    refused: fn(&[u8]) -> bool,
}

/// What a case should get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The link is shut down.
    Closed,
    /// The answer to the good request.
    Good,
    /// A refusal; the link stays.
    Refused,
}

struct Case {
    name: &'static str,
    /// Sent on the link of this role (the attacker unless said otherwise).
    from: Option<Role>,
    datagram: Vec<u8>,
    /// How many copies of a pipe's write end go with it.
    fds: usize,
    expect: Expect,
}

#[test]
fn bad_frames_from_a_network_role_cost_it_its_link_and_never_the_serving_role() {
    if skip_unless_root("bad_frames_…") {
        return;
    }
    let tree = Tree::start(Options::default());
    for target in targets() {
        attack(&tree, &target);
    }
    attack_signing_sockets(&tree);
}

fn attack(tree: &Tree, target: &Target) {
    let served = pid(tree, target.role);
    for case in cases(target) {
        let what = format!("{} ← {}", target.role, case.name);
        let from = case.from.unwrap_or(target.attacker);
        let link = Hijacked::take(from, pid(tree, from), served, tree.pid());
        if from == target.attacker {
            // The link works, also after the restarts of earlier cases.
            assert_good(&link, target, &what);
        }
        let reports_before = reports(tree, target.role, from);
        let (probe, pipe) = std::io::pipe().expect("pipe");
        let copies = vec![pipe.as_raw_fd(); case.fds];
        link.send(&case.datagram, &copies);
        drop(pipe);
        match case.expect {
            Expect::Closed => assert!(link.closes(), "{what}: the link was not shut down"),
            Expect::Good => {
                let (answer, fds) = link.answer(7);
                assert!(fds.is_empty() && (target.answered)(from, &answer), "{what}");
            }
            Expect::Refused => {
                let (answer, _) = link.answer(7);
                assert!((target.refused)(&answer), "{what}: not refused");
                assert_good(&link, target, &what);
            }
        }
        assert!(hung_up(&probe), "{what}: the descriptors were kept open");
        assert!(
            alive(served),
            "{what}: {} died\n{}",
            target.role,
            tree.log_text()
        );
        assert_eq!(pid(tree, target.role), served, "{what}: restarted");
        let witness = Hijacked::take(
            target.witness,
            pid(tree, target.witness),
            served,
            tree.pid(),
        );
        assert_good(&witness, target, &format!("{what} (witness)"));
        let sender = link.pid;
        drop((witness, link));
        match case.expect {
            Expect::Closed if case.datagram.is_empty() => restart(tree, from),
            Expect::Closed => {
                restarted_on_report(tree, target.role, (from, sender), reports_before, &what);
                let fresh = Hijacked::take(from, pid(tree, from), served, tree.pid());
                assert_good(&fresh, target, &format!("{what} (fresh link)"));
            }
            Expect::Good | Expect::Refused => {}
        }
    }
    // Every broken frame but the empty datagram (which reads as an orderly close) is logged.
    let log = tree.log_text();
    let logged: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains(&format!("{}[", target.role))
                && l.contains(&format!("link from {}", target.attacker))
                && l.contains("closing it")
        })
        .collect();
    eprintln!(
        "{}: {} links closed\n{}",
        target.role,
        logged.len(),
        logged.join("\n")
    );
    assert!(
        logged.len() >= 13,
        "{}: closed links were not logged\n{log}",
        target.role
    );
}

/// keyd's signing sockets (one thread each, read by `ipc::blocking::serve`) take the same
/// beating: a bad frame ends that socket, never keyd.
fn attack_signing_sockets(tree: &Tree) {
    let keyd = pid(tree, Role::Keyd);
    let open = enc(key::OpenSigner {});
    let good = enc(key::Certificates {});
    let bad: [(&str, Vec<u8>, usize); 3] = [
        (
            "a request with a descriptor",
            Header::encode(Kind::Request, 1, 1, &good).expect("frame"),
            1,
        ),
        (
            "an undecodable payload",
            Header::encode(Kind::Request, 1, 0, &[0xff; 9]).expect("frame"),
            0,
        ),
        ("an oversize datagram", oversize(), 0),
    ];
    for (name, datagram, fds) in bad {
        let link = Hijacked::take(Role::Imapd, pid(tree, Role::Imapd), keyd, tree.pid());
        link.request(3, &open);
        let (answer, mut fds_back) = link.answer(3);
        assert!(matches!(answer_to::<key::OpenSigner>(&answer), Ok(Ok(()))));
        let signer = link.with_socket(fds_back.pop().expect("the signing socket"));
        let (probe, pipe) = std::io::pipe().expect("pipe");
        signer.send(&datagram, &vec![pipe.as_raw_fd(); fds]);
        drop(pipe);
        assert!(signer.closes(), "signing socket ← {name}: not closed");
        assert!(hung_up(&probe), "signing socket ← {name}: descriptor kept");
        assert_eq!(
            pid(tree, Role::Keyd),
            keyd,
            "signing socket ← {name}: keyd restarted"
        );
        link.request(4, &good);
        let (answer, _) = link.answer(4);
        assert!(matches!(answer_to::<key::Certificates>(&answer), Ok(Ok(_))));
    }
}

fn cases(target: &Target) -> Vec<Case> {
    let good = &target.good;
    let frame = |kind, fds, payload: &[u8]| Header::encode(kind, 7, fds, payload).expect("frame");
    let mut wrong_version = frame(Kind::Request, 0, good);
    wrong_version[..2].copy_from_slice(&(PROTOCOL_VERSION + 1).to_le_bytes());
    // More than a frame may carry: encode refuses to write such a header.
    let mut too_many = frame(Kind::Request, 0, good);
    too_many[3] = 100;
    let mut unknown_kind = frame(Kind::Request, 0, good);
    unknown_kind[2] = 0xee;
    let mut short_payload = frame(Kind::Request, 0, good);
    short_payload.pop();
    let mut trailing = good.clone();
    trailing.push(0);
    let case = |name, datagram, fds, expect| Case {
        name,
        from: None,
        datagram,
        fds,
        expect,
    };
    use Expect::{Closed, Good, Refused};
    vec![
        case(
            "a good request with a descriptor",
            frame(Kind::Request, 1, good),
            1,
            Good,
        ),
        case(
            "a good request with 3 descriptors",
            frame(Kind::Request, 3, good),
            3,
            Good,
        ),
        case(
            "a ping with a descriptor",
            frame(Kind::Ping, 1, b""),
            1,
            Closed,
        ),
        case(
            "100 descriptors (a frame carries 64)",
            too_many,
            100,
            Closed,
        ),
        case(
            "fewer descriptors than the header says",
            frame(Kind::Request, 2, good),
            1,
            Closed,
        ),
        case(
            "a descriptor the header does not declare",
            frame(Kind::Request, 0, good),
            1,
            Closed,
        ),
        case("an unknown kind", unknown_kind, 0, Closed),
        case(
            "a response from a client",
            frame(Kind::Response, 0, good),
            0,
            Closed,
        ),
        case(
            "an event from a client",
            frame(Kind::Event, 0, good),
            0,
            Closed,
        ),
        case("a wrong protocol version", wrong_version, 0, Closed),
        case(
            "a truncated header",
            frame(Kind::Request, 0, good)[..HEADER_LEN - 6].to_vec(),
            0,
            Closed,
        ),
        case(
            "a payload shorter than the header says",
            short_payload,
            0,
            Closed,
        ),
        case("an oversize datagram", oversize(), 0, Closed),
        case("an empty datagram", Vec::new(), 0, Closed),
        case(
            "an undecodable payload",
            frame(Kind::Request, 0, &[0xff; 9]),
            0,
            Closed,
        ),
        case(
            "trailing bytes after the request",
            frame(Kind::Request, 0, &trailing),
            0,
            Closed,
        ),
        Case {
            name: "a request its link may not make",
            from: Some(target.not_allowed.0),
            datagram: frame(Kind::Request, 0, &target.not_allowed.1),
            fds: 0,
            expect: Refused,
        },
    ]
}

/// A datagram longer than any frame, whose header says so.
fn oversize() -> Vec<u8> {
    let mut datagram = Header::encode(Kind::Request, 7, 0, &[]).expect("frame");
    datagram[4..8].copy_from_slice(&((MAX_PAYLOAD + 1) as u32).to_le_bytes());
    datagram.resize(HEADER_LEN + MAX_PAYLOAD + 1, 0);
    datagram
}

fn targets() -> Vec<Target> {
    vec![
        Target {
            role: Role::Keyd,
            attacker: Role::Imapd,
            witness: Role::Smtpd,
            good: enc(key::Certificates {}),
            answered: |_, a| matches!(answer_to::<key::Certificates>(a), Ok(Ok(_))),
            not_allowed: (
                Role::Imapd,
                enc(key::SignDkim {
                    request: key::DkimRequest {
                        ticket: None,
                        domain: "mx.test.example".into(),
                        selector: "s1".into(),
                        signed: vec!["from".into()],
                        headers: b"from:x@mx.test.example\r\n".to_vec(),
                        body_hash: vec![0; 32],
                    },
                }),
            ),
            refused: |a| matches!(answer_to::<key::SignDkim>(a), Ok(Err(_))),
        },
        Target {
            role: Role::Storaged,
            attacker: Role::Smtpd,
            witness: Role::Submission,
            good: enc(store::CheckRecipient {
                address: "postmaster@mx.test.example".into(),
            }),
            answered: |_, a| matches!(answer_to::<store::CheckRecipient>(a), Ok(Ok(_))),
            not_allowed: (
                Role::Smtpd,
                enc(store::RegisterTicket {
                    ticket: auth::Ticket([7; 16]),
                    account: "postmaster".into(),
                    role: Role::Smtpd,
                    expires: i64::MAX,
                }),
            ),
            refused: |a| {
                matches!(
                    answer_to::<store::RegisterTicket>(a),
                    Ok(Err(store::Refused::Failed(_)))
                )
            },
        },
        Target {
            role: Role::Authd,
            attacker: Role::Imapd,
            witness: Role::Httpd,
            good: enc(auth::Mechanisms {
                channel_binding: false,
            }),
            answered: |_, a| matches!(answer_to::<auth::Mechanisms>(a), Ok(Ok(m)) if !m.is_empty()),
            // Every client of authd may make every request; what a link may not do is step
            // an exchange it did not start.
            not_allowed: (
                Role::Imapd,
                enc(auth::Step {
                    exchange: 1 << 40,
                    response: b"\0postmaster\0guess".to_vec().into(),
                }),
            ),
            refused: |a| matches!(answer_to::<auth::Step>(a), Ok(Err(_))),
        },
        Target {
            role: Role::Queued,
            attacker: Role::Submission,
            witness: Role::Httpd,
            good: enc(queue::Abort {
                file: queue::FileId(1),
            }),
            // httpd's link may ask queued nothing: its right answer is a refusal.
            answered: |from, a| match (from, answer_to::<queue::Abort>(a)) {
                (Role::Httpd, Ok(Err(queue::Refused::Failed { message, .. }))) => {
                    message.contains("not permitted")
                }
                (_, Ok(Ok(()))) => true,
                _ => false,
            },
            not_allowed: (
                Role::Httpd,
                enc(queue::Release {
                    id: queue::QueueId(1),
                }),
            ),
            refused: |a| {
                matches!(
                    answer_to::<queue::Release>(a),
                    Ok(Err(queue::Refused::Failed { .. }))
                )
            },
        },
    ]
}

/// A request's payload as its service's request enum carries it on the wire.
fn enc<C: Call>(request: C) -> Vec<u8> {
    let request: <C::Service as ipc::Service>::Request = request.into();
    codec::encode(&request).expect("encode")
}

/// An answer's payload decoded as the type request `C` is answered with.
fn answer_to<C: Call>(payload: &[u8]) -> Result<C::Answer, codec::CodecError> {
    codec::decode(payload)
}

fn assert_good(link: &Hijacked, target: &Target, what: &str) {
    link.request(9, &target.good);
    let (answer, _) = link.answer(9);
    assert!(
        (target.answered)(link.role, &answer),
        "{what}: {} answered {} wrongly",
        target.role,
        link.role
    );
}

/// Whether every write end of the pipe whose read end is `probe` was closed within 5 s.
fn hung_up(probe: &impl AsFd) -> bool {
    let mut poll = [nix::poll::PollFd::new(
        probe.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    nix::poll::poll(&mut poll, nix::poll::PollTimeout::from(5000u16)).unwrap_or(0) == 1
        && poll[0]
            .revents()
            .is_some_and(|r| r.contains(nix::poll::PollFlags::POLLHUP))
}

fn pid(tree: &Tree, role: Role) -> u32 {
    tree.status()
        .expect("status")
        .roles
        .iter()
        .find(|r| r.role == role)
        .and_then(|r| r.pid)
        .unwrap_or_else(|| panic!("{role} not running"))
}

/// The supervisor's log lines saying that `server` reported `client` and `client` is restarted.
fn reports(tree: &Tree, server: Role, client: Role) -> usize {
    let said = format!("{server} closed the link from {client} (");
    let then = format!("); restarting {client}");
    tree.log_text()
        .lines()
        // The supervisor's own lines, not a role's (`name[pid]: …`).
        .filter(|l| !Role::ALL.iter().any(|r| l.contains(&format!("{r}["))))
        .filter(|l| l.contains(&said) && l.ends_with(&then))
        .count()
}

/// Waits until the supervisor, told by `server` that `client` (process `old`) broke its link,
/// has logged it and restarted `client` (a new process, the tree ready again).
fn restarted_on_report(
    tree: &Tree,
    server: Role,
    (client, old): (Role, u32),
    before: usize,
    what: &str,
) {
    tree.wait_for(
        Duration::from_secs(20),
        &format!("{client} restarted by the supervisor ({what})"),
        |s| {
            s.roles.iter().all(|r| r.state == RoleState::Ready)
                && s.roles
                    .iter()
                    .any(|r| r.role == client && r.pid.is_some_and(|p| p != old))
        },
    );
    assert_eq!(
        reports(tree, server, client),
        before + 1,
        "{what}: the supervisor did not log the report once\n{}",
        tree.log_text()
    );
}

/// Restarts `role` (a fresh process with fresh links) and waits until the tree is ready.
fn restart(tree: &Tree, role: Role) {
    let old = pid(tree, role);
    tree.request(admin::Restart { role });
    tree.wait_for(Duration::from_secs(20), &format!("{role} restarted"), |s| {
        s.roles.iter().all(|r| r.state == RoleState::Ready)
            && s.roles
                .iter()
                .any(|r| r.role == role && r.pid.is_some_and(|p| p != old))
    });
}
