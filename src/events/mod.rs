//! Publishing events: the JSON-lines protocol, the hub that fans messages out, and
//! one file or folder per sink (Unix socket, stdout, MQTT, the HTTP page with metrics).
//!
//! The model thread hands every message to the [`hub::Hub`] through a bounded
//! channel. The hub serialises each message once and offers it to every sink's own
//! bounded queue without ever blocking; a sink that falls behind loses messages (or,
//! for socket clients, the connection), counted, and never delays detection.

pub mod http;
pub mod hub;
pub mod mqtt;
pub mod protocol;
pub mod socket;
pub mod stdout;

pub use hub::{Hub, HubHandle};
pub use protocol::{Message, Outgoing};

/// Errors of event sinks.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// The socket path's directory is missing or not writable, or binding failed.
    #[error("cannot listen on socket {path}: {source}")]
    Bind {
        /// The socket path.
        path: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Another process is listening on the socket path.
    #[error("socket {path} is in use by a running process (another hark?); stop it or choose another --socket")]
    InUse {
        /// The socket path.
        path: std::path::PathBuf,
    },
    /// Something that is not a socket exists at the path.
    #[error("{path} exists and is not a socket; refusing to replace it")]
    NotASocket {
        /// The path.
        path: std::path::PathBuf,
    },
    /// The web page's address could not be bound.
    #[error("cannot serve the web page on {addr}: {source}")]
    Http {
        /// The address asked for.
        addr: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A thread could not be started.
    #[error("cannot start thread `{name}`: {source}")]
    Thread {
        /// Thread name.
        name: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The MQTT sink could not start.
    #[error(transparent)]
    Mqtt(#[from] mqtt::MqttError),
}
