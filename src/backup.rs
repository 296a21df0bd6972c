//! `moxctl backup DIR`: storaged streams a tar archive of a consistent snapshot into a pipe;
//! `tar -x` on our side unpacks it into DIR. The supervisor only forwards the descriptor.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};

/// Creates DIR and starts `tar -x` reading from a pipe; returns the pipe's write end.
pub fn start(dir: &Path) -> Result<(OwnedFd, Child), String> {
    if dir.exists() && std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_some()) {
        return Err(format!(
            "{} exists and is not an empty directory",
            dir.display()
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let (read, write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    let tar = Command::new("tar")
        .args(["-x", "--no-same-owner", "-f", "-", "-C"])
        .arg(dir)
        .stdin(Stdio::from(read))
        .spawn()
        .map_err(|e| format!("starting tar: {e}"))?;
    Ok((write, tar))
}

/// Waits for tar and reports: `result` is storaged's answer, or why there was none.
pub fn finish<R>(
    mut tar: Child,
    dir: &Path,
    result: Result<R, String>,
    print: impl FnOnce(R) -> ExitCode,
) -> ExitCode {
    let status = tar.wait();
    match (result, status) {
        (Err(e), _) => {
            eprintln!(
                "moxctl: backup failed: {e}; {} is incomplete",
                dir.display()
            );
            ExitCode::FAILURE
        }
        (Ok(_), Ok(s)) if !s.success() => {
            eprintln!("moxctl: tar failed ({s}); {} is incomplete", dir.display());
            ExitCode::FAILURE
        }
        (Ok(r), Ok(_)) => {
            let code = print(r);
            println!(
                "backup in {}; check it with: moxd verifydata {}",
                dir.display(),
                dir.display()
            );
            code
        }
        (Ok(_), Err(e)) => {
            eprintln!("moxctl: waiting for tar: {e}");
            ExitCode::FAILURE
        }
    }
}
