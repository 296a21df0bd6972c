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
    check_distinct(&out, &config.admin.uids)?;
    Ok(out)
}

/// Every role must have its own uid and its own gid, neither 0, and no role may be an admin:
/// a shared gid would give one role the group permissions of another's directory.
fn check_distinct(ids: &[(Role, RoleIds)], admin_uids: &[u32]) -> Result<(), Error> {
    for (i, (role, own)) in ids.iter().enumerate() {
        if own.uid == 0 || own.gid == 0 {
            return Err(Error::Users(format!("{role} would run as root")));
        }
        if admin_uids.contains(&own.uid) {
            return Err(Error::Users(format!(
                "{role}'s uid {} is also listed in admin.uids",
                own.uid
            )));
        }
        for (other, theirs) in &ids[..i] {
            if theirs.uid == own.uid {
                return Err(Error::Users(format!(
                    "{role} and {other} share uid {}: every role needs its own user",
                    own.uid
                )));
            }
            if theirs.gid == own.gid {
                return Err(Error::Users(format!(
                    "{role} and {other} share gid {}: every role needs its own group",
                    own.gid
                )));
            }
        }
    }
    Ok(())
}

/// The admin group must not be a role's group (its members reach the admin socket).
pub fn check_admin_group(ids: &[(Role, RoleIds)], admin_gid: u32) -> Result<(), Error> {
    match ids.iter().find(|(_, own)| own.gid == admin_gid) {
        Some((role, _)) if admin_gid != 0 => Err(Error::Users(format!(
            "admin.group (gid {admin_gid}) is {role}'s group: a role would reach the admin socket"
        ))),
        _ => Ok(()),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(pairs: &[(u32, u32)]) -> Vec<(Role, RoleIds)> {
        Role::ALL
            .into_iter()
            .zip(pairs)
            .map(|(role, &(uid, gid))| (role, RoleIds { uid, gid }))
            .collect()
    }

    #[test]
    fn accepts_distinct_users_and_groups() {
        assert!(check_distinct(&ids(&[(101, 201), (102, 202), (103, 203)]), &[]).is_ok());
    }

    #[test]
    fn refuses_a_shared_gid_as_it_refuses_a_shared_uid() {
        let e = check_distinct(&ids(&[(101, 201), (102, 201)]), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("storaged and keyd share gid 201"), "{e}");
        let e = check_distinct(&ids(&[(101, 201), (101, 202)]), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("share uid 101"), "{e}");
    }

    #[test]
    fn refuses_root_ids_and_admin_uids() {
        assert!(check_distinct(&ids(&[(101, 0)]), &[]).is_err());
        assert!(check_distinct(&ids(&[(0, 201)]), &[]).is_err());
        assert!(check_distinct(&ids(&[(101, 201)]), &[101]).is_err());
    }

    #[test]
    fn refuses_an_admin_group_that_is_a_roles_group() {
        let roles = ids(&[(101, 201), (102, 202)]);
        assert!(check_admin_group(&roles, 202).is_err());
        assert!(check_admin_group(&roles, 300).is_ok());
        assert!(check_admin_group(&roles, 0).is_ok());
    }
}
