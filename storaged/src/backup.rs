//! Online backup: a consistent snapshot of the database and the message files it refers to,
//! streamed as a tar archive into a descriptor (moxctl feeds it to `tar -x`). Writes pause only
//! while the database is exported and the files are hard-linked into a staging directory; the
//! (slow) streaming runs afterwards from the staging copy.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::db::Db;
use crate::error::{Result, StoreError};
use crate::files::Files;

/// What a backup wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub messages: usize,
    pub bytes: u64,
}

/// Takes the snapshot into `staging` (inside storaged's directory); the caller holds writes
/// back meanwhile.
pub fn snapshot(db: &Db, files: &Files, staging: &Path) -> Result<usize> {
    let err = |e: io::Error| StoreError::File {
        path: staging.display().to_string(),
        source: e,
    };
    std::fs::create_dir(staging).map_err(err)?;
    // The files of small deliveries made durable first: the links below share them.
    crate::inline::checkpoint(db, files, true)?;
    db.flush()?;
    db.export_to(&staging.join("db"))?;
    let copy = Files::open(staging)?;
    let mut count = 0;
    for e in db.messages.iter() {
        let (_, v) = e?;
        let m: crate::db::record::Message = crate::db::record::decode("messages", &v)?;
        let to = copy.path(m.file);
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        std::fs::hard_link(files.path(m.file), &to).map_err(err)?;
        count += 1;
    }
    Ok(count)
}

/// Streams `staging` as a tar archive (ustar) into `out`, then removes it.
pub fn stream(staging: &Path, out: File, messages: usize) -> Result<Summary> {
    let err = |e: io::Error| StoreError::File {
        path: "(backup stream)".into(),
        source: e,
    };
    let mut out = io::BufWriter::with_capacity(256 * 1024, out);
    let mut bytes = 0;
    let mut stack: Vec<(PathBuf, String)> = vec![(staging.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .map_err(err)?
            .collect::<io::Result<_>>()
            .map_err(err)?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            let meta = entry.metadata().map_err(err)?;
            if meta.is_dir() {
                header(&mut out, &format!("{name}/"), 0, b'5').map_err(err)?;
                stack.push((entry.path(), format!("{name}/")));
            } else if meta.is_file() {
                header(&mut out, &name, meta.len(), b'0').map_err(err)?;
                let mut f = File::open(entry.path()).map_err(err)?;
                let copied = io::copy(&mut f, &mut out).map_err(err)?;
                if copied != meta.len() {
                    return Err(err(io::Error::other("file changed size while backing up")));
                }
                pad(&mut out, copied).map_err(err)?;
                bytes += copied;
            }
        }
    }
    out.write_all(&[0u8; 1024]).map_err(err)?;
    out.flush().map_err(err)?;
    std::fs::remove_dir_all(staging).map_err(err)?;
    Ok(Summary { messages, bytes })
}

/// One ustar header block.
fn header(out: &mut impl Write, name: &str, size: u64, kind: u8) -> io::Result<()> {
    if name.len() > 100 {
        return Err(io::Error::other(format!("path too long for tar: {name}")));
    }
    if size > 0o77_777_777_777 {
        return Err(io::Error::other(format!(
            "{name}: 8 GiB or more does not fit a ustar header"
        )));
    }
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let mode: &[u8] = if kind == b'5' {
        b"0000700\0"
    } else {
        b"0000600\0"
    };
    h[100..108].copy_from_slice(mode);
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(format!("{:011o}\0", crate::db::now().max(0)).as_bytes());
    h[148..156].copy_from_slice(b"        ");
    h[156] = kind;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    out.write_all(&h)
}

fn pad(out: &mut impl Write, size: u64) -> io::Result<()> {
    let rest = (512 - size % 512) % 512;
    out.write_all(&vec![0u8; rest as usize])
}
