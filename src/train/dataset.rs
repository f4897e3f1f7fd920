//! Training data: DCASE-style metadata (weak, strong and soft labels), the log-mel
//! feature cache, and padded batches with masks.
//!
//! Metadata TSVs (tab-separated, header line first):
//! - weak: `filename  event_labels` (comma-separated labels; empty = no event);
//! - strong: `filename  onset  offset  event_label`;
//! - soft (MAESTRO): `filename  onset  offset  event_label  soft_label`;
//! - scenes (optional): `filename  scene_label`.
//!
//! Features are cached per clip in `cache_dir` (default `<audio_dir>/.hark-cache`),
//! keyed by a hash of the file's path, size and modification time and the feature
//! settings' JSON; a changed file or setting gives a new key. A cache file is a
//! 16-byte header (`HARKMEL1`, frames `u32` LE, mels `u32` LE) followed by the frames
//! row-major as `f32` LE, read whole in one call.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::{invalid, io_err, Result, TrainError};
use crate::audio::resample::Resampler;
use crate::features::{logmel, FeatureConfig};

/// One split's audio and metadata. Relative paths are relative to the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    /// Folder holding the audio files named in the metadata.
    pub audio_dir: PathBuf,
    /// Weak labels TSV.
    #[serde(default)]
    pub weak: Option<PathBuf>,
    /// Strong labels TSV.
    #[serde(default)]
    pub strong: Option<PathBuf>,
    /// Soft labels TSV.
    #[serde(default)]
    pub soft: Option<PathBuf>,
    /// Scene labels TSV.
    #[serde(default)]
    pub scenes: Option<PathBuf>,
}

/// The `[data]` table of a training config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Event classes, in model output order.
    pub classes: Vec<String>,
    /// Acoustic scene classes (for the scene cross-entropy); empty when unused.
    #[serde(default)]
    pub scene_classes: Vec<String>,
    /// Training split.
    pub train: SplitConfig,
    /// Validation split; when absent, a seeded stratified split of `train`.
    #[serde(default)]
    pub validation: Option<SplitConfig>,
    /// Fraction of `train` held out when no validation split is given.
    #[serde(default = "default_fraction")]
    pub validation_fraction: f64,
    /// Feature cache folder (default `<audio_dir>/.hark-cache`).
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
}

fn default_fraction() -> f64 {
    0.2
}

/// One labelled event (strong or soft label) of a clip.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabelledEvent {
    /// Onset, seconds.
    pub onset: f64,
    /// Offset, seconds.
    pub offset: f64,
    /// Class index.
    pub class: usize,
    /// Probability (1 for strong labels).
    pub prob: f32,
}

/// A clip with its features and labels.
#[derive(Debug, Clone)]
pub struct Clip {
    /// File name as in the metadata.
    pub file: String,
    /// Full path of the audio.
    pub path: PathBuf,
    /// Log-mel frames, row-major `(n_frames, n_mels)`.
    pub feats: Vec<f32>,
    /// Number of frames.
    pub n_frames: usize,
    /// Clip-level (weak) labels, one per class.
    pub weak: Vec<bool>,
    /// Strong labels, when the clip has them (an empty list = strongly labelled,
    /// no event).
    pub strong: Option<Vec<LabelledEvent>>,
    /// Soft labels, when the clip has them.
    pub soft: Option<Vec<LabelledEvent>>,
    /// Scene class index.
    pub scene: Option<usize>,
}

impl Clip {
    /// Frame targets `(n_frames, n_classes)` from `events` at `frame_period_s`: a frame
    /// gets an event's probability when its centre lies in `[onset, offset)`.
    pub fn frame_targets(
        events: &[LabelledEvent],
        n_frames: usize,
        n_classes: usize,
        frame_period_s: f64,
    ) -> Vec<f32> {
        let mut out = vec![0.0f32; n_frames * n_classes];
        for e in events {
            for t in 0..n_frames {
                let c = t as f64 * frame_period_s;
                if c >= e.onset && c < e.offset {
                    let v = &mut out[t * n_classes + e.class];
                    *v = v.max(e.prob);
                }
            }
        }
        out
    }
}

