//! Replays the saved fuzz inputs of `tests/data/fuzz/<target>/` (crashes found by
//! `scripts/fuzz.sh`, once fixed, and a few inputs that reached new code) through
//! the same checks as the cargo-fuzz targets, so a fixed finding stays fixed.

mod fuzz_cases;

use std::path::Path;

#[test]
fn every_saved_fuzz_input_is_handled() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz");
    for (target, check) in fuzz_cases::TARGETS {
        let dir = root.join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no saved inputs for {target}");
        for f in files {
            let data = std::fs::read(&f).unwrap();
            let r = std::panic::catch_unwind(|| check(&data));
            assert!(r.is_ok(), "{target}: {} fails", f.display());
        }
    }
}
