//! Data augmentation outside the model: on log-mel features (SpecAugment, time shift,
//! random gain, random band-limiting), on batches (mixup) and on waveforms (pitch
//! shift, clipping, reverb; paper 002). Every function takes the generator it draws
//! from, so runs are reproducible.

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::dataset::Item;

/// The `[augment]` table of a training config. Every augmentation is off by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    /// SpecAugment time masks per clip (paper 002: 2).
    pub time_masks: usize,
    /// Longest time mask as a fraction of the clip (paper 002: 0.2).
    pub time_mask_fraction: f64,
    /// SpecAugment frequency masks per clip (paper 002: 2).
    pub freq_masks: usize,
    /// Widest frequency mask as a fraction of the bands (paper 002: 0.15).
    pub freq_mask_fraction: f64,
    /// Probability of mixing a clip with another (mixup).
    pub mixup_prob: f64,
    /// Beta(α, α) parameter of the mixup weight.
    pub mixup_alpha: f64,
    /// Largest circular time shift, seconds.
    pub time_shift_s: f64,
    /// Largest gain change, ± dB.
    pub gain_db: f64,
    /// Probability of band-limiting a clip to a random bandwidth of 4–8 kHz (sources
    /// are recorded at 8 to 48 kHz).
    pub band_limit_prob: f64,
    /// Probability of a waveform pitch shift (paper 002); the clip is decoded again and
    /// its features recomputed, labels are rescaled in time.
    pub pitch_prob: f64,
    /// Largest pitch shift, ± semitones.
    pub pitch_semitones: f64,
    /// Probability of waveform soft clipping (paper 002).
    pub clipping_prob: f64,
    /// Largest clipping drive (tanh gain), ≥ 1.
    pub clipping_drive: f64,
    /// Probability of waveform reverb (paper 002).
    pub reverb_prob: f64,
    /// Longest reverb tail (RT60), seconds.
    pub reverb_rt60_s: f64,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            time_masks: 0,
            time_mask_fraction: 0.2,
            freq_masks: 0,
            freq_mask_fraction: 0.15,
            mixup_prob: 0.0,
            mixup_alpha: 0.4,
            time_shift_s: 0.0,
            gain_db: 0.0,
            band_limit_prob: 0.0,
            pitch_prob: 0.0,
            pitch_semitones: 2.0,
            clipping_prob: 0.0,
            clipping_drive: 4.0,
            reverb_prob: 0.0,
            reverb_rt60_s: 0.8,
        }
    }
}

/// Waveform augmentations drawn for one clip.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WaveAug {
    /// Pitch shift, semitones (0 = none).
    pub semitones: f64,
    /// Clipping drive (none = no clipping).
    pub drive: Option<f32>,
    /// Reverb RT60, seconds (none = no reverb).
    pub rt60_s: Option<f64>,
}

/// Draws the waveform augmentations of one clip; `None` when none applies (the
/// cached features are then used as they are).
pub fn draw_wave_aug(cfg: &AugmentConfig, rng: &mut impl Rng) -> Option<WaveAug> {
    if cfg.pitch_prob <= 0.0 && cfg.clipping_prob <= 0.0 && cfg.reverb_prob <= 0.0 {
        return None;
    }
    let mut w = WaveAug {
        semitones: 0.0,
        drive: None,
        rt60_s: None,
    };
    if rng.random::<f64>() < cfg.pitch_prob && cfg.pitch_semitones > 0.0 {
        w.semitones = rng.random_range(-cfg.pitch_semitones..=cfg.pitch_semitones);
    }
    if rng.random::<f64>() < cfg.clipping_prob {
        w.drive = Some(rng.random_range(1.0..=cfg.clipping_drive.max(1.0)) as f32);
    }
    if rng.random::<f64>() < cfg.reverb_prob && cfg.reverb_rt60_s > 0.0 {
        w.rt60_s = Some(rng.random_range(0.1f64.min(cfg.reverb_rt60_s)..=cfg.reverb_rt60_s));
    }
    (w.semitones != 0.0 || w.drive.is_some() || w.rt60_s.is_some()).then_some(w)
}

