//! Certificate files named in the configuration: opened here, as root, and passed to keyd as
//! fds. keyd's sandbox cannot reach them, and the supervisor never reads them: what is inside
//! is keyd's business.

use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;

use ipc::config::CertificateFiles;

/// Opens every entry's chain and key, two fds per entry in order. An entry that cannot be
/// opened is an error naming its file; nothing is returned then.
pub fn open_all(entries: &[CertificateFiles]) -> Result<Vec<OwnedFd>, String> {
    let mut fds = Vec::with_capacity(2 * entries.len());
    for entry in entries {
        fds.push(open(&entry.cert, false)?);
        fds.push(open(&entry.key, true)?);
    }
    Ok(fds)
}

/// Opens the entries that can be opened (for a keyd restart: a certificate file that vanished
/// since the last reload must not keep keyd down). Returns the entries kept and their fds.
pub fn open_available(entries: &[CertificateFiles]) -> (Vec<CertificateFiles>, Vec<OwnedFd>) {
    let mut kept = Vec::new();
    let mut fds = Vec::new();
    for entry in entries {
        match (open(&entry.cert, false), open(&entry.key, true)) {
            (Ok(cert), Ok(key)) => {
                kept.push(entry.clone());
                fds.extend([cert, key]);
            }
            (Err(e), _) | (_, Err(e)) => tracing::error!("{e}; keyd starts without it"),
        }
    }
    (kept, fds)
}

fn open(path: &std::path::Path, private: bool) -> Result<OwnedFd, String> {
    // Symbolic links are followed: certbot's `live/` directory is made of them. O_NONBLOCK: a
    // FIFO put at the path must not hang the supervisor (it is refused just below).
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_NOCTTY).bits())
        .open(path)
        .map_err(|e| format!("certificate file {}: {e}", path.display()))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("certificate file {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!(
            "certificate file {}: not a regular file",
            path.display()
        ));
    }
    if meta.len() > MAX_FILE {
        return Err(format!(
            "certificate file {}: {} bytes; at most {MAX_FILE} are read",
            path.display(),
            meta.len()
        ));
    }
    if private && meta.mode() & 0o004 != 0 {
        tracing::warn!(
            "private key {} is readable by every user (mode {:o}); chmod o-r it",
            path.display(),
            meta.mode() & 0o7777
        );
    }
    Ok(OwnedFd::from(file))
}

/// Larger than any real chain or key; keyd reads at most this much.
pub const MAX_FILE: u64 = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_pairs_in_order_and_names_the_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("c.pem");
        let key = dir.path().join("k.pem");
        std::fs::write(&cert, "chain").unwrap();
        std::fs::write(&key, "key").unwrap();
        let good = CertificateFiles {
            names: vec![],
            cert: cert.clone(),
            key: key.clone(),
        };
        let missing = CertificateFiles {
            names: vec![],
            cert: cert.clone(),
            key: dir.path().join("gone.pem"),
        };
        assert_eq!(open_all(std::slice::from_ref(&good)).unwrap().len(), 2);
        let e = open_all(&[good.clone(), missing.clone()]).unwrap_err();
        assert!(e.contains("gone.pem"), "{e}");
        let (kept, fds) = open_available(&[missing, good.clone()]);
        assert_eq!((kept, fds.len()), (vec![good], 2));
        let e = open_all(&[CertificateFiles {
            names: vec![],
            cert: dir.path().to_path_buf(),
            key,
        }])
        .unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
    }
}
