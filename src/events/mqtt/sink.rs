//! The MQTT sink: a [`Sink`] whose `offer` is a `try_send` into a bounded queue, a
//! worker thread that turns lines into publications, and a connection thread that
//! drives rumqttc's event loop (connect, reconnect with backoff, incoming messages).
//!
//! ```text
//! hub ─offer (try_send)─▶ [queue: `queue` lines] ─▶ worker ─try_publish─▶ [rumqttc requests] ─▶ connection thread ─▶ broker
//!                                                     ▲                                              │
//!                                                     └──── Connected / Disconnected / HaOnline ─────┘
//! ```
//! The worker keeps the current state of every label, so that after every
//! (re)connection, and whenever Home Assistant announces itself on
//! `<discovery_prefix>/status`, it republishes availability, discovery and states.
//! While disconnected it keeps at most `buffer_events` events (oldest dropped,
//! counted in [`MqttStats::dropped_events`]) and publishes them after reconnecting.
//! [`SinkState`] holds that logic free of I/O, for tests.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, never, select, unbounded, Receiver, Sender, TrySendError};
use rumqttc::{Client, Connection, LastWill, MqttOptions, QoS, Transport};
use serde::Deserialize;
use serde_json::json;

use super::config::{sanitize_id, MqttConfig};
use super::discovery::{self, Device, Topics, OFF, OFFLINE, ON, ONLINE};
use super::MqttError;
use crate::events::hub::Sink;
use crate::events::protocol::{Kind, Outgoing};

/// Counters of the MQTT sink, shared with whoever wants to report them.
#[derive(Debug, Default)]
pub struct MqttStats {
    /// Messages handed to the MQTT client.
    pub published: AtomicU64,
    /// Events (start/stop) dropped because the disconnected buffer was full.
    pub dropped_events: AtomicU64,
    /// Messages the MQTT client refused because its request queue was full.
    pub publish_failed: AtomicU64,
    /// Successful connections (the first one included).
    pub connections: AtomicU64,
}

/// One MQTT publication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// Topic name.
    pub topic: String,
    /// Payload (UTF-8 text: JSON, `ON`/`OFF`, `online`/`offline`, or empty).
    pub payload: String,
    /// Whether the broker keeps it for later subscribers.
    pub retain: bool,
}

impl Publication {
    fn new(topic: String, payload: impl Into<String>, retain: bool) -> Self {
        Self {
            topic,
            payload: payload.into(),
            retain,
        }
    }
}

/// The start/stop lines of the protocol, as the sink reads them back.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Line {
    Start {
        id: String,
        label: String,
        t: f64,
        score: f64,
        wall: String,
    },
    Stop {
        id: String,
        label: String,
        t_start: f64,
        t_end: f64,
        peak: f64,
        mean: f64,
        wall: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, Default)]
struct LabelState {
    on: bool,
    /// Score of the open event's start.
    start_score: f64,
    /// Attributes JSON of the last start/stop, if any.
    attributes: Option<String>,
}

/// What the sink publishes, as a function of lines and connection changes; no I/O.
#[derive(Debug)]
pub struct SinkState {
    topics: Topics,
    device: Device,
    discovery: bool,
    /// Enabled labels, in model order.
    enabled: Vec<String>,
    /// Labels disabled in the config: their discovery configs are removed.
    disabled: Vec<String>,
    labels: BTreeMap<String, LabelState>,
    any_on: bool,
    connected: bool,
    /// Whether the announcement went out at least once.
    announced: bool,
    /// Events waiting for a connection, each as its publications.
    pending: VecDeque<Vec<Publication>>,
    buffer_events: usize,
    stats: Arc<MqttStats>,
    warned_drop_at: Option<Instant>,
}

