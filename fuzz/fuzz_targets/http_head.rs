#![no_main]
//! `flogtool web-viewer`'s request-head reader on arbitrary bytes: see
//! `foolscap_fuzz::check_http_head`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| foolscap_fuzz::check_http_head(data));