/// A loaded split: clips with cached features.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Event classes.
    pub classes: Vec<String>,
    /// Scene classes (may be empty).
    pub scene_classes: Vec<String>,
    /// Feature settings of every clip's `feats`.
    pub features: FeatureConfig,
    /// The clips.
    pub clips: Vec<Clip>,
}

/// Per-file labels read from the metadata, before features are loaded.
#[derive(Debug, Default, Clone)]
struct Labels {
    weak: Option<Vec<bool>>,
    strong: Option<Vec<LabelledEvent>>,
    soft: Option<Vec<LabelledEvent>>,
    scene: Option<usize>,
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Reads a TSV: returns (1-based line, fields) for each non-empty line after the header,
/// checking the header's first column.
fn read_tsv(path: &Path, first: &str, min_cols: usize) -> Result<Vec<(usize, Vec<String>)>> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, h)) if h.split('\t').next().map(str::trim) == Some(first) => {}
        _ => {
            return Err(TrainError::Metadata {
                path: path.to_path_buf(),
                line: 1,
                reason: format!("expected a header line starting with `{first}`"),
            })
        }
    }
    let mut out = Vec::new();
    for (i, l) in lines {
        if l.trim().is_empty() {
            continue;
        }
        let f: Vec<String> = l.split('\t').map(|s| s.trim().to_string()).collect();
        if f.len() < min_cols && !(min_cols == 2 && f.len() == 1) {
            return Err(TrainError::Metadata {
                path: path.to_path_buf(),
                line: i + 1,
                reason: format!(
                    "expected {min_cols} tab-separated columns, found {}",
                    f.len()
                ),
            });
        }
        out.push((i + 1, f));
    }
    Ok(out)
}

fn class_index(classes: &[String], label: &str, path: &Path, line: usize) -> Result<usize> {
    classes
        .iter()
        .position(|c| c == label)
        .ok_or_else(|| TrainError::UnknownLabel {
            path: path.to_path_buf(),
            line,
            label: label.to_string(),
            classes: classes.to_vec(),
        })
}

fn parse_f64(s: &str, what: &str, path: &Path, line: usize) -> Result<f64> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| TrainError::Metadata {
            path: path.to_path_buf(),
            line,
            reason: format!("{what} `{s}` is not a non-negative number"),
        })
}

fn read_events(
    path: &Path,
    classes: &[String],
    soft: bool,
    out: &mut BTreeMap<String, Labels>,
) -> Result<()> {
    for (line, f) in read_tsv(path, "filename", if soft { 5 } else { 4 })? {
        let onset = parse_f64(&f[1], "onset", path, line)?;
        let offset = parse_f64(&f[2], "offset", path, line)?;
        if offset < onset {
            return Err(TrainError::Metadata {
                path: path.to_path_buf(),
                line,
                reason: format!("offset {offset} is before onset {onset}"),
            });
        }
        let entry = out.entry(f[0].clone()).or_default();
        let list = if soft {
            entry.soft.get_or_insert_with(Vec::new)
        } else {
            entry.strong.get_or_insert_with(Vec::new)
        };
        if f[3].is_empty() {
            continue; // a strongly labelled clip without events
        }
        let class = class_index(classes, &f[3], path, line)?;
        let prob = if soft {
            let p = parse_f64(&f[4], "soft_label", path, line)?;
            if p > 1.0 {
                return Err(TrainError::Metadata {
                    path: path.to_path_buf(),
                    line,
                    reason: format!("soft_label {p} is above 1"),
                });
            }
            p as f32
        } else {
            1.0
        };
        list.push(LabelledEvent {
            onset,
            offset,
            class,
            prob,
        });
    }
    Ok(())
}

