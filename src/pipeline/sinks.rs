//! Which sinks a live run publishes to, and how they are built (at start and on reload).

use std::path::PathBuf;
use std::sync::Arc;

use crate::detect::postprocess::PostprocessConfig;
use crate::events::http::{HttpOptions, HttpSink, Metrics};
use crate::events::hub::Sink;
use crate::events::mqtt::MqttSink;
use crate::events::socket::{SocketOptions, SocketSink, SocketStats};
use crate::events::stdout::StdoutSink;
use crate::events::EventsError;

use super::*;

/// The sinks of a run. On reload only the sinks whose settings changed restart
/// (a socket's clients then reconnect); the audio stream is never touched.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkSpec {
    /// Unix socket path and limits.
    pub socket: Option<(PathBuf, SocketOptions)>,
    /// Print lines to stdout.
    pub stdout: bool,
    /// MQTT / Home Assistant.
    pub mqtt: Option<crate::events::mqtt::MqttConfig>,
    /// Web page and metrics.
    pub http: Option<HttpOptions>,
}

impl SinkSpec {
    /// Whether per-frame scores have a consumer.
    pub(super) fn wants_scores(&self) -> bool {
        self.socket.is_some() || self.http.is_some()
    }
}

/// The kinds of sink, by [`Sink::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SinkKind {
    Socket,
    Stdout,
    Mqtt,
    Http,
}

impl SinkKind {
    pub(super) const ALL: [SinkKind; 4] = [
        SinkKind::Socket,
        SinkKind::Http,
        SinkKind::Stdout,
        SinkKind::Mqtt,
    ];

    pub(super) fn name(self) -> &'static str {
        match self {
            SinkKind::Socket => "socket",
            SinkKind::Stdout => "stdout",
            SinkKind::Mqtt => "mqtt",
            SinkKind::Http => "http",
        }
    }

    pub(super) fn changed(self, a: &SinkSpec, b: &SinkSpec) -> bool {
        match self {
            SinkKind::Socket => a.socket != b.socket,
            SinkKind::Stdout => a.stdout != b.stdout,
            SinkKind::Mqtt => a.mqtt != b.mqtt,
            SinkKind::Http => a.http != b.http,
        }
    }
}

/// Shared handle on the current socket sink's counters (for `/metrics`).
pub(super) type SocketSlot = Arc<std::sync::Mutex<Option<Arc<SocketStats>>>>;

/// Builds sinks, at start and on reload.
pub(super) struct SinkFactory {
    pub(super) hello: Arc<crate::events::protocol::Outgoing>,
    pub(super) labels: Vec<String>,
    pub(super) model_name: String,
    pub(super) metrics: Arc<Metrics>,
    pub(super) page_every: usize,
    pub(super) socket_slot: SocketSlot,
}

impl SinkFactory {
    /// The sink of `kind` that `spec` asks for, if any.
    pub(super) fn make(
        &self,
        kind: SinkKind,
        spec: &SinkSpec,
        pp: &PostprocessConfig,
    ) -> Result<Option<Box<dyn Sink>>, PipelineError> {
        Ok(match kind {
            SinkKind::Socket => match &spec.socket {
                Some((path, so)) => {
                    let sink =
                        SocketSink::bind(path, self.hello.clone(), self.labels.clone(), *so)?;
                    if let Ok(mut g) = self.socket_slot.lock() {
                        *g = Some(sink.stats());
                    }
                    Some(Box::new(sink))
                }
                None => {
                    if let Ok(mut g) = self.socket_slot.lock() {
                        *g = None;
                    }
                    None
                }
            },
            SinkKind::Http => match &spec.http {
                Some(h) => Some(Box::new(HttpSink::start(
                    HttpOptions {
                        scores_every: self.page_every,
                        ..*h
                    },
                    self.hello.clone(),
                    self.metrics.clone(),
                )?)),
                None => None,
            },
            SinkKind::Stdout => match spec.stdout {
                true => Some(Box::new(StdoutSink::start(4096, false)?)),
                false => None,
            },
            SinkKind::Mqtt => match &spec.mqtt {
                Some(m) => {
                    let enabled = pp.resolve(&self.labels)?.into_iter().map(|p| p.enabled);
                    let labels: Vec<(String, bool)> =
                        self.labels.iter().cloned().zip(enabled).collect();
                    Some(Box::new(
                        MqttSink::start(m, &self.model_name, &labels).map_err(EventsError::from)?,
                    ))
                }
                None => None,
            },
        })
    }
}
