#![no_main]
//! Fuzz target: see gtc::fuzz_checks::envelope.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gtc::fuzz_checks::envelope(data);
});
