//! The header block of a message as smtpd sees it while streaming: split into fields, with
//! forged Authentication-Results fields for our own host name renamed (RFC 8601 §5).

/// The end of the header block (the index after its empty line), if `bytes` holds it.
pub fn block_end(bytes: &[u8]) -> Option<usize> {
    if bytes.starts_with(b"\r\n") {
        return Some(2);
    }
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

/// The fields of a header block (each with its CRLF); a field starts after a CRLF that is not
/// followed by whitespace (folding).
pub fn fields(block: &[u8]) -> Vec<&[u8]> {
    let mut starts = vec![0];
    for i in 2..block.len() {
        if &block[i - 2..i] == b"\r\n" && !matches!(block[i], b' ' | b'\t') {
            starts.push(i);
        }
    }
    starts.push(block.len());
    starts
        .windows(2)
        .map(|w| &block[w[0]..w[1]])
        .filter(|f| !f.is_empty() && *f != b"\r\n")
        .collect()
}

/// Whether `field` is named `name` (case-insensitive).
pub fn is(field: &[u8], name: &str) -> bool {
    field.iter().position(|&b| b == b':').is_some_and(|colon| {
        field[..colon]
            .trim_ascii()
            .eq_ignore_ascii_case(name.as_bytes())
    })
}

/// The header block with every Authentication-Results field claiming `hostname` as its
/// authserv-id renamed: only this server may say what it checked.
pub fn sanitize(block: &[u8], hostname: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(block.len() + 16);
    for field in fields(block) {
        let forged = is(field, "Authentication-Results")
            && field
                .iter()
                .position(|&b| b == b':')
                .map(|c| &field[c + 1..])
                .map(|v| {
                    let id_end = v.iter().position(|&b| b == b';').unwrap_or(v.len());
                    let id = v[..id_end].trim_ascii();
                    let id = id.split(|b| b.is_ascii_whitespace()).next().unwrap_or(id);
                    id.eq_ignore_ascii_case(hostname.as_bytes())
                })
                .unwrap_or(false);
        if forged {
            out.extend_from_slice(b"X-Forged-");
        }
        out.extend_from_slice(field);
    }
    if block.ends_with(b"\r\n\r\n") || block == b"\r\n" {
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_only_our_own_forged_results_and_keeps_the_rest() {
        let block = b"Authentication-Results: MX.example.org; dmarc=pass header.from=bank.example\r\nAuthentication-Results: other.example; spf=pass\r\nSubject: x\r\n folded\r\n\r\n";
        let out = sanitize(block, "mx.example.org");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "X-Forged-Authentication-Results: MX.example.org; dmarc=pass header.from=bank.example\r\nAuthentication-Results: other.example; spf=pass\r\nSubject: x\r\n folded\r\n\r\n"
        );
        assert_eq!(block_end(block), Some(block.len()));
        assert_eq!(block_end(b"\r\nbody"), Some(2));
        assert_eq!(block_end(b"Subject: x\r\n"), None);
        let f = fields(b"From: a\r\nFROM : b\r\n c\r\nTo: d\r\n\r\n");
        assert_eq!(f.iter().filter(|f| is(f, "from")).count(), 2);
    }
}
