//! Anonymous files: a read-write file in a directory that has no name, so that it vanishes with
//! its last descriptor and a crash leaves nothing behind. storaged and queued hand these out
//! for messages to be written into.
//!
//! Windows cannot unlink an open file. There the file keeps a fresh name for its life, is
//! opened with `FILE_FLAG_DELETE_ON_CLOSE` and without sharing, so that no one else can open it
//! by that name and the system removes it when its last handle closes (as the `tempfile` crate
//! does). A crash of the whole machine can leave such a file behind (named `.tmp-…`); a crash
//! of moxd cannot, since the system closes its handles.

use std::fs::File;
use std::io;
use std::path::Path;

/// A new anonymous file in `dir` (mode 0600, close-on-exec): `O_TMPFILE` on Linux; on other
/// Unix systems a fresh name created exclusively and unlinked at once.
#[cfg(unix)]
pub fn anonymous(dir: &Path) -> io::Result<File> {
    use nix::fcntl::{OFlag, open};
    use nix::sys::stat::Mode;
    #[cfg(target_os = "linux")]
    {
        let fd = open(
            dir,
            OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )?;
        Ok(File::from(fd))
    }
    #[cfg(not(target_os = "linux"))]
    {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        loop {
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = dir.join(format!(".tmp-{}-{n}", std::process::id()));
            match open(
                &path,
                OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            ) {
                Ok(fd) => {
                    std::fs::remove_file(&path)?;
                    return Ok(File::from(fd));
                }
                Err(nix::errno::Errno::EEXIST) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// A new anonymous file in `dir`: a fresh name created exclusively, removed by the system when
/// the last handle closes (see the module docs).
#[cfg(windows)]
pub fn anonymous(dir: &Path) -> io::Result<File> {
    use std::os::windows::fs::OpenOptionsExt;
    // From the Windows SDK (winbase.h, winnt.h).
    const FILE_FLAG_DELETE_ON_CLOSE: u32 = 0x0400_0000;
    const FILE_ATTRIBUTE_HIDDEN: u32 = 0x0000_0002;
    const FILE_ATTRIBUTE_TEMPORARY: u32 = 0x0000_0100;
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    loop {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.join(format!(".tmp-{}-{n}", std::process::id()));
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .share_mode(0)
            .custom_flags(FILE_FLAG_DELETE_ON_CLOSE)
            .attributes(FILE_ATTRIBUTE_HIDDEN | FILE_ATTRIBUTE_TEMPORARY)
            .open(&path)
        {
            Ok(file) => return Ok(file),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek, Write};

    #[test]
    fn an_anonymous_file_holds_bytes_and_leaves_no_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = super::anonymous(dir.path()).unwrap();
        f.write_all(b"hello").unwrap();
        f.rewind().unwrap();
        let mut back = String::new();
        f.read_to_string(&mut back).unwrap();
        assert_eq!(back, "hello");
        #[cfg(unix)]
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        drop(f);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
