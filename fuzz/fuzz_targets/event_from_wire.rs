#![no_main]
//! See `foolscap_fuzz::check_event_from_wire` for what this target checks.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    foolscap_fuzz::check_event_from_wire(data);
});
