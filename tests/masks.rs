//! Padding masks (issue #5): for every architecture, a batch of clips zero-padded to a
//! longer length gives — at each clip's valid frames — the same frame outputs, clip
//! outputs, auxiliary outputs, loss and gradients (f64, tight tolerance) as each clip
//! run alone unpadded, also for lengths that are not multiples of the time pools; in
//! training mode (batch-norm statistics over valid frames) a padded single clip and a
//! padded batch of equal lengths match their unpadded runs, running statistics
//! included. At the trainer level, the loss of a padded batch is the mean of the
//! per-clip losses, and `predict_frames` batches mixed lengths with per-clip results.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use hark::features::FeatureConfig;
use hark::model::arch::{self, ArchConfig, SedNet, SedOutput};
use hark::model::layers::seeded_var_builder;
use hark::train::dataset::{Batch, Clip, Dataset, Item, LabelledEvent};
use hark::train::trainer::{batch_loss, predict_frames, LossConfig};

const N_MELS: usize = 8;
const C: usize = 2;

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect()
}

fn build(json: &str, dtype: DType) -> (VarMap, Box<dyn SedNet>) {
    let arch: ArchConfig = serde_json::from_str(json).unwrap();
    let map = VarMap::new();
    let vb = seeded_var_builder(&map, 5, dtype, &Device::Cpu);
    let net = arch::build(&arch, N_MELS, C, vb).unwrap();
    // Non-trivial batch-norm affine parameters and running statistics.
    for (name, var) in map.data().lock().unwrap().iter() {
        let n = var.elem_count();
        let seed = name.len() as u64 * 31 + n as u64;
        let v: Option<Vec<f64>> = if name.ends_with("bn.weight") {
            Some(values(n, seed).iter().map(|v| 1.0 + 0.3 * v).collect())
        } else if name.ends_with("bn.bias") || name.ends_with("running_mean") {
            Some(values(n, seed).iter().map(|v| 0.2 * v).collect())
        } else if name.ends_with("running_var") {
            Some(
                values(n, seed)
                    .iter()
                    .map(|v| 1.0 + 0.5 * v.abs())
                    .collect(),
            )
        } else {
            None
        };
        if let Some(v) = v {
            let t = Tensor::from_vec(v, n, &Device::Cpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            var.set(&t).unwrap();
        }
    }
    (map, net)
}

/// Named output tensors of one clip.
type Named = Vec<(&'static str, Tensor)>;

/// Named outputs of one clip: index `b` of a batch output, time axes cut to the
/// clip's `len` frames (and its embedding frames).
fn clip_outputs(out: &SedOutput, b: usize, len: usize) -> Vec<(&'static str, Tensor)> {
    let one = |t: &Tensor| t.narrow(0, b, 1).unwrap();
    let frames = |t: &Tensor| one(t).narrow(1, 0, len).unwrap();
    let mut v = vec![("frame", frames(&out.frame)), ("clip", one(&out.clip))];
    if let Some(t) = &out.aux.frame_secondary {
        v.push(("frame_secondary", frames(t)));
    }
    if let Some(t) = &out.aux.reconstruction {
        v.push(("reconstruction", frames(t)));
    }
    if let Some(t) = &out.aux.scene_logits {
        v.push(("scene_logits", one(t)));
    }
    if let Some(t) = &out.aux.embeddings {
        let e = out.aux.embedding_lengths.as_ref().unwrap()[b];
        v.push(("embeddings", one(t).narrow(1, 0, e).unwrap()));
    }
    v
}

/// A loss that weighs every output element of clip `b` with its own fixed weight.
fn clip_loss(outs: &[(&'static str, Tensor)], b: usize) -> Tensor {
    let mut total = Tensor::zeros((), DType::F64, &Device::Cpu).unwrap();
    for (k, (_, t)) in outs.iter().enumerate() {
        let r = Tensor::from_vec(
            values(t.elem_count(), 1000 + 10 * b as u64 + k as u64),
            t.dims(),
            &Device::Cpu,
        )
        .unwrap();
        total = (total + (t * r).unwrap().sum_all().unwrap()).unwrap();
    }
    total
}

fn max_abs(t: &Tensor) -> f64 {
    t.abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

fn close(what: &str, a: &Tensor, b: &Tensor, tol: f64) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes");
    let d = max_abs(&(a - b).unwrap());
    let scale = 1.0 + max_abs(b);
    assert!(d <= tol * scale, "{what}: differs by {d:e} (scale {scale})");
}

/// Runs `json` on clips of `lengths` frames padded to `t` (garbage in the padding)
/// and compares with the reference runs: every clip alone (`grouped = false`) or all
/// clips as one unpadded batch (`grouped = true`, equal lengths). Two nets from the
/// same seed, so that training-mode running statistics can be compared too.
fn check(json: &str, lengths: &[usize], t: usize, train: bool, grouped: bool) {
    let (map_p, net_p) = build(json, DType::F64);
    let (map_r, net_r) = build(json, DType::F64);
    let clips: Vec<Vec<f64>> = lengths
        .iter()
        .enumerate()
        .map(|(b, &l)| values(l * N_MELS, 7 + b as u64))
        .collect();
    // Padded batch, with garbage in the padding: the network must never read it.
    let mut xp = vec![7.5f64; lengths.len() * t * N_MELS];
    for (b, c) in clips.iter().enumerate() {
        xp[b * t * N_MELS..b * t * N_MELS + c.len()].copy_from_slice(c);
    }
    let xp = Var::from_vec(xp, (lengths.len(), t, N_MELS), &Device::Cpu).unwrap();
    let out = net_p
        .forward_masked(xp.as_tensor(), lengths, train)
        .unwrap();
    assert_eq!(out.frame.dims(), &[lengths.len(), t, C]);
    // Frames of the padding are zero.
    for (b, &l) in lengths.iter().enumerate() {
        if l < t {
            let pad = out
                .frame
                .narrow(0, b, 1)
                .unwrap()
                .narrow(1, l, t - l)
                .unwrap();
            assert_eq!(max_abs(&pad), 0.0, "{json}: frame output in the padding");
        }
    }
    let padded: Vec<_> = (0..lengths.len())
        .map(|b| clip_outputs(&out, b, lengths[b]))
        .collect();
    let loss_p = padded.iter().enumerate().fold(
        Tensor::zeros((), DType::F64, &Device::Cpu).unwrap(),
        |acc, (b, o)| (acc + clip_loss(o, b)).unwrap(),
    );
    // Reference runs.
    let (refs, xr): (Vec<Named>, Vec<(Var, usize)>) = if grouped {
        let l = lengths[0];
        assert!(lengths.iter().all(|&x| x == l));
        let flat: Vec<f64> = clips.concat();
        let x = Var::from_vec(flat, (lengths.len(), l, N_MELS), &Device::Cpu).unwrap();
        let o = net_r.forward_t(x.as_tensor(), train).unwrap();
        (
            (0..lengths.len()).map(|b| clip_outputs(&o, b, l)).collect(),
            (0..lengths.len()).map(|b| (x.clone(), b)).collect(),
        )
    } else {
        let mut refs: Vec<Named> = Vec::new();
        let mut xs = Vec::new();
        for (c, &l) in clips.iter().zip(lengths) {
            let x = Var::from_vec(c.clone(), (1, l, N_MELS), &Device::Cpu).unwrap();
            let o = net_r.forward_t(x.as_tensor(), train).unwrap();
            refs.push(clip_outputs(&o, 0, l));
            xs.push((x, 0));
        }
        (refs, xs)
    };
    let loss_r = refs.iter().enumerate().fold(
        Tensor::zeros((), DType::F64, &Device::Cpu).unwrap(),
        |acc, (b, o)| (acc + clip_loss(o, b)).unwrap(),
    );
    let tol = 1e-10;
    for (b, (p, r)) in padded.iter().zip(&refs).enumerate() {
        assert_eq!(p.len(), r.len());
        for ((name, a), (_, c)) in p.iter().zip(r) {
            close(&format!("{json} clip {b} {name}"), a, c, tol);
        }
    }
    close(&format!("{json} loss"), &loss_p, &loss_r, tol);
    // Gradients of every weight and of the valid input frames; none into padding.
    let gp = loss_p.backward().unwrap();
    let gr = loss_r.backward().unwrap();
    let vars_r: HashMap<String, Var> = map_r.data().lock().unwrap().clone();
    for (name, vp) in map_p.data().lock().unwrap().iter() {
        let vr = &vars_r[name];
        let zero = |v: &Var| Tensor::zeros(v.shape(), DType::F64, &Device::Cpu).unwrap();
        let a = gp.get(vp.as_tensor()).cloned().unwrap_or_else(|| zero(vp));
        let c = gr.get(vr.as_tensor()).cloned().unwrap_or_else(|| zero(vr));
        close(&format!("{json} gradient of {name}"), &a, &c, 1e-9);
        if name.contains("running_") {
            close(
                &format!("{json} {name} after the step"),
                vp.as_tensor(),
                vr.as_tensor(),
                1e-12,
            );
        }
    }
    let gx = gp.get(xp.as_tensor()).unwrap();
    for (b, ((xr, i), &l)) in xr.iter().zip(lengths).enumerate() {
        let want = gr.get(xr.as_tensor()).unwrap().narrow(0, *i, 1).unwrap();
        let got = gx.narrow(0, b, 1).unwrap();
        close(
            &format!("{json} input gradient of clip {b}"),
            &got.narrow(1, 0, l).unwrap(),
            &want,
            1e-9,
        );
        if l < t {
            assert_eq!(
                max_abs(&got.narrow(1, l, t - l).unwrap()),
                0.0,
                "{json}: gradient into padding"
            );
        }
    }
}

/// Every architecture (and every switch that changes how time is handled).
fn archs() -> Vec<String> {
    let mut v = vec![
        r#"{"name":"crnn","blocks":[{"channels":2,"pool":{"time":2,"mel":2}},{"channels":3,"pool":{"time":2,"mel":2}}],"gru_hidden":3}"#.to_string(),
        r#"{"name":"amn","channels":[2,3,2],"mel_pools":[2,1,2],"gru_hidden":2}"#.to_string(),
        r#"{"name":"amn","channels":[2,2,2],"mel_pools":[2,1,2],"gru_hidden":2,"encoder_affinity":"exp_normalized","upsample":"nearest"}"#.to_string(),
        r#"{"name":"atp_sedb","blocks":[{"channels":2,"pool":{"time":2,"mel":2}},{"channels":2}],"df_dims":[3,8],"projection_dim":3}"#.to_string(),
        r#"{"name":"context_attention","local":{"blocks":[{"channels":2,"pool":{"time":1,"mel":2}}],"gru_hidden":2},"global":{"blocks":[{"channels":2,"pool":{"time":2,"mel":2}}],"gru_hidden":2},"segment_frames":3,"att_dim":2,"fc_hidden":3,"n_scenes":2}"#.to_string(),
        // Segments longer than some clips: per-clip segment lengths differ.
        r#"{"name":"context_attention","local":{"blocks":[{"channels":2,"pool":{"time":2,"mel":2}}],"gru_hidden":2},"global":{"blocks":[{"channels":2,"pool":{"time":4,"mel":2}}],"gru_hidden":2},"segment_frames":9,"att_dim":2,"fc_hidden":3}"#.to_string(),
    ];
    for head in [
        r#"{"kind":"two_step"}"#,
        r#"{"kind":"attention"}"#,
        r#"{"kind":"max"}"#,
        r#"{"kind":"mean"}"#,
        r#"{"kind":"linear_softmax"}"#,
        r#"{"kind":"exp_softmax"}"#,
        r#"{"kind":"gwrp","r":0.7}"#,
    ] {
        v.push(format!(
            r#"{{"name":"two_step_ae","channels":[2,2],"decoder_channels":[2],"head":{head}}}"#
        ));
    }
    v.push(r#"{"name":"two_step_ae","channels":[2],"decoder_channels":[],"head":{"kind":"two_step"},"final_relu":true}"#.to_string());
    v
}

#[test]
fn mixed_lengths_padded_equal_each_clip_alone_in_inference_mode() {
    // 13, 8 and 10 frames: 13 and 10 are not multiples of the time pools (2, 4).
    for json in archs() {
        check(&json, &[13, 8, 10], 13, false, false);
        check(&json, &[9, 12], 16, false, false);
    }
}

#[test]
fn a_padded_clip_trains_as_the_unpadded_clip() {
    for json in archs() {
        check(&json, &[9], 16, true, true);
        check(&json, &[12], 13, true, true);
    }
}

#[test]
fn a_padded_batch_of_equal_lengths_trains_as_the_unpadded_batch() {
    for json in archs() {
        check(&json, &[10, 10, 10], 15, true, true);
    }
}

#[test]
fn too_short_clips_and_bad_lengths_are_errors() {
    let (_, net) = build(&archs()[0], DType::F64);
    let x = Tensor::zeros((2, 8, N_MELS), DType::F64, &Device::Cpu).unwrap();
    let e = net
        .forward_masked(&x, &[8, 3], false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("3 valid frames") && e.contains("≥ 4"), "{e}");
    assert!(net.forward_masked(&x, &[8], false).is_err());
    assert!(net.forward_masked(&x, &[8, 9], false).is_err());
}

/// Clips with weak, strong, soft and scene labels; lengths differ, one is shorter than
/// the network's time pooling.
fn items(lengths: &[usize]) -> Vec<Item> {
    lengths
        .iter()
        .enumerate()
        .map(|(k, &n)| {
            let feats: Vec<f32> = values(n * N_MELS, 50 + k as u64)
                .iter()
                .map(|&v| v as f32 * 2.0 - 3.0)
                .collect();
            let class = k % C;
            let mut strong = vec![0.0f32; n * C];
            for f in n / 4..(3 * n / 4).max(n / 4 + 1) {
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

#[test]
fn loss_of_a_padded_batch_is_the_mean_of_the_per_clip_losses() {
    let lc = LossConfig::default();
    for json in [
        archs()[0].clone(),
        archs()[1].clone(),
        archs()[3]
            .clone()
            .replace(r#","projection_dim":3"#, r#","ifd_projection":false"#),
        archs()[4].clone(),
        archs()[6].clone(),
    ] {
        let (_, net) = build(&json, DType::F32);
        let lengths = [21, 3, 16, 11];
        let its = items(&lengths);
        let batch = Batch::collate(&its, N_MELS, C, net.min_frames(), &Device::Cpu).unwrap();
        assert_eq!(batch.x.dim(1).unwrap(), 21);
        let out = net
            .forward_masked(&batch.x, &batch.model_lengths, false)
            .unwrap();
        let (total, terms) = batch_loss(&out, &batch, &lc).unwrap();
        let mut want_total = 0.0;
        let mut want_terms: HashMap<&str, f64> = HashMap::new();
        for it in &its {
            let one = Batch::collate(
                std::slice::from_ref(it),
                N_MELS,
                C,
                net.min_frames(),
                &Device::Cpu,
            )
            .unwrap();
            assert_eq!(one.model_lengths[0], one.x.dim(1).unwrap(), "unpadded");
            let o = net.forward_t(&one.x, false).unwrap();
            let (t, ts) = batch_loss(&o, &one, &lc).unwrap();
            want_total += f64::from(t.to_scalar::<f32>().unwrap()) / its.len() as f64;
            for (n, v) in ts {
                *want_terms.entry(n).or_default() +=
                    f64::from(v.to_scalar::<f32>().unwrap()) / its.len() as f64;
            }
        }
        assert!(terms.len() >= 3, "{json}: {terms:?}");
        for (n, v) in &terms {
            let got = f64::from(v.to_scalar::<f32>().unwrap());
            assert!(
                (got - want_terms[n]).abs() < 1e-5 * (1.0 + got.abs()),
                "{json} {n}: {got} vs {}",
                want_terms[n]
            );
        }
        let got = f64::from(total.to_scalar::<f32>().unwrap());
        assert!(
            (got - want_total).abs() < 1e-5 * (1.0 + got.abs()),
            "{json}: {got} vs {want_total}"
        );
    }
}

#[test]
fn predict_frames_batches_mixed_lengths_with_per_clip_results() {
    let (_, net) = build(&archs()[0], DType::F32);
    let lengths = [17usize, 2, 9, 12, 30];
    let clips: Vec<Clip> = items(&lengths)
        .into_iter()
        .enumerate()
        .map(|(k, it)| Clip {
            file: format!("c{k}.wav"),
            path: format!("c{k}.wav").into(),
            feats: it.feats,
            n_frames: it.n_frames,
            weak: vec![k % 2 == 0, k % 2 == 1],
            strong: Some(vec![LabelledEvent {
                onset: 0.0,
                offset: 0.1,
                class: 0,
                prob: 1.0,
            }]),
            soft: None,
            scene: None,
        })
        .collect();
    let data = Dataset {
        classes: vec!["a".into(), "b".into()],
        scene_classes: vec![],
        features: FeatureConfig {
            n_mels: N_MELS,
            ..FeatureConfig::default()
        },
        clips,
    };
    let batched = predict_frames(net.as_ref(), &data, 3).unwrap();
    let single = predict_frames(net.as_ref(), &data, 1).unwrap();
    for (k, ((fb, cb), (fs, cs))) in batched.iter().zip(&single).enumerate() {
        assert_eq!(fb.len(), lengths[k]);
        assert_eq!(fs.len(), lengths[k]);
        for (a, b) in fb
            .iter()
            .flatten()
            .chain(cb)
            .zip(fs.iter().flatten().chain(cs))
        {
            assert!((a - b).abs() < 1e-5, "clip {k}: {a} vs {b}");
        }
    }
}
