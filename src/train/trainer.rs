//! The training loop, the same for every architecture: batches of clips zero-padded to
//! the longest → `SedNet::forward_masked(x, lengths, true)` (padding never counts in
//! batch-norm statistics, pooling, attention or recurrences) → the losses that the
//! outputs allow, over valid frames only → AdamW with gradient clipping → validation
//! (loss and event-based F1 through the daemon's own post-processing) →
//! ReduceLROnPlateau, early stopping, best checkpoint, resume.
//!
//! Frame-level terms are averaged per clip over its valid frames, then over clips, so
//! (outside batch-norm's shared statistics and the IFD pairs, which span clips) the
//! loss of a padded batch is the mean of its clips' losses.
//!
//! Losses by output: clip BCE on weak labels always; frame BCE where strong labels exist
//! (on `aux.frame_secondary`, the SEDB branch, when the network has one, else on
//! `frame`); focal loss on soft labels; IFD on `aux.embeddings` with pseudo strong
//! labels (the model's frame output fused with the clip labels); reconstruction MSE
//! with weight α on `aux.reconstruction`; scene cross-entropy on `aux.scene_logits`.
//!
//! Files written next to `output` (`model.safetensors`): the best model itself,
//! `model.last.safetensors` + `model.state.safetensors` + `model.state.json` (resume),
//! and `model.train.json` (one summary per epoch).

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use super::augment::{augment_item, draw_wave_aug, mixup, wave_item, AugmentConfig};
use super::dataset::{Batch, DataConfig, Dataset, Item};
use super::loss;
use super::optim::{clip_grad_norm, AdamW, AdamWConfig, PlateauConfig, ReduceLrOnPlateau};
use super::sampler::{balanced, epoch_rng, shuffled};
use super::{invalid, io_err, Result, TrainError};
use crate::detect::postprocess::{Detector, PostprocessConfig};
use crate::detect::streaming::StreamingConfig;
use crate::features::FeatureConfig;
use crate::metrics::event_based::{event_based, EventBasedOptions};
use crate::model::arch::{self, ArchConfig, SedNet, SedOutput};
use crate::model::layers::init::seeded_var_builder;
use crate::model::meta::FORMAT_VERSION;
use crate::model::{Model, ModelMeta};

/// Loss weights and parameters (`[loss]`). A term is used only when the network has the
/// output and the data the labels it needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LossConfig {
    /// Clip BCE on weak labels.
    pub clip_bce: f64,
    /// Frame BCE on strong labels (SEDB).
    pub frame_bce: f64,
    /// Focal loss on soft labels.
    pub focal: f64,
    /// Focal loss γ.
    pub focal_gamma: f64,
    /// Focal loss α (none: no class weighting).
    pub focal_alpha: Option<f64>,
    /// IFD metric loss weight.
    pub ifd: f64,
    /// IFD hinge margin (paper 001: 0.1).
    pub ifd_margin: f64,
    /// Frame probability above which a tagged class is a pseudo strong label.
    pub ifd_pseudo_threshold: f32,
    /// Most positive (and negative) frame pairs per batch.
    pub ifd_max_pairs: usize,
    /// Reconstruction MSE weight α (paper 003).
    pub reconstruction_alpha: f64,
    /// Scene cross-entropy weight.
    pub scene_ce: f64,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            clip_bce: 1.0,
            frame_bce: 1.0,
            focal: 1.0,
            focal_gamma: 2.0,
            focal_alpha: None,
            ifd: 1.0,
            ifd_margin: 0.1,
            ifd_pseudo_threshold: 0.5,
            ifd_max_pairs: 256,
            reconstruction_alpha: 1.0,
            scene_ce: 1.0,
        }
    }
}

/// Optimiser settings (`[optim]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// Learning rate (paper 000: 1e-4).
    pub lr: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// AdamW β₁.
    pub beta1: f64,
    /// AdamW β₂.
    pub beta2: f64,
    /// Largest global gradient norm (0: no clipping).
    pub grad_clip: f64,
    /// Clips per batch.
    pub batch_size: usize,
    /// Class-balanced sampling instead of plain shuffling.
    pub balanced: bool,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            weight_decay: 1e-2,
            beta1: 0.9,
            beta2: 0.999,
            grad_clip: 5.0,
            batch_size: 16,
            balanced: false,
        }
    }
}

