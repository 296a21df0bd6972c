//! The IMAP envelope of a message (RFC 9051 §7.5.2), computed once at delivery with
//! mail-parser and stored with the message, so that listing a mailbox never re-reads files.

pub use crate::db::record::{Envelope, EnvelopeAddress};

/// The envelope of one message stays under this many encoded bytes.
pub const MAX_ENVELOPE_BYTES: usize = 16 * 1024;

/// Shortens address lists and long fields until the envelope fits [`MAX_ENVELOPE_BYTES`].
pub fn bounded(mut e: Envelope) -> Envelope {
    let size = |e: &Envelope| crate::db::record::encode(e).map_or(usize::MAX, |b| b.len());
    if size(&e) <= MAX_ENVELOPE_BYTES {
        return e;
    }
    let cut = |s: &mut Option<String>| {
        if let Some(v) = s
            && v.len() > 1000
        {
            let mut end = 1000;
            while !v.is_char_boundary(end) {
                end -= 1;
            }
            v.truncate(end);
        }
    };
    for f in [
        &mut e.date,
        &mut e.subject,
        &mut e.in_reply_to,
        &mut e.message_id,
    ] {
        cut(f);
    }
    for list in [
        &mut e.from,
        &mut e.sender,
        &mut e.reply_to,
        &mut e.to,
        &mut e.cc,
        &mut e.bcc,
    ] {
        list.truncate(50);
        for a in list.iter_mut() {
            cut(&mut a.name);
            a.local.truncate(a.local.floor_char_boundary(256));
            a.domain.truncate(a.domain.floor_char_boundary(256));
        }
    }
    while size(&e) > MAX_ENVELOPE_BYTES && [&e.to, &e.cc, &e.bcc].iter().any(|l| !l.is_empty()) {
        for list in [&mut e.to, &mut e.cc, &mut e.bcc] {
            list.truncate(list.len() / 2);
        }
    }
    e
}

/// Parses the envelope of `raw`; a message mail-parser cannot read gets an empty envelope (it
/// is still delivered: the bytes are what counts).
pub fn parse(raw: &[u8]) -> Envelope {
    match mail_parser::MessageParser::default().parse_headers(raw) {
        Some(msg) => of_message(&msg),
        None => Envelope::default(),
    }
}

/// The envelope of a message mail-parser has read (its top-level header fields).
pub fn of_message(msg: &mail_parser::Message<'_>) -> Envelope {
    let raw_header = |name: &str| msg.header_raw(name).map(|v| v.trim().to_string());
    let addresses = |a: Option<&mail_parser::Address<'_>>| -> Vec<EnvelopeAddress> {
        a.map(|a| a.iter().filter_map(split).collect())
            .unwrap_or_default()
    };
    let from = addresses(msg.from());
    let sender = match addresses(msg.sender()) {
        s if s.is_empty() => from.clone(),
        s => s,
    };
    let reply_to = match addresses(msg.reply_to()) {
        r if r.is_empty() => from.clone(),
        r => r,
    };
    Envelope {
        date: raw_header("Date"),
        subject: raw_header("Subject"),
        from,
        sender,
        reply_to,
        to: addresses(msg.to()),
        cc: addresses(msg.cc()),
        bcc: addresses(msg.bcc()),
        in_reply_to: raw_header("In-Reply-To"),
        message_id: raw_header("Message-ID"),
    }
}

fn split(addr: &mail_parser::Addr<'_>) -> Option<EnvelopeAddress> {
    let address = addr.address.as_deref()?;
    let (local, domain) = address.rsplit_once('@').unwrap_or((address, ""));
    Some(EnvelopeAddress {
        name: addr.name.as_deref().map(str::to_string),
        local: local.to_string(),
        domain: domain.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_envelope_fields() {
        let raw = b"Date: Sun, 22 Nov 2026 12:00:00 +0000\r\nFrom: \"Ann Example\" <ann@example.org>\r\nTo: bob@example.com, carol@example.net\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\nMessage-ID: <1@example.org>\r\n\r\nbody\r\n";
        let e = parse(raw);
        assert_eq!(e.date.as_deref(), Some("Sun, 22 Nov 2026 12:00:00 +0000"));
        assert_eq!(e.subject.as_deref(), Some("=?utf-8?q?caf=C3=A9?="));
        assert_eq!(e.from.len(), 1);
        assert_eq!(e.from[0].name.as_deref(), Some("Ann Example"));
        assert_eq!(
            (e.from[0].local.as_str(), e.from[0].domain.as_str()),
            ("ann", "example.org")
        );
        assert_eq!(e.sender, e.from, "sender defaults to from");
        assert_eq!(e.reply_to, e.from, "reply-to defaults to from");
        assert_eq!(e.to.len(), 2);
        assert_eq!(e.message_id.as_deref(), Some("<1@example.org>"));
    }

    #[test]
    fn huge_headers_are_bounded() {
        let mut raw = String::from("From: a@example.org\r\nTo: ");
        for i in 0..20_000 {
            raw.push_str(&format!("user{i}@example.com, "));
        }
        raw.push_str("x@example.com\r\nSubject: ");
        raw.push_str(&"é".repeat(5000));
        raw.push_str("\r\n\r\nbody\r\n");
        let e = bounded(parse(raw.as_bytes()));
        let size = crate::db::record::encode(&e).unwrap().len();
        assert!(size <= MAX_ENVELOPE_BYTES, "{size}");
        assert_eq!(e.from.len(), 1, "small fields are kept");
        assert!(e.subject.is_some_and(|s| s.len() <= 1000));
    }

    #[test]
    fn garbage_gives_an_empty_envelope_not_a_panic() {
        for raw in [
            &b""[..],
            b"\xff\xfe\x00",
            b"no colon here\r\n\r\n",
            b":::\r\n",
        ] {
            let _ = parse(raw);
        }
    }
}