fn read_labels(
    split: &SplitConfig,
    base: &Path,
    cfg: &DataConfig,
) -> Result<BTreeMap<String, Labels>> {
    let classes = &cfg.classes;
    let mut out: BTreeMap<String, Labels> = BTreeMap::new();
    if let Some(p) = &split.weak {
        let p = resolve(base, p);
        for (line, f) in read_tsv(&p, "filename", 2)? {
            let mut w = vec![false; classes.len()];
            if let Some(labels) = f.get(1) {
                for l in labels.split(',').map(str::trim).filter(|l| !l.is_empty()) {
                    w[class_index(classes, l, &p, line)?] = true;
                }
            }
            out.entry(f[0].clone()).or_default().weak = Some(w);
        }
    }
    if let Some(p) = &split.strong {
        read_events(&resolve(base, p), classes, false, &mut out)?;
    }
    if let Some(p) = &split.soft {
        read_events(&resolve(base, p), classes, true, &mut out)?;
    }
    if let Some(p) = &split.scenes {
        let p = resolve(base, p);
        for (line, f) in read_tsv(&p, "filename", 2)? {
            let s = f.get(1).map(String::as_str).unwrap_or("");
            let idx = class_index(&cfg.scene_classes, s, &p, line)?;
            out.entry(f[0].clone()).or_default().scene = Some(idx);
        }
    }
    Ok(out)
}