/// Validation metric that selects the best checkpoint and drives the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Macro event-based F1 (sed_eval, collar 0.2 s); needs strong validation labels.
    EventF1,
    /// Micro event-based F1.
    EventF1Micro,
    /// Negative validation loss.
    ValLoss,
}

/// Schedule settings (`[schedule]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// Epochs in total.
    pub epochs: usize,
    /// Checkpoint selection metric.
    pub metric: Metric,
    /// ReduceLROnPlateau patience, epochs.
    pub plateau_patience: usize,
    /// ReduceLROnPlateau factor.
    pub plateau_factor: f64,
    /// Lowest learning rate.
    pub min_lr: f64,
    /// Stop after this many epochs without a better metric (0: never).
    pub early_stop_patience: usize,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            epochs: 30,
            metric: Metric::EventF1,
            plateau_patience: 3,
            plateau_factor: 0.5,
            min_lr: 1e-6,
            early_stop_patience: 10,
        }
    }
}

/// A training config file (`hark train CONFIG.toml`). Paths are relative to the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Model name stored in the model file.
    #[serde(default = "default_name")]
    pub name: String,
    /// Where the best model is written (`.safetensors`).
    pub output: PathBuf,
    /// Seed of weights, data order and augmentation.
    #[serde(default)]
    pub seed: u64,
    /// Architecture (`name = "crnn"` and its parameters).
    #[serde(default)]
    pub arch: ArchConfig,
    /// Front end.
    #[serde(default)]
    pub features: FeatureConfig,
    /// Data.
    pub data: DataConfig,
    /// Loss weights.
    #[serde(default)]
    pub loss: LossConfig,
    /// Optimiser.
    #[serde(default)]
    pub optim: OptimConfig,
    /// Schedule.
    #[serde(default)]
    pub schedule: ScheduleConfig,
    /// Augmentation.
    #[serde(default)]
    pub augment: AugmentConfig,
    /// Streaming window of the model file (default: 10 s windows, half hop).
    #[serde(default)]
    pub streaming: Option<StreamingConfig>,
    /// Post-processing stored in the model (and used for validation).
    #[serde(default)]
    pub postprocess: PostprocessConfig,
}

fn default_name() -> String {
    "hark-model".into()
}

impl TrainConfig {
    /// Reads and checks a config file; relative paths are resolved against its folder.
    pub fn from_file(path: &Path) -> Result<TrainConfig> {
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        let mut cfg: TrainConfig = toml::from_str(&text).map_err(|e| TrainError::Config {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.rebase(base);
        cfg.validate()?;
        Ok(cfg)
    }

    /// Makes every relative path absolute against `base`.
    pub fn rebase(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.output);
        for s in std::iter::once(&mut self.data.train).chain(self.data.validation.as_mut()) {
            fix(&mut s.audio_dir);
            for p in [&mut s.weak, &mut s.strong, &mut s.soft, &mut s.scenes]
                .into_iter()
                .flatten()
            {
                fix(p);
            }
        }
        if let Some(c) = self.data.cache_dir.as_mut() {
            fix(c);
        }
    }

    /// Checks every setting; the error names the first bad one.
    pub fn validate(&self) -> Result<()> {
        self.data.validate()?;
        self.features
            .validate()
            .map_err(|e| invalid("features", e, "valid front-end settings"))?;
        self.arch
            .validate(self.features.n_mels, self.data.classes.len())
            .map_err(|e| invalid("arch", e, "valid architecture parameters"))?;
        let o = &self.optim;
        if !(o.lr > 0.0 && o.lr < 10.0) {
            return Err(invalid("optim.lr", o.lr, "0 < lr < 10"));
        }
        if o.batch_size == 0 {
            return Err(invalid("optim.batch_size", 0, "at least 1"));
        }
        if !(o.weight_decay >= 0.0 && o.grad_clip >= 0.0) {
            return Err(invalid("optim.weight_decay / grad_clip", "negative", "≥ 0"));
        }
        if self.schedule.epochs == 0 {
            return Err(invalid("schedule.epochs", 0, "at least 1"));
        }
        if !(self.schedule.plateau_factor > 0.0 && self.schedule.plateau_factor < 1.0) {
            return Err(invalid(
                "schedule.plateau_factor",
                self.schedule.plateau_factor,
                "0 < f < 1",
            ));
        }
        let a = &self.augment;
        for (name, p) in [
            ("augment.mixup_prob", a.mixup_prob),
            ("augment.band_limit_prob", a.band_limit_prob),
            ("augment.pitch_prob", a.pitch_prob),
            ("augment.clipping_prob", a.clipping_prob),
            ("augment.reverb_prob", a.reverb_prob),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(invalid(name, p, "a probability in 0..=1"));
            }
        }
        if let ArchConfig::ContextAttention(c) = &self.arch {
            if c.n_scenes > 0 && c.n_scenes != self.data.scene_classes.len() {
                return Err(invalid(
                    "arch.n_scenes",
                    c.n_scenes,
                    &format!(
                        "the number of data.scene_classes ({})",
                        self.data.scene_classes.len()
                    ),
                ));
            }
        }
        self.postprocess
            .resolve(&self.data.classes)
            .map_err(|e| invalid("postprocess", e, "valid post-processing"))?;
        Ok(())
    }

