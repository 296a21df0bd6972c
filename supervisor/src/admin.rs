//! The admin socket: a `SOCK_SEQPACKET` Unix socket in the run directory (root-owned, 0750).
//! Every connection's peer uid (SO_PEERCRED) is checked before anything is read: root and the
//! configured admin uids are served, role users never. Then a versioned hello, then requests,
//! each carried out by the tree.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipc::msg::admin::{AdminService, ClientHello, ServerHello};
use ipc::rpc::Server;
use ipc::{Channel, Link};
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, UnixAddr, bind, connect, listen, socket,
};
use tokio::sync::{mpsc, oneshot};

use crate::error::Error;
use crate::tree::Event;

/// Who may use the admin socket.
#[derive(Debug, Clone)]
pub struct AdminPolicy {
    /// Allowed besides root.
    pub admins: Vec<u32>,
    /// Always refused, even if listed above (the role users).
    pub roles: Vec<u32>,
}

impl AdminPolicy {
    pub fn check(&self, uid: u32) -> Result<(), String> {
        if self.roles.contains(&uid) {
            return Err(format!(
                "uid {uid} is a moxd role user; roles may not administer"
            ));
        }
        if uid == 0 || self.admins.contains(&uid) {
            return Ok(());
        }
        Err(format!(
            "uid {uid} is not an administrator (root or admin.uids)"
        ))
    }
}

/// A bound admin socket; removes its file when dropped.
#[derive(Debug)]
pub struct AdminSocket {
    fd: OwnedFd,
    path: PathBuf,
}

impl Drop for AdminSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds the admin socket at `path`, refusing if a live supervisor already answers there.
pub fn bind_socket(path: &Path, group: Option<u32>) -> Result<AdminSocket, Error> {
    let err = |what: &str, e: nix::Error| Error::Admin(format!("{what} {}: {e}", path.display()));
    let addr = UnixAddr::new(path).map_err(|e| err("address", e))?;
    if path.exists() {
        let probe = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| err("socket", e))?;
        if connect(std::os::fd::AsRawFd::as_raw_fd(&probe), &addr).is_ok() {
            return Err(Error::Admin(format!(
                "{} answers: another moxd is running",
                path.display()
            )));
        }
        std::fs::remove_file(path)
            .map_err(|e| Error::Admin(format!("removing stale {}: {e}", path.display())))?;
    }
    let fd = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(|e| err("socket", e))?;
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr).map_err(|e| err("binding", e))?;
    let socket = AdminSocket {
        fd,
        path: path.to_path_buf(),
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| Error::Admin(format!("chmod {}: {e}", path.display())))?;
    if let Some(gid) = group {
        nix::unistd::chown(
            path,
            Some(nix::unistd::Uid::from_raw(0)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .map_err(|e| err("chown", e))?;
    }
    listen(&socket.fd, Backlog::new(16).unwrap_or(Backlog::MAXCONN))
        .map_err(|e| err("listen", e))?;
    Ok(socket)
}

/// Accepts admin connections until the process ends.
pub async fn serve(
    socket: AdminSocket,
    policy: AdminPolicy,
    build_id: Arc<str>,
    events: mpsc::UnboundedSender<Event>,
) {
    let listener = match socket
        .fd
        .as_fd()
        .try_clone_to_owned()
        .and_then(sandbox::fdpass::register_async)
    {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("admin socket: {e}");
            return;
        }
    };
    loop {
        let conn = match listener.readable().await {
            Ok(mut ready) => match ready.try_io(|l| sandbox::fdpass::accept(l.get_ref().as_fd())) {
                Ok(Ok(conn)) => conn,
                Ok(Err(e)) => {
                    tracing::warn!("admin socket accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(_would_block) => continue,
            },
            Err(e) => {
                tracing::error!("admin socket: {e}");
                return;
            }
        };
        let (policy, build_id, events) = (policy.clone(), build_id.clone(), events.clone());
        tokio::spawn(async move {
            if let Err(e) = connection(conn, &policy, &build_id, events).await {
                tracing::warn!("admin connection: {e}");
            }
        });
    }
    // `socket` is dropped (and its file removed) when this task is.
}

async fn connection(
    conn: OwnedFd,
    policy: &AdminPolicy,
    build_id: &str,
    events: mpsc::UnboundedSender<Event>,
) -> Result<(), String> {
    let cred = sandbox::fds::peer_credentials(&conn).map_err(|e| e.to_string())?;
    let (uid, pid) = (cred.uid, cred.pid);
    let link = Link::from_fd(conn, "moxctl→supervisor").map_err(|e| e.to_string())?;
    let mut channel = Channel::<ServerHello, ClientHello>::new(link);
    // Read the hello before answering even a refusal: closing with it unread would make the
    // kernel report a reset to the client instead of our answer.
    let hello = tokio::time::timeout(Duration::from_secs(5), channel.recv())
        .await
        .map_err(|_| "no hello within 5 s".to_string())?
        .map_err(|e| e.to_string())?
        .0;
    if let Err(reason) = policy.check(uid) {
        tracing::warn!("admin: refused connection from uid {uid} pid {pid}: {reason}");
        let _ = channel
            .send(&ServerHello::Denied { reason }, Vec::new())
            .await;
        return Ok(());
    }
    if hello.protocol != ipc::frame::PROTOCOL_VERSION {
        let reason = format!(
            "moxctl speaks protocol {}, the server {}: use the moxctl of the same build",
            hello.protocol,
            ipc::frame::PROTOCOL_VERSION
        );
        let _ = channel
            .send(
                &ServerHello::Denied {
                    reason: reason.clone(),
                },
                Vec::new(),
            )
            .await;
        return Err(reason);
    }
    channel
        .send(
            &ServerHello::Welcome {
                protocol: ipc::frame::PROTOCOL_VERSION,
                build_id: build_id.to_string(),
            },
            Vec::new(),
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut server = Server::<AdminService>::new(channel.into_link());
    loop {
        let incoming = match server.next().await {
            Ok(Some(incoming)) => incoming,
            Ok(None) => return Ok(()),
            Err(e) => return Err(format!("uid {uid}: {e}")),
        };
        let (reply, answer) = oneshot::channel();
        let stopping = incoming
            .request
            .refuse(ipc::msg::admin::Error("the supervisor is stopping".into()));
        events
            .send(Event::Admin {
                request: incoming.request,
                fds: incoming.fds,
                uid,
                reply,
            })
            .map_err(|_| "the supervisor is stopping".to_string())?;
        let answer = answer.await.unwrap_or(stopping);
        incoming
            .reply
            .send(answer)
            .await
            .map_err(|e| e.to_string())?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_allows_root_and_admins_never_roles() {
        let p = AdminPolicy {
            admins: vec![1000, 1500],
            roles: vec![1500, 1501],
        };
        assert!(p.check(0).is_ok());
        assert!(p.check(1000).is_ok());
        assert!(
            p.check(1500).is_err(),
            "a role uid listed as admin is still refused"
        );
        assert!(p.check(1501).is_err());
        assert!(p.check(65534).is_err());
    }
}
