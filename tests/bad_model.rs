//! Bad model files, table-driven (beyond the single cases of `model_file.rs`): the
//! test model cut at every place that matters, bytes flipped in its header, and every
//! metadata field set to a wrong or absurd value. Each file is either refused with an
//! error naming it, or (where the value is valid) loads and scores finite
//! probabilities — never a panic, an abort, or a huge allocation. The binary refuses
//! bad models with exit code 1 in every command that loads one.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use common::*;
use hark::model::{Model, Scorer};

/// Writes a safetensors file with the given tensors and `hark.model` JSON.
fn write_model(path: &Path, tensors: &[(String, Tensor)], json: &str) {
    let meta = HashMap::from([("hark.model".to_string(), json.to_string())]);
    let bytes = safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), Some(meta))
        .expect("serialise");
    std::fs::write(path, bytes).expect("write");
}

/// Loads `path`; a refusal must name the file, a model that loads must score a
/// window into probabilities. Returns whether it loaded.
fn load_checked(path: &Path) -> bool {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    match Model::load(path) {
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(&name), "error does not name {name}: {msg}");
            false
        }
        Ok(mut m) => {
            let n = m.meta().streaming.window_frames;
            let x = vec![-4.0f32; n * m.n_mels()];
            let mut out = vec![0.0f32; n * m.meta().classes.len()];
            m.score(&x, n, &mut out).unwrap();
            assert!(out.iter().all(|s| (0.0..=1.0).contains(s)), "{name}");
            true
        }
    }
}

fn header_len(bytes: &[u8]) -> usize {
    8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize
}

#[test]
fn a_model_cut_anywhere_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let model = test_model(dir.path());
    let bytes = std::fs::read(&model).unwrap();
    let header = header_len(&bytes);
    // Every byte of the length prefix and the header's start, every 5th byte of the
    // header, and 40 places in the tensor data.
    let mut cuts: Vec<usize> = (0..64).collect();
    cuts.extend((64..header + 2).step_by(5));
    cuts.extend((1..40).map(|k| header + (bytes.len() - header) * k / 40));
    cuts.push(bytes.len() - 1);
    for cut in &cuts {
        let p = dir.path().join(format!("cut{cut}.safetensors"));
        std::fs::write(&p, &bytes[..*cut]).unwrap();
        assert!(!load_checked(&p), "cut at {cut} of {} loaded", bytes.len());
        std::fs::remove_file(&p).unwrap();
    }
    // A length prefix claiming an enormous header.
    for claim in [u64::MAX, 1 << 40, bytes.len() as u64] {
        let mut b = bytes.clone();
        b[..8].copy_from_slice(&claim.to_le_bytes());
        let p = dir.path().join(format!("claim{claim}.safetensors"));
        std::fs::write(&p, &b).unwrap();
        assert!(!load_checked(&p));
    }
}

#[test]
fn flipped_header_bytes_are_refused_or_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let model = test_model(dir.path());
    let bytes = std::fs::read(&model).unwrap();
    let header = header_len(&bytes);
    let (mut refused, mut loaded) = (0, 0);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..600 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let at = 8 + (state as usize) % (header - 8);
        let mut b = bytes.clone();
        b[at] ^= 1 << (state >> 60 & 7);
        let p = dir.path().join(format!("flip{i}.safetensors"));
        std::fs::write(&p, &b).unwrap();
        if load_checked(&p) {
            loaded += 1;
        } else {
            refused += 1;
        }
        std::fs::remove_file(&p).unwrap();
    }
    // Most flips break the JSON or a name; a few land in harmless places (the
    // model name, a digit of a threshold).
    assert!(refused > loaded, "refused {refused}, loaded {loaded}");
}

