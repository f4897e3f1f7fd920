//! End to end: generated sounds → `hark synth` → train a tiny CRNN for a few epochs →
//! validation loss falls and event-F1 rises well above chance; resuming from a
//! checkpoint continues exactly; masks make padding invisible to the losses; bad
//! configs give clear errors.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use hark::model::arch::{AuxOutputs, SedOutput};
use hark::model::Model;
use hark::train::dataset::{Batch, Item};
use hark::train::synth::{synthesize, write_wav, SynthConfig};
use hark::train::trainer::{batch_loss, train, LossConfig, TrainConfig, TrainOptions};

mod train_util;
use train_util::{make_sources, CLASSES};

fn synth(dir: &Path, n: usize) -> PathBuf {
    let out = dir.join("synth");
    let cfg = SynthConfig {
        foreground_dir: Some(dir.join("fg")),
        background_dir: Some(dir.join("bg")),
        output_dir: out.clone(),
        n_clips: n,
        clip_seconds: 2.5,
        events: (1, 2),
        snr_db: (15.0, 25.0),
        polyphony: 1,
        max_event_seconds: 1.0,
        seed: 7,
        ..SynthConfig::default()
    };
    let s = synthesize(&cfg).unwrap();
    assert_eq!(s.n_clips, n);
    assert!(s.events_per_class.len() == 3, "{:?}", s.events_per_class);
    out
}

fn config_text(data: &Path, output: &Path, epochs: usize) -> String {
    format!(
        r#"
name = "tiny"
output = "{out}"
seed = 3

[arch]
name = "crnn"
blocks = [{{ channels = 8, pool = {{ time = 2, mel = 4 }} }}, {{ channels = 16, pool = {{ time = 2, mel = 4 }} }}]
gru_hidden = 16

[features]
sample_rate = 16000
n_fft = 512
win_length = 400
hop_length = 320
window = "hann"
center = true
n_mels = 32
fmin = 50.0
fmax = 8000.0
mel_scale = "slaney"
mel_norm = "slaney"
power = 2.0
log = {{ kind = "db", amin = 1e-10 }}
normalization = {{ kind = "none" }}

[data]
classes = ["beep", "chirp", "knock"]
validation_fraction = 0.25

[data.train]
audio_dir = "{data}/audio"
strong = "{data}/strong.tsv"
weak = "{data}/weak.tsv"

[optim]
lr = 0.01
batch_size = 8

[schedule]
epochs = {epochs}
early_stop_patience = 0

[augment]
time_masks = 1
freq_masks = 1
gain_db = 3.0
reverb_prob = 0.2
clipping_prob = 0.2
pitch_prob = 0.2
pitch_semitones = 1.0
"#,
        out = output.display(),
        data = data.display(),
    )
}

fn load(dir: &Path, text: &str) -> TrainConfig {
    let p = dir.join("train.toml");
    std::fs::write(&p, text).unwrap();
    TrainConfig::from_file(&p).unwrap()
}

#[test]
fn tiny_crnn_learns_synthesised_events_and_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    make_sources(tmp.path());
    let data = synth(tmp.path(), 64);
    let out = tmp.path().join("run/model.safetensors");
    let cfg = load(tmp.path(), &config_text(&data, &out, 8));
    let report = train(&cfg, &TrainOptions::default()).unwrap();
    let e = &report.epochs;
    assert_eq!(e.len(), 8);
    for x in e {
        eprintln!(
            "epoch {} train {:.4} val {:.4} F1 {:.3} ({:.3} micro) lr {} {:.2} steps/s {:.2} s",
            x.epoch,
            x.train_loss,
            x.val_loss,
            x.val_event_f1,
            x.val_event_f1_micro,
            x.lr,
            x.steps_per_s,
            x.time_s
        );
    }
    assert!(
        e.last().unwrap().val_loss < 0.8 * e[0].val_loss,
        "validation loss did not fall"
    );
    let best_f1 = e.iter().map(|x| x.val_event_f1).fold(0.0, f64::max);
    assert!(
        best_f1 > 0.4 && best_f1 > e[0].val_event_f1 + 0.2,
        "event F1 {best_f1}"
    );
    // The model file works for detection as is.
    let m = Model::load(&out).unwrap();
    assert_eq!(m.meta().classes, CLASSES);
    assert!(cfg.sidecar("train.json").is_file());

    // Resume: 2 epochs straight == 1 epoch, then resume for 1 more.
    let a_out = tmp.path().join("a/model.safetensors");
    let b_out = tmp.path().join("b/model.safetensors");
    let a = load(tmp.path(), &config_text(&data, &a_out, 2));
    let b = load(tmp.path(), &config_text(&data, &b_out, 2));
    let ra = train(&a, &TrainOptions::default()).unwrap();
    let one = TrainOptions {
        max_epochs: Some(1),
        ..TrainOptions::default()
    };
    train(&b, &one).unwrap();
    let rb = train(
        &b,
        &TrainOptions {
            resume: true,
            ..TrainOptions::default()
        },
    )
    .unwrap();
    assert_eq!(rb.epochs.len(), 2);
    let (la, lb) = (ra.epochs[1].train_loss, rb.epochs[1].train_loss);
    assert!((la - lb).abs() < 1e-6, "resumed epoch loss {lb} vs {la}");
    let wa = Model::load(&a.sidecar("last.safetensors")).unwrap();
    let wb = Model::load(&b.sidecar("last.safetensors")).unwrap();
    for ((na, ta), (nb, tb)) in wa.tensors().iter().zip(wb.tensors()) {
        assert_eq!(na, nb);
        let d = (ta - tb)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(d < 1e-6, "{na} differs by {d} after resume");
    }
}

