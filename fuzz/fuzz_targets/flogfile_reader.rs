#![no_main]
//! The flogfile reader on arbitrary (optionally bzip2-compressed) bytes:
//! see `foolscap_fuzz::check_flogfile_reader`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| foolscap_fuzz::check_flogfile_reader(data));
