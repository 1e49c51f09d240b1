//! Replays the committed fuzz corpora (host/fuzz/corpus/<target>/) through the same
//! invariant checks the fuzz targets run, so every input a fuzzer ever kept keeps
//! passing in the ordinary test suite.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(
            outcome.is_ok(),
            "{target}: input {} breaks an invariant",
            path.display()
        );
        count += 1;
    }
    assert!(count > 0, "{target}: empty corpus");
    eprintln!("{target}: replayed {count} inputs");
}

#[test]
fn secret_name_corpus() {
    replay("secret_name", gtc::fuzz_checks::secret_name);
}

#[test]
fn envelope_corpus() {
    replay("envelope", gtc::fuzz_checks::envelope);
}

#[test]
fn manifest_corpus() {
    replay("manifest", gtc::fuzz_checks::manifest);
}

#[test]
fn vault_response_corpus() {
    replay("vault_response", gtc::fuzz_checks::vault_response);
}
