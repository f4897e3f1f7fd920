//! The live daemon (`hark run`): one thread per stage, bounded queues, the stall
//! watchdog, reloads and systemd notifications.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

use crate::audio::{
    self, AudioError, InputSpec, OpenOptions, ReadOutcome, SourceCounters, SourceReader,
};
use crate::detect::event::Event;
use crate::detect::postprocess::PostprocessConfig;
use crate::detect::streaming::StreamingConfig;
use crate::events::http::{HttpOptions, Metrics};
use crate::events::hub::{Hub, Sink};
use crate::events::protocol::{Hello, Message, Status, StreamState, PROTOCOL_VERSION};
use crate::events::socket::{SocketOptions, SocketStats};
use crate::events::HubHandle;
use crate::features::FeatureConfig;
use crate::model::{Model, ModelError};
use crate::service::ServiceNotifier;

use super::sinks::{SinkFactory, SinkKind, SocketSlot};
use super::*;

/// Options of a live run (`hark run`).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where audio comes from.
    pub input: InputSpec,
    /// Pace file input in real time.
    pub realtime: bool,
    /// Capture ring capacity, seconds.
    pub ring_seconds: f32,
    /// Stop after this many seconds of audio.
    pub duration_s: Option<f64>,
    /// Unix socket to serve, with its limits.
    pub socket: Option<(PathBuf, SocketOptions)>,
    /// Print lines to stdout.
    pub stdout: bool,
    /// Publish to MQTT / Home Assistant.
    pub mqtt: Option<crate::events::mqtt::MqttConfig>,
    /// Serve the live web page, Server-Sent Events and `/metrics`.
    pub http: Option<HttpOptions>,
    /// Seconds of frames queued between frontend and model thread.
    pub queue_seconds: f32,
    /// Interval of `status` messages and log lines.
    pub status_interval: Duration,
    /// Streaming geometry instead of the model file's (hop: a longer hop costs less
    /// CPU and adds latency; look-ahead: see [`StreamingConfig::lookahead_frames`]).
    pub streaming: Option<StreamingConfig>,
    /// Threads of the model thread's compute pool (≥ 1).
    pub model_threads: usize,
    /// Skip inference on windows quieter than this, dBFS.
    pub energy_gate_dbfs: Option<f32>,
    /// Add the `loud` pseudo-label, active at or above this level, dBFS.
    pub loud_dbfs: Option<f32>,
    /// A live source that delivers no samples for this long is stalled: open events
    /// are stopped, the status says `reconnecting`, and the source is reopened with
    /// exponential backoff.
    pub stall_timeout: Duration,
    /// Test hook (zero in production): extra time the model thread spends on every
    /// window, to simulate a model slower than real time. `hark run` takes it from
    /// the environment variable `HARK_TEST_INFERENCE_DELAY_MS`.
    pub inference_delay: Duration,
}

/// Reloads the post-processing settings on request (SIGHUP): `requested` is set by
/// the signal handler; `load` re-reads and validates the config and returns the
/// model's post-processing with the new overrides, or why the new config is rejected.
pub struct Reloader {
    /// Set to request a reload.
    pub requested: Arc<AtomicBool>,
    /// Loads and validates the new settings.
    pub load: Box<dyn Fn() -> Result<Reloaded, String> + Send>,
}

/// A validated new config, as [`Reloader::load`] returns it.
#[derive(Debug, Clone)]
pub struct Reloaded {
    /// The model's post-processing with the new per-class overrides.
    pub postprocess: PostprocessConfig,
    /// The new sinks; only those that differ from the running ones restart.
    pub sinks: SinkSpec,
}

/// What a finished live run did.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// Seconds of audio analysed.
    pub audio_s: f64,
    /// Events emitted (starts).
    pub events: u64,
    /// Samples lost to ring overflow.
    pub dropped_samples: u64,
    /// Frames shed because the model thread was behind.
    pub dropped_frames: u64,
    /// Model windows run.
    pub windows: u64,
}

