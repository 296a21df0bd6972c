//! The MIME structure of a message, computed once at delivery for IMAP BODYSTRUCTURE and for
//! fetching parts by number: a flat list of parts in pre-order, each naming its parent (no
//! recursion, so no message can nest deep enough to exhaust a stack), with byte offsets into
//! the message file.

use mail_parser::{MessageParser, MimeHeaders, PartType};

/// Most parts recorded per message; the rest are left out.
pub const MAX_PARTS: usize = 1000;
/// The recorded structure of one message stays under this many encoded bytes (it travels in
/// 64 KiB frames with the rest of the message's metadata).
pub const MAX_STRUCTURE_BYTES: usize = 24 * 1024;

/// Drops trailing parts until the structure fits [`MAX_STRUCTURE_BYTES`].
pub fn bounded(mut parts: Vec<BodyPart>) -> Vec<BodyPart> {
    let size = |p: &Vec<BodyPart>| crate::db::record::encode(p).map_or(usize::MAX, |b| b.len());
    while !parts.is_empty() && size(&parts) > MAX_STRUCTURE_BYTES {
        let keep = parts.len() * 3 / 4;
        parts.truncate(keep);
    }
    parts
}

/// One MIME part.
pub use crate::db::record::BodyPart;

/// Messages up to this size are parsed whole at delivery; larger ones get their envelope from
/// the head only and no structure.
pub const PARSE_LIMIT: u64 = 32 * 1024 * 1024;

/// Envelope and structure of stored message file `file` of `size` bytes, whose first bytes
/// are `head` (the file is read only if `head` is not all of it).
pub fn analyze(
    files: &crate::files::Files,
    file: u64,
    size: u64,
    head: &[u8],
) -> crate::error::Result<(crate::envelope::Envelope, Vec<BodyPart>)> {
    if head.len() as u64 == size && size <= PARSE_LIMIT {
        return Ok(analyze_bytes(head));
    }
    Ok(match files.read_small(file, PARSE_LIMIT)? {
        Some(raw) => analyze_bytes(&raw),
        None => (
            crate::envelope::bounded(crate::envelope::parse(head)),
            Vec::new(),
        ),
    })
}

/// Envelope and structure of the whole message `raw`, parsed once.
pub fn analyze_bytes(raw: &[u8]) -> (crate::envelope::Envelope, Vec<BodyPart>) {
    if let Some(single) = analyze_single_part(raw) {
        return single;
    }
    analyze_whole(raw)
}

/// [`analyze_bytes`] by a parse of every part.
fn analyze_whole(raw: &[u8]) -> (crate::envelope::Envelope, Vec<BodyPart>) {
    match MessageParser::default().parse(raw) {
        Some(msg) => (
            crate::envelope::bounded(crate::envelope::of_message(&msg)),
            bounded(parts(&msg, raw)),
        ),
        None => (
            crate::envelope::bounded(crate::envelope::parse(raw)),
            Vec::new(),
        ),
    }
}

/// Bodies shorter than this are parsed whole: the header-only parse saves nothing there.
const SINGLE_PART_MIN_BODY: usize = 4096;

/// A message with one part (no multipart or message/* type) needs no parse of its body: its
/// structure is its header's fields and the body's extent and lines. mail-parser decodes every
/// body it parses (text into UTF-8, base64 into bytes) — most of a delivery's parse of a
/// large message, and nothing BODYSTRUCTURE uses. `None` when the message is not such a
/// message, or its header block has no end: then it is parsed whole.
fn analyze_single_part(raw: &[u8]) -> Option<(crate::envelope::Envelope, Vec<BodyPart>)> {
    if raw.len() < SINGLE_PART_MIN_BODY {
        return None;
    }
    let body_start = header_block_len(raw)?;
    if raw.len() - body_start < SINGLE_PART_MIN_BODY {
        return None;
    }
    let header = &raw[..body_start];
    let msg = MessageParser::default().parse(header)?;
    let part = msg.parts.first()?;
    if u64::from(part.raw_body_offset()) != body_start as u64 {
        return None;
    }
    if let Some(ct) = part.content_type()
        && (ct.ctype().eq_ignore_ascii_case("multipart")
            || ct.ctype().eq_ignore_ascii_case("message"))
    {
        return None;
    }
    let mut parts = parts(&msg, header);
    let [only] = parts.as_mut_slice() else {
        return None;
    };
    only.end = raw.len() as u64;
    only.lines = raw[body_start..].iter().filter(|b| **b == b'\n').count() as u32;
    Some((
        crate::envelope::bounded(crate::envelope::of_message(&msg)),
        bounded(parts),
    ))
}

