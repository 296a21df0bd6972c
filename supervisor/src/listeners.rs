//! Binding the configured listening sockets. The supervisor keeps them open for its whole life,
//! so connections wait in the backlog while the role serving them restarts.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, OwnedFd};

use ipc::config::{ListenerKind, ListenerSpec};
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, bind, listen, setsockopt, socket,
    sockopt,
};

use crate::error::Error;

/// A bound, listening socket.
#[derive(Debug)]
pub struct Bound {
    pub spec: ListenerSpec,
    pub socket: TcpListener,
}

impl Bound {
    /// A duplicate of the socket to pass to the serving role. A previous instance of the role
    /// may have shut the shared socket down (it is one socket, not a copy): listen again first.
    pub fn dup(&self) -> Result<OwnedFd, Error> {
        let listening =
            nix::sys::socket::getsockopt(&self.socket, sockopt::AcceptConn).unwrap_or(false);
        if !listening {
            tracing::warn!(
                "{} listener {} had stopped listening; listening again",
                self.spec.kind.name(),
                self.spec.addr
            );
            listen(&self.socket, Backlog::new(1024).unwrap_or(Backlog::MAXCONN))
                .map_err(|e| Error::Listen(format!("re-listening on {}: {e}", self.spec.addr)))?;
        }
        self.socket
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Error::Listen(format!("duplicating {}: {e}", self.spec.addr)))
    }
}

/// Binds every listener; the returned specs carry the actual address (port 0 resolved).
pub fn bind_all(wanted: &[(ListenerKind, SocketAddr)]) -> Result<Vec<Bound>, Error> {
    wanted
        .iter()
        .map(|(kind, addr)| {
            let socket = bind_one(*addr).map_err(|e| {
                Error::Listen(format!("binding {} listener {addr}: {e}", kind.name()))
            })?;
            let addr = socket
                .local_addr()
                .map_err(|e| Error::Listen(e.to_string()))?;
            tracing::info!("listening for {} on {addr}", kind.name());
            Ok(Bound {
                spec: ListenerSpec { kind: *kind, addr },
                socket,
            })
        })
        .collect()
}

fn bind_one(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    if addr.is_ipv6() {
        // So that [::]:25 and 0.0.0.0:25 can both be configured.
        setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    }
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrStorage::from(addr),
    )?;
    listen(&fd, Backlog::new(1024).unwrap_or(Backlog::MAXCONN))?;
    Ok(TcpListener::from(fd))
}