/// Web page outputs of the model thread: counters, and log-mel columns.
struct LiveOutputs {
    /// Counters for `/metrics`.
    metrics: Arc<Metrics>,
    /// The socket sink's counters (connected clients), when serving a socket; a
    /// reload may replace the sink.
    socket: SocketSlot,
    /// Frames averaged into one spectrogram column for the page; 0: no columns.
    mel_every: usize,
    /// Mel bands per frame.
    n_mels: usize,
}

/// Columns per second of the page's spectrogram.
const MEL_COLUMNS_PER_S: f64 = 10.0;

enum FrontMsg {
    /// Frames starting at `first`, row-major; `wall` is the wall time of frame `first`
    /// for live/paced sources.
    Frames {
        first: u64,
        data: Vec<f32>,
        /// One level (dBFS) per frame.
        levels: Vec<f32>,
        wall: Option<SystemTime>,
    },
    /// The source ended (or the run was stopped); `error` when it failed.
    End { error: Option<AudioError> },
    /// A live source stalled: stop open events, report `reconnecting`.
    Stalled,
    /// The stalled source was reopened: report `running` again.
    Resumed,
}

/// Runs the daemon until the source ends, `stop` is set, or `duration_s` is reached.
/// Every emitted `start` gets its `stop` before this returns.
pub fn run(
    model: Model,
    pp: &PostprocessConfig,
    opts: RunOptions,
    stop: Arc<AtomicBool>,
    reload: Option<Reloader>,
) -> Result<RunSummary, PipelineError> {
    let open_opts = OpenOptions {
        realtime: opts.realtime,
        ring_seconds: opts.ring_seconds,
        ..OpenOptions::default()
    };
    let source = audio::open(&opts.input, &open_opts)?;
    let spec = opts.input.clone();
    let reopen: Reopen = Box::new(move || audio::open(&spec, &open_opts));
    run_with_source(model, pp, opts, source, reopen, stop, reload)
}

/// Reopens a live source after it stalled (by device name, so a re-plugged
/// device is found again).
pub type Reopen = Box<dyn FnMut() -> Result<Box<dyn SourceReader>, AudioError> + Send>;