/// The item of `clip` with waveform augmentation `w`: the audio is decoded again,
/// pitch-shifted (labels rescaled in time), clipped and reverberated, and its log-mels
/// recomputed.
pub fn wave_item(
    clip: &super::dataset::Clip,
    w: &WaveAug,
    features: &crate::features::FeatureConfig,
    n_classes: usize,
    rng: &mut impl Rng,
) -> super::Result<Item> {
    let mut audio = super::dataset::load_audio(&clip.path, features.sample_rate)?;
    let mut scale = 1.0;
    if w.semitones != 0.0 {
        audio = pitch_shift(&audio, w.semitones);
        scale = 1.0 / 2f64.powf(w.semitones / 12.0);
    }
    if let Some(d) = w.drive {
        clip_waveform(&mut audio, d);
    }
    if let Some(rt) = w.rt60_s {
        audio = reverb(&audio, features.sample_rate, rt, 0.3, rng);
    }
    let feats = crate::features::logmel(features, &audio)?;
    let n_frames = feats.len() / features.n_mels.max(1);
    let rescale = |ev: &Vec<super::dataset::LabelledEvent>| -> Vec<super::dataset::LabelledEvent> {
        ev.iter()
            .map(|e| super::dataset::LabelledEvent {
                onset: e.onset * scale,
                offset: e.offset * scale,
                ..*e
            })
            .collect()
    };
    let period = features.frame_period_s();
    let targets = |ev: &Vec<super::dataset::LabelledEvent>| {
        super::dataset::Clip::frame_targets(&rescale(ev), n_frames, n_classes, period)
    };
    Ok(Item {
        feats,
        n_frames,
        weak: clip.weak.iter().map(|&b| f32::from(u8::from(b))).collect(),
        strong: clip.strong.as_ref().map(targets),
        soft: clip.soft.as_ref().map(targets),
        scene: clip.scene,
    })
}

/// Log-domain offset of a gain of `db` decibels for log-mels of `power` 1 or 2 under
/// `log` (ln: `ln(g^power)`; dB: `power_to_db`, always 10·log10 of the mel energy).
pub fn log_gain_offset(db: f64, power: f32, log: &crate::features::LogScale) -> f32 {
    match log {
        crate::features::LogScale::Ln { .. } => {
            (db / 20.0 * f64::from(power) * std::f64::consts::LN_10) as f32
        }
        crate::features::LogScale::Db { .. } => (db / 20.0 * f64::from(power) * 10.0) as f32,
    }
}

/// Applies the per-clip feature augmentations of `cfg` to `item` (`n_mels` bands, mel
/// centre frequencies `mel_hz`, `frame_rate` frames/s, log floor `floor`).
pub fn augment_item(
    item: &mut Item,
    cfg: &AugmentConfig,
    features: &crate::features::FeatureConfig,
    rng: &mut impl Rng,
) {
    let n_mels = features.n_mels;
    let n = item.n_frames;
    let floor = item.feats.iter().copied().fold(f32::INFINITY, f32::min);
    if cfg.time_shift_s > 0.0 && n > 1 {
        let max = ((cfg.time_shift_s * features.frame_rate()) as usize).min(n - 1);
        if max > 0 {
            let s = rng.random_range(0..=2 * max) as isize - max as isize;
            let k = s.rem_euclid(n as isize) as usize;
            item.feats.rotate_right(k * n_mels);
            let c = item.weak.len();
            if let Some(t) = item.strong.as_mut() {
                t.rotate_right(k * c);
            }
            if let Some(t) = item.soft.as_mut() {
                t.rotate_right(k * c);
            }
        }
    }
    if cfg.gain_db > 0.0 {
        let db = rng.random_range(-cfg.gain_db..=cfg.gain_db);
        let off = log_gain_offset(db, features.power, &features.log);
        item.feats.iter_mut().for_each(|v| *v += off);
    }
    if cfg.band_limit_prob > 0.0 && rng.random::<f64>() < cfg.band_limit_prob {
        let cutoff = rng.random_range(4000.0..8000.0f64);
        let edges = crate::features::mel::mel_frequencies(
            n_mels + 2,
            f64::from(features.fmin),
            f64::from(features.fmax),
            features.mel_scale,
        );
        // Band m covers edges[m]..edges[m+2]; bands above the cutoff get the floor.
        if let Some(first) = (0..n_mels).find(|&m| edges[m + 1] > cutoff) {
            for t in 0..n {
                item.feats[t * n_mels + first..(t + 1) * n_mels]
                    .iter_mut()
                    .for_each(|v| *v = floor);
            }
        }
    }
    spec_augment(item, cfg, n_mels, rng);
}

