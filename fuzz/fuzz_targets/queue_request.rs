//! `ipc::msg::queue::Request` as submission, httpd → queued send it: frame checks, decode, round trip.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| moxd_fuzz::request::<ipc::msg::queue::Request>(data));
