//! Replays the committed corpus (fuzz/corpus/TARGET/*) and the saved
//! findings (fuzz/regressions/TARGET/*) through each target's checks: what
//! the fuzzer once found stays fixed, without the fuzzing engine.

use std::path::Path;

#[test]
fn every_corpus_input_passes_its_checks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut total = 0;
    let mut failed = Vec::new();
    for (name, check) in spoolmail_fuzz::TARGETS {
        let mut count = 0;
        for dir in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else {
                continue;
            };
            for entry in entries {
                let path = entry.expect("corpus entry").path();
                let data = std::fs::read(&path).expect("corpus file");
                let result = std::panic::catch_unwind(|| check(&data));
                if result.is_err() {
                    failed.push(format!("{name}: {}", path.display()));
                }
                count += 1;
            }
        }
        assert!(count > 0, "{name}: no corpus committed");
        total += count;
    }
    eprintln!("{total} corpus inputs replayed");
    assert!(failed.is_empty(), "failing inputs:\n{}", failed.join("\n"));
}