impl SinkState {
    /// State for `labels` (`(label, enabled)`, model order). Fails if an enabled
    /// label cannot be a topic level, or two labels share a Home Assistant id.
    pub fn new(
        topics: Topics,
        device: Device,
        discovery: bool,
        labels: &[(String, bool)],
        buffer_events: usize,
        stats: Arc<MqttStats>,
    ) -> Result<Self, MqttError> {
        let mut ids = BTreeMap::new();
        for (l, enabled) in labels {
            if *enabled {
                discovery::check_label(l).map_err(|expected| MqttError::Label {
                    label: l.clone(),
                    expected,
                })?;
            }
            if let Some(other) = ids.insert(sanitize_id(l), l.clone()) {
                return Err(MqttError::Label {
                    label: l.clone(),
                    expected: format!(
                        "a label whose Home Assistant id `{}` differs from that of `{other}`",
                        sanitize_id(l)
                    ),
                });
            }
        }
        let enabled: Vec<String> = labels
            .iter()
            .filter(|(_, e)| *e)
            .map(|(l, _)| l.clone())
            .collect();
        Ok(Self {
            labels: enabled
                .iter()
                .map(|l| (l.clone(), LabelState::default()))
                .collect(),
            disabled: labels
                .iter()
                .filter(|(_, e)| !*e)
                .map(|(l, _)| l.clone())
                .collect(),
            enabled,
            topics,
            device,
            discovery,
            any_on: false,
            connected: false,
            announced: false,
            pending: VecDeque::new(),
            buffer_events,
            stats,
            warned_drop_at: None,
        })
    }

    /// The topics in use.
    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// Whether the last news from the connection was a successful connect.
    pub fn connected(&self) -> bool {
        self.connected
    }

    /// Events waiting for a connection.
    pub fn pending_events(&self) -> usize {
        self.pending.len()
    }

    /// The broker accepted the connection: availability, discovery, current states,
    /// then the events buffered while disconnected.
    pub fn on_connected(&mut self, out: &mut Vec<Publication>) {
        self.connected = true;
        self.announced = true;
        out.push(Publication::new(self.topics.availability(), ONLINE, true));
        self.announce(out);
        for ev in self.pending.drain(..) {
            out.extend(ev);
        }
    }

    /// The connection was lost: events are buffered from now on.
    pub fn on_disconnected(&mut self) {
        self.connected = false;
    }

    /// Home Assistant (re)started: discovery and current states again.
    pub fn on_ha_online(&mut self, out: &mut Vec<Publication>) {
        if self.connected {
            self.announce(out);
        }
    }

    /// Clean stop: `offline` (retained) if connected.
    pub fn on_close(&mut self, out: &mut Vec<Publication>) {
        if self.connected {
            out.push(Publication::new(self.topics.availability(), OFFLINE, true));
        }
    }

    fn announce(&self, out: &mut Vec<Publication>) {
        let t = &self.topics;
        if self.discovery {
            for l in &self.enabled {
                out.push(Publication::new(
                    t.label_config(l),
                    self.device.label_config(t, l).to_string(),
                    true,
                ));
            }
            out.push(Publication::new(
                t.any_config(),
                self.device.any_config(t).to_string(),
                true,
            ));
            // Home Assistant rejects an event entity without event types.
            let event_config = if self.enabled.is_empty() {
                String::new()
            } else {
                self.device.event_config(t, &self.enabled).to_string()
            };
            out.push(Publication::new(t.event_config(), event_config, true));
            for l in &self.disabled {
                out.push(Publication::new(t.label_config(l), "", true));
            }
        }
        for l in &self.enabled {
            if let Some(s) = self.labels.get(l) {
                out.push(Publication::new(t.state(l), on_off(s.on), true));
                if let Some(a) = &s.attributes {
                    out.push(Publication::new(t.attributes(l), a.clone(), true));
                }
            }
        }
        out.push(Publication::new(t.any_state(), on_off(self.any_on), true));
    }