/// (JSON pointer into the metadata, new value) — each wrong for the tensors or out
/// of range.
fn metadata_cases() -> Vec<(&'static str, serde_json::Value)> {
    use serde_json::json;
    vec![
        ("/format_version", json!(0)),
        ("/format_version", json!(-1)),
        ("/format_version", json!("1")),
        ("/format_version", json!(999)),
        ("/name", json!(null)),
        ("/arch/name", json!("transformer")),
        ("/arch/gru_hidden", json!(0)),
        ("/arch/gru_hidden", json!(1_000_000_000_000u64)),
        ("/arch/blocks", json!([])),
        ("/arch/blocks/0/channels", json!(0)),
        ("/arch/blocks/0/channels", json!(4_000_000_000u64)),
        ("/arch/blocks/0/pool/time", json!(0)),
        ("/arch/blocks/0/pool/mel", json!(1_000_000)),
        ("/arch/kernel", json!(0)),
        ("/arch/kernel", json!(4)),
        ("/arch/lp_p", json!(-1.0)),
        ("/arch/leaky_slope", json!(-5.0)),
        ("/features/sample_rate", json!(0)),
        ("/features/sample_rate", json!(4_000_000_000u64)),
        ("/features/n_mels", json!(0)),
        ("/features/n_mels", json!(100_000)),
        ("/features/n_fft", json!(0)),
        ("/features/n_fft", json!(1u64 << 40)),
        ("/features/win_length", json!(0)),
        ("/features/win_length", json!(100_000)),
        ("/features/hop_length", json!(0)),
        ("/features/fmin", json!(-10.0)),
        ("/features/fmax", json!(1e9)),
        ("/features/fmin", json!(9000.0)),
        ("/features/power", json!(-1.0)),
        ("/features/window", json!("kaiser")),
        ("/classes", json!([])),
        ("/classes", json!(["a", "a", "b"])),
        ("/classes", json!(["a", "b"])),
        ("/classes", json!(["a", "b", "c", "d"])),
        ("/classes", json!(["", "b", "c"])),
        ("/streaming/window_frames", json!(0)),
        ("/streaming/hop_frames", json!(0)),
        ("/streaming/hop_frames", json!(1000)),
        ("/streaming/lookahead_frames", json!(1000)),
        ("/streaming/lookahead_frames", json!(-3)),
        ("/streaming/window_frames", json!(1u64 << 40)),
        ("/postprocess/default/on", json!(2.0)),
        ("/postprocess/default/off", json!(-1.0)),
        ("/postprocess/default/median_frames", json!(0)),
        ("/postprocess/per_class", json!({"zebra": {"on": 0.5}})),
    ]
}

#[test]
fn every_wrong_metadata_value_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let model = Model::load(&test_model(dir.path())).unwrap();
    let tensors = model.tensors().to_vec();
    let json: serde_json::Value = serde_json::to_value(model.meta()).unwrap();
    let mut files: Vec<PathBuf> = Vec::new();
    for (i, (ptr, value)) in metadata_cases().into_iter().enumerate() {
        let mut v = json.clone();
        // Set the field, or add it where it is optional and absent.
        match v.pointer_mut(ptr) {
            Some(x) => *x = value.clone(),
            None => {
                let (parent, key) = ptr.rsplit_once('/').unwrap();
                v.pointer_mut(parent)
                    .and_then(|p| p.as_object_mut())
                    .unwrap_or_else(|| panic!("no {parent} in {json}"))
                    .insert(key.to_string(), value.clone());
            }
        }
        let p = dir.path().join(format!("meta{i}.safetensors"));
        write_model(&p, &tensors, &v.to_string());
        assert!(!load_checked(&p), "{ptr} = {value} loaded");
        files.push(p);
    }
    // Wrong dtypes for every tensor kind.
    for dt in [DType::F16, DType::BF16, DType::F64, DType::U8, DType::I64] {
        let t: Vec<(String, Tensor)> = tensors
            .iter()
            .map(|(n, t)| (n.clone(), t.to_dtype(dt).unwrap()))
            .collect();
        let p = dir.path().join(format!("dtype_{dt:?}.safetensors"));
        write_model(&p, &t, &json.to_string());
        assert!(!load_checked(&p), "{dt:?} loaded");
    }
    // A tensor transposed (same element count, wrong shape) and one reshaped flat.
    let k = tensors
        .iter()
        .position(|(_, t)| t.rank() == 2 && t.dims()[0] != t.dims()[1])
        .expect("a non-square matrix");
    for how in ["transposed", "flat"] {
        let mut t = tensors.clone();
        t[k].1 = if how == "flat" {
            t[k].1.flatten_all().unwrap()
        } else {
            t[k].1.t().unwrap().contiguous().unwrap()
        };
        let p = dir.path().join(format!("shape_{how}.safetensors"));
        write_model(&p, &t, &json.to_string());
        assert!(!load_checked(&p), "{how} {} loaded", t[k].0);
    }
    // The binary: each command that loads a model exits 1 naming it.
    let cfg = dir.path().join("empty.toml");
    std::fs::write(&cfg, "").unwrap();
    for p in files.iter().step_by(5) {
        let m = p.to_str().unwrap();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        for args in [
            vec!["model", "info", m],
            vec!["detect", "--model", m, clip().to_str().unwrap()],
            vec!["run", "--model", m, "--input", clip().to_str().unwrap()],
            vec!["check-config", cfg.to_str().unwrap(), "--model", m],
        ] {
            let o = run(&args);
            let e = stderr(&o);
            assert_eq!(o.status.code(), Some(1), "{args:?}: {e}");
            assert!(
                e.contains(&name) && !e.contains("panicked"),
                "{args:?}: {e}"
            );
        }
    }
}