    /// Files beside the output: `<stem>.<suffix>`.
    pub fn sidecar(&self, suffix: &str) -> PathBuf {
        let stem = self
            .output
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy();
        self.output.with_file_name(format!("{stem}.{suffix}"))
    }

    fn streaming(&self) -> StreamingConfig {
        self.streaming.unwrap_or_else(|| {
            let w =
                ((self.features.frame_rate() * 10.0).round() as usize).max(self.arch.min_frames());
            StreamingConfig {
                window_frames: w,
                hop_frames: (w / 2).max(1),
                lookahead_frames: None,
            }
        })
    }
}

/// Options of one `train` call besides the config.
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Continue from the last checkpoint beside `output`.
    pub resume: bool,
    /// Show a progress bar (otherwise tracing logs per epoch).
    pub progress: bool,
    /// Stop after this many epochs in this call (for chunked runs); `None`: all.
    pub max_epochs: Option<usize>,
}

/// Summary of one epoch (one element of `<stem>.train.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochSummary {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss (weighted sum of terms).
    pub train_loss: f64,
    /// Mean of each loss term.
    pub train_terms: BTreeMap<String, f64>,
    /// Validation loss (clip BCE + frame BCE where strong labels exist).
    pub val_loss: f64,
    /// Macro event-based F1 on validation.
    pub val_event_f1: f64,
    /// Micro event-based F1 on validation.
    pub val_event_f1_micro: f64,
    /// The selection metric's value.
    pub metric: f64,
    /// Learning rate used in the epoch.
    pub lr: f64,
    /// Steps in the epoch.
    pub steps: usize,
    /// Training steps per second.
    pub steps_per_s: f64,
    /// Wall time of the epoch including validation, seconds.
    pub time_s: f64,
    /// Whether this epoch's model became the best checkpoint.
    pub best: bool,
}

/// Resume state (`<stem>.state.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TrainState {
    epochs_done: usize,
    steps: u64,
    lr: f64,
    plateau: ReduceLrOnPlateau,
    best_metric: Option<f64>,
    epochs_since_best: usize,
    history: Vec<EpochSummary>,
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    /// Every epoch so far (including those of earlier, resumed runs).
    pub epochs: Vec<EpochSummary>,
    /// Best metric value.
    pub best_metric: Option<f64>,
    /// The best model file.
    pub output: PathBuf,
    /// Whether early stopping ended the run.
    pub early_stopped: bool,
}

/// A network with its variables.
struct Net {
    map: VarMap,
    net: Box<dyn SedNet>,
}

fn build_net(cfg: &TrainConfig) -> Result<Net> {
    let map = VarMap::new();
    let vb = seeded_var_builder(&map, cfg.seed, DType::F32, &Device::Cpu);
    let net = arch::build(&cfg.arch, cfg.features.n_mels, cfg.data.classes.len(), vb)?;
    Ok(Net { map, net })
}

fn named_tensors(map: &VarMap) -> Result<HashMap<String, Tensor>> {
    let data = map
        .data()
        .lock()
        .map_err(|_| invalid("variables", "poisoned lock", "an intact variable map"))?;
    Ok(data
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect())
}