    /// A line from the hub: events update states (published at once when connected)
    /// and go to `<prefix>/events` (buffered while disconnected); status lines go to
    /// `<prefix>/status` when connected.
    pub fn on_line(&mut self, line: &Outgoing, out: &mut Vec<Publication>) {
        match line.kind {
            Kind::Event => self.on_event(line, out),
            Kind::Status => {
                if self.connected {
                    out.push(Publication::new(
                        self.topics.status(),
                        line.line.clone(),
                        false,
                    ));
                }
            }
            Kind::Hello | Kind::Scores | Kind::Mel => {}
        }
    }

    fn on_event(&mut self, line: &Outgoing, out: &mut Vec<Publication>) {
        let parsed: Line = match serde_json::from_str(&line.line) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "mqtt: unreadable event line; skipped");
                return;
            }
        };
        let t = &self.topics;
        let mut now = Vec::with_capacity(4);
        let mut event = vec![Publication::new(t.events(), line.line.clone(), false)];
        let label = match &parsed {
            Line::Start {
                id,
                label,
                t: t_start,
                score,
                wall,
            } => {
                if let Some(s) = self.labels.get_mut(label) {
                    let attrs = json!({"id": id, "score": score, "t_start": t_start, "wall": wall})
                        .to_string();
                    s.on = true;
                    s.start_score = *score;
                    s.attributes = Some(attrs.clone());
                    now.push(Publication::new(t.state(label), ON, true));
                    now.push(Publication::new(t.attributes(label), attrs, true));
                }
                event.push(Publication::new(
                    t.detected(),
                    json!({"event_type": label, "id": id, "score": score, "t": t_start})
                        .to_string(),
                    false,
                ));
                label
            }
            Line::Stop {
                id,
                label,
                t_start,
                t_end,
                peak,
                mean,
                wall,
            } => {
                if let Some(s) = self.labels.get_mut(label) {
                    let attrs = json!({
                        "id": id, "score": s.start_score, "peak": peak, "mean": mean,
                        "t_start": t_start, "t_end": t_end, "wall": wall,
                    })
                    .to_string();
                    s.on = false;
                    s.attributes = Some(attrs.clone());
                    now.push(Publication::new(t.state(label), OFF, true));
                    now.push(Publication::new(t.attributes(label), attrs, true));
                }
                label
            }
            Line::Other => return,
        };
        tracing::trace!(label = %label, "mqtt: event");
        let any = self.labels.values().any(|s| s.on);
        if any != self.any_on {
            self.any_on = any;
            now.push(Publication::new(t.any_state(), on_off(any), true));
        }
        if self.connected {
            out.extend(now);
            out.extend(event);
        } else {
            self.buffer(event);
        }
    }

    fn buffer(&mut self, event: Vec<Publication>) {
        self.pending.push_back(event);
        let mut dropped = 0;
        while self.pending.len() > self.buffer_events {
            self.pending.pop_front();
            dropped += 1;
        }
        if dropped > 0 {
            let total = self
                .stats
                .dropped_events
                .fetch_add(dropped, Ordering::Relaxed)
                + dropped;
            let now = Instant::now();
            if self
                .warned_drop_at
                .is_none_or(|w| now.duration_since(w) >= Duration::from_secs(10))
            {
                self.warned_drop_at = Some(now);
                tracing::warn!(
                    dropped_events_total = total,
                    buffer_events = self.buffer_events,
                    "mqtt: disconnected and buffer full; dropping the oldest events"
                );
            }
        }
    }
}

fn on_off(on: bool) -> &'static str {
    if on {
        ON
    } else {
        OFF
    }
}

/// News from the connection thread to the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    Connected,
    Disconnected,
    HaOnline,
}

/// The MQTT sink. See the module documentation.
pub struct MqttSink {
    tx: Option<Sender<Arc<Outgoing>>>,
    worker: Option<JoinHandle<()>>,
    connection: Option<JoinHandle<()>>,
    stats: Arc<MqttStats>,
}

/// Longest time [`Sink::close`] waits for the connection thread after the worker.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// Longest time the worker waits at close for a first connection, so that a run
/// shorter than the connection set-up still publishes its events and states.
const CLOSE_CONNECT_WAIT: Duration = Duration::from_secs(3);