/// FNV-1a 64 over bytes (stable across Rust versions, unlike `DefaultHasher`).
fn fnv1a(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Cache key of `path` under `features`: hash of path, size, mtime and settings JSON.
pub fn cache_key(path: &Path, features: &FeatureConfig) -> Result<String> {
    let md = std::fs::metadata(path).map_err(io_err(path))?;
    let mtime = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let json = serde_json::to_string(features).unwrap_or_default();
    let mut h = 0xcbf2_9ce4_8422_2325_u64;
    h = fnv1a(h, path.to_string_lossy().as_bytes());
    h = fnv1a(h, &md.len().to_le_bytes());
    h = fnv1a(h, &mtime.to_le_bytes());
    h = fnv1a(h, json.as_bytes());
    Ok(format!("{h:016x}"))
}

const MAGIC: &[u8; 8] = b"HARKMEL1";

/// Reads a cache file; `None` when absent or unreadable (it is then recomputed).
fn read_cache(path: &Path, n_mels: usize) -> Option<(Vec<f32>, usize)> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.len() < 16 || &bytes[..8] != MAGIC {
        return None;
    }
    let frames = u32::from_le_bytes(bytes[8..12].try_into().ok()?) as usize;
    let mels = u32::from_le_bytes(bytes[12..16].try_into().ok()?) as usize;
    if mels != n_mels || bytes.len() != 16 + 4 * frames * mels {
        return None;
    }
    let feats = bytes[16..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Some((feats, frames))
}

fn write_cache(path: &Path, feats: &[f32], frames: usize, mels: usize) -> Result<()> {
    let mut bytes = Vec::with_capacity(16 + 4 * feats.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(frames as u32).to_le_bytes());
    bytes.extend_from_slice(&(mels as u32).to_le_bytes());
    for v in feats {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &bytes).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// Decodes `path` to mono at `rate` Hz (any format, rate and channel count).
pub fn load_audio(path: &Path, rate: u32) -> Result<Vec<f32>> {
    let (samples, sr) = crate::audio::decode_file(path)?;
    if sr == rate {
        return Ok(samples);
    }
    let mut rs = Resampler::new(sr, rate)?;
    let mut out = Vec::with_capacity(samples.len() * rate as usize / sr.max(1) as usize + 1024);
    rs.process(&samples, &mut out)?;
    rs.finish(&mut out)?;
    Ok(out)
}

/// Log-mels of `path`, from the cache in `cache_dir` when valid, else computed and stored.
/// Returns the frames and their count.
pub fn cached_logmel(
    path: &Path,
    features: &FeatureConfig,
    cache_dir: &Path,
) -> Result<(Vec<f32>, usize)> {
    let key = cache_key(path, features)?;
    let file = cache_dir.join(format!("{key}.mel"));
    if let Some(hit) = read_cache(&file, features.n_mels) {
        return Ok(hit);
    }
    let audio = load_audio(path, features.sample_rate)?;
    let feats = logmel(features, &audio)?;
    let frames = feats.len() / features.n_mels.max(1);
    std::fs::create_dir_all(cache_dir).map_err(io_err(cache_dir))?;
    write_cache(&file, &feats, frames, features.n_mels)?;
    tracing::debug!(file = %path.display(), frames, "cached log-mels");
    Ok((feats, frames))
}

impl DataConfig {
    /// Checks the class lists and the validation fraction.
    pub fn validate(&self) -> Result<()> {
        if self.classes.is_empty() {
            return Err(invalid("data.classes", "[]", "at least one class"));
        }
        for (i, c) in self.classes.iter().enumerate() {
            if c.trim().is_empty() || self.classes[..i].contains(c) {
                return Err(invalid(
                    &format!("data.classes[{i}]"),
                    format!("{c:?}"),
                    "a non-empty label that appears once",
                ));
            }
        }
        if self.validation.is_none()
            && !(self.validation_fraction > 0.0 && self.validation_fraction < 1.0)
        {
            return Err(invalid(
                "data.validation_fraction",
                self.validation_fraction,
                "a fraction in (0, 1) when no [data.validation] split is given",
            ));
        }
        if self.train.weak.is_none() && self.train.strong.is_none() && self.train.soft.is_none() {
            return Err(invalid(
                "data.train",
                "no metadata",
                "at least one of `weak`, `strong`, `soft`",
            ));
        }
        Ok(())
    }

    /// Loads the training and validation datasets (config paths relative to `base`).
    pub fn load(
        &self,
        base: &Path,
        features: &FeatureConfig,
        seed: u64,
    ) -> Result<(Dataset, Dataset)> {
        self.validate()?;
        let train = Dataset::load_split(self, &self.train, base, features, "data.train")?;
        match &self.validation {
            Some(v) => {
                let val = Dataset::load_split(self, v, base, features, "data.validation")?;
                Ok((train, val))
            }
            None => Ok(train.stratified_split(self.validation_fraction, seed)),
        }
    }
}

impl Dataset {
    /// Reads one split's metadata and features (from the cache when valid).
    pub fn load_split(
        cfg: &DataConfig,
        split: &SplitConfig,
        base: &Path,
        features: &FeatureConfig,
        what: &str,
    ) -> Result<Dataset> {
        let labels = read_labels(split, base, cfg)?;
        if labels.is_empty() {
            return Err(TrainError::Empty {
                what: what.to_string(),
                reason: "its metadata lists no files".into(),
            });
        }
        let audio_dir = resolve(base, &split.audio_dir);
        let cache_dir = cfg
            .cache_dir
            .as_ref()
            .map(|c| resolve(base, c))
            .unwrap_or_else(|| audio_dir.join(".hark-cache"));
        let n = cfg.classes.len();
        let mut clips = Vec::with_capacity(labels.len());
        for (file, l) in labels {
            let path = audio_dir.join(&file);
            if !path.is_file() {
                return Err(TrainError::Io {
                    path,
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("audio file named in the {what} metadata is missing"),
                    ),
                });
            }
            let (feats, n_frames) = cached_logmel(&path, features, &cache_dir)?;
            if n_frames == 0 {
                return Err(TrainError::Empty {
                    what: path.display().to_string(),
                    reason: "too short for one feature frame".into(),
                });
            }
            let weak = match (&l.weak, &l.strong, &l.soft) {
                (Some(w), _, _) => w.clone(),
                (None, strong, soft) => {
                    let mut w = vec![false; n];
                    for e in strong.iter().flatten() {
                        w[e.class] = true;
                    }
                    for e in soft.iter().flatten() {
                        if e.prob >= 0.5 {
                            w[e.class] = true;
                        }
                    }
                    w
                }
            };
            clips.push(Clip {
                file,
                path,
                feats,
                n_frames,
                weak,
                strong: l.strong,
                soft: l.soft,
                scene: l.scene,
            });
        }
        Ok(Dataset {
            classes: cfg.classes.clone(),
            scene_classes: cfg.scene_classes.clone(),
            features: features.clone(),
            clips,
        })
    }

    /// Splits off about `fraction` of the clips for validation, stratified by each
    /// clip's rarest label (clips without labels form their own stratum), seeded.
    pub fn stratified_split(self, fraction: f64, seed: u64) -> (Dataset, Dataset) {
        let counts: Vec<usize> = (0..self.classes.len())
            .map(|c| self.clips.iter().filter(|k| k.weak[c]).count())
            .collect();
        let stratum = |c: &Clip| -> usize {
            (0..counts.len())
                .filter(|&i| c.weak[i])
                .min_by_key(|&i| counts[i])
                .unwrap_or(counts.len())
        };
        let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, c) in self.clips.iter().enumerate() {
            groups.entry(stratum(c)).or_default().push(i);
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed_5917);
        let mut is_val = vec![false; self.clips.len()];
        for idx in groups.values_mut() {
            idx.shuffle(&mut rng);
            let k =
                ((idx.len() as f64 * fraction).round() as usize).min(idx.len().saturating_sub(1));
            for &i in idx.iter().take(k) {
                is_val[i] = true;
            }
        }
        let (mut tr, mut va) = (Vec::new(), Vec::new());
        for (c, v) in self.clips.into_iter().zip(is_val) {
            if v {
                va.push(c)
            } else {
                tr.push(c)
            }
        }
        let mk = |clips| Dataset {
            classes: self.classes.clone(),
            scene_classes: self.scene_classes.clone(),
            features: self.features.clone(),
            clips,
        };
        (mk(tr), mk(va))
    }

    /// Reference events (strong labels) of the clips that have them, for event metrics.
    pub fn reference_events(&self) -> Vec<crate::metrics::Event> {
        let mut out = Vec::new();
        for c in &self.clips {
            for e in c.strong.iter().flatten() {
                out.push(crate::metrics::Event::new(
                    c.file.clone(),
                    e.onset,
                    e.offset,
                    self.classes[e.class].clone(),
                ));
            }
        }
        out
    }
}

