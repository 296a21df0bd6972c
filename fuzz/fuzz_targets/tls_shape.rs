//! keyd's check of what it is asked to sign for TLS: only a TLS 1.3 CertificateVerify input or
//! a TLS 1.2 ServerKeyExchange passes, and nothing a caller sends may panic it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = keyd::shape::classify(data);
});