/// As [`run`], over an already opened `source`; `reopen` is called (with backoff)
/// when a live source delivers nothing for `opts.stall_timeout`.
pub fn run_with_source(
    model: Model,
    pp: &PostprocessConfig,
    opts: RunOptions,
    source: Box<dyn SourceReader>,
    reopen: Reopen,
    stop: Arc<AtomicBool>,
    reload: Option<Reloader>,
) -> Result<RunSummary, PipelineError> {
    let meta = model.meta().clone();
    let describe = source.describe();
    let live = source.is_live();
    let paced = live || opts.realtime;
    // Counters of every source this run opens (reopening after a stall adds up).
    let counters = SourceCounters::new();
    let stream_id = stream_id();
    let streaming = opts.streaming.unwrap_or(meta.streaming);
    streaming.validate().map_err(ModelError::Input)?;
    let mut stage = DetectStage::with_options(
        model,
        pp,
        stream_id,
        &StageOptions {
            streaming: Some(streaming),
            energy_gate_dbfs: opts.energy_gate_dbfs,
            loud_dbfs: opts.loud_dbfs,
        },
    )?;
    let labels = stage.labels().to_vec();
    let metrics = Arc::new(Metrics::new(labels.clone()));
    {
        let m = metrics.clone();
        let delay = opts.inference_delay;
        stage.set_inference_observer(Box::new(move |d| {
            m.inference.observe(d);
            if !delay.is_zero() {
                std::thread::sleep(delay);
            }
        }));
    }
    let fe = FeatureStage::new(source.sample_rate(), &meta.features)?;

    // Sinks and hub.
    let hello = Hello {
        version: PROTOCOL_VERSION,
        model: meta.name.clone(),
        classes: labels.clone(),
        source: describe.clone(),
    };
    // Spectrogram columns and page scores: about MEL_COLUMNS_PER_S per second.
    let page_every = ((meta.features.frame_rate() / MEL_COLUMNS_PER_S).round() as usize).max(1);
    let socket_slot: SocketSlot = Arc::new(std::sync::Mutex::new(None));
    let factory = Arc::new(SinkFactory {
        hello: hello.to_outgoing(),
        labels: labels.clone(),
        model_name: meta.name.clone(),
        metrics: metrics.clone(),
        page_every,
        socket_slot: socket_slot.clone(),
    });
    let mut spec = SinkSpec {
        socket: opts.socket.clone(),
        stdout: opts.stdout,
        mqtt: opts.mqtt.clone(),
        http: opts.http,
    };
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    for kind in SinkKind::ALL {
        if let Some(sink) = factory.make(kind, &spec, pp)? {
            sinks.push(sink);
        }
    }
    let publish_scores = Arc::new(AtomicBool::new(spec.wants_scores()));
    let (hub, hub_tx) = Hub::start(labels.clone(), sinks, 4096)?;
    hub_tx.send(Message::Status(Status {
        state: StreamState::Running,
        t: 0.0,
        dropped_samples: 0,
        nonfinite_samples: 0,
        dropped_frames: 0,
        windows: 0,
        windows_gated: 0,
        open_events: 0,
    }));
    tracing::info!(source = %describe, model = %meta.name, classes = meta.classes.len(), "listening");

    let fps = meta.features.frame_rate();
    let live_out = LiveOutputs {
        metrics,
        socket: socket_slot,
        mel_every: if opts.http.is_some() { page_every } else { 0 },
        n_mels: meta.features.n_mels,
    };
    let queue_chunks = ((f64::from(opts.queue_seconds) * fps / 4.0).ceil() as usize).max(4);
    let (tx, rx) = bounded::<FrontMsg>(queue_chunks);
    let dropped_frames = Arc::new(AtomicU64::new(0));
    let max_samples = opts
        .duration_s
        .map(|d| (d * f64::from(source.sample_rate())).round() as u64);

    let reconnects = Arc::new(AtomicU64::new(0));
    let frontend = {
        let (tx, stop, dropped_frames) = (tx.clone(), stop.clone(), dropped_frames.clone());
        let period = meta.features.frame_period_s();
        let watch = StallWatch {
            timeout: opts.stall_timeout,
            reopen,
            features: meta.features.clone(),
            totals: counters.clone(),
            reconnects: reconnects.clone(),
        };
        std::thread::Builder::new()
            .name("hark-frontend".into())
            .spawn(move || {
                frontend_loop(
                    source,
                    fe,
                    watch,
                    tx,
                    stop,
                    dropped_frames,
                    max_samples,
                    paced,
                    period,
                )
            })
            .map_err(|_| PipelineError::Thread("hark-frontend".into()))?
    };

    let (done_tx, done_rx) = bounded::<Result<RunSummary, PipelineError>>(1);
    let (ctrl_tx, ctrl_rx) = bounded::<PostprocessConfig>(1);
    let progress = Arc::new(AtomicU64::new(0));
    let model_thread = {
        let publish_scores2 = publish_scores.clone();
        let progress = progress.clone();
        let hub_tx = hub_tx.clone();
        let counters = counters.clone();
        let dropped_frames = dropped_frames.clone();
        let status_interval = opts.status_interval;
        // The model computes on its own pool of `model_threads` threads (its kernels
        // and GEMMs parallelise over the current rayon pool), so it never takes more
        // cores than configured, whatever the machine has.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(opts.model_threads.max(1))
            .thread_name(|i| format!("hark-model-{i}"))
            .build()
            .map_err(|_| PipelineError::Thread("hark-model pool".into()))?;
        std::thread::Builder::new()
            .name("hark-model".into())
            .spawn(move || {
                let r = pool.install(|| {
                    model_loop(
                        stage,
                        rx,
                        ctrl_rx,
                        &progress,
                        &hub_tx,
                        &counters,
                        &dropped_frames,
                        fps,
                        &publish_scores2,
                        status_interval,
                        &live_out,
                    )
                });
                hub_tx.shutdown();
                let _ = done_tx.send(r);
            })
            .map_err(|_| PipelineError::Thread("hark-model".into()))?
    };

    // Wait for the end of the stream or a stop request; keep systemd informed.
    let mut service = ServiceNotifier::from_env();
    let result = loop {
        if let Some(r) = &reload {
            if r.requested.swap(false, Ordering::Relaxed) {
                match (r.load)() {
                    Ok(new) => {
                        for kind in SinkKind::ALL {
                            if kind.changed(&spec, &new.sinks) {
                                tracing::info!(
                                    sink = kind.name(),
                                    "restarting sink with new settings"
                                );
                                let (f, s2, pp2) =
                                    (factory.clone(), new.sinks.clone(), new.postprocess.clone());
                                hub_tx.replace_sink(
                                    kind.name(),
                                    Box::new(move || {
                                        f.make(kind, &s2, &pp2).map_err(|e| e.to_string())
                                    }),
                                );
                            }
                        }
                        publish_scores.store(new.sinks.wants_scores(), Ordering::Relaxed);
                        spec = new.sinks;
                        if ctrl_tx
                            .send_timeout(new.postprocess, Duration::from_secs(1))
                            .is_err()
                        {
                            tracing::warn!("config reload dropped: the model thread is busy");
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "config reload rejected; keeping the old settings")
                    }
                }
            }
        }
        let alive = progress.load(Ordering::Relaxed) + reconnects.load(Ordering::Relaxed);
        service.tick(alive, || {
            format!(
                "analysed {:.0} s of audio from {describe}",
                progress.load(Ordering::Relaxed) as f64 / fps
            )
        });
        match done_rx.recv_timeout(Duration::from_millis(100)) {
            Ok(r) => break r,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                break Err(PipelineError::Thread("hark-model".into()))
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
        }
        if stop.load(Ordering::Relaxed) {
            // The frontend sees the flag within one read; if it is stuck in a blocking
            // read (a silent pipe), end the stream for it so shutdown never hangs.
            let t0 = Instant::now();
            while !frontend.is_finished() && t0.elapsed() < Duration::from_millis(500) {
                std::thread::sleep(Duration::from_millis(10));
            }
            if !frontend.is_finished() {
                tracing::warn!("source did not stop in time; ending the stream without it");
                let _ = tx.send_timeout(FrontMsg::End { error: None }, Duration::from_secs(1));
            }
            break done_rx
                .recv_timeout(Duration::from_secs(5))
                .unwrap_or_else(|_| Err(PipelineError::Thread("hark-model".into())));
        }
    };
    service.stopping();
    drop(hub_tx);
    drop(tx);
    let _ = model_thread.join();
    hub.join();
    if frontend.is_finished() {
        let _ = frontend.join();
    }
    result
}