/// The length of `raw`'s header block, the empty line that ends it included; `None` if it has
/// no empty line.
fn header_block_len(raw: &[u8]) -> Option<usize> {
    if raw.starts_with(b"\r\n") {
        return Some(2);
    }
    if raw.starts_with(b"\n") {
        return Some(1);
    }
    raw.iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .find_map(|(i, _)| {
            let rest = &raw[i + 1..];
            if rest.starts_with(b"\r\n") {
                Some(i + 3)
            } else if rest.starts_with(b"\n") {
                Some(i + 2)
            } else {
                None
            }
        })
}

/// The parts of `raw`; empty if mail-parser cannot read it (the message is still stored).
pub fn parse(raw: &[u8]) -> Vec<BodyPart> {
    match MessageParser::default().parse(raw) {
        Some(msg) => parts(&msg, raw),
        None => Vec::new(),
    }
}

/// The parts of `msg`, parsed from `raw`.
fn parts(msg: &mail_parser::Message<'_>, raw: &[u8]) -> Vec<BodyPart> {
    let mut out: Vec<BodyPart> = Vec::new();
    // (part id, parent index in `out`), children pushed in reverse for pre-order.
    let mut stack: Vec<(usize, Option<u32>)> = vec![(0, None)];
    while let Some((id, parent)) = stack.pop() {
        if out.len() >= MAX_PARTS {
            break;
        }
        let Some(part) = msg.parts.get(id) else {
            continue;
        };
        let (content_type, subtype, params) = match part.content_type() {
            Some(ct) => (
                ct.ctype().to_ascii_lowercase(),
                ct.subtype().unwrap_or("").to_ascii_lowercase(),
                ct.attributes()
                    .map(|a| {
                        a.iter()
                            .map(|a| (a.name.to_string(), a.value.to_string()))
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            None if matches!(part.body, PartType::Multipart(_)) => {
                ("multipart".into(), "mixed".into(), Vec::new())
            }
            None => (
                "text".into(),
                "plain".into(),
                vec![("charset".into(), "us-ascii".into())],
            ),
        };
        let (header_start, body_start, end) = (
            u64::from(part.raw_header_offset()),
            u64::from(part.raw_body_offset()),
            u64::from(part.raw_end_offset()),
        );
        let body = raw.get(body_start as usize..end as usize).unwrap_or(&[]);
        out.push(BodyPart {
            parent,
            content_type,
            subtype,
            params,
            id: part.content_id().map(str::to_string),
            description: part.content_description().map(str::to_string),
            encoding: part
                .content_transfer_encoding()
                .map(|e| e.to_ascii_lowercase()),
            disposition: part.content_disposition().map(|d| {
                let params = d
                    .attributes()
                    .map(|a| {
                        a.iter()
                            .map(|a| (a.name.to_string(), a.value.to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                (d.ctype().to_ascii_lowercase(), params)
            }),
            language: part
                .content_language()
                .as_text_list()
                .map(|l| l.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default(),
            location: part.content_location().map(str::to_string),
            header_start,
            body_start,
            end,
            lines: body.iter().filter(|b| **b == b'\n').count() as u32,
        });
        if let PartType::Multipart(children) = &part.body {
            let me = (out.len() - 1) as u32;
            for child in children.iter().rev() {
                stack.push((*child as usize, Some(me)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One parse for both gives what two separate ones give: the envelope from the header
    /// fields alone, the parts from the whole message.
    #[test]
    fn analysing_once_equals_parsing_envelope_and_parts_apart() {
        let messages: [&[u8]; 5] = [
            b"From: \"A. Person\" <a@example.org>\r\nTo: b@example.com, Group: c@example.net, d@example.net;\r\nCc: =?utf-8?q?J=C3=B6rg?= <j@example.de>\r\nSubject: =?utf-8?b?SMOkbGxv?=\r\nDate: Sun, 22 Nov 2026 20:00:00 +0000\r\nMessage-ID: <m1@example.org>\r\nIn-Reply-To: <m0@example.org>\r\n\r\nbody\r\n",
            b"Subject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\nh\xe9llo\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nFrom: inner@example.org\r\nSubject: inner\r\n\r\ninner body\r\n--b--\r\n",
            b"Sender: s@example.org\r\nReply-To: r@example.org\r\nFrom: f@example.org\r\n\r\n",
            b"no header at all, just text\r\n",
            b"",
        ];
        for raw in messages {
            let (envelope, parts) = analyze_bytes(raw);
            assert_eq!(
                envelope,
                crate::envelope::bounded(crate::envelope::parse(raw)),
                "{}",
                String::from_utf8_lossy(raw)
            );
            assert_eq!(parts, bounded(parse(raw)));
        }
    }

    #[test]
    fn lists_multipart_parts_in_order_with_offsets() {
        let raw = b"Subject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\nworld\r\n--b\r\nContent-Type: application/pdf; name=x.pdf\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=x.pdf\r\n\r\nJVBERi0=\r\n--b--\r\n";
        let parts = parse(raw);
        assert_eq!(parts.len(), 3, "{parts:#?}");
        assert_eq!(
            (
                parts[0].content_type.as_str(),
                parts[0].subtype.as_str(),
                parts[0].parent
            ),
            ("multipart", "mixed", None)
        );
        assert_eq!(
            (
                parts[1].content_type.as_str(),
                parts[1].subtype.as_str(),
                parts[1].parent
            ),
            ("text", "plain", Some(0))
        );
        assert_eq!(
            parts[1].params,
            [("charset".to_string(), "utf-8".to_string())]
        );
        let body = &raw[parts[1].body_start as usize..parts[1].end as usize];
        assert!(
            body.starts_with(b"hello"),
            "{:?}",
            String::from_utf8_lossy(body)
        );
        assert_eq!(parts[2].encoding.as_deref(), Some("base64"));
        assert_eq!(
            parts[2].disposition.as_ref().map(|d| d.0.as_str()),
            Some("attachment")
        );
        assert_eq!(parts[2].parent, Some(0));
    }

    #[test]
    fn a_plain_message_is_one_part_and_garbage_is_not_a_panic() {
        let parts = parse(b"Subject: x\r\n\r\none\r\ntwo\r\n");
        assert_eq!(parts.len(), 1);
        assert_eq!(
            (parts[0].content_type.as_str(), parts[0].lines),
            ("text", 2)
        );
        for raw in [
            &b""[..],
            b"\xff\xfe",
            b"Content-Type: multipart/mixed; boundary=\r\n\r\n--\r\n",
        ] {
            let _ = parse(raw);
        }
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let mut raw = String::new();
        for i in 0..3000 {
            raw.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n"
            ));
        }
        raw.push_str("\r\nx\r\n");
        assert!(parse(raw.as_bytes()).len() <= MAX_PARTS);
    }

    /// The header fields a single-part message may come with, in the corpus below.
    const SINGLE_HEADERS: [&str; 12] = [
        "",
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n",
        "Content-Type: Text/HTML; Charset=\"ISO-8859-1\"\r\nContent-Transfer-Encoding: Quoted-Printable\r\n",
        "Content-Type: application/pdf; name=\"r.pdf\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment;\r\n filename=\"r.pdf\"\r\nContent-ID: <c1@example.org>\r\nContent-Description: a report\r\nContent-Language: en, de\r\nContent-Location: http://example.org/r.pdf\r\n",
        "Content-Type: text\r\n",
        "Content-Type: ;;;\r\n",
        "Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n",
        "Subject: =?utf-8?q?J=C3=B6rg?=\r\nContent-Type: text/plain;\r\n\tformat=flowed; delsp=yes\r\n",
        "Content-Disposition: inline\r\n",
        "Content-Type: text/plain\nContent-Transfer-Encoding: 7bit\n",
        "X-Odd: \u{e9}t\u{e9}\r\nContent-Type: application/octet-stream\r\n",
        "Content-Type: text/calendar; method=REQUEST; charset=UTF-8\r\n",
    ];

    /// Message `i` of the corpus: From, To, Subject and Date, one of [`SINGLE_HEADERS`], and
    /// `body`.
    fn single_part(i: usize, body: &[u8]) -> Vec<u8> {
        let head = SINGLE_HEADERS[i % SINGLE_HEADERS.len()];
        let nl = if head.contains("\r\n") || head.is_empty() {
            "\r\n"
        } else {
            "\n"
        };
        let mut raw = format!(
            "From: \"A\" <a@example.org>{nl}To: b@example.com{nl}Subject: s{nl}Date: Sun, 22 Nov 2026 20:00:00 +0000{nl}"
        )
        .into_bytes();
        raw.extend_from_slice(head.as_bytes());
        raw.extend_from_slice(nl.as_bytes());
        raw.extend_from_slice(body);
        raw
    }

    /// The structure of a message of one part, read from its header alone, equals what a
    /// parse of all of it gives; and that shortcut is taken (or the test would prove nothing).
    #[test]
    fn a_single_part_message_is_analysed_from_its_header_as_a_whole_parse_would() {
        let line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod\r\n";
        let bodies: Vec<Vec<u8>> = vec![
            line.repeat(200),
            [line.repeat(100), b"no newline at the end".to_vec()].concat(),
            [
                line.repeat(100),
                b"\r\n\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>\r\n--b--\r\n".to_vec(),
            ]
            .concat(),
            b"TG9yZW0gaXBzdW0gZG9sb3Igc2l0IGFtZXQsIGNvbnNlY3RldHVyIGFkaXBpc2NpbmcgZWxp\r\n"
                .repeat(120),
            [
                b"=C3=A9t=C3=A9 soft=\r\nbreak\r\n".repeat(300),
                vec![0, 0x80, 0xff, b'\n', b'\r'],
            ]
            .concat(),
            b"bare\nline\nfeeds\n".repeat(400),
            b"From the start\r\n.dot\r\n\r\n\r\n".repeat(300),
        ];
        let mut taken = 0;
        for (i, body) in bodies.iter().enumerate() {
            for h in 0..SINGLE_HEADERS.len() {
                let raw = single_part(h + i, body);
                let whole = analyze_whole(&raw);
                if let Some(single) = analyze_single_part(&raw) {
                    taken += 1;
                    assert_eq!(single, whole, "{}", String::from_utf8_lossy(&raw[..300]));
                }
                assert_eq!(analyze_bytes(&raw), whole);
            }
        }
        assert_eq!(taken, bodies.len() * SINGLE_HEADERS.len());
    }

    /// Multipart and message/* types, short bodies and header blocks without an end take the
    /// whole parse.
    #[test]
    fn other_messages_are_parsed_whole() {
        let body = b"x\r\n".repeat(3000);
        for head in [
            "Content-Type: multipart/mixed; boundary=b\r\n",
            "Content-Type: Message/RFC822\r\n",
            "Content-Type: message/global\r\n",
        ] {
            let raw = [head.as_bytes(), b"\r\n", &body].concat();
            assert_eq!(analyze_single_part(&raw), None, "{head}");
        }
        assert_eq!(analyze_single_part(b"Subject: short\r\n\r\nbody\r\n"), None);
        assert_eq!(
            analyze_single_part(&b"Subject: no end\r\n".repeat(1000)),
            None
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Any body after any of the corpus's headers: the shortcut, when taken, agrees with
        /// the whole parse.
        #[test]
        fn the_single_part_shortcut_agrees_on_any_body(
            h in 0usize..SINGLE_HEADERS.len(),
            body in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just(b'\r'),
                    proptest::strategy::Just(b'\n'),
                    proptest::strategy::Just(b'-'),
                    proptest::strategy::Just(b'='),
                    proptest::num::u8::ANY,
                ],
                4096..6000,
            ),
        ) {
            let raw = single_part(h, &body);
            if let Some(single) = analyze_single_part(&raw) {
                proptest::prop_assert_eq!(single, analyze_whole(&raw));
            }
        }

        /// Garbage of any kind, header block included: no panic, and the shortcut, when
        /// taken, still agrees with the whole parse.
        #[test]
        fn garbage_is_analysed_without_a_panic(
            raw in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just(b'\r'),
                    proptest::strategy::Just(b'\n'),
                    proptest::strategy::Just(b':'),
                    proptest::num::u8::ANY,
                ],
                0..6000,
            ),
        ) {
            let analysed = analyze_bytes(&raw);
            if analyze_single_part(&raw).is_some() {
                proptest::prop_assert_eq!(analysed, analyze_whole(&raw));
            }
        }
    }
}
