//! A link taken from a frozen role: whatever this sends is exactly what code running inside
//! that role could send, and the role at the other end answers from its real sandbox.
//!
//! The role is stopped (SIGSTOP) so that it neither reads our answers nor sends anything of
//! its own; its end of the link is copied with `pidfd_getfd` (root may, even for non-dumpable
//! processes). Which of its sockets leads to the target role is found by pairing socket inodes
//! (`ss -x` shows each Unix socket's peer) and checking that the supervisor made the pair
//! (`SO_PEERCRED` of a socketpair names its creator), which tells the link from a signing
//! socket keyd made.

use std::collections::{HashMap, HashSet};
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use ipc::Role;
use ipc::frame::{Header, Kind, MAX_FRAME};
use nix::sys::signal::{Signal, kill};
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg, sockopt::PeerCredentials};
use nix::unistd::Pid;

/// A role's end of a link, held while the role is frozen; thawed on drop.
pub struct Hijacked {
    pub role: Role,
    pub pid: u32,
    pub sock: OwnedFd,
}

/// What came back on a link.
#[derive(Debug)]
pub enum Heard {
    Frame {
        header: Header,
        payload: Vec<u8>,
        fds: Vec<OwnedFd>,
    },
    /// End of file: the other end shut the link down.
    Closed,
    Nothing,
}

impl Hijacked {
    /// Freezes `role` (process `pid`) and takes its end of the link that `supervisor` made to
    /// the process `target`.
    pub fn take(role: Role, pid: u32, target: u32, supervisor: u32) -> Hijacked {
        freeze(pid);
        let sock = link_between(pid, target, supervisor)
            .unwrap_or_else(|| panic!("{role} (pid {pid}) has no link to pid {target}"));
        Hijacked { role, pid, sock }
    }

    /// A socket of our own (keyd's signing socket) in place of the link, the role still frozen.
    pub fn with_socket(&self, sock: OwnedFd) -> Hijacked {
        freeze(self.pid);
        Hijacked {
            role: self.role,
            pid: self.pid,
            sock,
        }
    }

    /// Sends one datagram with `fds` attached, as raw as the kernel allows.
    pub fn send(&self, datagram: &[u8], fds: &[RawFd]) {
        let iov = [IoSlice::new(datagram)];
        let rights = [ControlMessage::ScmRights(fds)];
        let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &rights };
        sendmsg::<()>(
            self.sock.as_raw_fd(),
            &iov,
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .unwrap_or_else(|e| panic!("sending {} bytes as {}: {e}", datagram.len(), self.role));
    }

    /// Sends a well-formed request frame with `payload`.
    pub fn request(&self, id: u64, payload: &[u8]) {
        self.send(
            &Header::encode(Kind::Request, id, 0, payload).expect("frame"),
            &[],
        );
    }

    /// The next datagram within `limit`.
    pub fn next(&self, limit: Duration) -> Heard {
        let mut poll = [nix::poll::PollFd::new(
            self.sock.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let millis = u16::try_from(limit.as_millis()).unwrap_or(u16::MAX);
        if nix::poll::poll(&mut poll, nix::poll::PollTimeout::from(millis)).expect("poll") == 0 {
            return Heard::Nothing;
        }
        let mut buf = vec![0u8; MAX_FRAME + 1];
        let got = match sandbox::fdpass::recv(self.sock.as_fd(), &mut buf) {
            Ok(got) => got,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Heard::Closed,
            Err(e) => panic!("recv: {e}"),
        };
        if got.len == 0 && got.fds.is_empty() {
            return Heard::Closed;
        }
        let (header, payload) = Header::decode(&buf[..got.len], got.fds.len())
            .unwrap_or_else(|e| panic!("the serving role sent a broken frame: {e}"));
        Heard::Frame {
            header,
            payload: payload.to_vec(),
            fds: got.fds,
        }
    }

    /// The response to request `id`, skipping events; panics if the link closes or stays
    /// silent for 5 s.
    pub fn answer(&self, id: u64) -> (Vec<u8>, Vec<OwnedFd>) {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            match self.next(until.saturating_duration_since(Instant::now())) {
                Heard::Frame {
                    header,
                    payload,
                    fds,
                } if header.kind == Kind::Response && header.id == id => return (payload, fds),
                Heard::Frame { .. } => continue,
                other => panic!("{}: no answer to request {id}: {other:?}", self.role),
            }
        }
    }

    /// Whether the other end shuts the link down within 5 s (events before that are skipped).
    pub fn closes(&self) -> bool {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            match self.next(until.saturating_duration_since(Instant::now())) {
                Heard::Closed => return true,
                Heard::Frame { .. } => continue,
                Heard::Nothing => return false,
            }
        }
    }
}

impl Drop for Hijacked {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGCONT);
    }
}

/// Stops `pid` and waits until it is stopped.
fn freeze(pid: u32) {
    kill(Pid::from_raw(pid as i32), Signal::SIGSTOP).expect("SIGSTOP");
    let until = Instant::now() + Duration::from_secs(5);
    while !crate::common::proc_field(pid, "State").is_some_and(|s| s.starts_with('T')) {
        assert!(Instant::now() < until, "pid {pid} did not stop");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `pid`'s end of a socketpair the supervisor made whose other end `target` holds.
fn link_between(pid: u32, target: u32, supervisor: u32) -> Option<OwnedFd> {
    let theirs: HashSet<u64> = socket_fds(target).into_iter().map(|(_, i)| i).collect();
    let peers = unix_peers();
    socket_fds(pid)
        .into_iter()
        .filter(|(_, inode)| peers.get(inode).is_some_and(|p| theirs.contains(p)))
        .filter_map(|(fd, _)| sandbox::pidfd::take(pid, fd).ok())
        .find(|sock| {
            nix::sys::socket::getsockopt(sock, PeerCredentials)
                .is_ok_and(|c| c.pid() as u32 == supervisor)
        })
}

/// The (fd, inode) of every socket `pid` holds.
fn socket_fds(pid: u32) -> Vec<(RawFd, u64)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc/PID/fd")
        .flatten()
    {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let target = target.to_string_lossy();
        let inode = target
            .strip_prefix("socket:[")
            .and_then(|s| s.strip_suffix(']'))
            .and_then(|s| s.parse().ok());
        let fd = entry.file_name().to_string_lossy().parse().ok();
        if let (Some(fd), Some(inode)) = (fd, inode) {
            out.push((fd, inode));
        }
    }
    out
}

/// Each connected Unix seqpacket socket's inode and its peer's, from `ss -x`.
fn unix_peers() -> HashMap<u64, u64> {
    let out = std::process::Command::new("ss")
        .args(["-x", "-a", "-n"])
        .output()
        .expect("running ss (iproute2)");
    assert!(out.status.success(), "ss: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.first() != Some(&"u_seq") || cols.len() < 8 {
                return None;
            }
            Some((cols[5].parse().ok()?, cols[7].parse().ok()?))
        })
        .collect()
}
