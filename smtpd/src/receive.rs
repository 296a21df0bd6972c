//! Receiving a message (after 354): the bytes stream through the DATA reader into a temporary
//! file storaged handed out, behind our Received line; storaged then delivers it to every local
//! recipient and answers once it is durable. Only then does the client hear 250.

use std::time::SystemTime;

use ipc::msg::store::{self, RecipientResult, StoreService};
use tokio::io::AsyncWriteExt;

use crate::data::{DataError, DataReader};
use crate::io::{Conn, ConnError};
use crate::reply::Reply;
use crate::session::{Session, Transaction};

/// Bytes collected before they are written to the file.
const CHUNK: usize = 64 * 1024;

/// What the client is told after the message, and what to log.
pub struct Outcome {
    pub reply: Reply,
    pub size: u64,
}

/// Reads the message and delivers it to the transaction's local recipients (addresses as
/// storaged knows them: `deliver_to`). The 354 is already queued.
pub async fn receive(
    conn: &mut Conn,
    session: &Session,
    tx: &Transaction,
    deliver_to: Vec<String>,
    storaged: &ipc::Client<StoreService>,
    id: &str,
) -> Result<Outcome, ConnError> {
    let max = session.config.max_size;
    // The file first: if storaged cannot take the message, say so before the client sends it.
    let opened = storaged
        .call(&store::Request::OpenDelivery, Vec::new())
        .await;
    let (delivery, fd) = match opened {
        Ok((store::Response::DeliveryOpened { id }, mut fds)) if fds.len() == 1 => {
            (id, fds.remove(0))
        }
        other => {
            tracing::warn!("storaged gave no delivery file: {other:?}");
            return Ok(Outcome {
                reply: Reply::new(
                    451,
                    "4.3.0",
                    "the message store is not available; try again later",
                ),
                size: 0,
            });
        }
    };
    conn.queue(&Reply::plain(
        354,
        "start mail input; end with <CRLF>.<CRLF>",
    ));
    conn.flush().await?;
    let mut file = tokio::fs::File::from_std(std::fs::File::from(fd));
    let mut write_failed = None;
    let received = received_line(conn, session, tx, id);
    if let Err(e) = file.write_all(received.as_bytes()).await {
        write_failed = Some(e);
    }
    let mut reader = DataReader::new(max);
    let mut chunk = Vec::with_capacity(CHUNK + 4096);
    loop {
        let (used, done) = reader.feed(&conn.input, &mut chunk);
        conn.input.drain(..used);
        if chunk.len() >= CHUNK || done {
            if write_failed.is_none()
                && let Err(e) = file.write_all(&chunk).await
            {
                write_failed = Some(e);
            }
            chunk.clear();
        }
        if done {
            break;
        }
        if let Err(e) = conn.fill().await {
            let _ = storaged
                .call(&store::Request::AbortDelivery { id: delivery }, Vec::new())
                .await;
            return Err(e);
        }
    }
    if write_failed.is_none()
        && let Err(e) = file.flush().await
    {
        write_failed = Some(e);
    }
    drop(file);
    let size = reader.size();
    let refuse = |reply: Reply| Outcome { reply, size };
    if let Some(e) = reader.error() {
        let _ = storaged
            .call(&store::Request::AbortDelivery { id: delivery }, Vec::new())
            .await;
        return Ok(refuse(match e {
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
        }));
    }
    if let Some(e) = write_failed {
        tracing::error!("writing a message to storaged's file: {e}");
        let _ = storaged
            .call(&store::Request::AbortDelivery { id: delivery }, Vec::new())
            .await;
        return Ok(refuse(Reply::new(
            451,
            "4.3.0",
            "local error writing the message; try again later",
        )));
    }
    let count = deliver_to.len();
    let answer = storaged
        .call(
            &store::Request::Deliver {
                id: delivery,
                recipients: deliver_to,
            },
            Vec::new(),
        )
        .await;
    Ok(refuse(match answer {
        Ok((store::Response::Delivered(results), _)) => {
            let delivered = results
                .iter()
                .filter(|r| **r == RecipientResult::Delivered)
                .count();
            if delivered < count {
                tracing::warn!(
                    "{id}: {} of {count} recipients vanished since RCPT",
                    count - delivered
                );
            }
            if delivered == 0 {
                Reply::new(550, "5.1.1", "no recipient exists any more")
            } else {
                Reply::new(250, "2.0.0", format!("{id} delivered"))
            }
        }
        Ok((store::Response::Failed(f), _)) if f.temporary => Reply::new(
            451,
            "4.3.0",
            format!("not delivered: {}; try again later", f.message),
        ),
        Ok((store::Response::Failed(f), _)) => {
            Reply::new(554, "5.3.0", format!("not delivered: {}", f.message))
        }
        Ok((other, _)) => Reply::new(
            451,
            "4.3.0",
            format!("unexpected answer from the store: {other:?}"),
        ),
        Err(e) => Reply::new(
            451,
            "4.3.0",
            format!("the message store failed: {e}; try again later"),
        ),
    }))
}

/// The trace field for this hop (RFC 5321 §4.4; protocol names per RFC 3848 and RFC 6531).
fn received_line(conn: &Conn, session: &Session, tx: &Transaction, id: &str) -> String {
    let (helo, ehlo) = session.helo.clone().unwrap_or_default();
    let helo: String = helo
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    let mut proto = String::from(match (tx.params.smtputf8, ehlo) {
        (true, _) => "UTF8SMTP",
        (false, true) => "ESMTP",
        (false, false) => "SMTP",
    });
    if conn.is_tls() {
        proto.push('S');
    }
    if session.account.is_some() {
        proto.push('A');
    }
    let tls = conn
        .tls_summary()
        .map(|t| format!("\r\n\t(using {t})"))
        .unwrap_or_default();
    let rcpt = match (tx.local.as_slice(), tx.remote.as_slice()) {
        ([one], []) | ([], [one]) => format!("\r\n\tfor <{one}>"),
        _ => String::new(),
    };
    format!(
        "Received: from {helo} ([{}])\r\n\tby {} (moxd) with {proto} id {id}{tls}{rcpt};\r\n\t{}\r\n",
        conn.peer.ip(),
        session.config.hostname,
        rfc5322_date(SystemTime::now())
    )
}

/// `Sun, 22 Nov 2026 15:29:20 +0000`.
pub fn rfc5322_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    // Civil from days (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let name = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(month - 1) as usize];
    format!(
        "{weekday}, {day} {name} {year} {:02}:{:02}:{:02} +0000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn dates() {
        assert_eq!(
            super::rfc5322_date(UNIX_EPOCH),
            "Thu, 1 Jan 1970 00:00:00 +0000"
        );
        assert_eq!(
            super::rfc5322_date(UNIX_EPOCH + Duration::from_secs(1_795_360_160)),
            "Sun, 22 Nov 2026 15:09:20 +0000"
        );
    }
}
