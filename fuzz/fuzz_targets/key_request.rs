//! `ipc::msg::key::Request` as smtpd, submission, imapd, httpd, queued → keyd (its links and its signing sockets) send it: frame checks, decode, round trip.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| moxd_fuzz::request::<ipc::msg::key::Request>(data));
