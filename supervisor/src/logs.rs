//! Logging: roles write plain lines to stderr (a pipe the supervisor reads); the supervisor
//! stamps each line with the time and the role's name and pid. One line per event, greppable.

use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormattedFields};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, reload};

/// Replaces the log filter of this role (process mode) or of the process (single-process
/// mode). Defined here, with the loggers that make one, so that logging depends on nothing
/// else in the supervisor.
pub type LogControl = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Installs the role's logger: `LEVEL target: message fields`, then the fields of the spans
/// it is in, no time (the supervisor adds it).
pub fn init_role(filter: &str) -> LogControl {
    install(filter, false)
}

/// Installs the supervisor's logger (also used by single-process mode for every role).
pub fn init_supervisor(filter: &str) -> LogControl {
    install(filter, true)
}

fn install(filter: &str, with_time: bool) -> LogControl {
    let initial = parse_filter(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter_layer, handle) = reload::Layer::new(initial);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .event_format(LineFormat { with_time });
    let installed = tracing_subscriber::registry()
        .with(filter_layer)
        .with(fmt)
        .try_init();
    if let Err(e) = installed {
        eprintln!("logging already initialised: {e}");
    }
    Arc::new(move |filter: &str| {
        let parsed =
            parse_filter(filter).map_err(|e| format!("invalid log filter `{filter}`: {e}"))?;
        handle.reload(parsed).map_err(|e| e.to_string())
    })
}

/// An operator's filter, plus the spans that say who wrote a line ([`ipc::span`]): whatever
/// the filter, a line that is written carries them.
fn parse_filter(filter: &str) -> Result<EnvFilter, tracing_subscriber::filter::ParseError> {
    let context: tracing_subscriber::filter::Directive =
        format!("{}=error", ipc::span::TARGET).parse()?;
    Ok(EnvFilter::builder().parse(filter)?.add_directive(context))
}

/// One line per event: `[time ]LEVEL target: message fields span-fields`, the fields of the
/// spans it is in from the outermost (`role=smtpd peer=192.0.2.1:4711 session=…`). The span
/// names are left out: the field names say enough, and a line begins the same whether or not
/// it is inside a span.
struct LineFormat {
    with_time: bool,
}

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        if self.with_time {
            SystemTime.format_time(&mut writer)?;
            writer.write_char(' ')?;
        }
        write!(writer, "{:>5} {}: ", meta.level(), meta.target())?;
        ctx.format_fields(writer.by_ref(), event)?;
        for span in ctx.event_scope().into_iter().flat_map(|s| s.from_root()) {
            if let Some(fields) = span.extensions().get::<FormattedFields<N>>()
                && !fields.is_empty()
            {
                write!(writer, " {fields}")?;
            }
        }
        writeln!(writer)
    }
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

    /// The lines a logger like ours (`filter`, no time) writes while `f` runs.
    fn lines_logged(filter: &str, f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buffer(Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::registry()
            .with(parse_filter(filter).unwrap())
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(move || writer.clone())
                    .event_format(LineFormat { with_time: false }),
            );
        tracing::subscriber::with_default(subscriber, f);
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn a_line_ends_with_the_fields_of_its_role_and_connection() {
        let peer: std::net::SocketAddr = "192.0.2.1:4711".parse().unwrap();
        let logged = lines_logged("info", || {
            let _role = ipc::span::role(ipc::Role::Submission).entered();
            let _conn = ipc::span::connection(peer, ipc::span::Id(0x1f)).entered();
            tracing::info!(target: "smtpd::conn", account = "bob", "authenticated");
        });
        assert_eq!(
            logged,
            " INFO smtpd::conn: authenticated account=\"bob\" role=submission peer=192.0.2.1:4711 session=1f\n"
        );
    }

    #[test]
    fn a_request_line_names_its_link_and_id() {
        let logged = lines_logged("info", || {
            let _role = ipc::span::role(ipc::Role::Storaged).entered();
            let _link = ipc::span::link("smtpd→storaged").entered();
            let request = ipc::span::request(7).entered();
            tracing::warn!(target: "storaged::service", "refused");
            // What the catalogue's request names will fill in.
            request.record("request", tracing::field::display("Deliver"));
            tracing::warn!(target: "storaged::service", "refused again");
        });
        assert_eq!(
            logged,
            " WARN storaged::service: refused role=storaged link=smtpd→storaged id=7\n \
             WARN storaged::service: refused again role=storaged link=smtpd→storaged id=7 request=Deliver\n"
        );
    }

    #[test]
    fn a_filter_naming_only_some_targets_keeps_the_role_on_their_lines() {
        let logged = lines_logged("smtpd=debug", || {
            let _role = ipc::span::role(ipc::Role::Smtpd).entered();
            tracing::debug!(target: "smtpd::conn", "done");
            tracing::info!(target: "storaged", "not shown");
        });
        assert_eq!(logged, "DEBUG smtpd::conn: done role=smtpd\n");
    }

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
