//! keyd's checks of a DKIM signing request (`dkim_sign::prepare`: key name, `h=` names, the
//! canonical header fields, the one From: address and its domain) and the From: parser alone.
//! The input is split at NUL bytes: selector, `h=` names (comma-separated), header fields,
//! body hash. Keys of `example.org` (`s1` RSA, `ed` Ed25519) live in a directory made once.
#![no_main]

use std::sync::OnceLock;

use ipc::msg::key::DkimRequest;
use keyd::keys::KeyStore;

fn keys() -> &'static KeyStore {
    static KEYS: OnceLock<(tempfile::TempDir, KeyStore)> = OnceLock::new();
    &KEYS
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut keys = KeyStore::open(dir.path()).expect("key store");
            keyd::dkim::generate(&mut keys, "example.org", "s1", "rsa").expect("rsa key");
            keyd::dkim::generate(&mut keys, "example.org", "ed", "ed25519").expect("ed key");
            (dir, keys)
        })
        .1
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = keyd::from_address::parse(text);
    }
    let mut parts = data.splitn(4, |&b| b == 0);
    let selector = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let signed = String::from_utf8_lossy(parts.next().unwrap_or_default())
        .split(',')
        .map(str::to_owned)
        .collect();
    let headers = parts.next().unwrap_or_default().to_vec();
    let body_hash = parts.next().unwrap_or_default().to_vec();
    let request = DkimRequest {
        ticket: None,
        domain: "example.org".into(),
        selector,
        signed,
        headers,
        body_hash,
    };
    let _ = keyd::dkim_sign::prepare(keys(), &request, 1_790_000_000, 7 * 24 * 3600);
});