/// A padded batch: every tensor on `device`, `T` = the longest clip's frames.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Log-mels `(B, T, F)`, zero-padded.
    pub x: Tensor,
    /// 1 for real frames, 0 for padding, `(B, T, 1)`.
    pub mask: Tensor,
    /// Real frames per clip (what the losses count).
    pub lengths: Vec<usize>,
    /// Frames per clip the network treats as valid (`SedNet::forward_masked`): the real
    /// frames, raised to the network's `min_frames` for a clip shorter than its time
    /// pooling (those zeros then count as input, as when such a clip is run alone).
    pub model_lengths: Vec<usize>,
    /// Clip labels `(B, C)` (mixup may make them soft).
    pub weak: Tensor,
    /// Strong frame targets `(B, T, C)` (zero where a clip has none).
    pub strong: Tensor,
    /// 1 for clips with strong labels, `(B, 1, 1)`.
    pub has_strong: Tensor,
    /// Soft frame targets `(B, T, C)`.
    pub soft: Tensor,
    /// 1 for clips with soft labels, `(B, 1, 1)`.
    pub has_soft: Tensor,
    /// Scene index per clip (0 where unknown), `(B,)` u32.
    pub scene: Tensor,
    /// Whether each clip has a scene label.
    pub has_scene: Vec<bool>,
    /// Binary clip labels (before mixup), for IFD pair sampling.
    pub weak_bool: Vec<Vec<bool>>,
    /// Strong frame labels per clip, for IFD pair sampling (`None`: pseudo labels).
    pub strong_bool: Vec<Option<Vec<Vec<bool>>>>,
}