impl MqttSink {
    /// Starts the sink for a model named `model` with `labels` (`(label, enabled)`,
    /// model order). Reads the password file and TLS roots now; connecting happens
    /// in the background (the daemon runs while the broker is away).
    pub fn start(
        cfg: &MqttConfig,
        model: &str,
        labels: &[(String, bool)],
    ) -> Result<Self, MqttError> {
        let node_id = cfg.node_id();
        let topics = Topics {
            prefix: cfg.topic_prefix(),
            discovery_prefix: cfg.discovery_prefix.clone(),
            node_id: node_id.clone(),
        };
        let device = Device {
            name: cfg
                .device_name
                .clone()
                .unwrap_or_else(|| format!("hark {node_id}")),
            node_id,
            model: model.to_string(),
            sw_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let stats = Arc::new(MqttStats::default());
        let state = SinkState::new(
            topics.clone(),
            device,
            cfg.discovery,
            labels,
            cfg.buffer_events,
            stats.clone(),
        )?;
        let qos: QoS = cfg.qos.into();
        let mut opts = MqttOptions::new(cfg.client_id(), cfg.host.clone(), cfg.port());
        opts.set_keep_alive(Duration::from_secs(u64::from(cfg.keep_alive_s)))
            .set_clean_session(true)
            .set_max_packet_size(1 << 20, 1 << 20)
            .set_last_will(LastWill::new(topics.availability(), OFFLINE, qos, true));
        if let Some(user) = &cfg.username {
            let password = match (&cfg.password, &cfg.password_file) {
                (Some(p), _) => p.expose().to_string(),
                (None, Some(path)) => read_password(path)?,
                (None, None) => String::new(),
            };
            opts.set_credentials(user.clone(), password);
        }
        if let Some(tls) = &cfg.tls {
            opts.set_transport(Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(Arc::new(tls_config(tls.ca_file.as_deref())?)),
            ));
        }
        // Room for a full announcement plus the buffered events, so the worker's
        // `try_publish` only fails when the broker is far behind.
        let requests = (labels.len() * 4 + cfg.buffer_events * 2 + 256).min(1 << 20);
        let (client, connection) = Client::new(opts, requests);
        let (ctl_tx, ctl_rx) = unbounded();
        let closing = Arc::new(AtomicBool::new(false));
        tracing::info!(
            host = %cfg.host,
            port = cfg.port(),
            tls = cfg.tls.is_some(),
            client_id = %cfg.client_id(),
            prefix = %topics.prefix,
            "mqtt: connecting"
        );
        let connection = {
            let closing = closing.clone();
            let stats = stats.clone();
            let reconnect_max = Duration::from_secs_f32(cfg.reconnect_max_s);
            let ha_status = topics.ha_status();
            std::thread::Builder::new()
                .name("hark-mqtt-conn".into())
                .spawn(move || {
                    connection_loop(connection, ctl_tx, closing, reconnect_max, ha_status, stats)
                })
                .map_err(|source| MqttError::Thread {
                    name: "hark-mqtt-conn".into(),
                    source,
                })?
        };
        let (tx, rx) = bounded::<Arc<Outgoing>>(cfg.queue.max(1));
        let worker = std::thread::Builder::new()
            .name("hark-mqtt".into())
            .spawn(move || worker_loop(state, client, qos, rx, ctl_rx, closing))
            .map_err(|source| MqttError::Thread {
                name: "hark-mqtt".into(),
                source,
            })?;
        Ok(Self {
            tx: Some(tx),
            worker: Some(worker),
            connection: Some(connection),
            stats,
        })
    }

    /// The sink's counters.
    pub fn stats(&self) -> Arc<MqttStats> {
        self.stats.clone()
    }
}

impl Sink for MqttSink {
    fn name(&self) -> &str {
        "mqtt"
    }

