use super::*;

const HEADERS: &str = "subject:hi\r\nfrom:Alice <alice@example.org>\r\n";
const SIGNED: &[&str] = &["subject", "from", "from", "to"];
const NOW: u64 = 1_790_000_000;
const WEEK: u64 = 7 * 24 * 3600;

fn keys() -> (tempfile::TempDir, KeyStore) {
    let dir = tempfile::tempdir().unwrap();
    let mut keys = KeyStore::open(dir.path()).unwrap();
    crate::dkim::generate(&mut keys, "example.org", "s1", "rsa").unwrap();
    crate::dkim::generate(&mut keys, "example.org", "ed", "ed25519").unwrap();
    (dir, keys)
}

fn request(headers: &str, signed: &[&str]) -> DkimRequest {
    DkimRequest {
        ticket: None,
        domain: "example.org".into(),
        selector: "s1".into(),
        signed: signed.iter().map(|s| s.to_string()).collect(),
        headers: headers.as_bytes().to_vec(),
        body_hash: vec![7; 32],
    }
}

#[test]
fn writes_its_own_field_with_t_and_x_from_the_validity_and_no_body_length() {
    let (_dir, keys) = keys();
    let prepared = prepare(&keys, &request(HEADERS, SIGNED), NOW, WEEK).unwrap();
    assert_eq!(prepared.from.address(), "alice@example.org");
    let data = String::from_utf8(prepared.data.clone()).unwrap();
    let bh = base64::engine::general_purpose::STANDARD.encode([7; 32]);
    assert_eq!(
        data,
        format!(
            "{HEADERS}dkim-signature:v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=s1; t={NOW}; x={}; h=subject:from:from:to; bh={bh}; b=",
            NOW + WEEK
        )
    );
    let field = prepared.sign().unwrap();
    assert!(
        field.starts_with("DKIM-Signature: v=1;\r\n\ta=rsa-sha256;"),
        "{field}"
    );
    assert!(field.ends_with("\r\n") && !field.contains("l="), "{field}");
    let b = field.trim_end().rsplit_once("b=").unwrap().1;
    let signature = base64::engine::general_purpose::STANDARD.decode(b).unwrap();
    assert_eq!(signature.len(), 256);
    let mut ed = request(HEADERS, SIGNED);
    ed.selector = "ed".into();
    let field = prepare(&keys, &ed, NOW, 3600).unwrap().sign().unwrap();
    assert!(
        field.contains("a=ed25519-sha256") && field.contains(&format!("x={}", NOW + 3600)),
        "{field}"
    );
}

#[test]
fn signs_for_the_domain_and_its_subdomains_only() {
    let (_dir, keys) = keys();
    let with_from = |from: &str| format!("subject:hi\r\nfrom:{from}\r\n");
    for ok in ["alice@example.org", "Bob <bob@lists.example.org>"] {
        prepare(&keys, &request(&with_from(ok), SIGNED), NOW, WEEK).expect(ok);
    }
    for outside in [
        "mallory@evil.example",
        "x@badexample.org",
        "x@example.org.evil.example",
    ] {
        let e = prepare(&keys, &request(&with_from(outside), SIGNED), NOW, WEEK).unwrap_err();
        assert!(
            matches!(e, DkimError::OutsideDomain { .. }),
            "{outside}: {e}"
        );
    }
}

#[test]
fn refuses_requests_that_are_not_one_clear_signed_from() {
    let (_dir, keys) = keys();
    let cases: &[(&str, &[&str], DkimError)] = &[
        ("subject:hi\r\n", SIGNED, DkimError::FromCount(0)),
        (
            "from:a@example.org\r\nfrom:b@example.org\r\n",
            &["from", "from", "from"],
            DkimError::FromCount(2),
        ),
        (HEADERS, &["subject", "from"], DkimError::NotOversigned),
        (HEADERS, &["from", "from", "subject"], DkimError::NotListed),
        (
            "subject:hi\r\nfrom:a@example.org, b@evil.example\r\n",
            SIGNED,
            DkimError::From(FromError::Several),
        ),
        (
            "Subject:hi\r\nfrom:a@example.org\r\n",
            SIGNED,
            DkimError::NotCanonical("a field name not in lowercase"),
        ),
        (
            "subject:hi\r\nfrom:a@example.org\r\n\tb@evil.example\r\n",
            SIGNED,
            DkimError::NotCanonical("a field without a colon"),
        ),
        (
            "subject:hi  there\r\nfrom:a@example.org\r\n",
            SIGNED,
            DkimError::NotCanonical("a value with unfolded whitespace"),
        ),
        (
            "subject:hi\r\nfrom:a@example.org",
            SIGNED,
            DkimError::NotCanonical("the last field has no CRLF"),
        ),
        (
            HEADERS,
            &["subject", "from;x=1", "from"],
            DkimError::SignedNames,
        ),
        (HEADERS, &[], DkimError::SignedNames),
    ];
    for (headers, signed, expected) in cases {
        assert_eq!(
            prepare(&keys, &request(headers, signed), NOW, WEEK).unwrap_err(),
            *expected,
            "{headers:?} {signed:?}"
        );
    }
    let mut short_hash = request(HEADERS, SIGNED);
    short_hash.body_hash = vec![0; 20];
    assert_eq!(
        prepare(&keys, &short_hash, NOW, WEEK).unwrap_err(),
        DkimError::BodyHash
    );
    let big = format!("x:{}\r\n{HEADERS}", "y".repeat(MAX_INPUT));
    assert_eq!(
        prepare(&keys, &request(&big, SIGNED), NOW, WEEK).unwrap_err(),
        DkimError::TooLarge
    );
}

#[test]
fn signs_with_the_named_key_only() {
    let (_dir, keys) = keys();
    let mut other_domain = request(HEADERS, SIGNED);
    other_domain.domain = "example.net".into();
    assert!(matches!(
        prepare(&keys, &other_domain, NOW, WEEK).unwrap_err(),
        DkimError::NoKey { .. }
    ));
    let mut bad_name = request(HEADERS, SIGNED);
    bad_name.selector = "a.b".into();
    assert!(matches!(
        prepare(&keys, &bad_name, NOW, WEEK).unwrap_err(),
        DkimError::KeyName { .. }
    ));
}
