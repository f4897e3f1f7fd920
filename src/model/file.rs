//! The model file: one `.safetensors` file whose `__metadata__["hark.model"]` holds the
//! JSON of [`ModelMeta`] (design §4), and the loaded [`Model`] that scores log-mel
//! windows for the streaming runner.
//!
//! Loading checks, in order: the safetensors framing, the metadata (present, JSON,
//! known keys, supported version, valid values), then every tensor the architecture
//! expects (present, F32, right shape, finite values) and finally that the file holds
//! no other tensor. The first problem found is returned, naming the field or tensor.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Storage, Tensor};
use candle_nn::{VarBuilder, VarMap};
use safetensors::SafeTensors;

use super::arch::{self, SedNet, SedOutput};
use super::layers::seeded_var_builder;
use super::{ModelError, ModelMeta, Scorer};
use crate::features::{LogScale, Normalization};

/// Key of the model metadata in the safetensors `__metadata__` map.
pub const META_KEY: &str = "hark.model";

/// Tensor name suffixes of running statistics (PyTorch buffers, not parameters).
const BUFFER_SUFFIXES: [&str; 2] = [".running_mean", ".running_var"];

/// Path used in errors about models built in memory rather than read from a file.
const IN_MEMORY: &str = "(in-memory model)";

/// A model ready to score: its metadata, the built network and its weights (CPU, f32).
pub struct Model {
    /// Metadata, validated.
    meta: ModelMeta,
    /// The network, built from `weights`.
    net: Box<dyn SedNet>,
    /// Every tensor, in the order the architecture asks for them.
    weights: Vec<(String, Tensor)>,
    /// Where inputs are created (the CPU).
    device: Device,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("name", &self.meta.name)
            .field("arch", &self.meta.arch.name())
            .field("tensors", &self.weights.len())
            .finish()
    }
}

/// Checks that `t` has the expected dtype and shape and only finite values.
fn check_values(path: &Path, name: &str, shape: &[usize], t: &Tensor) -> Result<(), ModelError> {
    let mismatch = |expected: String, found: String| ModelError::TensorMismatch {
        path: path.to_path_buf(),
        name: name.to_string(),
        expected,
        found,
    };
    if t.dtype() != DType::F32 || t.dims() != shape {
        return Err(mismatch(
            format!("F32 {shape:?}"),
            format!("{:?} {:?}", t.dtype(), t.dims()),
        ));
    }
    let v = t.flatten_all()?.to_vec1::<f32>()?;
    if let Some((i, x)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
        return Err(mismatch(
            "finite values".into(),
            format!("{x} at element {i}"),
        ));
    }
    Ok(())
}

