//! OpenBSD: unveil the role's paths, drop the uid, then pledge (DESIGN.md §4).
//!
//! This file cannot be built on the Linux machines the project is developed on; it is kept small
//! and table-driven, and described in packaging/openbsd/README.md.

use std::ffi::CString;

use crate::{Error, FsAccess, Policy, Report};

/// The pledge promises of each role, from the table in DESIGN.md §4.
const PROMISES: &[(&str, &str)] = &[
    // keyd and authd receive links (PeerUp) whenever a client role restarts: recvfd.
    ("keyd", "stdio rpath wpath cpath recvfd"),
    ("authd", "stdio rpath wpath cpath flock recvfd"),
    (
        "storaged",
        "stdio rpath wpath cpath flock fattr sendfd recvfd",
    ),
    ("smtpd", "stdio inet dns sendfd recvfd"),
    ("submission", "stdio inet dns sendfd recvfd"),
    ("imapd", "stdio inet sendfd recvfd"),
    (
        "queued",
        "stdio rpath wpath cpath flock inet dns sendfd recvfd",
    ),
    ("httpd", "stdio rpath inet dns sendfd recvfd"),
];

pub(crate) fn apply(policy: &Policy) -> Result<Report, Error> {
    let mut report = Report::default();
    let promises = PROMISES
        .iter()
        .find(|(role, _)| *role == policy.role)
        .map(|(_, p)| *p)
        .ok_or_else(|| Error::Unsupported(format!("no pledge promises for {}", policy.role)))?;
    for rule in &policy.fs {
        let perms = match rule.access {
            FsAccess::ReadOnly => "r",
            FsAccess::ReadWrite => "rwc",
        };
        unveil(Some(&rule.path.to_string_lossy()), Some(perms))?;
    }
    if policy.fs.is_empty() {
        // Turns the veil on with nothing visible; unveil(NULL, NULL) alone would only lock it.
        unveil(Some("/"), Some(""))?;
    }
    unveil(None, None)?;
    report.applied("unveil", format!("{} paths", policy.fs.len()));
    if let Some(ids) = policy.ids {
        let uid = nix::unistd::Uid::from_raw(ids.uid);
        let gid = nix::unistd::Gid::from_raw(ids.gid);
        nix::unistd::setgroups(&[gid]).map_err(|e| Error::sys("setgroups", e))?;
        nix::unistd::setresgid(gid, gid, gid).map_err(|e| Error::sys("setresgid", e))?;
        nix::unistd::setresuid(uid, uid, uid).map_err(|e| Error::sys("setresuid", e))?;
        let r = nix::unistd::getresuid().map_err(|e| Error::sys("getresuid", e))?;
        let g = nix::unistd::getresgid().map_err(|e| Error::sys("getresgid", e))?;
        if [r.real, r.effective, r.saved] != [uid; 3] || [g.real, g.effective, g.saved] != [gid; 3]
        {
            return Err(Error::PrivilegesRemain(format!(
                "ids differ after drop: uid {r:?} gid {g:?}"
            )));
        }
        if nix::unistd::setuid(nix::unistd::Uid::from_raw(0)).is_ok() {
            return Err(Error::PrivilegesRemain("setuid(0) succeeded".into()));
        }
        report.applied("uid", format!("uid {} gid {}", ids.uid, ids.gid));
    } else {
        report.skipped("uid", "not started as root");
    }
    let c = CString::new(promises).map_err(|e| Error::Unsupported(e.to_string()))?;
    // SAFETY: `c` is a valid NUL-terminated string; a null execpromises leaves them unchanged.
    if unsafe { libc::pledge(c.as_ptr(), std::ptr::null()) } != 0 {
        return Err(Error::Sys {
            step: "pledge",
            source: std::io::Error::last_os_error(),
        });
    }
    report.applied("pledge", promises);
    Ok(report)
}

fn unveil(path: Option<&str>, perms: Option<&str>) -> Result<(), Error> {
    let path = path
        .map(CString::new)
        .transpose()
        .map_err(|e| Error::Unsupported(e.to_string()))?;
    let perms = perms
        .map(CString::new)
        .transpose()
        .map_err(|e| Error::Unsupported(e.to_string()))?;
    // SAFETY: both pointers are null or valid NUL-terminated strings living across the call.
    let rc = unsafe {
        libc::unveil(
            path.as_ref().map_or(std::ptr::null(), |p| p.as_ptr()),
            perms.as_ref().map_or(std::ptr::null(), |p| p.as_ptr()),
        )
    };
    if rc != 0 {
        return Err(Error::Sys {
            step: "unveil",
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}