/// SpecAugment: `time_masks` masks of up to `time_mask_fraction` of the frames and
/// `freq_masks` masks of up to `freq_mask_fraction` of the bands, filled with the clip's
/// mean value.
pub fn spec_augment(item: &mut Item, cfg: &AugmentConfig, n_mels: usize, rng: &mut impl Rng) {
    let n = item.n_frames;
    if n == 0 || (cfg.time_masks == 0 && cfg.freq_masks == 0) {
        return;
    }
    let mean = item.feats.iter().sum::<f32>() / item.feats.len().max(1) as f32;
    for _ in 0..cfg.time_masks {
        let w = rng.random_range(0..=((n as f64 * cfg.time_mask_fraction) as usize).min(n));
        let s = rng.random_range(0..=n - w);
        item.feats[s * n_mels..(s + w) * n_mels]
            .iter_mut()
            .for_each(|v| *v = mean);
    }
    for _ in 0..cfg.freq_masks {
        let w =
            rng.random_range(0..=((n_mels as f64 * cfg.freq_mask_fraction) as usize).min(n_mels));
        let s = rng.random_range(0..=n_mels - w);
        for t in 0..n {
            item.feats[t * n_mels + s..t * n_mels + s + w]
                .iter_mut()
                .for_each(|v| *v = mean);
        }
    }
}

/// A Beta(α, α) draw (Jöhnk's method).
pub fn beta(alpha: f64, rng: &mut impl Rng) -> f64 {
    let a = alpha.max(1e-3);
    for _ in 0..1000 {
        let u = rng.random::<f64>().powf(1.0 / a);
        let v = rng.random::<f64>().powf(1.0 / a);
        if u + v <= 1.0 && u + v > 0.0 {
            return u / (u + v);
        }
    }
    0.5
}

/// Mixup within a batch: with probability `mixup_prob` each item is mixed with another
/// item of the batch, `λ·a + (1−λ)·b` on features (in the log domain, over the frames
/// both have) and on every target. Strong and soft targets are mixed only when both
/// items have them; otherwise the partner's are dropped.
pub fn mixup(items: &mut [Item], cfg: &AugmentConfig, rng: &mut impl Rng) {
    if cfg.mixup_prob <= 0.0 || items.len() < 2 {
        return;
    }
    let orig: Vec<Item> = items.to_vec();
    for (i, it) in items.iter_mut().enumerate() {
        if rng.random::<f64>() >= cfg.mixup_prob {
            continue;
        }
        let mut j = rng.random_range(0..orig.len() - 1);
        if j >= i {
            j += 1;
        }
        let lam = beta(cfg.mixup_alpha, rng) as f32;
        let o = &orig[j];
        let n = it.n_frames.min(o.n_frames);
        let f = it.feats.len() / it.n_frames.max(1);
        for k in 0..n * f {
            it.feats[k] = lam * it.feats[k] + (1.0 - lam) * o.feats[k];
        }
        for (a, b) in it.weak.iter_mut().zip(&o.weak) {
            *a = lam * *a + (1.0 - lam) * b;
        }
        let c = it.weak.len();
        for (mine, other) in [(&mut it.strong, &o.strong), (&mut it.soft, &o.soft)] {
            if let (Some(a), Some(b)) = (mine.as_mut(), other.as_ref()) {
                for k in 0..n * c {
                    a[k] = lam * a[k] + (1.0 - lam) * b[k];
                }
            }
        }
    }
}

