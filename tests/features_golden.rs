//! Golden tests: hark's log-mels and mel filterbanks against librosa 0.11.
//!
//! The golden files in `tests/data/golden/features/` are written by
//! `scripts/golden_features.py` (librosa `feature.melspectrogram` with
//! `pad_mode="constant"`, then `np.log(S + eps)` or `power_to_db(S, ref=1, top_db=None)`;
//! `filters.mel`). Every case reads the real recording
//! `tests/data/audio/speech_chime_16k.wav`; the 22.05 kHz and 32 kHz cases feed the
//! same samples declared at that rate (no resampling), exactly as the script does.

use std::path::{Path, PathBuf};

use hark::features::mel::MelFilterbank;
use hark::features::{logmel, n_frames, FeatureConfig, Frontend, MelNorm, MelScale};

/// Accepted error: `|got - want| ≤ TOL · max(|want|, 1)` (relative, with log values
/// near 0 compared absolutely).
const TOL: f32 = 1e-4;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn golden_dir() -> PathBuf {
    root().join("tests/data/golden/features")
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    assert_eq!(bytes.len() % 4, 0, "{path:?}");
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// 16-bit mono WAV → f32 in [-1, 1) (÷ 32768, as soundfile / librosa.load).
fn read_wav(rel: &str) -> (Vec<f32>, u32) {
    let mut r = hound::WavReader::open(root().join(rel)).unwrap();
    let spec = r.spec();
    assert_eq!(spec.channels, 1);
    assert_eq!(spec.bits_per_sample, 16);
    let x = r
        .samples::<i16>()
        .map(|s| f32::from(s.unwrap()) / 32768.0)
        .collect();
    (x, spec.sample_rate)
}

/// Max absolute error and max error relative to `max(|want|, 1)`.
fn errors(got: &[f32], want: &[f32]) -> (f32, f32) {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .fold((0.0f32, 0.0f32), |(a, r), (&g, &w)| {
            let d = (g - w).abs();
            (a.max(d), r.max(d / w.abs().max(1.0)))
        })
}

fn check_case(name: &str) {
    let dir = golden_dir();
    let header = read_json(&dir.join(format!("{name}.json")));
    let cfg: FeatureConfig = serde_json::from_value(header["config"].clone()).unwrap();
    let (x, file_sr) = read_wav(header["wav"].as_str().unwrap());
    assert_eq!(file_sr, 16_000);
    assert_eq!(x.len() as u64, header["n_samples"].as_u64().unwrap());
    assert_eq!(
        u64::from(cfg.sample_rate),
        header["declared_sample_rate"].as_u64().unwrap()
    );
    let want = read_f32(&dir.join(header["data"].as_str().unwrap()));
    let frames = header["n_frames"].as_u64().unwrap() as usize;
    assert_eq!(header["n_mels"].as_u64().unwrap() as usize, cfg.n_mels);
    assert_eq!(want.len(), frames * cfg.n_mels);
    assert_eq!(n_frames(&cfg, x.len()), frames, "{name}: frame count");

    let got = logmel(&cfg, &x).unwrap();
    let (abs, rel) = errors(&got, &want);
    eprintln!(
        "{name}: {frames} frames x {} mels: max abs err {abs:.3e}, max rel err {rel:.3e}",
        cfg.n_mels
    );
    assert!(
        rel <= TOL,
        "{name}: max rel err {rel:e} > {TOL:e} (abs {abs:e})"
    );

    // The same through the streaming API in 20 ms-ish pieces of varying size.
    let mut fe = Frontend::new(&cfg).unwrap();
    let mut out = Vec::new();
    let mut rest = &x[..];
    let mut k = 0usize;
    while !rest.is_empty() {
        let c = (97 + 131 * k % 613).min(rest.len());
        fe.push(&rest[..c], &mut out);
        rest = &rest[c..];
        k += 1;
    }
    fe.finish(&mut out);
    assert_eq!(out.len(), got.len());
    assert!(out
        .iter()
        .zip(&got)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
}

#[test]
fn default_16k_matches_librosa() {
    check_case("default_16k");
}

#[test]
fn seed_22k_htk_db_matches_librosa() {
    check_case("seed_22k_htk_db");
}

#[test]
fn seed_32k_hamming_magnitude_matches_librosa() {
    check_case("seed_32k_hamming_mag");
}

#[test]
fn kaldi_like_uncentred_odd_nfft_matches_librosa() {
    check_case("kaldi_16k_nocenter");
}

fn check_mel(name: &str) {
    let dir = golden_dir();
    let h = read_json(&dir.join(format!("mel_{name}.json")));
    let scale = match h["mel_scale"].as_str().unwrap() {
        "htk" => MelScale::Htk,
        _ => MelScale::Slaney,
    };
    let norm = match h["mel_norm"].as_str().unwrap() {
        "slaney" => MelNorm::Slaney,
        _ => MelNorm::None,
    };
    let fb = MelFilterbank::new(
        h["sample_rate"].as_f64().unwrap(),
        h["n_fft"].as_u64().unwrap() as usize,
        h["n_mels"].as_u64().unwrap() as usize,
        h["fmin"].as_f64().unwrap(),
        h["fmax"].as_f64().unwrap(),
        scale,
        norm,
    )
    .unwrap();
    let want = read_f32(&dir.join(h["data"].as_str().unwrap()));
    let got = fb.to_dense();
    assert_eq!(got.len(), want.len());
    let peak = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let mut worst = 0.0f32;
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        // Zero pattern identical; values within a few f32 ulps of the peak.
        assert_eq!(*g == 0.0, *w == 0.0, "{name}: element {i}: {g} vs {w}");
        worst = worst.max((g - w).abs());
    }
    eprintln!("mel_{name}: max abs err {worst:.3e} (peak weight {peak:.3e})");
    assert!(worst <= 1e-6 * peak, "{name}: {worst:e}");
}

#[test]
fn slaney_filterbank_matches_librosa() {
    check_mel("slaney_16k_256");
}

#[test]
fn htk_unnormalised_filterbank_matches_librosa() {
    check_mel("htk_22k_300_nonorm");
}