impl Model {
    /// Reads a model file; `__metadata__["hark.model"]` = JSON of [`ModelMeta`].
    ///
    /// Validates the JSON (`format_version ≤ meta::FORMAT_VERSION`, features, classes
    /// non-empty and unique, post-processing and streaming sane, architecture
    /// parameters), then every tensor's presence, dtype (F32) and shape against what the
    /// architecture expects, and names the first mismatch
    /// ([`ModelError::MissingTensor`], [`ModelError::TensorMismatch`],
    /// [`ModelError::Metadata`]). Unexpected extra tensors are an error too
    /// ([`ModelError::UnexpectedTensor`]).
    pub fn load(path: &Path) -> Result<Model, ModelError> {
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let format = |reason: String| ModelError::Format {
            path: path.to_path_buf(),
            reason,
        };
        let metadata_err = |reason: String| ModelError::Metadata {
            path: path.to_path_buf(),
            reason,
        };
        let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| format(e.to_string()))?;
        let json = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get(META_KEY))
            .ok_or_else(|| {
                metadata_err(format!(
                    "no `{META_KEY}` entry in the safetensors metadata (not a hark model file?)"
                ))
            })?;
        let meta: ModelMeta = serde_json::from_str(json)
            .map_err(|e| metadata_err(format!("`{META_KEY}` is not valid model JSON: {e}")))?;
        meta.validate().map_err(metadata_err)?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| format(e.to_string()))?;

        let expected = arch::expected_tensors(&meta.arch, meta.features.n_mels, meta.n_classes())
            .map_err(|e| metadata_err(format!("arch: {e}")))?;
        let device = Device::Cpu;
        let mut tensors = HashMap::with_capacity(expected.len());
        for (name, shape) in &expected {
            let view = st.tensor(name).map_err(|_| ModelError::MissingTensor {
                path: path.to_path_buf(),
                name: name.clone(),
                expected: shape.clone(),
            })?;
            if view.dtype() != safetensors::Dtype::F32 || view.shape() != shape.as_slice() {
                return Err(ModelError::TensorMismatch {
                    path: path.to_path_buf(),
                    name: name.clone(),
                    expected: format!("F32 {shape:?}"),
                    found: format!("{:?} {:?}", view.dtype(), view.shape()),
                });
            }
            let values: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let t = Tensor::from_vec(values, shape.as_slice(), &device)?;
            tensors.insert(name.clone(), t);
        }
        let mut extra: Vec<&str> = st
            .names()
            .into_iter()
            .filter(|n| !tensors.contains_key(*n))
            .collect();
        extra.sort_unstable();
        if let Some(name) = extra.first() {
            return Err(ModelError::UnexpectedTensor {
                path: path.to_path_buf(),
                name: name.to_string(),
            });
        }
        Self::assemble(meta, expected, tensors, path)
    }

    /// Builds a model from metadata and named tensors (e.g. a trainer's `VarMap`
    /// contents), validated exactly as [`Model::load`] validates a file.
    pub fn from_tensors(
        meta: ModelMeta,
        mut tensors: HashMap<String, Tensor>,
    ) -> Result<Model, ModelError> {
        meta.validate().map_err(ModelError::InvalidMeta)?;
        let path = Path::new(IN_MEMORY);
        let expected = arch::expected_tensors(&meta.arch, meta.features.n_mels, meta.n_classes())?;
        let mut own = HashMap::with_capacity(expected.len());
        for (name, shape) in &expected {
            let t = tensors
                .remove(name)
                .ok_or_else(|| ModelError::MissingTensor {
                    path: path.to_path_buf(),
                    name: name.clone(),
                    expected: shape.clone(),
                })?;
            // Detached copy on the CPU, so later training steps do not change the model.
            let t = t.detach().to_device(&Device::Cpu)?.copy()?;
            own.insert(name.clone(), t);
        }
        let mut extra: Vec<String> = tensors.into_keys().collect();
        extra.sort_unstable();
        if let Some(name) = extra.into_iter().next() {
            return Err(ModelError::UnexpectedTensor {
                path: path.to_path_buf(),
                name,
            });
        }
        Self::assemble(meta, expected, own, path)
    }

    /// Builds a model with seeded random weights (for tests and as the trainer's
    /// start). Such a model detects nothing meaningful.
    pub fn init_random(meta: ModelMeta, seed: u64) -> Result<Model, ModelError> {
        meta.validate().map_err(ModelError::InvalidMeta)?;
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, seed, DType::F32, &Device::Cpu);
        arch::build(&meta.arch, meta.features.n_mels, meta.n_classes(), vb)?;
        let tensors: HashMap<String, Tensor> = map
            .data()
            .lock()
            .map_err(|_| ModelError::InvalidMeta("poisoned variable map".into()))?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect();
        Self::from_tensors(meta, tensors)
    }

    /// Checks values and builds the network from tensors whose names and shapes match
    /// `expected`.
    fn assemble(
        meta: ModelMeta,
        expected: Vec<(String, Vec<usize>)>,
        mut tensors: HashMap<String, Tensor>,
        path: &Path,
    ) -> Result<Model, ModelError> {
        for (name, shape) in &expected {
            match tensors.get(name) {
                Some(t) => check_values(path, name, shape, t)?,
                None => {
                    return Err(ModelError::MissingTensor {
                        path: path.to_path_buf(),
                        name: name.clone(),
                        expected: shape.clone(),
                    })
                }
            }
        }
        let device = Device::Cpu;
        let vb = VarBuilder::from_tensors(tensors.clone(), DType::F32, &device);
        let net = arch::build(&meta.arch, meta.features.n_mels, meta.n_classes(), vb)?;
        let weights = expected
            .into_iter()
            .filter_map(|(name, _)| tensors.remove(&name).map(|t| (name, t)))
            .collect();
        Ok(Model {
            meta,
            net,
            weights,
            device,
        })
    }

    /// Writes weights and metadata to a `.safetensors` file, atomically: a temporary
    /// file in the same directory is written, synced, then renamed over `path`.
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        let io = |source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        };
        let json = serde_json::to_string(&self.meta).map_err(|e| ModelError::Metadata {
            path: path.to_path_buf(),
            reason: format!("cannot serialise: {e}"),
        })?;
        let info = HashMap::from([(META_KEY.to_string(), json)]);
        let bytes = safetensors::serialize(
            self.weights.iter().map(|(n, t)| (n.as_str(), t)),
            Some(info),
        )
        .map_err(|e| ModelError::Format {
            path: path.to_path_buf(),
            reason: format!("cannot serialise: {e}"),
        })?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model.safetensors".into());
        let tmp: PathBuf = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(e));
        }
        Ok(())
    }

    /// The model's metadata.
    pub fn meta(&self) -> &ModelMeta {
        &self.meta
    }

    /// The network, for batch inference (`forward_t(x, false)`) by evaluation code.
    pub fn net(&self) -> &dyn SedNet {
        self.net.as_ref()
    }

    /// Every tensor with its name, in the architecture's order (e.g. to seed a
    /// trainer's `VarMap`).
    pub fn tensors(&self) -> &[(String, Tensor)] {
        &self.weights
    }

    /// Runs the network in inference mode on a batch `x (B, T, n_mels)`.
    pub fn forward(&self, x: &Tensor) -> Result<SedOutput, ModelError> {
        Ok(self.net.forward_t(x, false)?)
    }

    /// Number of parameters (trainable values; batch-norm running statistics, which
    /// PyTorch calls buffers, are not counted).
    pub fn n_params(&self) -> usize {
        self.weights
            .iter()
            .filter(|(n, _)| !BUFFER_SUFFIXES.iter().any(|s| n.ends_with(s)))
            .map(|(_, t)| t.elem_count())
            .sum()
    }

    /// Multi-line human description for `hark model info`: name, architecture and its
    /// parameters, parameter count, classes, features, streaming window/hop (frames and
    /// seconds), post-processing, training record.
    pub fn describe(&self) -> String {
        let m = &self.meta;
        let f = &m.features;
        let mut s = String::new();
        let period = f.frame_period_s();
        let _ = writeln!(
            s,
            "model        {} (format version {})",
            m.name, m.format_version
        );
        let _ = writeln!(s, "architecture {}", m.arch.summary());
        let _ = writeln!(
            s,
            "parameters   {} ({} tensors, min input {} frames)",
            self.n_params(),
            self.weights.len(),
            m.arch.min_frames()
        );
        let _ = writeln!(
            s,
            "classes      {}: {}",
            m.classes.len(),
            m.classes.join(", ")
        );
        let log = match f.log {
            LogScale::Ln { eps } => format!("ln(x + {eps})"),
            LogScale::Db { amin } => format!("10·log10(max(x, {amin}))"),
        };
        let norm = match &f.normalization {
            Normalization::None => "none",
            Normalization::PerBand { .. } => "per-band mean/std",
        };
        let _ = writeln!(
            s,
            "features     {} Hz, n_fft {}, {:?} window {} samples, hop {} samples ({:.1} frames/s), \
             center {}, {} mels {}–{} Hz ({:?} scale, {:?} norm), power {}, {log}, normalisation {norm}",
            f.sample_rate,
            f.n_fft,
            f.window,
            f.win_length,
            f.hop_length,
            f.frame_rate(),
            f.center,
            f.n_mels,
            f.fmin,
            f.fmax,
            f.mel_scale,
            f.mel_norm,
            f.power,
        );
        let _ = writeln!(
            s,
            "streaming    window {} frames ({:.2} s), hop {} frames ({:.2} s), {}; \
             a frame's score is final at most {:.2} s after it arrives",
            m.streaming.window_frames,
            m.streaming.window_frames as f64 * period,
            m.streaming.hop_frames,
            m.streaming.hop_frames as f64 * period,
            match m.streaming.lookahead_frames {
                Some(l) => format!("look-ahead {l} frames ({:.2} s)", l as f64 * period),
                None => "every overlapping window averaged".to_string(),
            },
            m.streaming.max_delay_frames() as f64 * period
        );
        let d = &m.postprocess.default;
        let _ = writeln!(
            s,
            "postprocess  default: on {} off {}, median {} frames, min duration {} s, \
             merge gap {} s, hangover {} s{}",
            d.on,
            d.off,
            d.median_frames,
            d.min_duration_s,
            d.merge_gap_s,
            d.hangover_s,
            if d.enabled { "" } else { ", disabled" }
        );
        if let Ok(params) = m.postprocess.resolve(&m.classes) {
            for (label, p) in m.classes.iter().zip(params) {
                if m.postprocess.per_class.contains_key(label) {
                    let _ = writeln!(
                        s,
                        "             {label}: on {} off {}, median {} frames, min duration {} s, \
                         merge gap {} s, hangover {} s{}",
                        p.on,
                        p.off,
                        p.median_frames,
                        p.min_duration_s,
                        p.merge_gap_s,
                        p.hangover_s,
                        if p.enabled { "" } else { ", disabled" }
                    );
                }
            }
        }
        if !m.training.is_null() {
            let _ = writeln!(s, "training     {}", m.training);
        }
        s
    }

    /// Copies the frame probabilities of a `(1, T, C)` f32 tensor into `out`.
    fn copy_out(t: &Tensor, out: &mut Vec<f32>) -> Result<(), ModelError> {
        let t = if t.is_contiguous() {
            t.clone()
        } else {
            t.contiguous()?
        };
        let (storage, layout) = t.storage_and_layout();
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| ModelError::Input("model output is not contiguous".into()))?;
        match &*storage {
            Storage::Cpu(cpu) => {
                out.extend_from_slice(&cpu.as_slice::<f32>()?[start..end]);
                Ok(())
            }
            _ => Err(ModelError::Input("model output is not on the CPU".into())),
        }
    }
}

impl Scorer for Model {
    fn n_classes(&self) -> usize {
        self.meta.classes.len()
    }

    fn n_mels(&self) -> usize {
        self.meta.features.n_mels
    }

    fn min_frames(&self) -> usize {
        self.net.min_frames()
    }

    fn score(
        &mut self,
        frames: &[f32],
        n_frames: usize,
        out: &mut Vec<f32>,
    ) -> Result<(), ModelError> {
        let n_mels = self.n_mels();
        if frames.len() != n_frames * n_mels {
            return Err(ModelError::Input(format!(
                "{} values for {n_frames} frames of {n_mels} mels (expected {})",
                frames.len(),
                n_frames * n_mels
            )));
        }
        if n_frames < self.min_frames() {
            return Err(ModelError::Input(format!(
                "{n_frames} frames given; the model needs at least {} (pad shorter windows)",
                self.min_frames()
            )));
        }
        let x = Tensor::from_slice(frames, (1, n_frames, n_mels), &self.device)?;
        let y = self.net.forward_t(&x, false)?;
        out.clear();
        Self::copy_out(&y.frame, out)
    }
}
