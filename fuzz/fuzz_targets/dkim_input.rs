//! keyd's check of a DKIM signing input (the header block and DKIM-Signature field a signer
//! sends): the first byte picks the key's algorithm, the rest is the input, for a key of
//! selector `s1` of `example.org`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&pick, input)) = data.split_first() else {
        return;
    };
    let algorithm = if pick % 2 == 0 {
        "ed25519-sha256"
    } else {
        "rsa-sha256"
    };
    let _ = keyd::dkim_sign::check(input, "example.org", "s1", algorithm);
});
