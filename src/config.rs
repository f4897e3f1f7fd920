//! The daemon's TOML configuration (`/etc/hark/hark.toml` by default): raw serde
//! structs with `deny_unknown_fields`, then [`Config::validate`], which checks
//! ranges and, given the model, the labels of per-class overrides.
//!
//! Command-line flags of `hark run` override the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::detect::postprocess::ClassOverride;

/// Where the daemon looks for its config when none is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/hark/hark.toml";

/// Errors of reading or validating a config.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The config file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// TOML syntax error, unknown key or wrong type; the message has line and column.
    #[error("{path}: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// toml's message, with the line, column and the offending text.
        message: String,
    },
    /// A value is out of range.
    #[error("{path}: `{field}` = {value}: expected {expected}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// Dotted key of the field.
        field: String,
        /// The value found.
        value: String,
        /// What is accepted.
        expected: String,
    },
}

/// `[source]`: where audio comes from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Input, as `--input`: `mic`, `mic:NAME`, `file:PATH`, `stdin:FORMAT:RATE:CHANNELS`.
    #[serde(default = "default_input")]
    pub input: String,
    /// Pace file input in real time.
    #[serde(default)]
    pub realtime: bool,
    /// Capacity of the capture ring, seconds of audio.
    #[serde(default = "default_ring_seconds")]
    pub ring_seconds: f32,
    /// A microphone that delivers nothing for this long is reopened (by name, with
    /// backoff); its open events are stopped meanwhile.
    #[serde(default = "default_stall_timeout")]
    pub stall_timeout_s: f32,
}

fn default_input() -> String {
    "mic".into()
}
const fn default_ring_seconds() -> f32 {
    2.0
}
const fn default_stall_timeout() -> f32 {
    2.0
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            input: default_input(),
            realtime: false,
            ring_seconds: default_ring_seconds(),
            stall_timeout_s: default_stall_timeout(),
        }
    }
}

/// `[model]`: the model file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Path of the `.safetensors` model file (relative paths are relative to the
    /// config file's directory).
    pub path: Option<PathBuf>,
    /// Frames between streaming windows instead of the model file's hop (1..=the
    /// model's window; longer = less CPU, more latency).
    pub hop_frames: Option<usize>,
    /// Bounded look-ahead instead of the model file's (0..the model's window): a
    /// frame's score is final once a window with this many frames after it has run.
    /// Lower = lower latency, fewer windows averaged per frame.
    pub lookahead_frames: Option<usize>,
}

impl ModelConfig {
    /// The model's streaming geometry with this config's overrides applied.
    pub fn streaming(
        &self,
        model: crate::detect::streaming::StreamingConfig,
    ) -> crate::detect::streaming::StreamingConfig {
        let mut s = model;
        if let Some(h) = self.hop_frames {
            s.hop_frames = h;
        }
        if let Some(l) = self.lookahead_frames {
            s.lookahead_frames = Some(l);
        }
        s
    }
}

/// `[socket]`: the JSON-lines Unix socket.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocketConfig {
    /// Socket path; no socket when absent.
    pub path: Option<PathBuf>,
    /// Lines queued per client before a slow client is disconnected.
    #[serde(default = "default_client_queue")]
    pub client_queue: usize,
    /// Most clients at once.
    #[serde(default = "default_max_clients")]
    pub max_clients: usize,
}

const fn default_client_queue() -> usize {
    1024
}
const fn default_max_clients() -> usize {
    256
}

impl Default for SocketConfig {
    fn default() -> Self {
        Self {
            path: None,
            client_queue: default_client_queue(),
            max_clients: default_max_clients(),
        }
    }
}

/// `[http]`: the live web page, Server-Sent Events and `/metrics`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to serve on, `HOST:PORT` or a bare port (loopback); off when absent.
    /// The page has no authentication: give a non-loopback address only on a
    /// trusted network.
    pub addr: Option<String>,
    /// Lines queued per page client before a slow client is dropped.
    #[serde(default = "default_http_client_queue")]
    pub client_queue: usize,
    /// Most page clients at once.
    #[serde(default = "default_http_max_clients")]
    pub max_clients: usize,
}

