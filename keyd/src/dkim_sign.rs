//! DKIM signatures (RFC 6376 §3.7, RFC 8463): the caller canonicalized the header fields and
//! hashed the body; keyd gets the bytes to sign — the signed header fields, then the
//! DKIM-Signature field with an empty `b=` — and signs them only when that field names this
//! very key (`d=`, `s=`, `a=`), has an empty `b=`, and signs `From`.

use rustls::{SignatureAlgorithm, SignatureScheme};

use crate::keys::KeyStore;

/// The largest input keyd signs (a generous header block).
pub const MAX_INPUT: usize = 60 * 1024;

/// Checks `data` against the key `selector._domainkey.domain` and signs it.
pub fn sign(keys: &KeyStore, domain: &str, selector: &str, data: &[u8]) -> Result<Vec<u8>, String> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let label = |l: &str| {
        !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if !label(selector) || !domain.split('.').all(label) {
        return Err(format!("`{selector}` of `{domain}` is not a DKIM key name"));
    }
    let name = format!("dkim.{domain}.{selector}");
    let key = keys
        .get(&name)
        .map_err(|_| format!("no DKIM key for selector {selector} of {domain}"))?;
    let algorithm = match key.algorithm() {
        SignatureAlgorithm::RSA => "rsa-sha256",
        SignatureAlgorithm::ED25519 => "ed25519-sha256",
        _ => return Err(format!("{name} is not a DKIM key")),
    };
    check(data, &domain, selector, algorithm)?;
    match key.algorithm() {
        // RSASSA-PKCS1-v1_5 with SHA-256 over the data itself.
        SignatureAlgorithm::RSA => key.sign(SignatureScheme::RSA_PKCS1_SHA256, data),
        // RFC 8463 §3: Ed25519 (pure) over the SHA-256 hash of the data.
        _ => key.sign(SignatureScheme::ED25519, &crate::certs::sha256(data)),
    }
    .map_err(|e| e.to_string())
}

/// The checks, apart from signing: `data` ends with a DKIM-Signature field whose tags match.
pub fn check(data: &[u8], domain: &str, selector: &str, algorithm: &str) -> Result<(), String> {
    if data.len() > MAX_INPUT {
        return Err(format!("more than {MAX_INPUT} bytes of header fields"));
    }
    let text = std::str::from_utf8(data).map_err(|_| "the header block is not UTF-8")?;
    if text.ends_with('\n') {
        return Err("the DKIM-Signature field must come last, without its CRLF".into());
    }
    let fields = split_fields(text);
    let Some((template, signed)) = fields.split_last() else {
        return Err("no header fields".into());
    };
    let (name, value) = template
        .split_once(':')
        .ok_or("the last field has no colon")?;
    if !name.trim().eq_ignore_ascii_case("dkim-signature") {
        return Err("the last field is not a DKIM-Signature template".into());
    }
    let tags = parse_tags(value)?;
    let tag = |t: &str| tags.iter().find(|(k, _)| k == t).map(|(_, v)| v.as_str());
    if tag("v") != Some("1") {
        return Err("v= must be 1".into());
    }
    if tag("a") != Some(algorithm) {
        return Err(format!("a= must be {algorithm} for this key"));
    }
    if !tag("d").is_some_and(|d| d.trim_end_matches('.').eq_ignore_ascii_case(domain)) {
        return Err(format!(
            "d= must be {domain}: a key signs for its own domain only"
        ));
    }
    if tag("s") != Some(selector) {
        return Err(format!("s= must be {selector}"));
    }
    if tag("b") != Some("") {
        return Err("b= must be present and empty".into());
    }
    if tag("bh").is_none_or(str::is_empty) {
        return Err("bh= (the body hash) is missing".into());
    }
    if let Some(i) = tag("i") {
        let host = i
            .rsplit_once('@')
            .map_or(i, |(_, h)| h)
            .to_ascii_lowercase();
        if host != domain && !host.ends_with(&format!(".{domain}")) {
            return Err(format!("i= must be within {domain}"));
        }
    }
    let h = tag("h").ok_or("h= is missing")?;
    if !h.split(':').any(|f| f.trim().eq_ignore_ascii_case("from")) {
        return Err("h= must include From (RFC 6376 §5.4)".into());
    }
    if !signed.iter().any(|f| {
        f.split_once(':')
            .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case("from"))
    }) {
        return Err("no From field among the signed fields".into());
    }
    Ok(())
}

/// Header fields: a field starts at the beginning or after a CRLF that is not followed by
/// whitespace (folding). Each returned field keeps its own CRLF, except the last.
fn split_fields(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut starts = vec![0];
    for i in 2..bytes.len() {
        if &bytes[i - 2..i] == b"\r\n" && !matches!(bytes[i], b' ' | b'\t') {
            starts.push(i);
        }
    }
    starts.push(bytes.len());
    starts
        .windows(2)
        .map(|w| &text[w[0]..w[1]])
        .filter(|f| !f.is_empty())
        .collect()
}

