//! Streaming DATA into the destinations: the DATA reader undoes dot-stuffing, the header block
//! is held back until complete (it is checked and cleaned of forged Authentication-Results
//! before anything is written), and the rest goes out in chunks, fed to the inbound checks on
//! the way.

use crate::data::{DataError, DataReader};
use crate::inbound::MessageChecks;
use crate::io::{Conn, ConnError};
use crate::reply::Reply;
use crate::session::Session;

use super::sink::Sink;

/// Bytes collected before they are written to the destinations.
const CHUNK: usize = 64 * 1024;

/// The largest header block accepted (it is held in memory, checked and cleaned).
pub(super) const HEAD: usize = 64 * 1024;

/// How long one message's DATA may take in all (RFC 5321 §4.5.3.2.6 suggests 10 minutes for
/// the server's wait for the terminating dot).
const DATA_LIMIT: std::time::Duration = std::time::Duration::from_secs(10 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Head {
    Collecting,
    Written,
    TooLarge,
}

/// What came of reading the message: judged by the caller once the terminating dot is in.
pub(super) struct Streamed {
    /// The cleaned header block (without our Received line).
    pub(super) head: Vec<u8>,
    pub(super) head_state: Head,
    /// The first failure writing to a destination; later writes are skipped.
    pub(super) write_failed: Option<std::io::Error>,
    /// What the DATA reader found wrong with the message, if anything.
    pub(super) error: Option<DataError>,
    pub(super) size: u64,
}

/// Reads the message from `conn` into `sinks`, behind the `received` trace field, until the
/// terminating dot. Fails only when the connection does (or DATA takes too long); the caller
/// gives the destinations back then.
pub(super) async fn stream(
    conn: &mut Conn,
    session: &Session,
    received: &str,
    sinks: &mut [Sink],
    mut checks: Option<&mut MessageChecks>,
) -> Result<Streamed, ConnError> {
    let mut write_failed: Option<std::io::Error> = None;
    let mut reader = DataReader::new(session.config.max_size);
    let mut chunk = Vec::with_capacity(CHUNK + 4096);
    let mut head: Vec<u8> = Vec::new();
    let mut head_state = Head::Collecting;
    let deadline = tokio::time::Instant::now() + DATA_LIMIT;
    loop {
        let (used, done) = reader.feed(&conn.input, &mut chunk);
        conn.input.drain(..used);
        let mut out: Vec<u8> = Vec::new();
        if head_state == Head::Collecting {
            head.extend_from_slice(&chunk);
            chunk.clear();
            let found = crate::header::block_end(&head);
            if found.is_some() || head.len() >= HEAD || done {
                head_state = match found {
                    Some(end) if end <= HEAD => Head::Written,
                    // A message of header fields only.
                    None if done && head.len() <= HEAD => Head::Written,
                    _ => Head::TooLarge,
                };
                let end = found.unwrap_or(head.len());
                let rest = head.split_off(end.min(head.len()));
                if let Some(c) = checks.as_mut() {
                    c.header_block(&head);
                    c.body(&rest);
                }
                head = crate::header::sanitize(&head, &session.config.hostname);
                out.extend_from_slice(received.as_bytes());
                out.extend_from_slice(&head);
                out.extend_from_slice(&rest);
            }
        } else if chunk.len() >= CHUNK || done {
            out = std::mem::take(&mut chunk);
            if let Some(c) = checks.as_mut() {
                c.body(&out);
            }
        }
        if !out.is_empty() {
            for sink in sinks.iter_mut() {
                // A pipe waits for its reader: never longer than the message may take.
                if write_failed.is_none()
                    && let Err(e) = tokio::time::timeout_at(deadline, sink.write_all(&out))
                        .await
                        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
                {
                    write_failed = Some(e);
                }
            }
        }
        if done {
            break;
        }
        let more = tokio::time::timeout_at(deadline, conn.fill_up_to(CHUNK)).await;
        match more {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(ConnError::Timeout(DATA_LIMIT)),
        }
    }
    // An idle connection keeps no 64 KiB buffer.
    conn.input.shrink_to(16 * 1024);
    for sink in sinks.iter_mut() {
        if write_failed.is_none()
            && let Err(e) = sink.flush().await
        {
            write_failed = Some(e);
        }
    }
    Ok(Streamed {
        head,
        head_state,
        write_failed,
        error: reader.error(),
        size: reader.size(),
    })
}

impl Streamed {
    /// Why the message is refused now that it is all in, if it is: a malformed or oversized
    /// message, an oversized header block, or a destination that could not be written.
    pub(super) fn refusal(&self, max: u64) -> Option<Reply> {
        if let Some(e) = self.error {
            return Some(match e {
                DataError::BareLf | DataError::BareCr => Reply::new(
                    554,
                    "5.6.0",
                    "message refused: a bare CR or LF in it; lines must end with CRLF",
                ),
                DataError::LineTooLong => Reply::new(
                    554,
                    "5.6.0",
                    "message refused: a line longer than 998 octets",
                ),
                DataError::TooLarge => Reply::new(
                    552,
                    "5.3.4",
                    format!("the message is larger than the limit of {max} octets"),
                ),
            });
        }
        if self.head_state == Head::TooLarge {
            return Some(Reply::new(
                552,
                "5.3.4",
                format!("message refused: its header block is larger than {HEAD} octets"),
            ));
        }
        if let Some(e) = &self.write_failed {
            tracing::error!("writing a message for storaged or queued: {e}");
            return Some(Reply::new(
                451,
                "4.3.0",
                "local error writing the message; try again later",
            ));
        }
        None
    }
}