/// Waveform pitch shift by `semitones` via resampling with linear interpolation (the
/// duration changes by the same factor, as a tape speed-up).
pub fn pitch_shift(x: &[f32], semitones: f64) -> Vec<f32> {
    let r = 2f64.powf(semitones / 12.0);
    let n = ((x.len() as f64) / r).floor() as usize;
    (0..n)
        .map(|i| {
            let p = i as f64 * r;
            let k = p as usize;
            let f = (p - k as f64) as f32;
            let a = x.get(k).copied().unwrap_or(0.0);
            let b = x.get(k + 1).copied().unwrap_or(a);
            a + f * (b - a)
        })
        .collect()
}

/// Soft clipping (`tanh(drive·x)/tanh(drive)`), as an overdriven microphone.
pub fn clip_waveform(x: &mut [f32], drive: f32) {
    let d = drive.max(1e-3);
    let norm = d.tanh();
    x.iter_mut().for_each(|v| *v = (d * *v).tanh() / norm);
}

/// Reverb: convolution with an exponentially decaying noise tail of `rt60_s` seconds
/// at `rate` Hz, mixed `wet` (0–1) with the dry signal.
pub fn reverb(x: &[f32], rate: u32, rt60_s: f64, wet: f32, rng: &mut impl Rng) -> Vec<f32> {
    let len = ((rt60_s * f64::from(rate)) as usize).clamp(1, 4 * rate as usize);
    let decay = (-6.9078 / len as f64).exp(); // −60 dB over len samples
    let mut g = 1.0f64;
    let ir: Vec<f32> = (0..len)
        .map(|_| {
            let v = (rng.random::<f64>() * 2.0 - 1.0) * g;
            g *= decay;
            v as f32
        })
        .collect();
    let e: f32 = ir.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-9);
    let ir: Vec<f32> = ir.iter().map(|h| h / e).collect();
    let out = fft_convolve(x, &ir);
    x.iter()
        .zip(&out)
        .map(|(d, w)| (1.0 - wet) * d + wet * w)
        .collect()
}

/// `x` convolved with `h`, truncated to `x.len()` samples (FFT convolution).
pub fn fft_convolve(x: &[f32], h: &[f32]) -> Vec<f32> {
    let n = (x.len() + h.len()).next_power_of_two();
    let mut planner = realfft::RealFftPlanner::<f32>::new();
    let fwd = planner.plan_fft_forward(n);
    let inv = planner.plan_fft_inverse(n);
    let mut a = vec![0.0f32; n];
    a[..x.len()].copy_from_slice(x);
    let mut b = vec![0.0f32; n];
    b[..h.len()].copy_from_slice(h);
    let mut fa = fwd.make_output_vec();
    let mut fb = fwd.make_output_vec();
    if fwd.process(&mut a, &mut fa).is_err() || fwd.process(&mut b, &mut fb).is_err() {
        return x.to_vec();
    }
    fa.iter_mut().zip(&fb).for_each(|(p, q)| *p *= q);
    if inv.process(&mut fa, &mut a).is_err() {
        return x.to_vec();
    }
    let s = 1.0 / n as f32;
    a.truncate(x.len());
    a.iter_mut().for_each(|v| *v *= s);
    a
}

