//! The daemon's TOML config parser and validator (`Config::parse`), then the
//! per-class checks against a model's labels.
#![no_main]

use std::path::Path;

use hark::config::Config;
use hark::detect::postprocess::PostprocessConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let path = Path::new("fuzz.toml");
    if let Ok(cfg) = Config::parse(text, path) {
        let labels = vec!["speech".to_string(), "door".to_string()];
        let _ = cfg.check_labels(path, &labels, &PostprocessConfig::default());
        let _ = cfg.postprocess(&PostprocessConfig::default());
    }
});
