//! localserve provisioning: once every role is ready, the newcomer's account exists with the
//! documented password. Apart from the state machine because it is a one-off client of storaged
//! and authd, not part of keeping the tree running.

use ipc::Role;
use ipc::msg::admin;
use ipc::msg::control::RoleAdmin;
use ipc::msg::{auth, store};

use super::dispatch::role_admin;
use super::{RoleState, Tree};

/// The account localserve creates for a newcomer, and its documented password (as mox's
/// localserve does: a development server on loopback, not a secret).
pub const LOCALSERVE_ACCOUNT: &str = "mox";
pub const LOCALSERVE_DOMAIN: &str = "localhost";
pub const LOCALSERVE_PASSWORD: &str = "moxmoxmox";

impl Tree {
    /// localserve: once every role is ready, make sure the newcomer's account exists with the
    /// documented password, and say so.
    pub(super) fn provision_localserve(&mut self) {
        if !self.slots.values().all(|s| s.state == RoleState::Ready) {
            return;
        }
        let (Some(storaged), Some(authd)) = (
            self.slots[Role::Storaged].control.clone(),
            self.slots[Role::Authd].control.clone(),
        ) else {
            return;
        };
        self.provisioned = true;
        tokio::spawn(async move {
            let exists = |r: &Result<_, admin::Error>| matches!(r, Err(admin::Error(e)) if e.contains("exists already") || e.contains("is taken"));
            for op in [
                store::Admin::AddDomain {
                    domain: LOCALSERVE_DOMAIN.into(),
                    separator: Some('+'),
                },
                store::Admin::AddAccount {
                    name: LOCALSERVE_ACCOUNT.into(),
                    address: format!("{LOCALSERVE_ACCOUNT}@{LOCALSERVE_DOMAIN}"),
                },
            ] {
                let r =
                    role_admin(Role::Storaged, &storaged, RoleAdmin::Store(op), Vec::new()).await;
                if r.is_err() && !exists(&r) {
                    tracing::error!("localserve account: {r:?}");
                    return;
                }
            }
            let pipe = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| e.to_string())
                .and_then(|(read, write)| {
                    use std::io::Write;
                    std::fs::File::from(write)
                        .write_all(LOCALSERVE_PASSWORD.as_bytes())
                        .map_err(|e| e.to_string())?;
                    Ok(read)
                });
            let fd = match pipe {
                Ok(fd) => fd,
                Err(e) => {
                    tracing::error!("localserve account: {e}");
                    return;
                }
            };
            let op = RoleAdmin::Auth(auth::Admin::SetPassword {
                account: LOCALSERVE_ACCOUNT.into(),
            });
            match role_admin(Role::Authd, &authd, op, vec![fd]).await {
                Ok(_) => {
                    use std::io::Write;
                    let line = format!(
                        "localserve account: {LOCALSERVE_ACCOUNT}@{LOCALSERVE_DOMAIN}, password {LOCALSERVE_PASSWORD}\n"
                    );
                    let _ = std::io::stdout().lock().write_all(line.as_bytes());
                    let _ = std::io::stdout().lock().flush();
                }
                Err(e) => tracing::error!("localserve password: {e}"),
            }
        });
    }
}