#[test]
fn masks_make_padding_invisible_to_every_loss() {
    let c = 2;
    let n = 10;
    let item = Item {
        feats: (0..n * 4).map(|v| (v as f32 * 0.37).sin()).collect(),
        n_frames: n,
        weak: vec![1.0, 0.0],
        strong: Some((0..n * c).map(|v| ((v / 3) % 2) as f32).collect()),
        soft: Some((0..n * c).map(|v| (v % 5) as f32 / 5.0).collect()),
        scene: None,
    };
    let frame: Vec<f32> = (0..n * c)
        .map(|v| 0.1 + 0.8 * ((v * 7) % 10) as f32 / 10.0)
        .collect();
    let out_for = |t: usize| {
        let mut f = frame.clone();
        f.extend(std::iter::repeat_n(0.93f32, (t - n) * c)); // garbage in the padding
        let mut rec: Vec<f32> = item.feats.clone();
        rec.extend(std::iter::repeat_n(5.0f32, (t - n) * 4));
        SedOutput {
            frame: Tensor::from_vec(f, (1, t, c), &Device::Cpu).unwrap(),
            clip: Tensor::new(&[[0.7f32, 0.2]], &Device::Cpu).unwrap(),
            aux: AuxOutputs {
                reconstruction: Some(
                    (Tensor::from_vec(rec, (1, t, 4), &Device::Cpu).unwrap() * 0.9).unwrap(),
                ),
                ..AuxOutputs::default()
            },
        }
    };
    let lc = LossConfig::default();
    let unpadded = Batch::collate(std::slice::from_ref(&item), 4, c, 0, &Device::Cpu).unwrap();
    let padded = Batch::collate(std::slice::from_ref(&item), 4, c, 16, &Device::Cpu).unwrap();
    assert_eq!(padded.x.dims(), &[1, 16, 4]);
    let (lu, tu) = batch_loss(&out_for(n), &unpadded, &lc).unwrap();
    let (lp, tp) = batch_loss(&out_for(16), &padded, &lc).unwrap();
    assert_eq!(tu.len(), 4, "clip, frame, focal and reconstruction terms");
    for ((name, a), (_, b)) in tu.iter().zip(&tp) {
        let (a, b) = (a.to_scalar::<f32>().unwrap(), b.to_scalar::<f32>().unwrap());
        assert!((a - b).abs() < 1e-6, "{name}: {a} unpadded vs {b} padded");
    }
    let (a, b) = (
        lu.to_scalar::<f32>().unwrap(),
        lp.to_scalar::<f32>().unwrap(),
    );
    assert!((a - b).abs() < 1e-6);
}

#[test]
fn bad_configs_give_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::create_dir_all(d.join("audio")).unwrap();
    write_wav(&d.join("audio/a.wav"), &vec![0.1f32; 16_000], 16_000).unwrap();
    let base = |weak: &str| {
        format!(
            "output = \"m.safetensors\"\n[data]\nclasses = [\"dog\", \"bell\"]\n\
             [data.train]\naudio_dir = \"audio\"\nweak = \"{weak}\"\n"
        )
    };
    let err = |text: &str| -> String {
        let p = d.join("t.toml");
        std::fs::write(&p, text).unwrap();
        match TrainConfig::from_file(&p) {
            Err(e) => e.to_string(),
            Ok(cfg) => train(&cfg, &TrainOptions::default())
                .unwrap_err()
                .to_string(),
        }
    };
    // Unknown key.
    let e = err(&format!(
        "{}[optim]\nlearning_rate = 0.1\n",
        base("weak.tsv")
    ));
    assert!(e.contains("learning_rate"), "{e}");
    // Missing metadata file.
    let e = err(&base("nope.tsv"));
    assert!(e.contains("nope.tsv"), "{e}");
    // Label not in the class list.
    std::fs::write(
        d.join("weak.tsv"),
        "filename\tevent_labels\na.wav\tdog,cat\n",
    )
    .unwrap();
    let e = err(&base("weak.tsv"));
    assert!(e.contains("`cat`") && e.contains("weak.tsv:2"), "{e}");
    // Missing audio file.
    std::fs::write(d.join("weak.tsv"), "filename\tevent_labels\nb.wav\tdog\n").unwrap();
    let e = err(&base("weak.tsv"));
    assert!(e.contains("b.wav") && e.contains("missing"), "{e}");
    // Empty dataset.
    std::fs::write(d.join("weak.tsv"), "filename\tevent_labels\n").unwrap();
    let e = err(&base("weak.tsv"));
    assert!(e.contains("empty"), "{e}");
    // Out-of-range value.
    let e = err(&format!("{}[optim]\nlr = -1.0\n", base("weak.tsv")));
    assert!(e.contains("optim.lr"), "{e}");
}
