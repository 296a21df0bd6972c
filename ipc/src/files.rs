//! The file rules that differ between systems, for the roles that keep files (storaged, queued,
//! authd, keyd), so that the difference is written once.
//!
//! - A file a role creates is private: mode 0600 on Unix. Windows has no mode bits; there the
//!   data directory's access list is what keeps others out.
//! - A rename or a new name is durable once the directory is synced: `fsync` of the directory
//!   on Unix. Windows has no directory sync (a directory cannot be opened as a file for it);
//!   NTFS journals the change of names itself, so there it is nothing to do.
//! - Windows cannot rename or remove a file that is open: callers close a file before they
//!   rename or remove it (which costs nothing on Unix), and deliver by copy or hard link.

use std::fs::OpenOptions;
use std::path::Path;

/// Options that create a private file for writing (mode 0600 on Unix); callers add
/// `create_new`, `create` and `truncate` as they need.
pub fn private() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// Makes the names in `dir` durable: `fsync` of the directory on Unix, nothing on Windows (see
/// the module docs).
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    #[test]
    fn a_private_file_is_for_its_owner_alone_and_its_name_is_synced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut f = super::private().create_new(true).open(&path).unwrap();
        f.write_all(b"x").unwrap();
        drop(f);
        super::sync_dir(dir.path()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(std::fs::read(&path).unwrap(), b"x");
    }
}