/// Host-side content of one batch element (features possibly augmented).
#[derive(Debug, Clone)]
pub struct Item {
    /// Log-mels `(n_frames, n_mels)`.
    pub feats: Vec<f32>,
    /// Frames.
    pub n_frames: usize,
    /// Clip targets (soft after mixup).
    pub weak: Vec<f32>,
    /// Strong frame targets `(n_frames, C)`, if any.
    pub strong: Option<Vec<f32>>,
    /// Soft frame targets `(n_frames, C)`, if any.
    pub soft: Option<Vec<f32>>,
    /// Scene index.
    pub scene: Option<usize>,
}

impl Item {
    /// The item of `clip` (no augmentation) for `n_classes` at `frame_period_s`.
    pub fn from_clip(clip: &Clip, n_classes: usize, frame_period_s: f64) -> Item {
        Item {
            feats: clip.feats.clone(),
            n_frames: clip.n_frames,
            weak: clip.weak.iter().map(|&b| f32::from(u8::from(b))).collect(),
            strong: clip
                .strong
                .as_ref()
                .map(|e| Clip::frame_targets(e, clip.n_frames, n_classes, frame_period_s)),
            soft: clip
                .soft
                .as_ref()
                .map(|e| Clip::frame_targets(e, clip.n_frames, n_classes, frame_period_s)),
            scene: clip.scene,
        }
    }
}

impl Batch {
    /// Pads `items` with zeros to the longest (at least `min_frames`) and builds the
    /// tensors; the network masks the padding (`model_lengths`), the losses count
    /// `lengths`.
    pub fn collate(
        items: &[Item],
        n_mels: usize,
        n_classes: usize,
        min_frames: usize,
        device: &Device,
    ) -> Result<Batch> {
        let b = items.len();
        if b == 0 {
            return Err(TrainError::Empty {
                what: "batch".into(),
                reason: "no clips".into(),
            });
        }
        let t = items
            .iter()
            .map(|i| i.n_frames)
            .max()
            .unwrap_or(0)
            .max(min_frames);
        let mut x = vec![0.0f32; b * t * n_mels];
        let mut mask = vec![0.0f32; b * t];
        let mut weak = vec![0.0f32; b * n_classes];
        let mut strong = vec![0.0f32; b * t * n_classes];
        let mut soft = vec![0.0f32; b * t * n_classes];
        let mut has_strong = vec![0.0f32; b];
        let mut has_soft = vec![0.0f32; b];
        let mut scene = vec![0u32; b];
        let mut has_scene = vec![false; b];
        let mut weak_bool = Vec::with_capacity(b);
        let mut strong_bool = Vec::with_capacity(b);
        for (i, it) in items.iter().enumerate() {
            let n = it.n_frames;
            x[i * t * n_mels..i * t * n_mels + n * n_mels].copy_from_slice(&it.feats[..n * n_mels]);
            mask[i * t..i * t + n].iter_mut().for_each(|m| *m = 1.0);
            weak[i * n_classes..(i + 1) * n_classes].copy_from_slice(&it.weak);
            weak_bool.push(it.weak.iter().map(|&w| w >= 0.5).collect());
            if let Some(s) = &it.strong {
                strong[i * t * n_classes..i * t * n_classes + n * n_classes].copy_from_slice(s);
                has_strong[i] = 1.0;
                strong_bool.push(Some(
                    s.chunks(n_classes)
                        .map(|r| r.iter().map(|&v| v >= 0.5).collect())
                        .collect(),
                ));
            } else {
                strong_bool.push(None);
            }
            if let Some(s) = &it.soft {
                soft[i * t * n_classes..i * t * n_classes + n * n_classes].copy_from_slice(s);
                has_soft[i] = 1.0;
            }
            if let Some(s) = it.scene {
                scene[i] = s as u32;
                has_scene[i] = true;
            }
        }
        Ok(Batch {
            x: Tensor::from_vec(x, (b, t, n_mels), device)?,
            mask: Tensor::from_vec(mask, (b, t, 1), device)?,
            lengths: items.iter().map(|i| i.n_frames).collect(),
            model_lengths: items
                .iter()
                .map(|i| i.n_frames.max(min_frames).max(1))
                .collect(),
            weak: Tensor::from_vec(weak, (b, n_classes), device)?,
            strong: Tensor::from_vec(strong, (b, t, n_classes), device)?,
            has_strong: Tensor::from_vec(has_strong, (b, 1, 1), device)?,
            soft: Tensor::from_vec(soft, (b, t, n_classes), device)?,
            has_soft: Tensor::from_vec(has_soft, (b, 1, 1), device)?,
            scene: Tensor::from_vec(scene, b, device)?,
            has_scene,
            weak_bool,
            strong_bool,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_targets_use_frame_centres() {
        let e = [LabelledEvent {
            onset: 0.05,
            offset: 0.1,
            class: 1,
            prob: 0.7,
        }];
        let t = Clip::frame_targets(&e, 6, 2, 0.02);
        // Frames at 0.06 and 0.08 s are inside [0.05, 0.1).
        assert_eq!(
            t,
            vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.7, 0.0, 0.7, 0.0, 0.0]
        );
    }

    #[test]
    fn cache_round_trips_and_rejects_other_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.mel");
        write_cache(&f, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 3, 2).unwrap();
        assert_eq!(
            read_cache(&f, 2),
            Some((vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 3))
        );
        assert_eq!(read_cache(&f, 3), None);
    }

    #[test]
    fn cache_key_changes_with_the_audio_file_and_the_settings() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.wav");
        std::fs::write(&f, b"abc").unwrap();
        let cfg = FeatureConfig::default();
        let k = cache_key(&f, &cfg).unwrap();
        assert_eq!(k, cache_key(&f, &cfg).unwrap());
        let mut other = cfg.clone();
        other.n_mels = 40;
        assert_ne!(k, cache_key(&f, &other).unwrap());
        std::fs::write(&f, b"abcd").unwrap();
        assert_ne!(k, cache_key(&f, &cfg).unwrap());
    }

