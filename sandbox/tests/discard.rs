//! Discarding a descriptor a peer sent unasked must be possible under every role's seccomp
//! filter: it is the error path any peer can trigger with one frame (DESIGN.md §15). Each test
//! re-runs its own binary as a child that locks itself down with the system-call groups of the
//! serving roles (keyd, authd and storaged: files only; queued: files and outbound sockets; the
//! network roles: listeners), receives a socket and a pipe over a socketpair, and discards them.

#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::fd::AsFd;
use std::process::Command;

const CHILD: &str = "MOXD_DISCARD_CHILD";

fn policy(syscalls: sandbox::Syscalls) -> sandbox::Policy {
    sandbox::Policy {
        role: "test",
        ids: None,
        fs: Vec::new(),
        tcp_bind: Vec::new(),
        tcp_connect: Vec::new(),
        syscalls,
        max_threads: 64,
        max_file_size: Some(0),
        seccomp: sandbox::SeccompMode::Kill,
    }
}

/// Runs `test` of this binary again as a child with `groups` to lock down with.
fn child(test: &str, groups: &str) -> std::process::ExitStatus {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, groups)
        .status()
        .unwrap()
}

/// In the child: lock down with the groups named in the environment, receive a socket and a
/// pipe as a peer would send them, discard both; exit 0 if that worked.
fn in_child() -> bool {
    let Ok(groups) = std::env::var(CHILD) else {
        return false;
    };
    let seqpacket = || {
        nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::SeqPacket,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .unwrap()
    };
    // Made before the lockdown: the role only ever receives them.
    let (link, peer) = seqpacket();
    let (passed_socket, _its_peer) = seqpacket();
    let (pipe_read, pipe_write) = nix::unistd::pipe().unwrap();
    sandbox::apply(&policy(sandbox::Syscalls {
        files: groups.contains("files"),
        net_server: groups.contains("server"),
        net_client: groups.contains("client"),
    }))
    .expect("lockdown");
    sandbox::fdpass::send(
        peer.as_fd(),
        b"frame",
        &[passed_socket.as_fd(), pipe_write.as_fd()],
    )
    .unwrap();
    drop((passed_socket, pipe_write));
    let mut buf = [0u8; 16];
    let got = sandbox::fdpass::recv(link.as_fd(), &mut buf).unwrap();
    assert_eq!(got.fds.len(), 2);
    got.fds.into_iter().for_each(sandbox::fdpass::discard);
    // The pipe's last write end is gone: the read end sees end of file.
    let mut rest = [0u8; 1];
    let n = nix::unistd::read(&pipe_read, &mut rest).unwrap();
    std::process::exit(if n == 0 { 0 } else { 1 });
}

fn assert_discards_under(test: &str, groups: &str) {
    let status = child(test, groups);
    assert_eq!(
        status.code(),
        Some(0),
        "discarding under {groups:?}: {status:?} (SIGSYS is {})",
        libc::SIGSYS
    );
}

#[test]
fn discarding_survives_the_filter_of_roles_without_sockets() {
    if in_child() {
        return;
    }
    assert_discards_under(
        "discarding_survives_the_filter_of_roles_without_sockets",
        "files",
    );
}

#[test]
fn discarding_survives_the_filter_of_roles_with_outbound_sockets() {
    if in_child() {
        return;
    }
    assert_discards_under(
        "discarding_survives_the_filter_of_roles_with_outbound_sockets",
        "files client",
    );
}

#[test]
fn discarding_survives_the_filter_of_roles_with_listeners() {
    if in_child() {
        return;
    }
    assert_discards_under(
        "discarding_survives_the_filter_of_roles_with_listeners",
        "server",
    );
}
