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

/// The envelope corpus reaches the invariants, not only the parser: enough of its
/// inputs parse into v2 (and v1) envelopes whose round trip, wrong-key and
/// rollback checks then run.
#[test]
fn envelope_corpus_reaches_the_v2_invariants() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/envelope");
    let (mut v1, mut v2) = (0, 0);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        match gtc::fuzz_checks::envelope_reached(&data) {
            Some(1) => v1 += 1,
            Some(2) => v2 += 1,
            _ => {}
        }
    }
    eprintln!("envelope corpus: {v2} v2 and {v1} v1 envelopes reach the invariants");
    assert!(v2 >= 30, "only {v2} inputs reach the v2 invariants");
    assert!(v1 >= 3, "only {v1} inputs reach the v1 invariants");
}

#[test]
fn manifest_corpus() {
    replay("manifest", gtc::fuzz_checks::manifest);
}

#[test]
fn vault_response_corpus() {
    replay("vault_response", gtc::fuzz_checks::vault_response);
}