    #[test]
    fn cached_features_equal_fresh_ones_and_are_reused() {
        let dir = tempfile::tempdir().unwrap();
        let wav = dir.path().join("tone.wav");
        let x: Vec<f32> = (0..11_025).map(|i| 0.3 * (i as f32 * 0.05).sin()).collect();
        crate::train::synth::write_wav(&wav, &x, 22_050).unwrap();
        let cfg = FeatureConfig::default();
        let cache = dir.path().join("cache");
        let (a, n) = cached_logmel(&wav, &cfg, &cache).unwrap();
        let fresh = logmel(&cfg, &load_audio(&wav, cfg.sample_rate).unwrap()).unwrap();
        assert_eq!(a, fresh);
        assert_eq!(n * cfg.n_mels, a.len());
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1);
        // A second load reads the cache: same values, no new file.
        let (b, _) = cached_logmel(&wav, &cfg, &cache).unwrap();
        assert_eq!(a, b);
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1);
    }

    #[test]
    fn unknown_labels_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let weak = dir.path().join("weak.tsv");
        std::fs::write(
            &weak,
            "filename\tevent_labels\na.wav\tdog\nb.wav\tcat,dog\n",
        )
        .unwrap();
        let cfg = DataConfig {
            classes: vec!["dog".into()],
            scene_classes: vec![],
            train: SplitConfig {
                audio_dir: dir.path().into(),
                weak: Some(weak.clone()),
                strong: None,
                soft: None,
                scenes: None,
            },
            validation: None,
            validation_fraction: 0.2,
            cache_dir: None,
        };
        let e = read_labels(&cfg.train, dir.path(), &cfg)
            .unwrap_err()
            .to_string();
        assert!(e.contains("weak.tsv:3") && e.contains("`cat`"), "{e}");
    }
}
