//! The training metadata readers (weak, strong, soft and scene TSVs) behind
//! `Dataset::load_split`. The audio folder is empty, so a file that parses ends in a
//! "missing audio" error; parsing must never panic.
#![no_main]

use hark::features::FeatureConfig;
use hark::train::{DataConfig, Dataset, SplitConfig};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let meta = common::scratch("meta.tsv", body);
    let base = meta.parent().expect("scratch dir").to_path_buf();
    let audio_dir = base.join("no-audio");
    let mut split = SplitConfig {
        audio_dir,
        weak: None,
        strong: None,
        soft: None,
        scenes: None,
    };
    match sel % 4 {
        0 => split.weak = Some(meta),
        1 => split.strong = Some(meta),
        2 => split.soft = Some(meta),
        _ => {
            split.weak = Some(meta.clone());
            split.scenes = Some(meta);
        }
    }
    let cfg = DataConfig {
        classes: vec!["speech".into(), "door".into()],
        scene_classes: vec!["home".into()],
        train: split.clone(),
        validation: None,
        validation_fraction: 0.2,
        cache_dir: None,
    };
    let _ = Dataset::load_split(&cfg, &split, &base, &FeatureConfig::default(), "data.train");
});