const fn default_http_client_queue() -> usize {
    512
}
const fn default_http_max_clients() -> usize {
    16
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            addr: None,
            client_queue: default_http_client_queue(),
            max_clients: default_http_max_clients(),
        }
    }
}

/// `[pipeline]`: queue sizes and reporting.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Seconds of log-mel frames queued between the frontend and the model thread;
    /// beyond it, live input sheds whole chunks (counted).
    #[serde(default = "default_queue_seconds")]
    pub queue_seconds: f32,
    /// Seconds between `status` messages (and log lines).
    #[serde(default = "default_status_interval")]
    pub status_interval_s: f32,
    /// Skip inference on windows whose loudest 20 ms is below this level (dBFS);
    /// saves CPU on silence. Off when absent.
    #[serde(default)]
    pub energy_gate_dbfs: Option<f32>,
    /// Report a `loud` pseudo-label while the level is at least this (dBFS).
    /// Off when absent.
    #[serde(default)]
    pub loud_dbfs: Option<f32>,
    /// Threads the model thread computes with (1..=64). The default, 1, leaves the
    /// other cores to capture, the front end and the sinks; more threads shorten each
    /// window's compute (lower latency) at a higher total CPU cost.
    #[serde(default = "default_model_threads")]
    pub model_threads: usize,
}

const fn default_model_threads() -> usize {
    1
}

const fn default_queue_seconds() -> f32 {
    4.0
}
const fn default_status_interval() -> f32 {
    60.0
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            queue_seconds: default_queue_seconds(),
            status_interval_s: default_status_interval(),
            energy_gate_dbfs: None,
            loud_dbfs: None,
            model_threads: default_model_threads(),
        }
    }
}

/// The whole config file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Audio source.
    #[serde(default)]
    pub source: SourceConfig,
    /// Model file.
    #[serde(default)]
    pub model: ModelConfig,
    /// Unix socket sink.
    #[serde(default)]
    pub socket: SocketConfig,
    /// Queues and reporting.
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// MQTT and Home Assistant sink; off when absent.
    #[serde(default)]
    pub mqtt: Option<crate::events::mqtt::MqttConfig>,
    /// Live web page and metrics.
    #[serde(default)]
    pub http: HttpConfig,
    /// Per-class overrides of the model's post-processing, by label.
    #[serde(default)]
    pub classes: BTreeMap<String, ClassOverride>,
}

