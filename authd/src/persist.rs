//! Durable files for authd's state: an atomic, fsynced replace, and the one codec pair.
//!
//! Every file authd writes (the credential store, the throttle counters) goes through
//! [`write_atomic`]: the new contents go to a temporary file in the same directory, which is
//! fsynced, renamed over the old file, and the directory is fsynced, so that after a crash the
//! file is either the old or the new version, never a mix, and a completed write survives power
//! loss. A temporary file left by a crash is removed by the next [`read`].
//!
//! Contents are an 8-byte magic, a big-endian `u32` format version, then a bincode payload.
//! bincode is reached only through [`encode`] and [`decode`], so that swapping the codec (it is
//! unmaintained, see DESIGN.md §12) touches these two functions.

use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{FormatProblem, StoreError};

/// The largest file authd reads or writes (a bound on a corrupt length field, too).
const MAX_FILE_LEN: usize = 256 * 1024 * 1024;

/// Replaces `dir/name` with `bytes`, atomically and durably.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let target = dir.join(name);
    let temp = temp_path(dir, name);
    let io = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| StoreError::Io {
            action,
            path,
            source,
        }
    };
    let mut file = open_private(&temp).map_err(io("create", &temp))?;
    file.write_all(bytes).map_err(io("write", &temp))?;
    file.sync_all().map_err(io("fsync", &temp))?;
    drop(file);
    fs::rename(&temp, &target).map_err(io("rename into place", &target))?;
    ipc::files::sync_dir(dir).map_err(io("fsync directory", dir))?;
    Ok(())
}

/// Reads `dir/name`, or `None` if it does not exist; removes a temporary file left by a crash.
pub(crate) fn read(dir: &Path, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let temp = temp_path(dir, name);
    match fs::remove_file(&temp) {
        Ok(()) => {
            tracing::warn!(path = %temp.display(), "removed a temporary file left by a crash")
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(source) => {
            return Err(StoreError::Io {
                action: "remove stale",
                path: temp,
                source,
            });
        }
    }
    let path = dir.join(name);
    match fs::read(&path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StoreError::Io {
            action: "read",
            path,
            source,
        }),
    }
}

/// Encodes `value` behind `magic` and `version`.
pub(crate) fn encode<T: Serialize>(
    magic: &[u8; 8],
    version: u32,
    what: &'static str,
    value: &T,
) -> Result<Vec<u8>, StoreError> {
    let payload =
        bincode::serde::encode_to_vec(value, codec_config()).map_err(|e| StoreError::Encode {
            what,
            reason: e.to_string(),
        })?;
    let mut out = Vec::with_capacity(12 + payload.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Decodes what [`encode`] wrote, refusing another magic, another version or trailing bytes.
pub(crate) fn decode<T: DeserializeOwned>(
    magic: &[u8; 8],
    version: u32,
    what: &'static str,
    path: &Path,
    bytes: &[u8],
) -> Result<T, StoreError> {
    let format = |problem| StoreError::Format {
        path: path.to_path_buf(),
        problem,
    };
    let Some((head, payload)) = bytes.split_at_checked(12) else {
        return Err(format(FormatProblem::BadMagic { expected: what }));
    };
    if &head[..8] != magic {
        return Err(format(FormatProblem::BadMagic { expected: what }));
    }
    let found = u32::from_be_bytes([head[8], head[9], head[10], head[11]]);
    if found != version {
        return Err(format(FormatProblem::Version {
            found,
            supported: version,
        }));
    }
    let (value, used) = bincode::serde::decode_from_slice(payload, codec_config())
        .map_err(|e| format(FormatProblem::Decode(e.to_string())))?;
    if used != payload.len() {
        return Err(format(FormatProblem::Trailing(payload.len() - used)));
    }
    Ok(value)
}

fn codec_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_FILE_LEN>()
}

fn temp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.tmp"))
}

/// Creates (truncating) a file only authd's user can read.
fn open_private(path: &Path) -> std::io::Result<File> {
    ipc::files::private().create(true).truncate(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAGIC: &[u8; 8] = b"moxdtest";

    #[test]
    fn round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = encode(MAGIC, 1, "test", &vec![1u32, 2, 3]).unwrap();
        write_atomic(dir.path(), "f", &bytes).unwrap();
        let read_back = read(dir.path(), "f").unwrap().unwrap();
        let value: Vec<u32> = decode(MAGIC, 1, "test", Path::new("f"), &read_back).unwrap();
        assert_eq!(value, vec![1, 2, 3]);
        assert!(!temp_path(dir.path(), "f").exists());
    }

    #[test]
    fn reads_nothing_when_the_file_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path(), "absent").unwrap().is_none());
    }

    #[test]
    fn removes_a_temporary_file_left_by_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "f", b"good").unwrap();
        fs::write(temp_path(dir.path(), "f"), b"half-written").unwrap();
        assert_eq!(read(dir.path(), "f").unwrap().unwrap(), b"good");
        assert!(!temp_path(dir.path(), "f").exists());
    }

    #[cfg(unix)]
    #[test]
    fn writes_files_only_the_owner_can_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "f", b"x").unwrap();
        let mode = fs::metadata(dir.path().join("f"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn refuses_other_magic_version_and_trailing_bytes() {
        let p = Path::new("f");
        let good = encode(MAGIC, 2, "test", &7u8).unwrap();
        let r: Result<u8, _> = decode(b"moxdXXXX", 2, "test", p, &good);
        assert!(matches!(
            r,
            Err(StoreError::Format {
                problem: FormatProblem::BadMagic { .. },
                ..
            })
        ));
        let r: Result<u8, _> = decode(MAGIC, 3, "test", p, &good);
        assert!(matches!(
            r,
            Err(StoreError::Format {
                problem: FormatProblem::Version { found: 2, .. },
                ..
            })
        ));
        let mut long = good.clone();
        long.push(0);
        let r: Result<u8, _> = decode(MAGIC, 2, "test", p, &long);
        assert!(matches!(
            r,
            Err(StoreError::Format {
                problem: FormatProblem::Trailing(1),
                ..
            })
        ));
        let r: Result<u8, _> = decode(MAGIC, 2, "test", p, &good[..5]);
        assert!(r.is_err());
    }
}
