#![no_main]
//! PB messages decoded against a RemoteInterface: calls to clid 1 and
//! answers to odd reqIDs are checked token by token (see
//! `foolscap_fuzz::check_schema_decoder`).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| foolscap_fuzz::check_schema_decoder(data));