/// Low-passes `x` (at `rate` Hz) to `cutoff_hz` in place: an FFT of the whole signal
/// with a raised-cosine roll-off over the last 10 % below the cutoff (band-limiting, as
/// recordings made at lower sample rates are).
pub fn low_pass(x: &mut [f32], rate: u32, cutoff_hz: f64) {
    let n = x.len();
    let nyquist = f64::from(rate) / 2.0;
    if n < 2 || cutoff_hz >= nyquist {
        return;
    }
    let mut planner = realfft::RealFftPlanner::<f32>::new();
    let fwd = planner.plan_fft_forward(n);
    let inv = planner.plan_fft_inverse(n);
    let mut spec = fwd.make_output_vec();
    let mut buf = x.to_vec();
    if fwd.process(&mut buf, &mut spec).is_err() {
        return;
    }
    let bin_hz = f64::from(rate) / n as f64;
    let edge = 0.9 * cutoff_hz;
    for (k, c) in spec.iter_mut().enumerate() {
        let f = k as f64 * bin_hz;
        let g = if f <= edge {
            1.0
        } else if f >= cutoff_hz {
            0.0
        } else {
            0.5 * (1.0 + (std::f64::consts::PI * (f - edge) / (cutoff_hz - edge)).cos())
        };
        *c *= g as f32;
    }
    // The inverse needs real DC and Nyquist bins.
    spec[0].im = 0.0;
    if n % 2 == 0 {
        if let Some(last) = spec.last_mut() {
            last.im = 0.0;
        }
    }
    if inv.process(&mut spec, x).is_err() {
        return;
    }
    let s = 1.0 / n as f32;
    x.iter_mut().for_each(|v| *v *= s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::sampler::epoch_rng;

    fn item(n: usize, f: usize) -> Item {
        Item {
            feats: (0..n * f).map(|v| v as f32).collect(),
            n_frames: n,
            weak: vec![1.0, 0.0],
            strong: Some((0..n * 2).map(|v| (v % 2) as f32).collect()),
            soft: None,
            scene: None,
        }
    }

    #[test]
    fn spec_augment_masks_stay_within_limits() {
        let mut it = item(50, 10);
        let cfg = AugmentConfig {
            time_masks: 2,
            freq_masks: 2,
            ..AugmentConfig::default()
        };
        spec_augment(&mut it, &cfg, 10, &mut epoch_rng(3, 0, 0));
        let mean = (0..500).sum::<usize>() as f32 / 500.0;
        let masked = it.feats.iter().filter(|&&v| v == mean).count();
        // At most 2×10 frames × 10 bands + 2×1 band × 50 frames.
        assert!(masked <= 2 * 10 * 10 + 2 * 50, "{masked}");
    }

    #[test]
    fn mixup_mixes_features_and_labels_with_the_same_weight() {
        let mut items = vec![item(4, 2), item(4, 2)];
        items[1].feats.iter_mut().for_each(|v| *v = 0.0);
        items[1].weak = vec![0.0, 1.0];
        let cfg = AugmentConfig {
            mixup_prob: 1.0,
            ..AugmentConfig::default()
        };
        mixup(&mut items, &cfg, &mut epoch_rng(0, 0, 0));
        let lam = items[0].weak[0];
        assert!((items[0].weak[0] + items[0].weak[1] - 1.0).abs() < 1e-6);
        assert!((items[0].feats[5] - lam * 5.0).abs() < 1e-4);
    }

    #[test]
    fn pitch_shift_by_an_octave_halves_the_length() {
        let x: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.01).sin()).collect();
        assert_eq!(pitch_shift(&x, 12.0).len(), 500);
        let mut y = vec![10.0f32, -10.0, 0.0];
        clip_waveform(&mut y, 2.0);
        assert!(y[0] <= 1.0 / 2f32.tanh() + 1e-6 && y[2] == 0.0);
    }

    #[test]
    fn fft_convolution_equals_direct_convolution() {
        let x: Vec<f32> = (0..1000)
            .map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let h: Vec<f32> = (0..77)
            .map(|i| 0.9f32.powi(i) * if i % 3 == 0 { -1.0 } else { 1.0 })
            .collect();
        let y = fft_convolve(&x, &h);
        assert_eq!(y.len(), x.len());
        for (i, v) in y.iter().enumerate() {
            let d: f32 = (0..=i.min(h.len() - 1)).map(|k| h[k] * x[i - k]).sum();
            assert!((v - d).abs() < 1e-4, "sample {i}: {v} vs {d}");
        }
    }
}
