//! `moxd localserve`: the whole tree for a newcomer, on loopback ports 1000 + the standard port,
//! without root, with its configuration and data under one directory.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ipc::config::ListenerKind;

use crate::error::Error;

/// Port offset from the standard ports.
pub const PORT_OFFSET: u16 = 1000;

/// Where root's localserve keeps its configuration and data by default.
pub const ROOT_DIR: &str = "/var/lib/moxd-localserve";

/// The default directory: [`ROOT_DIR`] as root, else `$XDG_DATA_HOME/moxd-localserve` or
/// `~/.local/share/moxd-localserve`. As root every role runs as its own user and must be able to
/// pass through each directory above its own, which a home directory (`/root` is 0700 on
/// Debian) does not allow; `/var/lib` does, as for any system service.
pub fn default_dir() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from(ROOT_DIR);
    }
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("moxd-localserve");
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/share/moxd-localserve"),
        None => PathBuf::from("moxd-localserve"),
    }
}

/// Writes `dir/moxd.toml` if it does not exist yet; returns its path.
pub fn ensure_config(dir: &Path) -> Result<PathBuf, Error> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Dirs(format!("creating {}: {e}", dir.display())))?;
    let dir = dir
        .canonicalize()
        .map_err(|e| Error::Dirs(format!("resolving {}: {e}", dir.display())))?;
    let path = dir.join("moxd.toml");
    if path.exists() {
        return Ok(path);
    }
    let uid = nix::unistd::getuid().as_raw();
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# Written by `moxd localserve`; edit freely, it is not overwritten."
    );
    let _ = writeln!(text, "[server]\nhostname = \"localhost\"");
    let _ = writeln!(
        text,
        "data_dir = {:?}",
        dir.join("data").display().to_string()
    );
    let _ = writeln!(
        text,
        "run_dir = {:?}",
        dir.join("run").display().to_string()
    );
    let _ = writeln!(text, "log = \"info\"\nshutdown_grace_secs = 3\n");
    let _ = writeln!(text, "[admin]\nuids = [{uid}]\n");
    let _ = writeln!(text, "[listen]");
    for kind in ListenerKind::ALL {
        let port = kind.standard_port() + PORT_OFFSET;
        let _ = writeln!(text, "{} = [\"127.0.0.1:{port}\"]", kind.name());
    }
    let tmp = dir.join("moxd.toml.tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| Error::Dirs(format!("writing {}: {e}", path.display())))?;
    Ok(path)
}