    fn offer(&self, out: &Arc<Outgoing>) -> bool {
        if !matches!(out.kind, Kind::Event | Kind::Status) {
            return true;
        }
        match &self.tx {
            Some(tx) => match tx.try_send(out.clone()) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => true,
                Err(TrySendError::Full(_)) => false,
            },
            None => true,
        }
    }

    fn close(mut self: Box<Self>) {
        self.tx.take();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
        if let Some(c) = self.connection.take() {
            let t0 = Instant::now();
            while !c.is_finished() && t0.elapsed() < CLOSE_WAIT {
                std::thread::sleep(Duration::from_millis(10));
            }
            if c.is_finished() {
                let _ = c.join();
            } else {
                tracing::warn!("mqtt: connection did not close in time; leaving it");
            }
        }
        let s = &self.stats;
        tracing::info!(
            published = s.published.load(Ordering::Relaxed),
            dropped_events = s.dropped_events.load(Ordering::Relaxed),
            publish_failed = s.publish_failed.load(Ordering::Relaxed),
            connections = s.connections.load(Ordering::Relaxed),
            "mqtt: closed"
        );
    }
}

fn read_password(path: &std::path::Path) -> Result<String, MqttError> {
    let text = std::fs::read_to_string(path).map_err(|source| MqttError::PasswordFile {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(text.lines().next().unwrap_or("").to_string())
}

fn tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, MqttError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    let source: PathBuf = match ca_file {
        Some(path) => {
            let bad = |message: String| MqttError::CaFile {
                path: path.to_path_buf(),
                message,
            };
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))?;
            for c in certs {
                let c = c.map_err(|e| bad(e.to_string()))?;
                roots.add(c).map_err(|e| bad(e.to_string()))?;
            }
            path.to_path_buf()
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                // Skip the odd unparsable system certificate rather than fail.
                let _ = roots.add(c);
            }
            PathBuf::from("(system roots)")
        }
    };
    if roots.is_empty() {
        return Err(MqttError::CaFile {
            path: source,
            message: "no CA certificate found".into(),
        });
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| MqttError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn worker_loop(
    mut state: SinkState,
    client: Client,
    qos: QoS,
    lines: Receiver<Arc<Outgoing>>,
    ctl: Receiver<Control>,
    closing: Arc<AtomicBool>,
) {
    let stats = state.stats.clone();
    let ha_status = state.topics().ha_status();
    let mut out = Vec::with_capacity(64);
    let mut ctl = ctl;
    let mut warned_at: Option<Instant> = None;
    loop {
        select! {
            recv(lines) -> m => match m {
                Ok(line) => state.on_line(&line, &mut out),
                Err(_) => break,
            },
            recv(ctl) -> c => match c {
                Ok(Control::Connected) => {
                    if client.try_subscribe(ha_status.clone(), QoS::AtLeastOnce).is_err() {
                        tracing::warn!(topic = %ha_status, "mqtt: cannot subscribe");
                    }
                    state.on_connected(&mut out);
                }
                Ok(Control::Disconnected) => state.on_disconnected(),
                Ok(Control::HaOnline) => state.on_ha_online(&mut out),
                // The connection thread ended; keep draining lines.
                Err(_) => ctl = never(),
            },
        }
        publish(&client, qos, &mut out, &stats, &mut warned_at);
    }
    // A short run (a file) may end before the first connection: give the broker a
    // moment to take the buffered events and the announcement.
    let deadline = Instant::now() + CLOSE_CONNECT_WAIT;
    while !state.connected() && !state.announced {
        match ctl.recv_deadline(deadline) {
            Ok(Control::Connected) => {
                state.on_connected(&mut out);
                publish(&client, qos, &mut out, &stats, &mut warned_at);
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    closing.store(true, Ordering::Relaxed);
    state.on_close(&mut out);
    publish(&client, qos, &mut out, &stats, &mut warned_at);
    if state.connected() {
        let _ = client.try_disconnect();
    }
    if state.pending_events() > 0 {
        tracing::warn!(
            events = state.pending_events(),
            "mqtt: stopping while disconnected; buffered events are lost"
        );
    }
}

fn publish(
    client: &Client,
    qos: QoS,
    out: &mut Vec<Publication>,
    stats: &MqttStats,
    warned_at: &mut Option<Instant>,
) {
    for p in out.drain(..) {
        match client.try_publish(p.topic, qos, p.retain, p.payload) {
            Ok(()) => {
                stats.published.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                let n = stats.publish_failed.fetch_add(1, Ordering::Relaxed) + 1;
                let now = Instant::now();
                if warned_at.is_none_or(|w| now.duration_since(w) >= Duration::from_secs(10)) {
                    *warned_at = Some(now);
                    tracing::warn!(error = %e, publish_failed_total = n, "mqtt: client queue full; message dropped");
                }
            }
        }
    }
}

fn connection_loop(
    mut conn: Connection,
    ctl: Sender<Control>,
    closing: Arc<AtomicBool>,
    reconnect_max: Duration,
    ha_status: String,
    stats: Arc<MqttStats>,
) {
    const FIRST_BACKOFF: Duration = Duration::from_millis(500);
    let mut backoff = FIRST_BACKOFF;
    let mut connected = false;
    let mut failures: u64 = 0;
    loop {
        let event = match conn.recv() {
            Ok(e) => e,
            // Every client handle is gone.
            Err(_) => break,
        };
        match event {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                connected = true;
                backoff = FIRST_BACKOFF;
                failures = 0;
                stats.connections.fetch_add(1, Ordering::Relaxed);
                tracing::info!("mqtt: connected");
                let _ = ctl.send(Control::Connected);
            }
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                // The retained birth message arrives on every subscribe; only a fresh
                // one means Home Assistant (re)started.
                if p.topic == ha_status && !p.retain && p.payload.as_ref() == ONLINE.as_bytes() {
                    tracing::info!("mqtt: Home Assistant is online; announcing again");
                    let _ = ctl.send(Control::HaOnline);
                }
            }
            Ok(rumqttc::Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {
                // Closing at once could reset the connection with the broker's acks
                // unread, and a reset makes the broker drop what it has not read yet
                // (and send the last will). Wait for the broker to close instead.
                let t0 = Instant::now();
                while let Some(left) = CLOSE_WAIT.checked_sub(t0.elapsed()) {
                    match conn.recv_timeout(left) {
                        Ok(Ok(_)) => {}
                        Ok(Err(_)) | Err(_) => break,
                    }
                }
                connected = false;
                break;
            }
            Ok(_) => {}
            Err(e) => {
                if closing.load(Ordering::Relaxed) {
                    break;
                }
                if connected {
                    connected = false;
                    let _ = ctl.send(Control::Disconnected);
                    tracing::warn!(error = %e, "mqtt: connection lost; reconnecting");
                } else {
                    failures += 1;
                    // Log the first failures, then every tenth.
                    if failures <= 3 || failures % 10 == 0 {
                        tracing::warn!(
                            error = %e,
                            failures,
                            retry_in_ms = backoff.as_millis() as u64,
                            "mqtt: cannot connect"
                        );
                    }
                }
                let t0 = Instant::now();
                while t0.elapsed() < backoff && !closing.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                if closing.load(Ordering::Relaxed) {
                    break;
                }
                backoff = (backoff * 2).min(reconnect_max.max(FIRST_BACKOFF));
            }
        }
    }
    if connected {
        let _ = ctl.send(Control::Disconnected);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::event::Event;
    use crate::events::protocol::Message;
    use std::time::UNIX_EPOCH;

    fn state(buffer: usize) -> SinkState {
        SinkState::new(
            Topics {
                prefix: "hark/n".into(),
                discovery_prefix: "homeassistant".into(),
                node_id: "n".into(),
            },
            Device {
                node_id: "n".into(),
                name: "hark n".into(),
                model: "m".into(),
                sw_version: "0.1.0".into(),
            },
            true,
            &[
                ("speech".into(), true),
                ("door".into(), true),
                ("cat".into(), false),
            ],
            buffer,
            Arc::new(MqttStats::default()),
        )
        .unwrap()
    }

    fn start(label: &str, seq: u32) -> Arc<Outgoing> {
        Message::Event {
            event: Event::Start {
                id: format!("s-{seq}"),
                label: label.into(),
                class: 0,
                t: f64::from(seq),
                score: 0.75,
            },
            wall: UNIX_EPOCH,
        }
        .to_outgoing(&[])
    }

    fn stop(label: &str, seq: u32) -> Arc<Outgoing> {
        Message::Event {
            event: Event::Stop {
                id: format!("s-{seq}"),
                label: label.into(),
                class: 0,
                t_start: f64::from(seq),
                t_end: f64::from(seq) + 0.5,
                peak: 0.875,
                mean: 0.5,
            },
            wall: UNIX_EPOCH,
        }
        .to_outgoing(&[])
    }

    fn topics_of(p: &[Publication]) -> Vec<&str> {
        p.iter().map(|p| p.topic.as_str()).collect()
    }

    #[test]
    fn connecting_announces_everything_in_order() {
        let mut s = state(10);
        let mut out = Vec::new();
        s.on_connected(&mut out);
        assert_eq!(
            topics_of(&out),
            [
                "hark/n/availability",
                "homeassistant/binary_sensor/n/speech/config",
                "homeassistant/binary_sensor/n/door/config",
                "homeassistant/binary_sensor/n/any_sound/config",
                "homeassistant/event/n/sound_event/config",
                "homeassistant/binary_sensor/n/cat/config",
                "hark/n/speech/state",
                "hark/n/door/state",
                "hark/n/any_sound/state",
            ]
        );
        assert!(out.iter().all(|p| p.retain));
        assert_eq!(out[0].payload, "online");
        assert_eq!(out[5].payload, "", "disabled label's config is removed");
        assert_eq!(out[6].payload, "OFF");
        let ev: serde_json::Value = serde_json::from_str(&out[4].payload).unwrap();
        assert_eq!(ev["event_types"], json!(["speech", "door"]));
    }

    #[test]
    fn events_set_states_attributes_and_any_sound() {
        let mut s = state(10);
        let mut out = Vec::new();
        s.on_connected(&mut out);
        out.clear();
        let st = start("door", 1);
        s.on_line(&st, &mut out);
        assert_eq!(
            topics_of(&out),
            [
                "hark/n/door/state",
                "hark/n/door/attributes",
                "hark/n/any_sound/state",
                "hark/n/events",
                "hark/n/detected",
            ]
        );
        assert_eq!(out[0].payload, "ON");
        let a: serde_json::Value = serde_json::from_str(&out[1].payload).unwrap();
        assert_eq!(a["id"], "s-1");
        assert!((a["score"].as_f64().unwrap() - 0.75).abs() < 1e-9);
        assert!((a["t_start"].as_f64().unwrap() - 1.0).abs() < 1e-9);
        assert_eq!(out[2].payload, "ON");
        assert_eq!(out[3].payload, st.line);
        assert!(!out[3].retain && !out[4].retain);
        let d: serde_json::Value = serde_json::from_str(&out[4].payload).unwrap();
        assert_eq!(d["event_type"], "door");
        out.clear();
        // A second label starting does not touch any_sound.
        s.on_line(&start("speech", 2), &mut out);
        assert!(!topics_of(&out).contains(&"hark/n/any_sound/state"));
        out.clear();
        s.on_line(&stop("door", 1), &mut out);
        assert_eq!(
            topics_of(&out),
            [
                "hark/n/door/state",
                "hark/n/door/attributes",
                "hark/n/events"
            ]
        );
        let a: serde_json::Value = serde_json::from_str(&out[1].payload).unwrap();
        assert!((a["peak"].as_f64().unwrap() - 0.875).abs() < 1e-9);
        assert!((a["score"].as_f64().unwrap() - 0.75).abs() < 1e-9);
        assert!((a["t_end"].as_f64().unwrap() - 1.5).abs() < 1e-9);
        out.clear();
        s.on_line(&stop("speech", 2), &mut out);
        assert_eq!(out[2].topic, "hark/n/any_sound/state");
        assert_eq!(out[2].payload, "OFF");
    }

    #[test]
    fn disconnected_buffer_is_bounded_and_counts_drops() {
        let mut s = state(3);
        let mut out = Vec::new();
        // Five events while never connected: the three newest are kept.
        for i in 0..5 {
            s.on_line(&stop("speech", i), &mut out);
        }
        assert!(out.is_empty());
        assert_eq!(s.pending_events(), 3);
        assert_eq!(s.stats.dropped_events.load(Ordering::Relaxed), 2);
        s.on_connected(&mut out);
        let events: Vec<&str> = out
            .iter()
            .filter(|p| p.topic == "hark/n/events")
            .map(|p| p.payload.as_str())
            .collect();
        assert_eq!(events.len(), 3);
        for (e, i) in events.iter().zip(2..5) {
            assert!(e.contains(&format!("\"id\":\"s-{i}\"")), "{e}");
        }
        // The announcement carries the state learnt while disconnected.
        let attrs = out
            .iter()
            .find(|p| p.topic == "hark/n/speech/attributes")
            .unwrap();
        assert!(attrs.payload.contains("\"s-4\""), "{}", attrs.payload);
        assert_eq!(s.pending_events(), 0);
    }

    #[test]
    fn home_assistant_birth_republishes_only_when_connected() {
        let mut s = state(3);
        let mut out = Vec::new();
        s.on_ha_online(&mut out);
        assert!(out.is_empty());
        s.on_connected(&mut out);
        let n = out.len();
        out.clear();
        s.on_ha_online(&mut out);
        assert_eq!(out.len(), n - 1, "everything but availability");
        out.clear();
        s.on_disconnected();
        s.on_close(&mut out);
        assert!(out.is_empty());
        s.on_connected(&mut out);
        out.clear();
        s.on_close(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].topic.as_str(), out[0].payload.as_str()),
            ("hark/n/availability", "offline")
        );
    }

    #[test]
    fn without_enabled_labels_the_event_entity_is_removed() {
        let mut s = SinkState::new(
            state(1).topics.clone(),
            state(1).device.clone(),
            true,
            &[("cat".into(), false)],
            1,
            Arc::new(MqttStats::default()),
        )
        .unwrap();
        let mut out = Vec::new();
        s.on_connected(&mut out);
        let ev = out
            .iter()
            .find(|p| p.topic == "homeassistant/event/n/sound_event/config")
            .unwrap();
        assert_eq!(ev.payload, "");
    }

    #[test]
    fn discovery_off_publishes_states_only() {
        let mut s = state(3);
        s.discovery = false;
        let mut out = Vec::new();
        s.on_connected(&mut out);
        assert!(out.iter().all(|p| p.topic.starts_with("hark/n/")));
    }

    #[test]
    fn bad_labels_are_refused() {
        let mk = |labels: &[(String, bool)]| {
            SinkState::new(
                state(1).topics.clone(),
                state(1).device.clone(),
                true,
                labels,
                1,
                Arc::new(MqttStats::default()),
            )
        };
        let e = mk(&[("a/b".into(), true)]).unwrap_err().to_string();
        assert!(e.contains("a/b"), "{e}");
        // Disabled labels are only removed, by their sanitised id.
        assert!(mk(&[("a/b".into(), false)]).is_ok());
        let e = mk(&[("dog bark".into(), true), ("dog_bark".into(), true)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("dog_bark"), "{e}");
    }
}
