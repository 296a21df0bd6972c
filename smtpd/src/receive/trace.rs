//! The trace field this hop adds in front of every message (RFC 5321 §4.4).

use std::time::SystemTime;

use crate::io::Conn;
use crate::session::{Session, Transaction};

/// The trace field for this hop (RFC 5321 §4.4; protocol names per RFC 3848 and RFC 6531).
pub(super) fn received_line(conn: &Conn, session: &Session, tx: &Transaction, id: &str) -> String {
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