impl Config {
    /// Reads and parses `path` and checks ranges (not labels: see
    /// [`Config::check_labels`]). Relative paths inside are resolved against the
    /// file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg = Self::parse(&text, path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        if let Some(p) = &cfg.model.path {
            if p.is_relative() {
                cfg.model.path = Some(base.join(p));
            }
        }
        if let Some(m) = &mut cfg.mqtt {
            m.resolve_paths(base);
        }
        Ok(cfg)
    }

    /// Parses TOML text; `path` is used in messages only.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Checks ranges of every field.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |field: &str, value: String, expected: &str| ConfigError::Invalid {
            path: path.to_path_buf(),
            field: field.to_string(),
            value,
            expected: expected.to_string(),
        };
        self.source
            .input
            .parse::<crate::audio::InputSpec>()
            .map_err(|e| {
                bad(
                    "source.input",
                    format!("{:?}", self.source.input),
                    &e.to_string(),
                )
            })?;
        let r = self.source.ring_seconds;
        if !(r.is_finite() && (0.1..=60.0).contains(&r)) {
            return Err(bad(
                "source.ring_seconds",
                r.to_string(),
                "seconds in 0.1..=60",
            ));
        }
        if !(1..=1_000_000).contains(&self.socket.client_queue) {
            return Err(bad(
                "socket.client_queue",
                self.socket.client_queue.to_string(),
                "1..=1000000 lines",
            ));
        }
        if !(1..=100_000).contains(&self.socket.max_clients) {
            return Err(bad(
                "socket.max_clients",
                self.socket.max_clients.to_string(),
                "1..=100000",
            ));
        }
        for (field, v) in [
            ("pipeline.energy_gate_dbfs", self.pipeline.energy_gate_dbfs),
            ("pipeline.loud_dbfs", self.pipeline.loud_dbfs),
        ] {
            if let Some(v) = v {
                if !(v.is_finite() && (-120.0..=0.0).contains(&v)) {
                    return Err(bad(field, v.to_string(), "a level in -120..=0 dBFS"));
                }
            }
        }
        if !(1..=64).contains(&self.pipeline.model_threads) {
            return Err(bad(
                "pipeline.model_threads",
                self.pipeline.model_threads.to_string(),
                "1..=64 threads",
            ));
        }
        if self.model.hop_frames == Some(0) {
            return Err(bad(
                "model.hop_frames",
                "0".into(),
                "1..=the model's window_frames",
            ));
        }
        if let Some(a) = &self.http.addr {
            crate::events::http::parse_addr(a)
                .map_err(|e| bad("http.addr", format!("{a:?}"), &e))?;
        }
        if !(8..=1_000_000).contains(&self.http.client_queue) {
            return Err(bad(
                "http.client_queue",
                self.http.client_queue.to_string(),
                "8..=1000000 lines",
            ));
        }
        if !(1..=10_000).contains(&self.http.max_clients) {
            return Err(bad(
                "http.max_clients",
                self.http.max_clients.to_string(),
                "1..=10000",
            ));
        }
        let st = self.source.stall_timeout_s;
        if !(st.is_finite() && (0.2..=3600.0).contains(&st)) {
            return Err(bad(
                "source.stall_timeout_s",
                st.to_string(),
                "seconds in 0.2..=3600",
            ));
        }
        let q = self.pipeline.queue_seconds;
        if !(q.is_finite() && (0.1..=600.0).contains(&q)) {
            return Err(bad(
                "pipeline.queue_seconds",
                q.to_string(),
                "seconds in 0.1..=600",
            ));
        }
        let s = self.pipeline.status_interval_s;
        if !(s.is_finite() && (0.1..=86_400.0).contains(&s)) {
            return Err(bad(
                "pipeline.status_interval_s",
                s.to_string(),
                "seconds in 0.1..=86400",
            ));
        }
        if let Some(m) = &self.mqtt {
            m.validate(path)?;
        }
        Ok(())
    }

    /// Checks that every `[classes.<label>]` names one of `labels` and that the
    /// merged parameters are valid.
    pub fn check_labels(
        &self,
        path: &Path,
        labels: &[String],
        base: &crate::detect::postprocess::PostprocessConfig,
    ) -> Result<(), ConfigError> {
        if let Some(l) = self.classes.keys().find(|l| !labels.contains(l)) {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                field: format!("classes.{l}"),
                value: format!("{l:?}"),
                expected: format!("one of the model's labels: {}", labels.join(", ")),
            });
        }
        self.postprocess(base)
            .resolve(labels)
            .map_err(|e| ConfigError::Invalid {
                path: path.to_path_buf(),
                field: "classes".into(),
                value: String::new(),
                expected: e.to_string(),
            })?;
        Ok(())
    }

    /// Checks the config against the model it will run: per-class labels and
    /// parameters, and the streaming hop override.
    pub fn check_against(
        &self,
        path: &Path,
        meta: &crate::model::ModelMeta,
    ) -> Result<(), ConfigError> {
        self.check_labels(path, &self.labels(meta), &meta.postprocess)?;
        if let Some(h) = self.model.hop_frames {
            if h == 0 || h > meta.streaming.window_frames {
                return Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    field: "model.hop_frames".into(),
                    value: h.to_string(),
                    expected: format!(
                        "1..={} (the model's window_frames)",
                        meta.streaming.window_frames
                    ),
                });
            }
        }
        if let Some(l) = self.model.lookahead_frames {
            if l >= meta.streaming.window_frames {
                return Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    field: "model.lookahead_frames".into(),
                    value: l.to_string(),
                    expected: format!(
                        "0..{} (below the model's window_frames)",
                        meta.streaming.window_frames
                    ),
                });
            }
        }
        Ok(())
    }

    /// The labels a run with this config reports: the model's classes, plus
    /// `loud` when `pipeline.loud_dbfs` is set.
    pub fn labels(&self, meta: &crate::model::ModelMeta) -> Vec<String> {
        let mut l = meta.classes.clone();
        if self.pipeline.loud_dbfs.is_some() {
            l.push(crate::pipeline::LOUD_LABEL.to_string());
        }
        l
    }

    /// The model's post-processing with this config's per-class overrides applied.
    pub fn postprocess(
        &self,
        base: &crate::detect::postprocess::PostprocessConfig,
    ) -> crate::detect::postprocess::PostprocessConfig {
        let mut pp = base.clone();
        for (label, o) in &self.classes {
            let merged = match pp.per_class.get(label) {
                Some(m) => o.or(m),
                None => *o,
            };
            pp.per_class.insert(label.clone(), merged);
        }
        pp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::postprocess::PostprocessConfig;

    fn p() -> &'static Path {
        Path::new("hark.toml")
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::parse("", p()).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn full_file_parses() {
        let c = Config::parse(
            r#"
[source]
input = "mic:USB"
ring_seconds = 4
[model]
path = "/opt/m.safetensors"
[socket]
path = "/run/hark/hark.sock"
[pipeline]
status_interval_s = 30
[http]
addr = "127.0.0.1:8080"
max_clients = 4
[classes.speech]
on = 0.7
enabled = false
"#,
            p(),
        )
        .unwrap();
        assert_eq!(c.source.input, "mic:USB");
        assert_eq!(c.classes["speech"].on, Some(0.7));
    }

    #[test]
    fn unknown_key_is_reported_with_its_line() {
        let e = Config::parse("[source]\ninput = \"mic\"\nrign_seconds = 2\n", p())
            .unwrap_err()
            .to_string();
        assert!(e.contains("rign_seconds") && e.contains("line 3"), "{e}");
    }

    #[test]
    fn wrong_type_and_range_are_named() {
        let e = Config::parse("[source]\nring_seconds = \"two\"\n", p())
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
        let e = Config::parse("[source]\nring_seconds = 0\n", p())
            .unwrap_err()
            .to_string();
        assert!(e.contains("source.ring_seconds"), "{e}");
        let e = Config::parse("[source]\ninput = \"stdin:s16le:x:1\"\n", p())
            .unwrap_err()
            .to_string();
        assert!(e.contains("source.input"), "{e}");
        let e = Config::parse("[http]\naddr = \"here:there\"\n", p())
            .unwrap_err()
            .to_string();
        assert!(e.contains("http.addr") && e.contains("HOST:PORT"), "{e}");
        let e = Config::parse("[http]\nmax_clients = 0\n", p())
            .unwrap_err()
            .to_string();
        assert!(e.contains("http.max_clients"), "{e}");
    }

    #[test]
    fn labels_are_checked_against_the_model() {
        let c = Config::parse("[classes.zebra]\non = 0.9\n", p()).unwrap();
        let labels = vec!["speech".to_string()];
        let e = c
            .check_labels(p(), &labels, &PostprocessConfig::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("classes.zebra") && e.contains("speech"), "{e}");
        let c = Config::parse("[classes.speech]\non = 0.2\noff = 0.5\n", p()).unwrap();
        let e = c
            .check_labels(p(), &labels, &PostprocessConfig::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("off"), "{e}");
    }
}
