//! The message delivered: a plausible RFC 5322 message of a given size, deterministic.

use crate::KIB;

/// A plausible RFC 5322 message of exactly `size` bytes: trace and DKIM headers, a text part
/// and, from 16 KiB on, a base64 PDF attachment taking most of the size.
pub fn message(size: usize) -> Vec<u8> {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut out = Vec::with_capacity(size);
    for l in TRACE {
        line(&mut out, l);
    }
    line(&mut out, &format!("\tbh={}=;", rng.base64(43)));
    line(&mut out, &format!("\tb={}", rng.base64(70)));
    for width in [72, 72, 72, 58] {
        line(&mut out, &format!("\t {}", rng.base64(width)));
    }
    for l in HEADERS {
        line(&mut out, l);
    }
    let mut tail = Vec::new();
    if size >= 16 * KIB {
        for l in ATTACHMENT {
            line(&mut tail, l);
        }
        let lines = (size - out.len() - tail.len() - 2 * KIB) / 78;
        for _ in 0..lines {
            line(&mut tail, &rng.base64(76));
        }
    }
    line(&mut tail, "--=_part_7f3a--");
    let room = size
        .checked_sub(out.len() + tail.len())
        .expect("a message larger than its headers");
    text(&mut out, &mut rng, room);
    out.extend_from_slice(&tail);
    assert_eq!(out.len(), size);
    out
}

const TRACE: &[&str] = &[
    "Return-Path: <ann@example.org>",
    "Received: from mail.example.org (mail.example.org [192.0.2.10])",
    "\tby mx.example.com (moxd) with ESMTPS id 4F2A9C3E",
    "\tfor <bob@example.com>; Tue, 14 Apr 2026 09:12:44 +0000",
    "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=mail2026;",
    "\th=from:to:cc:subject:date:message-id:mime-version:content-type;",
];

const HEADERS: &[&str] = &[
    "From: \"Ann Example\" <ann@example.org>",
    "To: Bob Example <bob@example.com>",
    "Cc: carol@example.net",
    "Subject: Quarterly report: figures for review before Friday",
    "Date: Tue, 14 Apr 2026 11:12:40 +0200",
    "Message-ID: <20260414091240.4F2A9C3E@mail.example.org>",
    "MIME-Version: 1.0",
    "Content-Type: multipart/mixed; boundary=\"=_part_7f3a\"",
    "",
    "This is a multi-part message in MIME format.",
    "--=_part_7f3a",
    "Content-Type: text/plain; charset=utf-8",
    "Content-Transfer-Encoding: 7bit",
    "",
];

const ATTACHMENT: &[&str] = &[
    "--=_part_7f3a",
    "Content-Type: application/pdf; name=\"report-q1.pdf\"",
    "Content-Transfer-Encoding: base64",
    "Content-Disposition: attachment; filename=\"report-q1.pdf\"",
    "",
];

const WORDS: &[&str] = &[
    "the", "report", "figures", "quarter", "review", "please", "before", "meeting", "revenue",
    "costs", "attached", "thanks", "numbers", "team", "and", "of", "for", "with", "regional",
    "forecast", "updated", "as", "agreed", "we", "should", "look", "at", "margins", "again",
];

/// Appends exactly `n` (at least 2) bytes of CRLF-terminated prose lines of at most 74 bytes.
fn text(out: &mut Vec<u8>, rng: &mut Rng, n: usize) {
    assert!(n >= 2, "no room for the text part");
    let end = out.len() + n;
    loop {
        let mut words = String::new();
        let left = end - out.len();
        if left < 80 {
            while words.len() < left - 2 {
                words.push_str(WORDS[rng.below(WORDS.len())]);
                words.push(' ');
            }
            words.truncate(left - 2);
            line(out, &words);
            return;
        }
        while words.len() < 60 {
            if !words.is_empty() {
                words.push(' ');
            }
            words.push_str(WORDS[rng.below(WORDS.len())]);
        }
        line(out, &words);
        if rng.below(6) == 0 && end - out.len() >= 82 {
            line(out, "");
        }
    }
}

fn line(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// xorshift64: deterministic filler, no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    fn base64(&mut self, n: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        (0..n)
            .map(|_| char::from(ALPHABET[self.below(64)]))
            .collect()
    }
}
