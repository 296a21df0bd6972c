//! Logging: roles write plain lines to stderr (a pipe the supervisor reads); the supervisor
//! stamps each line with the time and the role's name and pid. One line per event, greppable.

use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, reload};

/// Replaces the log filter of this role (process mode) or of the process (single-process
/// mode). Defined here, with the loggers that make one, so that logging depends on nothing
/// else in the supervisor.
pub type LogControl = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Installs the role's logger: `LEVEL target: message`, no time (the supervisor adds it).
pub fn init_role(filter: &str) -> LogControl {
    install(filter, false)
}

/// Installs the supervisor's logger (also used by single-process mode for every role).
pub fn init_supervisor(filter: &str) -> LogControl {
    install(filter, true)
}

fn install(filter: &str, with_time: bool) -> LogControl {
    let initial = EnvFilter::builder()
        .parse(filter)
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter_layer, handle) = reload::Layer::new(initial);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(true);
    let registry = tracing_subscriber::registry().with(filter_layer);
    let installed = if with_time {
        registry.with(fmt).try_init()
    } else {
        registry.with(fmt.without_time()).try_init()
    };
    if let Err(e) = installed {
        eprintln!("logging already initialised: {e}");
    }
    Arc::new(move |filter: &str| {
        let parsed = EnvFilter::builder()
            .parse(filter)
            .map_err(|e| format!("invalid log filter `{filter}`: {e}"))?;
        handle.reload(parsed).map_err(|e| e.to_string())
    })
}

/// The current time as the logger prints it.
pub fn timestamp() -> String {
    let mut s = String::new();
    let _ = SystemTime.format_time(&mut Writer::new(&mut s));
    s
}

/// Longest line relayed from a role; the rest of a longer line is cut.
const MAX_LINE: usize = 4096;
/// Lines waiting for the writer before new ones are dropped.
const QUEUE: usize = 4096;

/// Copies a role's output to our stderr, a line at a time, prefixed with time, role and pid.
/// Lines are cut at [`MAX_LINE`] bytes and control characters escaped, so a role can neither
/// exhaust our memory nor forge a line that looks like another process's; a stalled stderr
/// drops lines (counted) rather than blocking the supervisor.
pub async fn relay(role: ipc::Role, pid: u32, stream: impl AsyncRead + Unpin) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match read_line_capped(&mut reader, &mut line).await {
            Ok(0) => break,
            Ok(_) => {
                let text = escape(&line);
                writer().emit(format!(
                    "{} {role}[{pid}]: {}\n",
                    timestamp(),
                    text.trim_start()
                ));
            }
            Err(e) => {
                writer().emit(format!(
                    "{} {role}[{pid}]: (unreadable output: {e})\n",
                    timestamp()
                ));
                break;
            }
        }
    }
}

/// Reads up to a newline, keeping at most [`MAX_LINE`] bytes of it.
async fn read_line_capped<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    out: &mut Vec<u8>,
) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(total);
        }
        let (chunk, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        let room = MAX_LINE.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = done.unwrap_or(buf.len());
        total += used;
        reader.consume(used);
        if done.is_some() {
            return Ok(total);
        }
    }
}

/// Escapes control characters (and invalid UTF-8) so one read line stays one log line.
fn escape(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\t' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The thread that writes relayed lines, so that a slow stderr never blocks the event loop.
struct LineWriter {
    tx: std::sync::mpsc::SyncSender<String>,
    dropped: std::sync::atomic::AtomicU64,
}

impl LineWriter {
    fn emit(&self, line: String) {
        use std::sync::atomic::Ordering;
        if self.tx.try_send(line).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let _ = self.tx.try_send(format!(
                "{} supervisor: {dropped} role log lines dropped (stderr too slow)\n",
                timestamp()
            ));
        }
    }
}

fn writer() -> &'static LineWriter {
    static WRITER: std::sync::OnceLock<LineWriter> = std::sync::OnceLock::new();
    WRITER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<String>(QUEUE);
        let spawned = std::thread::Builder::new()
            .name("moxd-log".into())
            .spawn(move || {
                use std::io::Write;
                for line in rx {
                    // A closed stderr loses the line; it must never take the supervisor down.
                    let _ = std::io::stderr().lock().write_all(line.as_bytes());
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the log writer: {e}");
        }
        LineWriter {
            tx,
            dropped: std::sync::atomic::AtomicU64::new(0),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cuts_long_lines_and_escapes_control_characters() {
        let mut input = vec![b'a'; 3 * MAX_LINE];
        input.extend_from_slice(b"\nnext\x1b[31m\rfake line\n");
        let mut reader = BufReader::new(&input[..]);
        let mut line = Vec::new();
        assert_eq!(
            read_line_capped(&mut reader, &mut line).await.unwrap(),
            3 * MAX_LINE + 1
        );
        assert_eq!(line.len(), MAX_LINE);
        line.clear();
        read_line_capped(&mut reader, &mut line).await.unwrap();
        assert_eq!(escape(&line), "next\\u{1b}[31m\\rfake line");
    }
}
