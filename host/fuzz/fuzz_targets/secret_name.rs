#![no_main]
//! Fuzz target: see gtc::fuzz_checks::secret_name.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gtc::fuzz_checks::secret_name(data);
});
