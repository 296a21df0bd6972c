//! Dropping to the role's user, and proving it cannot be undone.

use nix::errno::Errno;
use nix::unistd::{Gid, Uid, getresgid, getresuid, setgroups, setresgid, setresuid};

use crate::{Error, Ids};

/// setgroups → setresgid → setresuid with glibc's process-wide calls, then checks that all ids
/// are equal, `setuid(0)` fails with EPERM and no capability is left.
pub(super) fn drop_to(ids: Ids) -> Result<(), Error> {
    let uid = Uid::from_raw(ids.uid);
    let gid = Gid::from_raw(ids.gid);
    if uid.is_root() {
        return Err(Error::PrivilegesRemain(
            "refusing to run a role as uid 0".into(),
        ));
    }
    setgroups(&[gid]).map_err(|e| Error::sys("setgroups", e))?;
    setresgid(gid, gid, gid).map_err(|e| Error::sys("setresgid", e))?;
    setresuid(uid, uid, uid).map_err(|e| Error::sys("setresuid", e))?;

    let r = getresuid().map_err(|e| Error::sys("getresuid", e))?;
    let g = getresgid().map_err(|e| Error::sys("getresgid", e))?;
    if [r.real, r.effective, r.saved] != [uid; 3] || [g.real, g.effective, g.saved] != [gid; 3] {
        return Err(Error::PrivilegesRemain(format!(
            "ids differ after drop: uid {r:?} gid {g:?}"
        )));
    }
    match nix::unistd::setuid(Uid::from_raw(0)) {
        Err(Errno::EPERM) => {}
        Ok(()) => return Err(Error::PrivilegesRemain("setuid(0) succeeded".into())),
        Err(e) => {
            return Err(Error::PrivilegesRemain(format!(
                "setuid(0) failed with {e}, expected EPERM"
            )));
        }
    }
    for set in [caps::CapSet::Effective, caps::CapSet::Permitted] {
        let held = caps::read(None, set)
            .map_err(|e| Error::PrivilegesRemain(format!("reading capabilities: {e}")))?;
        if !held.is_empty() {
            return Err(Error::PrivilegesRemain(format!(
                "capabilities remain in {set:?}: {held:?}"
            )));
        }
    }
    Ok(())
}
