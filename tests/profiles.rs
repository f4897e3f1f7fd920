//! Every deployment profile in `firmware-config/` is valid: it parses, its values are
//! in range, and its per-class settings name labels of a model with the default
//! model's 11 classes.

mod common;

use common::*;

const DEFAULT_CLASSES: &str =
    "speech,scream,laughter,footsteps,door,gunshot,explosion,engine,bird,water,chime";

#[test]
fn every_firmware_profile_passes_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    let o = run(&[
        "model",
        "init",
        model.to_str().unwrap(),
        "--classes",
        DEFAULT_CLASSES,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let profiles = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("firmware-config");
    let mut n = 0;
    for entry in std::fs::read_dir(&profiles).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let o = run(&[
                "check-config",
                path.to_str().unwrap(),
                "--model",
                model.to_str().unwrap(),
            ]);
            assert!(o.status.success(), "{}: {}", path.display(), stderr(&o));
            n += 1;
        }
    }
    assert!(n >= 6, "expected the six profiles, found {n}");
}
