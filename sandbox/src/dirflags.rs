//! Directory flags of Linux file systems (`chattr`).

use std::path::Path;

/// `FS_TOPDIR_FL`: the directory is the top of a hierarchy for ext4's Orlov allocator, which
/// then spreads the directories made in it over the block groups.
#[cfg(target_os = "linux")]
const FS_TOPDIR_FL: libc::c_int = 0x0002_0000;

/// Sets `chattr +T` on directory `dir` (a no-op if it is set). File systems without the flag
/// answer with an error (`ENOTTY`, `EOPNOTSUPP`), as do other systems than Linux.
pub fn set_top_directory(dir: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(dir)?;
        let mut flags: libc::c_int = 0;
        // SAFETY: FS_IOC_GETFLAGS writes one int (what the kernel reads and writes, whatever
        // the request number says) through the pointer, which points at a live
        // local; the fd stays open for the call.
        if unsafe { libc::ioctl(f.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if flags & FS_TOPDIR_FL != 0 {
            return Ok(());
        }
        flags |= FS_TOPDIR_FL;
        // SAFETY: FS_IOC_SETFLAGS reads one int through the pointer, as above.
        if unsafe { libc::ioctl(f.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = dir;
        Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// On a file system with the flag (ext4 here), it is set and reads back; elsewhere the
    /// call fails cleanly.
    #[test]
    fn sets_the_flag_or_says_why_not() {
        let path = std::env::temp_dir().join(format!("moxd-dirflags-{}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        let result = super::set_top_directory(&path);
        let dir = scopeguard(path);
        match result {
            Ok(()) => {
                let out = std::process::Command::new("lsattr")
                    .arg("-d")
                    .arg(dir.path())
                    .output();
                if let Ok(out) = out {
                    let text = String::from_utf8_lossy(&out.stdout);
                    let flags = text.split_whitespace().next().unwrap_or_default();
                    assert!(flags.contains('T'), "{text}");
                }
                super::set_top_directory(dir.path()).unwrap();
            }
            Err(e) => assert!(e.raw_os_error().is_some(), "{e}"),
        }
    }

    /// Removes the directory when the test ends.
    struct Guard(std::path::PathBuf);

    impl Guard {
        fn path(&self) -> &std::path::Path {
            &self.0
        }
    }

    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.0);
        }
    }

    fn scopeguard(path: std::path::PathBuf) -> Guard {
        Guard(path)
    }
}
