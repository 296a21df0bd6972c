//! Reading a password for `moxctl password set`, and handing it over as a pipe so that it
//! travels to authd as a descriptor, never inside a message the supervisor decodes.

use std::io::{BufRead, IsTerminal, Write};
use std::os::fd::{AsFd, OwnedFd};

use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};

/// Reads the password: the first line of stdin with `from_stdin`, else asked twice on the
/// terminal without echo.
pub fn read(from_stdin: bool) -> Result<String, String> {
    let stdin = std::io::stdin();
    if from_stdin || !stdin.is_terminal() {
        if !from_stdin {
            return Err(
                "standard input is not a terminal: use --stdin to read the password from it".into(),
            );
        }
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("reading the password: {e}"))?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_string());
    }
    let first = ask("Password: ")?;
    let second = ask("Again: ")?;
    if first != second {
        return Err("the passwords differ".into());
    }
    Ok(first)
}

/// Asks once with echo off, restoring the terminal afterwards.
fn ask(prompt: &str) -> Result<String, String> {
    let stdin = std::io::stdin();
    let saved = tcgetattr(stdin.as_fd()).map_err(|e| format!("terminal: {e}"))?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &quiet).map_err(|e| format!("terminal: {e}"))?;
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &saved);
    eprintln!();
    read.map_err(|e| format!("reading the password: {e}"))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// A pipe whose read end holds `password` (and then end of file).
pub fn into_pipe(password: &str) -> Result<OwnedFd, String> {
    if password.is_empty() {
        return Err("empty password".into());
    }
    let (read, write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    let mut write = std::fs::File::from(write);
    write
        .write_all(password.as_bytes())
        .map_err(|e| format!("pipe: {e}"))?;
    Ok(read)
}
