#![no_main]
//! Fuzz target: see gtc::fuzz_checks::manifest.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gtc::fuzz_checks::manifest(data);
});
