//! The MQTT and Home Assistant sink (`[mqtt]` in the config).
//!
//! - [`config`]: the `[mqtt]` table ([`MqttConfig`]), its defaults and validation.
//! - [`discovery`]: topic names and Home Assistant discovery payloads.
//! - [`sink`]: the [`MqttSink`] (bounded queue, worker and connection threads) and
//!   [`sink::SinkState`], the I/O-free logic of what is published when.
//!
//! Topics (prefix `hark/<node_id>` by default): `<prefix>/availability`
//! (`online`/`offline`, retained, last will `offline`), `<prefix>/<label>/state`
//! (`ON`/`OFF`, retained), `<prefix>/<label>/attributes` (JSON, retained),
//! `<prefix>/any_sound/state`, `<prefix>/events` (every start/stop line),
//! `<prefix>/detected` (Home Assistant `event` entity), `<prefix>/status`.

pub mod config;
pub mod discovery;
pub mod sink;

use std::path::PathBuf;

pub use config::{MqttConfig, Qos};
pub use sink::{MqttSink, MqttStats};

/// Errors of starting the MQTT sink (connection problems are not errors: the sink
/// keeps retrying in the background).
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// The password file could not be read.
    #[error("mqtt.password_file {path}: {source}")]
    PasswordFile {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The CA file could not be read or holds no usable certificate.
    #[error("mqtt.tls.ca_file {path}: {message}; expected PEM CA certificates")]
    CaFile {
        /// The file (or `(system roots)`).
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// rustls refused the TLS settings.
    #[error("mqtt TLS settings: {0}")]
    Tls(String),
    /// A model label cannot be used in MQTT topics or Home Assistant ids.
    #[error("model label {label:?} cannot be published over MQTT: expected {expected}")]
    Label {
        /// The label.
        label: String,
        /// What is accepted.
        expected: String,
    },
    /// A thread could not be started.
    #[error("cannot start thread `{name}`: {source}")]
    Thread {
        /// Thread name.
        name: String,
        /// The underlying error.
        source: std::io::Error,
    },
}