/// `tag=value; …` with folding whitespace removed from values (RFC 6376 §3.2).
fn parse_tags(value: &str) -> Result<Vec<(String, String)>, String> {
    let mut tags: Vec<(String, String)> = Vec::new();
    for part in value.split(';') {
        if part.trim().is_empty() {
            continue;
        }
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("tag without `=`: {}", part.trim()))?;
        let k = k.trim().to_string();
        if tags.iter().any(|(t, _)| *t == k) {
            return Err(format!("tag {k}= appears twice"));
        }
        let v: String = v.chars().filter(|c| !c.is_whitespace()).collect();
        tags.push((k, v));
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADERS: &str = "from:Alice <alice@example.org>\r\nsubject:hi\r\n";

    fn template(tags: &str) -> String {
        format!("{HEADERS}dkim-signature:{tags}")
    }

    const GOOD: &str = "v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=s1; t=1; h=From:Subject; bh=AbC=; b=";

    #[test]
    fn accepts_a_template_for_its_own_key_only() {
        check(template(GOOD).as_bytes(), "example.org", "s1", "rsa-sha256").unwrap();
        // Folded, with the simple canonicalization's original case.
        let folded = "From: Alice <alice@example.org>\r\nDKIM-Signature: v=1; a=rsa-sha256; d=example.org;\r\n\ts=s1; h=from; bh=x; b=";
        check(folded.as_bytes(), "example.org", "s1", "rsa-sha256").unwrap();
        let cases: &[(&str, &str)] = &[
            (
                "v=1; a=rsa-sha256; d=evil.example; s=s1; h=from; bh=x; b=",
                "d= must be",
            ),
            (
                "v=1; a=rsa-sha256; d=example.org; s=s2; h=from; bh=x; b=",
                "s= must be",
            ),
            (
                "v=1; a=ed25519-sha256; d=example.org; s=s1; h=from; bh=x; b=",
                "a= must be",
            ),
            (
                "v=1; a=rsa-sha256; d=example.org; s=s1; h=from; bh=x; b=abc",
                "b= must be",
            ),
            (
                "v=1; a=rsa-sha256; d=example.org; s=s1; h=from; bh=x",
                "b= must be",
            ),
            (
                "v=1; a=rsa-sha256; d=example.org; s=s1; h=subject; bh=x; b=",
                "h= must include From",
            ),
            ("v=1; a=rsa-sha256; d=example.org; s=s1; h=from; b=", "bh="),
            (
                "v=1; a=rsa-sha256; d=example.org; d=evil.example; s=s1; h=from; bh=x; b=",
                "twice",
            ),
            (
                "v=1; a=rsa-sha256; d=example.org; s=s1; i=@evil.example; h=from; bh=x; b=",
                "i= must",
            ),
        ];
        for (tags, why) in cases {
            let e = check(template(tags).as_bytes(), "example.org", "s1", "rsa-sha256")
                .expect_err(tags);
            assert!(e.contains(why), "{tags}: {e}");
        }
    }

    #[test]
    fn refuses_bytes_that_are_not_a_template() {
        let arbitrary: &[(&[u8], &str)] = &[
            (b"", "no header fields"),
            (b"just some bytes to sign", "no colon"),
            (b"from:a@example.org\r\nsubject:x", "not a DKIM-Signature"),
            (
                format!("{}\r\n", template(GOOD)).as_bytes().to_vec().leak(),
                "must come last",
            ),
            (b"\xff\xfe", "not UTF-8"),
        ];
        for (data, why) in arbitrary {
            let e = check(data, "example.org", "s1", "rsa-sha256").unwrap_err();
            assert!(e.contains(why), "{data:?}: {e}");
        }
        let no_from =
            "subject:x\r\ndkim-signature:v=1; a=rsa-sha256; d=example.org; s=s1; h=from; bh=x; b=";
        assert!(
            check(no_from.as_bytes(), "example.org", "s1", "rsa-sha256")
                .unwrap_err()
                .contains("no From")
        );
        let big = template(&format!("{GOOD}{}", " ".repeat(MAX_INPUT)));
        assert!(check(big.as_bytes(), "example.org", "s1", "rsa-sha256").is_err());
    }

    #[test]
    fn signs_with_the_named_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut keys = KeyStore::open(dir.path()).unwrap();
        crate::dkim::generate(&mut keys, "example.org", "s1", "rsa").unwrap();
        crate::dkim::generate(&mut keys, "example.org", "ed", "ed25519").unwrap();
        let rsa = sign(&keys, "Example.org", "s1", template(GOOD).as_bytes()).unwrap();
        assert_eq!(rsa.len(), 256);
        let ed = template(
            &GOOD
                .replace("rsa-sha256", "ed25519-sha256")
                .replace("s=s1", "s=ed"),
        );
        assert_eq!(
            sign(&keys, "example.org", "ed", ed.as_bytes())
                .unwrap()
                .len(),
            64
        );
        assert!(sign(&keys, "example.net", "s1", template(GOOD).as_bytes()).is_err());
        assert!(sign(&keys, "example.org", "ed", template(GOOD).as_bytes()).is_err());
    }
}
