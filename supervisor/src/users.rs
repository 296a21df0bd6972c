//! One system user per role: looked up, created when missing (as root), or numeric from a base.

use std::process::Command;

use ipc::Role;
use nix::unistd::{Group, User};

use crate::config::Config;
use crate::error::Error;

/// The numeric identity a role runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleIds {
    pub uid: u32,
    pub gid: u32,
}

/// Resolves (and if allowed creates) the user of every role, and checks that they are distinct,
/// non-zero and not admins.
pub fn resolve_all(config: &Config) -> Result<Vec<(Role, RoleIds)>, Error> {
    let mut out = Vec::new();
    for (i, role) in Role::ALL.into_iter().enumerate() {
        let ids = match &config.users.uid_base {
            Some(base) => {
                let id = base.get_ref() + i as u32;
                RoleIds { uid: id, gid: id }
            }
            None => resolve(
                &format!("{}{}", config.users.prefix, role.name()),
                config.users.create,
            )?,
        };
        out.push((role, ids));
    }
    for (i, (role, ids)) in out.iter().enumerate() {
        if ids.uid == 0 || ids.gid == 0 {
            return Err(Error::Users(format!("{role} would run as root")));
        }
        if config.admin.uids.contains(&ids.uid) {
            return Err(Error::Users(format!(
                "{role}'s uid {} is also listed in admin.uids",
                ids.uid
            )));
        }
        if let Some((other, _)) = out[..i].iter().find(|(_, o)| o.uid == ids.uid) {
            return Err(Error::Users(format!(
                "{role} and {other} share uid {}: every role needs its own user",
                ids.uid
            )));
        }
    }
    Ok(out)
}

fn resolve(name: &str, create: bool) -> Result<RoleIds, Error> {
    if let Some(user) = lookup(name)? {
        return Ok(user);
    }
    if !create {
        return Err(Error::Users(format!(
            "user {name} does not exist (create it, or set users.create = true)"
        )));
    }
    tracing::info!("creating system user {name}");
    let status = Command::new("useradd")
        .args(["--system", "--no-create-home", "--home-dir", "/nonexistent"])
        .args(["--shell", "/usr/sbin/nologin", "--user-group", name])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .status()
        .map_err(|e| Error::Users(format!("running useradd for {name}: {e}")))?;
    // Another process may have created it meanwhile: look again before giving up.
    match lookup(name)? {
        Some(ids) => Ok(ids),
        None if !status.success() => Err(Error::Users(format!("useradd {name} failed: {status}"))),
        None => Err(Error::Users(format!("{name} missing right after useradd"))),
    }
}

fn lookup(name: &str) -> Result<Option<RoleIds>, Error> {
    let user =
        User::from_name(name).map_err(|e| Error::Users(format!("looking up {name}: {e}")))?;
    Ok(user.map(|u| RoleIds {
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
    }))
}

/// The gid of a named group.
pub fn group_id(name: &str) -> Result<u32, Error> {
    Group::from_name(name)
        .map_err(|e| Error::Users(format!("looking up group {name}: {e}")))?
        .map(|g| g.gid.as_raw())
        .ok_or_else(|| Error::Users(format!("admin.group `{name}` does not exist")))
}
