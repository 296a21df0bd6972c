//! The directories of the tree: the data directory with one private directory per stateful role,
//! and the run directory holding the admin socket. Created if missing; owners and modes fixed at
//! every start unless `sandbox.fix_permissions = false`.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;

use ipc::Role;
use nix::unistd::{Gid, Uid};

use crate::config::Config;
use crate::error::Error;
use crate::users::RoleIds;

/// Prepares every directory. `ids` is empty when not running as root (no owner changes).
pub fn prepare(config: &Config, ids: &[(Role, RoleIds)], admin_gid: u32) -> Result<(), Error> {
    let fix = config.sandbox.fix_permissions;
    let as_root = !ids.is_empty();
    ensure(
        &config.server.data_dir,
        0o755,
        as_root.then_some((0, 0)),
        fix,
    )?;
    if as_root {
        check_reachable(&config.server.data_dir)?;
    }
    for role in Role::ALL {
        let Some(dir) = config.role_dir(role) else {
            continue;
        };
        let owner = ids
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, i)| (i.uid, i.gid));
        ensure(&dir, 0o700, owner, fix)?;
        if role == Role::Storaged {
            spread_subdirectories(&dir);
        }
    }
    ensure(
        &config.server.run_dir,
        0o750,
        as_root.then_some((0, admin_gid)),
        true,
    )?;
    Ok(())
}

/// Marks `dir` as the top of a directory hierarchy for ext4's Orlov allocator (`chattr +T`),
/// so that the directories storaged makes in it (`tmp`, `msg`) land in different block groups.
/// Without a journal, ext4 skips recently freed inodes when it allocates one, scanning its
/// group for them; storaged frees a temporary file's inode for every delivery, and with `tmp`
/// beside `msg` every new message file paid for that scan (a third of a delivery's time in the
/// benchmark). Only new directories are affected; other file systems refuse, which is fine.
fn spread_subdirectories(dir: &Path) {
    if let Err(e) = sandbox::dirflags::set_top_directory(dir) {
        tracing::debug!("{}: no Orlov top-directory flag: {e}", dir.display());
    }
}

/// Role users are "others" to every directory above their own: each must let them pass.
fn check_reachable(dir: &Path) -> Result<(), Error> {
    let dir = dir
        .canonicalize()
        .map_err(|e| Error::Dirs(format!("resolving {}: {e}", dir.display())))?;
    for ancestor in dir.ancestors().skip(1) {
        let meta = std::fs::metadata(ancestor)
            .map_err(|e| Error::Dirs(format!("inspecting {}: {e}", ancestor.display())))?;
        if meta.mode() & 0o001 == 0 {
            return Err(Error::Dirs(format!(
                "role users cannot reach {}: {} has mode {:o} (needs o+x); choose another data_dir",
                dir.display(),
                ancestor.display(),
                meta.mode() & 0o7777
            )));
        }
    }
    Ok(())
}

fn ensure(path: &Path, mode: u32, owner: Option<(u32, u32)>, fix: bool) -> Result<(), Error> {
    let err =
        |what: &str, e: std::io::Error| Error::Dirs(format!("{what} {}: {e}", path.display()));
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(Error::Dirs(format!(
                "{} is a symlink; refusing",
                path.display()
            )));
        }
        Ok(meta) if !meta.is_dir() => {
            return Err(Error::Dirs(format!(
                "{} exists and is not a directory",
                path.display()
            )));
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(path)
                .map_err(|e| err("creating", e))?;
        }
        Err(e) => return Err(err("inspecting", e)),
    }
    if !fix {
        return Ok(());
    }
    // Through a descriptor opened without following links: a role owning a directory on the
    // way cannot swap in a symlink between our check and the change.
    let dir = nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_DIRECTORY
            | nix::fcntl::OFlag::O_NOFOLLOW
            | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| err("opening", e.into()))?;
    let meta = nix::sys::stat::fstat(&dir).map_err(|e| err("inspecting", e.into()))?;
    if let Some((uid, gid)) = owner
        && (meta.st_uid != uid || meta.st_gid != gid)
    {
        tracing::info!("fixing owner of {} to {uid}:{gid}", path.display());
        nix::unistd::fchown(&dir, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
            .map_err(|e| err("changing owner of", e.into()))?;
    }
    // mode_t is 32 bits on Linux and OpenBSD, 16 on FreeBSD.
    #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
    let current = u32::from(meta.st_mode) & 0o7777;
    if current != mode {
        tracing::info!("fixing mode of {} to {mode:o}", path.display());
        #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
        let bits = mode as nix::libc::mode_t;
        nix::sys::stat::fchmod(&dir, nix::sys::stat::Mode::from_bits_truncate(bits))
            .map_err(|e| err("changing mode of", e.into()))?;
    }
    Ok(())
}
