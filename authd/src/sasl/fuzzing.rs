//! The SCRAM message parsers for the fuzz targets (fuzz/), behind the `fuzzing` feature that
//! only the fuzz workspace enables: they read every byte a client sends before it has
//! authenticated, and are otherwise private to the SCRAM state machine.

/// Parses `msg` both as a client-first and as a client-final message (RFC 5802 §7) and checks
/// that what a successful parse returns is the part of `msg` the grammar says. Panics when an
/// invariant breaks.
pub fn scram_client_messages(msg: &str) {
    if let Ok(first) = super::scram_msg::parse_client_first(msg) {
        assert_eq!(format!("{}{}", first.gs2_header, first.bare), msg);
        assert!(first.bare.starts_with("n="), "{msg:?}");
        assert!(
            !first.nonce.is_empty() && !first.nonce.contains(','),
            "{msg:?}"
        );
    }
    if let Ok(last) = super::scram_msg::parse_client_final(msg) {
        let proof = msg
            .strip_prefix(last.without_proof)
            .expect("the message without its proof is a prefix of it");
        assert!(proof.starts_with(",p="), "{msg:?}");
        assert!(!last.nonce.contains(','), "{msg:?}");
    }
}
