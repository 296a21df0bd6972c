//! authd's SCRAM client-first and client-final parsers, on what a client sends before it has
//! authenticated (relayed verbatim by the network roles).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = std::str::from_utf8(data) {
        authd::sasl::fuzzing::scram_client_messages(msg);
    }
});
