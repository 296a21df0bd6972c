//! `ipc::msg::store::Request` as smtpd, submission, imapd, httpd, queued and authd → storaged send it: frame checks, decode, round trip.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| moxd_fuzz::request::<ipc::msg::store::Request>(data));
