//! `ipc::msg::auth::Request` as submission, imapd, httpd → authd send it: frame checks, decode, round trip.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| moxd_fuzz::request::<ipc::msg::auth::Request>(data));
