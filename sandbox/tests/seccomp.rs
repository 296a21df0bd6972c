//! The seccomp filters in a real process: this test re-runs its own binary as a child that
//! locks itself down like a network role, then tries things. Opening a file fails with EACCES
//! (libraries probing /sys survive); a forbidden call (`socketpair` of datagram sockets, a way
//! out of the sandbox) kills the process.

#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

const CHILD: &str = "MOXD_SECCOMP_CHILD";

fn network_role() -> sandbox::Policy {
    sandbox::Policy {
        role: "test",
        ids: None,
        fs: Vec::new(),
        tcp_bind: Vec::new(),
        tcp_connect: Vec::new(),
        syscalls: sandbox::Syscalls {
            files: false,
            net_server: true,
            net_client: false,
        },
        max_threads: 64,
        max_file_size: Some(0),
        seccomp: sandbox::SeccompMode::Kill,
    }
}

/// Runs `test` of this binary again as a child with `what` to do; returns its exit status.
fn child(test: &str, what: &str) -> std::process::ExitStatus {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, what)
        .status()
        .unwrap()
}

/// In the child: lock down, then do `what`; exits 0 when the outcome was the expected one.
fn in_child() -> bool {
    let Ok(what) = std::env::var(CHILD) else {
        return false;
    };
    sandbox::apply(&network_role()).expect("lockdown");
    match what.as_str() {
        "open" => {
            let e = std::fs::File::open("/sys/devices/system/cpu/online").unwrap_err();
            let std_parallelism = std::thread::available_parallelism();
            std::process::exit(
                if e.raw_os_error() == Some(libc::EACCES) && std_parallelism.is_ok() {
                    0
                } else {
                    1
                },
            );
        }
        "dgram" => {
            let _ = nix::sys::socket::socketpair(
                nix::sys::socket::AddressFamily::Unix,
                nix::sys::socket::SockType::Datagram,
                None,
                nix::sys::socket::SockFlag::empty(),
            );
            std::process::exit(2)
        }
        _ => std::process::exit(3),
    }
}

#[test]
fn opening_a_file_fails_with_eacces_instead_of_killing() {
    if in_child() {
        return;
    }
    let status = child(
        "opening_a_file_fails_with_eacces_instead_of_killing",
        "open",
    );
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[test]
fn a_forbidden_call_kills_the_process() {
    if in_child() {
        return;
    }
    let status = child("a_forbidden_call_kills_the_process", "dgram");
    assert_eq!(status.signal(), Some(libc::SIGSYS), "{status:?}");
}