/// A short id for this stream, unique across restarts: seconds since the epoch in
/// base 36 plus the process id.
fn stream_id() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut n = secs ^ (u64::from(std::process::id()) << 32);
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut s = Vec::new();
    while n > 0 {
        s.push(digits[(n % 36) as usize]);
        n /= 36;
    }
    s.reverse();
    String::from_utf8(s).unwrap_or_default()
}

/// What the frontend thread needs to recover a stalled live source.
struct StallWatch {
    /// No samples for this long on a live source = stalled.
    timeout: Duration,
    /// Opens the source again.
    reopen: Reopen,
    /// Feature settings, to rebuild the frontend for the new stream.
    features: FeatureConfig,
    /// Counters summed over every source of the run.
    totals: Arc<SourceCounters>,
    /// Reopen attempts (liveness for the systemd watchdog while reconnecting).
    reconnects: Arc<AtomicU64>,
}

/// Adds `src`'s counters (minus what was already added, `seen`) to `totals`.
fn sync_counters(totals: &SourceCounters, src: &SourceCounters, seen: &mut [u64; 3]) {
    let now = [
        SourceCounters::get(&src.samples_in),
        SourceCounters::get(&src.samples_dropped),
        SourceCounters::get(&src.samples_nonfinite),
    ];
    let dst = [
        &totals.samples_in,
        &totals.samples_dropped,
        &totals.samples_nonfinite,
    ];
    for i in 0..3 {
        let d = now[i].saturating_sub(seen[i]);
        if d > 0 {
            dst[i].fetch_add(d, Ordering::Relaxed);
            seen[i] = now[i];
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn frontend_loop(
    mut source: Box<dyn SourceReader>,
    mut fe: FeatureStage,
    mut watch: StallWatch,
    tx: Sender<FrontMsg>,
    stop: Arc<AtomicBool>,
    dropped_frames: Arc<AtomicU64>,
    max_samples: Option<u64>,
    paced: bool,
    frame_period_s: f64,
) {
    let live = source.is_live();
    let mut buf = vec![0.0f32; 4096];
    let mut next_frame: u64 = 0;
    let mut samples_read: u64 = 0;
    let mut anchor: Option<SystemTime> = None;
    let mut counters = source.counters();
    let mut seen = [0u64; 3];
    let mut last_samples = Instant::now();
    let send = |data: Vec<f32>,
                levels: Vec<f32>,
                next_frame: &mut u64,
                anchor: Option<SystemTime>,
                n_mels: usize|
     -> bool {
        if data.is_empty() {
            return true;
        }
        let n = (data.len() / n_mels) as u64;
        let first = *next_frame;
        *next_frame += n;
        let wall = anchor.map(|a| a + Duration::from_secs_f64(first as f64 * frame_period_s));
        let msg = FrontMsg::Frames {
            first,
            data,
            levels,
            wall,
        };
        if live {
            match tx.try_send(msg) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    dropped_frames.fetch_add(n, Ordering::Relaxed);
                    true
                }
                Err(TrySendError::Disconnected(_)) => false,
            }
        } else {
            tx.send(msg).is_ok()
        }
    };
    let n_mels = fe.frontend.n_mels();
    let error = loop {
        sync_counters(&watch.totals, &counters, &mut seen);
        if stop.load(Ordering::Relaxed) {
            break None;
        }
        if max_samples.is_some_and(|m| samples_read >= m) {
            break None;
        }
        let want = match max_samples {
            Some(m) => ((m - samples_read) as usize).min(buf.len()),
            None => buf.len(),
        };
        match source.read(&mut buf[..want]) {
            Ok(ReadOutcome::Samples(n)) => {
                last_samples = Instant::now();
                if anchor.is_none() && paced {
                    anchor = Some(
                        SystemTime::now()
                            - Duration::from_secs_f64(next_frame as f64 * frame_period_s),
                    );
                }
                samples_read += n as u64;
                let mut frames = Vec::with_capacity(n_mels * 16);
                let mut levels = Vec::with_capacity(16);
                if let Err(e) = fe.push_with_levels(&buf[..n], &mut frames, &mut levels) {
                    tracing::error!(error = %e, "feature extraction failed");
                    break None;
                }
                if !send(frames, levels, &mut next_frame, anchor, n_mels) {
                    return;
                }
            }
            Ok(ReadOutcome::Idle) => {
                if live && last_samples.elapsed() >= watch.timeout {
                    // Stalled: analyse what we have, stop open events, reopen.
                    tracing::warn!(
                        source = %source.describe(),
                        silent_ms = last_samples.elapsed().as_millis() as u64,
                        "no audio from the source; reopening it"
                    );
                    let (mut frames, mut levels) = (Vec::new(), Vec::new());
                    if fe.finish_with_levels(&mut frames, &mut levels).is_ok() {
                        let _ = send(frames, levels, &mut next_frame, anchor, n_mels);
                    }
                    let _ = tx.send(FrontMsg::Stalled);
                    // Dropping a stuck stream can hang: never on this thread.
                    let old = std::mem::replace(&mut source, Box::new(Ended));
                    let _ = std::thread::Builder::new()
                        .name("hark-drop-source".into())
                        .spawn(move || drop(old));
                    match reconnect(&mut watch, &stop) {
                        Some(s) => {
                            source = s;
                            counters = source.counters();
                            seen = [0; 3];
                            match FeatureStage::new(source.sample_rate(), &watch.features) {
                                Ok(f) => fe = f,
                                Err(e) => {
                                    tracing::error!(error = %e, "cannot rebuild the frontend");
                                    break None;
                                }
                            }
                            anchor = None;
                            last_samples = Instant::now();
                            let _ = tx.send(FrontMsg::Resumed);
                        }
                        None => break None,
                    }
                }
            }
            Ok(ReadOutcome::End) => break None,
            Err(e) if live => {
                // A lost device: treat like a stall (reopen by name).
                tracing::warn!(error = %e, "audio source failed; reopening it");
                last_samples = Instant::now() - watch.timeout;
            }
            Err(e) => break Some(e),
        }
    };
    let (mut frames, mut levels) = (Vec::new(), Vec::new());
    if fe.finish_with_levels(&mut frames, &mut levels).is_ok() {
        let _ = send(frames, levels, &mut next_frame, anchor, n_mels);
    }
    sync_counters(&watch.totals, &counters, &mut seen);
    let _ = tx.send(FrontMsg::End { error });
}

/// A source that has ended; stands in while a stalled one is being replaced.
struct Ended;

impl SourceReader for Ended {
    fn sample_rate(&self) -> u32 {
        16_000
    }
    fn describe(&self) -> String {
        "ended".into()
    }
    fn is_live(&self) -> bool {
        true
    }
    fn counters(&self) -> Arc<SourceCounters> {
        SourceCounters::new()
    }
    fn read(&mut self, _: &mut [f32]) -> Result<ReadOutcome, AudioError> {
        Ok(ReadOutcome::End)
    }
}

/// Reopens the source with exponential backoff (0.5 s doubling to 30 s) until it
/// opens or `stop` is set (then `None`).
fn reconnect(watch: &mut StallWatch, stop: &AtomicBool) -> Option<Box<dyn SourceReader>> {
    let mut backoff = Duration::from_millis(500);
    loop {
        watch.reconnects.fetch_add(1, Ordering::Relaxed);
        match (watch.reopen)() {
            Ok(s) => {
                tracing::info!(source = %s.describe(), "source reopened");
                return Some(s);
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_ms = backoff.as_millis() as u64, "cannot reopen the source")
            }
        }
        let until = Instant::now() + backoff;
        while Instant::now() < until {
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

#[allow(clippy::too_many_arguments)]
fn model_loop(
    mut stage: DetectStage,
    rx: Receiver<FrontMsg>,
    ctrl: Receiver<PostprocessConfig>,
    progress: &AtomicU64,
    hub: &HubHandle,
    counters: &SourceCounters,
    dropped_frames: &AtomicU64,
    fps: f64,
    publish_scores: &AtomicBool,
    status_interval: Duration,
    live: &LiveOutputs,
) -> Result<RunSummary, PipelineError> {
    let mut summary = RunSummary::default();
    let metrics = &*live.metrics;
    // Spectrogram column being averaged: sums per band, frames in it, first frame.
    let mut mel_sum = vec![0.0f32; live.n_mels];
    let mut mel_n = 0usize;
    let mut mel_first = 0u64;
    let mut last_wall: Option<(u64, SystemTime)> = None;
    let mut last_status = Instant::now();
    let mut last_drops = (0u64, 0u64);
    let mut warned_at: Option<Instant> = None;
    let mut reconnecting = false;
    let wall_of = |frame_t: f64, last_wall: &Option<(u64, SystemTime)>| -> SystemTime {
        match last_wall {
            Some((f, w)) => {
                let dt = frame_t - *f as f64 / fps;
                if dt >= 0.0 {
                    *w + Duration::from_secs_f64(dt)
                } else {
                    *w - Duration::from_secs_f64(-dt)
                }
            }
            None => SystemTime::now(),
        }
    };
    let failure = loop {
        let msg = crossbeam_channel::select! {
            recv(rx) -> m => m.unwrap_or(FrontMsg::End { error: None }),
            recv(ctrl) -> pp => {
                if let Ok(pp) = pp {
                    let r = stage.set_postprocess(&pp, &mut |o| {
                        if let StageOutput::Event(e) = o {
                            let t = match &e {
                                Event::Start { t, .. } => *t,
                                Event::Stop { t_end, .. } => *t_end,
                            };
                            hub.send(Message::Event { wall: wall_of(t, &last_wall), event: e });
                        }
                    });
                    match r {
                        Ok(()) => tracing::info!("config reloaded: new post-processing in effect"),
                        Err(e) => tracing::error!(error = %e, "config reload rejected; keeping the old settings"),
                    }
                }
                continue;
            }
        };
        let (end, error) = match msg {
            FrontMsg::Frames {
                first,
                data,
                levels,
                wall,
            } => {
                if let Some(w) = wall {
                    last_wall = Some((first, w));
                }
                if live.mel_every > 0 && live.n_mels > 0 {
                    for (i, row) in data.chunks_exact(live.n_mels).enumerate() {
                        if mel_n == 0 {
                            mel_first = first + i as u64;
                        }
                        for (s, v) in mel_sum.iter_mut().zip(row) {
                            *s += v;
                        }
                        mel_n += 1;
                        if mel_n == live.mel_every {
                            let k = 1.0 / mel_n as f32;
                            hub.send(Message::Mel {
                                t: mel_first as f64 / fps,
                                mel: mel_sum.iter().map(|s| s * k).collect(),
                            });
                            mel_sum.fill(0.0);
                            mel_n = 0;
                        }
                    }
                }
                let expected = stage.frames_done() + pending_frames(&stage);
                let mut events = 0u64;
                let mut on = |o: StageOutput<'_>| match o {
                    StageOutput::Scores { frame, scores } => {
                        metrics.frames_processed.fetch_add(1, Ordering::Relaxed);
                        if publish_scores.load(Ordering::Relaxed) {
                            hub.send(Message::Scores {
                                t: frame as f64 / fps,
                                scores: scores.to_vec(),
                            });
                        }
                    }
                    StageOutput::Event(e) => {
                        if e.is_start() {
                            events += 1;
                        }
                        publish_event(hub, metrics, e, &last_wall, wall_of);
                    }
                };
                let r = if first > expected {
                    stage.skip_frames(first - expected, &mut on)
                } else {
                    Ok(())
                }
                .and_then(|_| stage.push_with_levels(&data, &levels, &mut on));
                summary.events += events;
                progress.store(
                    stage.frames_done() + pending_frames(&stage),
                    Ordering::Relaxed,
                );
                update_metrics(
                    metrics,
                    live.socket.lock().ok().and_then(|g| g.clone()).as_deref(),
                    &stage,
                    counters,
                    dropped_frames,
                );
                match r {
                    Ok(()) => (false, None),
                    Err(e) => (true, Some(e)),
                }
            }
            FrontMsg::End { error } => (true, error.map(PipelineError::from)),
            FrontMsg::Stalled => {
                let mut events = 0u64;
                let r = stage.finish(&mut |o| {
                    if let StageOutput::Event(e) = o {
                        if e.is_start() {
                            events += 1;
                        }
                        publish_event(hub, metrics, e, &last_wall, wall_of);
                    }
                });
                summary.events += events;
                reconnecting = true;
                metrics.set_state(StreamState::Reconnecting);
                hub.send(Message::Status(status(
                    &stage,
                    counters,
                    dropped_frames,
                    fps,
                    StreamState::Reconnecting,
                )));
                match r {
                    Ok(()) => (false, None),
                    Err(e) => (true, Some(e)),
                }
            }
            FrontMsg::Resumed => {
                reconnecting = false;
                metrics.set_state(StreamState::Running);
                hub.send(Message::Status(status(
                    &stage,
                    counters,
                    dropped_frames,
                    fps,
                    StreamState::Running,
                )));
                (false, None)
            }
        };
        if end {
            let mut events = 0u64;
            let _ = stage.finish(&mut |o| {
                match o {
                    StageOutput::Event(e) => {
                        if e.is_start() {
                            events += 1;
                        }
                        publish_event(hub, metrics, e, &last_wall, wall_of);
                    }
                    StageOutput::Scores { frame, scores } => {
                        metrics.frames_processed.fetch_add(1, Ordering::Relaxed);
                        // The tail's scores, too (subscribers saw none before).
                        if publish_scores.load(Ordering::Relaxed) {
                            hub.send(Message::Scores {
                                t: frame as f64 / fps,
                                scores: scores.to_vec(),
                            });
                        }
                    }
                }
            });
            summary.events += events;
            break error;
        }
        let now = Instant::now();
        if now.duration_since(last_status) >= status_interval {
            last_status = now;
            let drops = (
                SourceCounters::get(&counters.samples_dropped),
                dropped_frames.load(Ordering::Relaxed),
            );
            let degraded = drops != last_drops;
            if degraded
                && warned_at.is_none_or(|w| now.duration_since(w) >= Duration::from_secs(60))
            {
                warned_at = Some(now);
                tracing::warn!(
                    dropped_samples = drops.0,
                    dropped_frames = drops.1,
                    "falling behind real time: audio is being shed"
                );
            }
            last_drops = drops;
            let st = status(
                &stage,
                counters,
                dropped_frames,
                fps,
                if reconnecting {
                    StreamState::Reconnecting
                } else if degraded {
                    StreamState::Degraded
                } else {
                    StreamState::Running
                },
            );
            tracing::info!(
                t_s = st.t,
                windows = st.windows,
                open_events = st.open_events,
                dropped_samples = st.dropped_samples,
                dropped_frames = st.dropped_frames,
                "status"
            );
            metrics.set_state(st.state);
            hub.send(Message::Status(st));
        }
    };
    update_metrics(
        metrics,
        live.socket.lock().ok().and_then(|g| g.clone()).as_deref(),
        &stage,
        counters,
        dropped_frames,
    );
    metrics.set_state(StreamState::Ended);
    let st = status(&stage, counters, dropped_frames, fps, StreamState::Ended);
    summary.audio_s = st.t;
    summary.windows = st.windows;
    summary.dropped_samples = st.dropped_samples;
    summary.dropped_frames = st.dropped_frames;
    hub.send(Message::Status(st));
    match failure {
        Some(e) => Err(e),
        None => Ok(summary),
    }
}

/// Sends an event to the hub with its wall-clock time; counts it and, for paced
/// sources (whose wall clock is known), records its detection latency.
fn publish_event(
    hub: &HubHandle,
    metrics: &Metrics,
    e: Event,
    last_wall: &Option<(u64, SystemTime)>,
    wall_of: impl Fn(f64, &Option<(u64, SystemTime)>) -> SystemTime,
) {
    let t = match &e {
        Event::Start { t, .. } => *t,
        Event::Stop { t_end, .. } => *t_end,
    };
    let wall = wall_of(t, last_wall);
    if let Event::Start { class, .. } = &e {
        metrics.count_event(*class);
    }
    if last_wall.is_some() {
        if let Ok(d) = SystemTime::now().duration_since(wall) {
            metrics.detection_latency.observe(d);
        }
    }
    hub.send(Message::Event { wall, event: e });
}

/// Stores the pipeline's running totals into the metrics (cheap atomic stores).
fn update_metrics(
    metrics: &Metrics,
    socket: Option<&SocketStats>,
    stage: &DetectStage,
    counters: &SourceCounters,
    dropped_frames: &AtomicU64,
) {
    metrics
        .windows
        .store(stage.windows_run(), Ordering::Relaxed);
    metrics.samples_dropped.store(
        SourceCounters::get(&counters.samples_dropped),
        Ordering::Relaxed,
    );
    metrics.samples_nonfinite.store(
        SourceCounters::get(&counters.samples_nonfinite),
        Ordering::Relaxed,
    );
    metrics
        .frames_shed
        .store(dropped_frames.load(Ordering::Relaxed), Ordering::Relaxed);
    if let Some(s) = socket {
        metrics
            .socket_clients
            .store(s.clients.load(Ordering::Relaxed) as u64, Ordering::Relaxed);
    }
}

/// Frames handed to the stage whose scores are not final yet.
fn pending_frames(stage: &DetectStage) -> u64 {
    stage.runner.frames_received() - stage.runner.frames_finalised()
}

fn status(
    stage: &DetectStage,
    counters: &SourceCounters,
    dropped_frames: &AtomicU64,
    fps: f64,
    state: StreamState,
) -> Status {
    Status {
        state,
        t: stage.frames_done() as f64 / fps,
        dropped_samples: SourceCounters::get(&counters.samples_dropped),
        nonfinite_samples: SourceCounters::get(&counters.samples_nonfinite),
        dropped_frames: dropped_frames.load(Ordering::Relaxed),
        windows: stage.windows_run(),
        windows_gated: stage.windows_gated(),
        open_events: stage.open_events(),
    }
}
