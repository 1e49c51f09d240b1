#![no_main]
//! Fuzz target: see gtc::fuzz_checks::vault_response.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gtc::fuzz_checks::vault_response(data);
});
