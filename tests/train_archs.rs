//! Every architecture of the model zoo trains one step through the trainer's own
//! `train_step`: the loss is finite, the terms its auxiliary outputs call for are
//! present, and the weights change.

use candle_core::{DType, Device};
use candle_nn::VarMap;
use hark::model::arch::{self, ArchConfig};
use hark::model::layers::seeded_var_builder;
use hark::train::dataset::{Batch, Item};
use hark::train::optim::{AdamW, AdamWConfig};
use hark::train::trainer::{train_step, LossConfig};

const N_MELS: usize = 64;
const C: usize = 3;

/// Four clips: two with class 0 and two with class 1 (strong, soft and scene labels),
/// of different lengths so the batch is padded.
fn items(t: usize) -> Vec<Item> {
    (0..4)
        .map(|k| {
            let n = t - 8 * (k % 2);
            let class = k / 2;
            let feats = (0..n * N_MELS)
                .map(|i| ((i * (k + 3)) as f32 * 0.013).sin() * 2.0 - 5.0)
                .collect();
            let mut strong = vec![0.0f32; n * C];
            for f in n / 4..3 * n / 4 {
                strong[f * C + class] = 1.0;
            }
            let soft = strong.iter().map(|v| 0.1 + 0.8 * v).collect();
            let mut weak = vec![0.0f32; C];
            weak[class] = 1.0;
            Item {
                feats,
                n_frames: n,
                weak,
                strong: Some(strong),
                soft: Some(soft),
                scene: Some(class),
            }
        })
        .collect()
}

fn one_step(json: &str, expect: &[&str]) {
    let arch: ArchConfig = serde_json::from_str(json).unwrap();
    let map = VarMap::new();
    let vb = seeded_var_builder(&map, 1, DType::F32, &Device::Cpu);
    let net = arch::build(&arch, N_MELS, C, vb).unwrap();
    let vars: Vec<_> = map
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let before: Vec<Vec<f32>> = vars
        .iter()
        .map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
        .collect();
    let mut opt = AdamW::new(vars.clone(), AdamWConfig::default()).unwrap();
    let t = 64usize.max(net.min_frames() * 4);
    let batch = Batch::collate(&items(t), N_MELS, C, net.min_frames(), &Device::Cpu).unwrap();
    let (loss, terms) =
        train_step(net.as_ref(), &batch, &mut opt, &LossConfig::default(), 5.0).unwrap();
    assert!(loss.is_finite() && loss > 0.0, "{json}: loss {loss}");
    let names: Vec<&str> = terms.iter().map(|(n, _)| *n).collect();
    for e in expect {
        assert!(names.contains(e), "{json}: terms {names:?} lack {e}");
    }
    for (n, v) in &terms {
        assert!(v.is_finite(), "{json}: term {n} = {v}");
    }
    let changed = vars.iter().zip(&before).any(|((_, v), b)| {
        let a: Vec<f32> = v.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        a.iter().zip(b).any(|(x, y)| (x - y).abs() > 1e-9)
    });
    assert!(changed, "{json}: no weight changed");
}

#[test]
fn crnn_trains_one_step() {
    one_step(r#"{"name":"crnn"}"#, &["clip_bce", "frame_bce", "focal"]);
}

#[test]
fn amn_trains_one_step() {
    one_step(r#"{"name":"amn"}"#, &["clip_bce", "frame_bce", "focal"]);
}

#[test]
fn two_step_ae_trains_one_step_with_reconstruction_loss() {
    one_step(r#"{"name":"two_step_ae"}"#, &["clip_bce", "reconstruction"]);
}

#[test]
fn atp_sedb_trains_one_step_with_sedb_and_ifd_losses() {
    one_step(r#"{"name":"atp_sedb"}"#, &["clip_bce", "frame_bce", "ifd"]);
}

#[test]
fn context_attention_trains_one_step_with_scene_loss() {
    one_step(
        r#"{"name":"context_attention","n_scenes":2}"#,
        &["clip_bce", "frame_bce", "focal", "scene_ce"],
    );
}