fn meta_of(cfg: &TrainConfig, training: serde_json::Value) -> ModelMeta {
    ModelMeta {
        format_version: FORMAT_VERSION,
        name: cfg.name.clone(),
        arch: cfg.arch.clone(),
        features: cfg.features.clone(),
        classes: cfg.data.classes.clone(),
        postprocess: cfg.postprocess.clone(),
        streaming: cfg.streaming(),
        training,
    }
}

/// Writes the variables of `map` as a model file at `path`.
fn save_model(
    cfg: &TrainConfig,
    map: &VarMap,
    path: &Path,
    training: serde_json::Value,
) -> Result<()> {
    let model = Model::from_tensors(meta_of(cfg, training), named_tensors(map)?)?;
    model.save(path)?;
    Ok(())
}

/// Loss terms of one forward pass on `batch`; returns the weighted total and the terms.
pub fn batch_loss(
    out: &SedOutput,
    batch: &Batch,
    lc: &LossConfig,
) -> Result<(Tensor, Vec<(&'static str, Tensor)>)> {
    let mut terms: Vec<(&'static str, Tensor)> = Vec::new();
    let mut total = (loss::bce(&out.clip, &batch.weak, None)? * lc.clip_bce)?;
    terms.push(("clip_bce", total.clone()));
    let has = |t: &Tensor| -> Result<bool> { Ok(t.sum_all()?.to_scalar::<f32>()? > 0.0) };
    if lc.frame_bce > 0.0 && has(&batch.has_strong)? {
        let head = out.aux.frame_secondary.as_ref().unwrap_or(&out.frame);
        let m = batch.mask.broadcast_mul(&batch.has_strong)?;
        let l = loss::per_clip_mean(&loss::bce_elementwise(head, &batch.strong)?, &m)?;
        total = (total + (&l * lc.frame_bce)?)?;
        terms.push(("frame_bce", l));
    }
    if lc.focal > 0.0 && has(&batch.has_soft)? {
        let m = batch.mask.broadcast_mul(&batch.has_soft)?;
        let l = loss::focal_elementwise(&out.frame, &batch.soft, lc.focal_gamma, lc.focal_alpha)?;
        let l = loss::per_clip_mean(&l, &m)?;
        total = (total + (&l * lc.focal)?)?;
        terms.push(("focal", l));
    }
    if let Some(rec) = &out.aux.reconstruction {
        if lc.reconstruction_alpha > 0.0 {
            let l = loss::per_clip_mean(&(rec - &batch.x)?.sqr()?, &batch.mask)?;
            total = (total + (&l * lc.reconstruction_alpha)?)?;
            terms.push(("reconstruction", l));
        }
    }
    if let Some(logits) = &out.aux.scene_logits {
        let rows: Vec<u32> = (0..batch.has_scene.len() as u32)
            .filter(|&i| batch.has_scene[i as usize])
            .collect();
        if lc.scene_ce > 0.0 && !rows.is_empty() {
            let idx = Tensor::new(rows.as_slice(), logits.device())?;
            let l = loss::scene_cross_entropy(
                &logits.index_select(&idx, 0)?,
                &batch.scene.index_select(&idx, 0)?,
            )?;
            total = (total + (&l * lc.scene_ce)?)?;
            terms.push(("scene_ce", l));
        }
    }
    if let Some(emb) = &out.aux.embeddings {
        if lc.ifd > 0.0 {
            let pairs = ifd_pairs_of(out, emb, batch, lc)?;
            let l = loss::ifd(emb, &pairs, lc.ifd_margin)?;
            total = (total + (&l * lc.ifd)?)?;
            terms.push(("ifd", l));
        }
    }
    Ok((total, terms))
}

/// One optimisation step on `batch`: forward in training mode, losses, backward,
/// gradient clipping (when `grad_clip > 0`), AdamW. Returns the total loss and each
/// term's value; a non-finite loss or gradient is an error and leaves the weights
/// untouched.
pub fn train_step(
    net: &dyn SedNet,
    batch: &Batch,
    opt: &mut AdamW,
    lc: &LossConfig,
    grad_clip: f64,
) -> Result<(f64, Vec<(&'static str, f64)>)> {
    let out = net.forward_masked(&batch.x, &batch.model_lengths, true)?;
    let (total, terms) = batch_loss(&out, batch, lc)?;
    let lv = f64::from(total.to_scalar::<f32>()?);
    if !lv.is_finite() {
        return Err(invalid(
            "training loss",
            lv,
            "a finite loss (lower optim.lr?)",
        ));
    }
    let mut grads = total.backward()?;
    // Clips when `grad_clip > 0`; always gives the norm.
    let norm = clip_grad_norm(&mut grads, opt.vars(), grad_clip)?;
    if !norm.is_finite() {
        return Err(invalid(
            "gradient norm",
            norm,
            "a finite gradient (lower optim.lr?)",
        ));
    }
    opt.step(&grads)?;
    let terms = terms
        .into_iter()
        .map(|(n, t)| Ok((n, f64::from(t.to_scalar::<f32>()?))))
        .collect::<Result<Vec<_>>>()?;
    Ok((lv, terms))
}

/// IFD pairs at the embedding rate: strong labels where the clip has them, else pseudo
/// strong labels from the model's own (detached) frame output and the clip labels.
fn ifd_pairs_of(
    out: &SedOutput,
    emb: &Tensor,
    batch: &Batch,
    lc: &LossConfig,
) -> Result<loss::IfdPairs> {
    let (b, te, _) = emb.dims3()?;
    let frame: Vec<Vec<Vec<f32>>> = out.frame.detach().to_dtype(DType::F32)?.to_vec3()?;
    let t = frame.first().map_or(0, Vec::len).max(1);
    // Valid embedding frames per clip: from the network, else the frames of the clip's
    // share of the time axis.
    let lens = &batch.model_lengths;
    let elens: Vec<usize> = match &out.aux.embedding_lengths {
        Some(l) => l.clone(),
        None => lens.iter().map(|&l| (l * te).div_ceil(t)).collect(),
    };
    let mut labels = Vec::with_capacity(b);
    let mut valid = Vec::with_capacity(b);
    for (k, fr) in frame.iter().enumerate().take(b) {
        let full: Vec<Vec<bool>> = match &batch.strong_bool[k] {
            Some(s) => s.clone(),
            None => loss::pseudo_strong_labels(fr, &batch.weak_bool[k], lc.ifd_pseudo_threshold),
        };
        let n = full.len().max(1);
        let len = lens.get(k).copied().unwrap_or(t).clamp(1, t);
        let elen = elens.get(k).copied().unwrap_or(te).clamp(1, te);
        // Embedding frame i covers the clip's frames around (i + ½)·len/elen.
        let src =
            |i: usize| ((((i as f64) + 0.5) * len as f64 / elen as f64) as usize).min(len - 1);
        labels.push(
            (0..te)
                .map(|i| full[src(i).min(n - 1)].clone())
                .collect::<Vec<_>>(),
        );
        valid.push(elen);
    }
    Ok(loss::ifd_pairs(
        &batch.weak_bool,
        &labels,
        &valid,
        lc.ifd_max_pairs,
    ))
}

/// Validation numbers of a network on a dataset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Validation {
    /// Mean loss per clip (clip BCE + frame BCE where strong labels exist).
    pub loss: f64,
    /// Macro event F1 (0 without strong labels).
    pub event_f1: f64,
    /// Micro event F1.
    pub event_f1_micro: f64,
}

/// Frame probabilities `(n_frames, C)` and clip probabilities `(C,)` of one clip.
pub type ClipPrediction = (Vec<Vec<f32>>, Vec<f32>);

/// Frame probabilities `(n_frames, C)` of every clip of `data`, in clip order. Clips
/// are sorted by length and batched, each batch zero-padded to its longest clip and
/// run with masks ([`SedNet::forward_masked`]), so every clip gets what it would get
/// alone. A clip shorter than the network's `min_frames` is zero-padded to it.
pub fn predict_frames(
    net: &dyn SedNet,
    data: &Dataset,
    batch_size: usize,
) -> Result<Vec<ClipPrediction>> {
    let n_mels = data.features.n_mels;
    let mut order: Vec<usize> = (0..data.clips.len()).collect();
    order.sort_by_key(|&i| data.clips[i].n_frames);
    let mut out = vec![(Vec::new(), Vec::new()); data.clips.len()];
    for chunk in order.chunks(batch_size.max(1)) {
        let lens: Vec<usize> = chunk
            .iter()
            .map(|&i| data.clips[i].n_frames.max(net.min_frames()).max(1))
            .collect();
        let t = lens.iter().copied().max().unwrap_or(1);
        let mut x = vec![0.0f32; chunk.len() * t * n_mels];
        for (k, &i) in chunk.iter().enumerate() {
            let feats = &data.clips[i].feats;
            x[k * t * n_mels..k * t * n_mels + feats.len()].copy_from_slice(feats);
        }
        let x = Tensor::from_vec(x, (chunk.len(), t, n_mels), &Device::Cpu)?;
        let o = net.forward_masked(&x, &lens, false)?;
        let frames: Vec<Vec<Vec<f32>>> = o.frame.to_vec3()?;
        let clips: Vec<Vec<f32>> = o.clip.to_vec2()?;
        for (&i, (mut f, c)) in chunk.iter().zip(frames.into_iter().zip(clips)) {
            f.truncate(data.clips[i].n_frames);
            out[i] = (f, c);
        }
    }
    Ok(out)
}

/// Events detected in frame probabilities with the daemon's post-processing.
pub fn detect_events(
    file: &str,
    frames: &[Vec<f32>],
    classes: &[String],
    pp: &PostprocessConfig,
    frame_rate: f64,
) -> Result<Vec<crate::metrics::Event>> {
    let params = pp
        .resolve(classes)
        .map_err(|e| invalid("postprocess", e, "valid post-processing"))?;
    let mut det = Detector::new(classes.to_vec(), params, frame_rate, "val".into());
    let mut evs = Vec::new();
    for f in frames {
        det.push_frame(f, &mut evs);
    }
    det.finish(&mut evs);
    Ok(evs
        .into_iter()
        .filter_map(|e| match e {
            crate::detect::event::Event::Stop {
                label,
                t_start,
                t_end,
                ..
            } => Some(crate::metrics::Event::new(file, t_start, t_end, label)),
            _ => None,
        })
        .collect())
}

/// Validation loss and event F1 of `net` on `data` with post-processing `pp`.
pub fn validate(
    net: &dyn SedNet,
    data: &Dataset,
    pp: &PostprocessConfig,
    batch_size: usize,
) -> Result<Validation> {
    let preds = predict_frames(net, data, batch_size)?;
    let c = data.classes.len();
    let period = data.features.frame_period_s();
    let mut loss_sum = 0.0;
    let mut estimate = Vec::new();
    let mut files = Vec::new();
    for (clip, (frames, clip_p)) in data.clips.iter().zip(&preds) {
        let p = Tensor::from_slice(clip_p, c, &Device::Cpu)?;
        let y: Vec<f32> = clip.weak.iter().map(|&b| f32::from(u8::from(b))).collect();
        let y = Tensor::from_vec(y, c, &Device::Cpu)?;
        loss_sum += loss::bce(&p, &y, None)?.to_scalar::<f32>()? as f64;
        if let Some(ev) = &clip.strong {
            let flat: Vec<f32> = frames.iter().flatten().copied().collect();
            let n = frames.len();
            let p = Tensor::from_vec(flat, (n, c), &Device::Cpu)?;
            let y = super::dataset::Clip::frame_targets(ev, n, c, period);
            let y = Tensor::from_vec(y, (n, c), &Device::Cpu)?;
            loss_sum += loss::bce(&p, &y, None)?.to_scalar::<f32>()? as f64;
            files.push(clip.file.clone());
            estimate.extend(detect_events(
                &clip.file,
                frames,
                &data.classes,
                pp,
                data.features.frame_rate(),
            )?);
        }
    }
    let (mut f1, mut f1_micro) = (0.0, 0.0);
    if !files.is_empty() {
        let r = event_based(
            &data.reference_events(),
            &estimate,
            &files,
            &data.classes,
            &EventBasedOptions::default(),
        )?;
        let nz = |v: f64| if v.is_finite() { v } else { 0.0 };
        f1 = nz(r.macro_.f_measure);
        f1_micro = nz(r.micro.f_measure);
    }
    Ok(Validation {
        loss: loss_sum / data.clips.len().max(1) as f64,
        event_f1: f1,
        event_f1_micro: f1_micro,
    })
}

/// Trains the model described by `cfg` (config paths already absolute, see
/// [`TrainConfig::from_file`]). Writes the best model to `cfg.output` and the
/// side files described in the module docs.
pub fn train(cfg: &TrainConfig, opts: &TrainOptions) -> Result<TrainReport> {
    cfg.validate()?;
    let t_load = Instant::now();
    let (train_set, val_set) = cfg.data.load(Path::new("."), &cfg.features, cfg.seed)?;
    if train_set.clips.is_empty() {
        return Err(TrainError::Empty {
            what: "training set".into(),
            reason: "no clips after the validation split".into(),
        });
    }
    if val_set.clips.is_empty() {
        return Err(TrainError::Empty {
            what: "validation set".into(),
            reason: "no clips (give [data.validation] or more training clips)".into(),
        });
    }
    tracing::info!(
        train_clips = train_set.clips.len(),
        val_clips = val_set.clips.len(),
        load_s = t_load.elapsed().as_secs_f64(),
        "data loaded"
    );
    if let Some(dir) = cfg.output.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let Net { mut map, net } = build_net(cfg)?;
    let vars: Vec<(String, candle_core::Var)> = {
        let data = map
            .data()
            .lock()
            .map_err(|_| invalid("variables", "poisoned lock", "an intact variable map"))?;
        data.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    let mut opt = AdamW::new(
        vars,
        AdamWConfig {
            lr: cfg.optim.lr,
            beta1: cfg.optim.beta1,
            beta2: cfg.optim.beta2,
            eps: 1e-8,
            weight_decay: cfg.optim.weight_decay,
        },
    )?;
    let mut state = TrainState {
        epochs_done: 0,
        steps: 0,
        lr: cfg.optim.lr,
        plateau: ReduceLrOnPlateau::new(PlateauConfig {
            factor: cfg.schedule.plateau_factor,
            patience: cfg.schedule.plateau_patience,
            min_lr: cfg.schedule.min_lr,
            threshold: 1e-4,
        }),
        best_metric: None,
        epochs_since_best: 0,
        history: Vec::new(),
    };
    let last_path = cfg.sidecar("last.safetensors");
    let state_path = cfg.sidecar("state.safetensors");
    let state_json = cfg.sidecar("state.json");
    if opts.resume {
        map.load(&last_path).map_err(|e| {
            invalid(
                "resume",
                format!("{}: {e}", last_path.display()),
                "a last checkpoint from an earlier run",
            )
        })?;
        let text = std::fs::read_to_string(&state_json).map_err(io_err(&state_json))?;
        state = serde_json::from_str(&text).map_err(|e| TrainError::Config {
            path: state_json.clone(),
            reason: e.to_string(),
        })?;
        let moments = candle_core::safetensors::load(&state_path, &Device::Cpu)?;
        opt.load_state(&moments, state.steps)?;
        opt.set_lr(state.lr);
        tracing::info!(epochs_done = state.epochs_done, "resumed");
    }
    let n_classes = cfg.data.classes.len();
    let period = cfg.features.frame_period_s();
    let weak: Vec<Vec<bool>> = train_set.clips.iter().map(|c| c.weak.clone()).collect();
    let first = state.epochs_done;
    let last = match opts.max_epochs {
        Some(k) => (first + k).min(cfg.schedule.epochs),
        None => cfg.schedule.epochs,
    };
    let mut early_stopped = false;
    for epoch in first..last {
        let t0 = Instant::now();
        let mut rng = epoch_rng(cfg.seed, epoch, 1);
        let order = if cfg.optim.balanced {
            balanced(&weak, &mut rng)
        } else {
            shuffled(train_set.clips.len(), &mut rng)
        };
        let batches: Vec<&[usize]> = order.chunks(cfg.optim.batch_size).collect();
        let bar = (opts.progress && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new(batches.len() as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "epoch {prefix} [{bar:30}] {pos}/{len} {per_sec} loss {msg} ETA {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.set_prefix(format!("{}/{}", epoch + 1, cfg.schedule.epochs));
            b
        });
        let mut sum = 0.0;
        let mut term_sums: BTreeMap<String, f64> = BTreeMap::new();
        let t_steps = Instant::now();
        for (bi, idx) in batches.iter().enumerate() {
            let mut brng = epoch_rng(cfg.seed, epoch, 1000 + bi as u64);
            let mut items: Vec<Item> = Vec::with_capacity(idx.len());
            for &i in idx.iter() {
                let clip = &train_set.clips[i];
                let mut it = match draw_wave_aug(&cfg.augment, &mut brng) {
                    Some(w) => wave_item(clip, &w, &cfg.features, n_classes, &mut brng)?,
                    None => Item::from_clip(clip, n_classes, period),
                };
                augment_item(&mut it, &cfg.augment, &cfg.features, &mut brng);
                items.push(it);
            }
            mixup(&mut items, &cfg.augment, &mut brng);
            let batch = Batch::collate(
                &items,
                cfg.features.n_mels,
                n_classes,
                net.min_frames(),
                &Device::Cpu,
            )?;
            let (lv, terms) = train_step(
                net.as_ref(),
                &batch,
                &mut opt,
                &cfg.loss,
                cfg.optim.grad_clip,
            )?;
            sum += lv;
            for (name, v) in terms {
                *term_sums.entry(name.to_string()).or_default() += v;
            }
            if let Some(b) = &bar {
                b.set_message(format!("{:.4}", sum / (bi + 1) as f64));
                b.inc(1);
            }
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        let steps = batches.len();
        let steps_per_s = steps as f64 / t_steps.elapsed().as_secs_f64().max(1e-9);
        let v = validate(
            net.as_ref(),
            &val_set,
            &cfg.postprocess,
            cfg.optim.batch_size,
        )?;
        let metric = match cfg.schedule.metric {
            Metric::EventF1 => v.event_f1,
            Metric::EventF1Micro => v.event_f1_micro,
            Metric::ValLoss => -v.loss,
        };
        let lr_used = opt.lr();
        let new_lr = state.plateau.step(metric, lr_used);
        opt.set_lr(new_lr);
        let is_best = state.best_metric.is_none_or(|b| metric > b);
        if is_best {
            state.best_metric = Some(metric);
            state.epochs_since_best = 0;
        } else {
            state.epochs_since_best += 1;
        }
        state.epochs_done = epoch + 1;
        state.steps = opt.steps();
        state.lr = new_lr;
        let summary = EpochSummary {
            epoch: epoch + 1,
            train_loss: sum / steps.max(1) as f64,
            train_terms: term_sums
                .into_iter()
                .map(|(k, s)| (k, s / steps.max(1) as f64))
                .collect(),
            val_loss: v.loss,
            val_event_f1: v.event_f1,
            val_event_f1_micro: v.event_f1_micro,
            metric,
            lr: lr_used,
            steps,
            steps_per_s,
            time_s: t0.elapsed().as_secs_f64(),
            best: is_best,
        };
        tracing::info!(
            epoch = summary.epoch,
            train_loss = summary.train_loss,
            val_loss = summary.val_loss,
            val_event_f1 = summary.val_event_f1,
            lr = summary.lr,
            steps_per_s = summary.steps_per_s,
            epoch_s = summary.time_s,
            best = is_best,
            "epoch done"
        );
        state.history.push(summary);
        let training = serde_json::json!({
            "epochs": state.epochs_done,
            "best_metric": state.best_metric,
            "metric": cfg.schedule.metric,
            "train_clips": train_set.clips.len(),
            "val_clips": val_set.clips.len(),
            "last_epoch": state.history.last(),
        });
        if is_best {
            save_model(cfg, &map, &cfg.output, training.clone())?;
        }
        save_model(cfg, &map, &last_path, training)?;
        candle_core::safetensors::save(&opt.state_tensors(), &state_path)?;
        let js = serde_json::to_string_pretty(&state).unwrap_or_default();
        std::fs::write(&state_json, js).map_err(io_err(&state_json))?;
        let summary_path = cfg.sidecar("train.json");
        let js = serde_json::to_string_pretty(&state.history).unwrap_or_default();
        std::fs::write(&summary_path, js).map_err(io_err(&summary_path))?;
        if cfg.schedule.early_stop_patience > 0
            && state.epochs_since_best >= cfg.schedule.early_stop_patience
        {
            tracing::info!(epoch = epoch + 1, "early stopping");
            early_stopped = true;
            break;
        }
    }
    Ok(TrainReport {
        epochs: state.history,
        best_metric: state.best_metric,
        output: cfg.output.clone(),
        early_stopped,
    })
}
