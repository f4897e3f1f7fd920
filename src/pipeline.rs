//! Wires the stages together: offline (`hark detect`, one thread, as fast as
//! possible) and live (`hark run`, one thread per stage, paced by the source).
//!
//! Both modes drive the same two stage objects, [`FeatureStage`] (audio → log-mel)
//! and [`DetectStage`] (log-mel → scores → events), so feeding a file in one block
//! or in chunks of any size gives the same frames, scores and events.
//!
//! Live threads and their bounded queues:
//!
//! ```text
//! source (cpal callback → ring, or file/stdin reader)
//!   └─ frontend thread: read → resample → log-mel ─[frames queue, queue_seconds]─▶
//!      model thread: windows → scores → detector ─[hub queue]─▶ hub ─▶ sinks
//! ```
//! For live sources the frontend never waits on the model thread: when the frames
//! queue is full the chunk is dropped and counted (`dropped_frames`), the detector
//! closes open events at the gap and resumes on fresh audio. File and pipe input
//! wait instead (nothing is lost).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

use crate::audio::resample::Resampler;
use crate::audio::{
    self, AudioError, InputSpec, OpenOptions, ReadOutcome, SourceCounters, SourceReader,
};
use crate::detect::event::{DetectedEvent, Event};
use crate::detect::postprocess::{Detector, PostprocessConfig, PostprocessError};
use crate::detect::streaming::StreamingRunner;
use crate::events::http::{HttpOptions, HttpSink, Metrics};
use crate::events::hub::{Hub, Sink};
use crate::events::protocol::{Hello, Message, Status, StreamState, PROTOCOL_VERSION};
use crate::events::socket::{SocketOptions, SocketSink, SocketStats};
use crate::events::stdout::StdoutSink;
use crate::events::{EventsError, HubHandle};
use crate::features::{FeatureConfig, FeatureError, Frontend};
use crate::model::{Model, ModelError};

/// Errors of running the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Audio input failed.
    #[error(transparent)]
    Audio(#[from] AudioError),
    /// Feature settings are invalid.
    #[error(transparent)]
    Features(#[from] FeatureError),
    /// The model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Post-processing settings are invalid.
    #[error(transparent)]
    Postprocess(#[from] PostprocessError),
    /// A sink could not start.
    #[error(transparent)]
    Events(#[from] EventsError),
    /// A pipeline thread could not start or died.
    #[error("pipeline thread `{0}` failed")]
    Thread(String),
}

/// Audio at the source rate → log-mel frames at the model's settings.
pub struct FeatureStage {
    resampler: Resampler,
    frontend: Frontend,
    resampled: Vec<f32>,
}

impl FeatureStage {
    /// A stage for a source at `source_rate` Hz and the model's feature settings.
    pub fn new(source_rate: u32, features: &FeatureConfig) -> Result<Self, PipelineError> {
        Ok(Self {
            resampler: Resampler::new(source_rate, features.sample_rate)?,
            frontend: Frontend::new(features)?,
            resampled: Vec::with_capacity(16_384),
        })
    }

    /// Appends the frames completed by `samples` to `frames`; returns how many.
    pub fn push(&mut self, samples: &[f32], frames: &mut Vec<f32>) -> Result<usize, PipelineError> {
        self.resampled.clear();
        self.resampler.process(samples, &mut self.resampled)?;
        Ok(self.frontend.push(&self.resampled, frames))
    }

    /// End of input: flushes the resampler and the frontend.
    pub fn finish(&mut self, frames: &mut Vec<f32>) -> Result<usize, PipelineError> {
        self.resampled.clear();
        self.resampler.finish(&mut self.resampled)?;
        let n = self.frontend.push(&self.resampled, frames);
        Ok(n + self.frontend.finish(frames))
    }
}

/// What [`DetectStage`] produces.
#[derive(Debug)]
pub enum StageOutput<'a> {
    /// The final scores of frame `frame` (one per class).
    Scores {
        /// Frame index since the stream started.
        frame: u64,
        /// One probability per class.
        scores: &'a [f32],
    },
    /// A start or stop.
    Event(Event),
}

/// Log-mel frames → windowed model scores → per-class events.
pub struct DetectStage {
    runner: StreamingRunner,
    detector: Detector,
    scores: Vec<f32>,
    events: Vec<Event>,
    n_classes: usize,
    /// Index of the next frame whose final scores come out of the runner.
    next_frame: u64,
}

impl DetectStage {
    /// A stage over `model` with post-processing `pp`; event ids start with `stream_id`.
    pub fn new(
        model: Model,
        pp: &PostprocessConfig,
        stream_id: String,
    ) -> Result<Self, PipelineError> {
        let meta = model.meta().clone();
        let params = pp.resolve(&meta.classes)?;
        let n_classes = meta.classes.len();
        Ok(Self {
            runner: StreamingRunner::new(Box::new(model), meta.streaming)?,
            detector: Detector::new(meta.classes, params, meta.features.frame_rate(), stream_id),
            scores: Vec::with_capacity(1024 * n_classes),
            events: Vec::with_capacity(16),
            n_classes,
            next_frame: 0,
        })
    }

    /// Frames whose final scores were produced so far.
    pub fn frames_done(&self) -> u64 {
        self.next_frame
    }

    /// Calls `f` with the duration of every model forward pass (metrics).
    pub fn set_inference_observer(&mut self, f: crate::detect::streaming::InferenceObserver) {
        self.runner.set_inference_observer(f);
    }

    /// Model windows run so far.
    pub fn windows_run(&self) -> u64 {
        self.runner.windows_run()
    }

    /// Events open right now.
    pub fn open_events(&self) -> usize {
        self.detector.open_events()
    }

    /// Feeds frames (row-major); calls `on` for every final frame score and event.
    pub fn push(
        &mut self,
        frames: &[f32],
        on: &mut dyn FnMut(StageOutput<'_>),
    ) -> Result<(), PipelineError> {
        self.scores.clear();
        self.runner.push(frames, &mut self.scores)?;
        self.drain(on);
        Ok(())
    }

    /// End of a continuous stretch of input: scores the tail and closes every event.
    pub fn finish(&mut self, on: &mut dyn FnMut(StageOutput<'_>)) -> Result<(), PipelineError> {
        self.scores.clear();
        self.runner.finish(&mut self.scores)?;
        self.drain(on);
        self.detector.finish(&mut self.events);
        for e in self.events.drain(..) {
            on(StageOutput::Event(e));
        }
        Ok(())
    }

    /// `n` frames were lost: finishes the stretch before the gap, then continues
    /// `n` frames later (audio time keeps counting).
    pub fn skip_frames(
        &mut self,
        n: u64,
        on: &mut dyn FnMut(StageOutput<'_>),
    ) -> Result<(), PipelineError> {
        self.finish(on)?;
        self.detector.skip_frames(n, &mut self.events);
        for e in self.events.drain(..) {
            on(StageOutput::Event(e));
        }
        self.next_frame += n;
        Ok(())
    }

    fn drain(&mut self, on: &mut dyn FnMut(StageOutput<'_>)) {
        let nc = self.n_classes;
        for row in self.scores.chunks_exact(nc) {
            on(StageOutput::Scores {
                frame: self.next_frame,
                scores: row,
            });
            self.detector.push_frame(row, &mut self.events);
            self.next_frame += 1;
            for e in self.events.drain(..) {
                on(StageOutput::Event(e));
            }
        }
    }
}

/// Result of detecting one file offline.
#[derive(Debug, Clone)]
pub struct FileDetection {
    /// Events, ordered by onset.
    pub events: Vec<DetectedEvent>,
    /// Frame scores, row-major `(n_frames, n_classes)`, when asked for.
    pub scores: Vec<f32>,
    /// Number of frames.
    pub n_frames: usize,
    /// Seconds between frames.
    pub frame_period_s: f64,
    /// Non-finite samples replaced by zeros.
    pub nonfinite_samples: u64,
}

/// Offline detection of whole files (`hark detect`), reusing one model.
pub struct OfflineDetector {
    features: FeatureConfig,
    stage: DetectStage,
}

impl OfflineDetector {
    /// A detector over `model` with post-processing `pp`.
    pub fn new(model: Model, pp: &PostprocessConfig) -> Result<Self, PipelineError> {
        let features = model.meta().features.clone();
        Ok(Self {
            stage: DetectStage::new(model, pp, "offline".into())?,
            features,
        })
    }

    /// Runs the file at `path` through the pipeline. With `keep_scores`, the frame
    /// scores are returned too.
    pub fn detect_file(
        &mut self,
        path: &Path,
        keep_scores: bool,
    ) -> Result<FileDetection, PipelineError> {
        let mut source = audio::open(
            &InputSpec::File(path.to_path_buf()),
            &OpenOptions {
                realtime: false,
                ..OpenOptions::default()
            },
        )?;
        let mut fe = FeatureStage::new(source.sample_rate(), &self.features)?;
        let mut buf = vec![0.0f32; 16_384];
        let mut frames = Vec::with_capacity(1 << 16);
        let mut scores = Vec::new();
        let mut events = Vec::new();
        let mut collect = |o: StageOutput<'_>| match o {
            StageOutput::Scores { scores: s, .. } => {
                if keep_scores {
                    scores.extend_from_slice(s);
                }
            }
            StageOutput::Event(Event::Start { .. }) => {}
            StageOutput::Event(Event::Stop {
                label,
                t_start,
                t_end,
                peak,
                mean,
                ..
            }) => {
                events.push(DetectedEvent {
                    onset: t_start,
                    offset: t_end,
                    event_label: label,
                    peak,
                    mean,
                });
            }
        };
        let first_frame = self.stage.frames_done();
        loop {
            match source.read(&mut buf)? {
                ReadOutcome::Samples(n) => {
                    frames.clear();
                    fe.push(&buf[..n], &mut frames)?;
                    self.stage.push(&frames, &mut collect)?;
                }
                ReadOutcome::Idle => {}
                ReadOutcome::End => break,
            }
        }
        frames.clear();
        fe.finish(&mut frames)?;
        self.stage.push(&frames, &mut collect)?;
        self.stage.finish(&mut collect)?;
        let n_frames = (self.stage.frames_done() - first_frame) as usize;
        // The next file starts at frame 0 again.
        self.stage.next_frame = 0;
        self.stage.detector.reset_time();
        events.sort_by(|a, b| {
            a.onset
                .total_cmp(&b.onset)
                .then(a.event_label.cmp(&b.event_label))
        });
        Ok(FileDetection {
            events,
            scores,
            n_frames,
            frame_period_s: self.features.frame_period_s(),
            nonfinite_samples: SourceCounters::get(&source.counters().samples_nonfinite),
        })
    }
}

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
    /// Serve the live web page, Server-Sent Events and `/metrics`.
    pub http: Option<HttpOptions>,
    /// Seconds of frames queued between frontend and model thread.
    pub queue_seconds: f32,
    /// Interval of `status` messages and log lines.
    pub status_interval: Duration,
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
    /// The socket sink's counters (connected clients), when serving a socket.
    socket: Option<Arc<SocketStats>>,
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
        wall: Option<SystemTime>,
    },
    /// The source ended (or the run was stopped); `error` when it failed.
    End { error: Option<AudioError> },
}

/// Runs the daemon until the source ends, `stop` is set, or `duration_s` is reached.
/// Every emitted `start` gets its `stop` before this returns.
pub fn run(
    model: Model,
    pp: &PostprocessConfig,
    opts: RunOptions,
    stop: Arc<AtomicBool>,
) -> Result<RunSummary, PipelineError> {
    let meta = model.meta().clone();
    let source = audio::open(
        &opts.input,
        &OpenOptions {
            realtime: opts.realtime,
            ring_seconds: opts.ring_seconds,
            ..OpenOptions::default()
        },
    )?;
    let describe = source.describe();
    let live = source.is_live();
    let paced = live || opts.realtime;
    let counters = source.counters();
    let stream_id = stream_id();
    let mut stage = DetectStage::new(model, pp, stream_id)?;
    let metrics = Arc::new(Metrics::new(meta.classes.clone()));
    {
        let m = metrics.clone();
        stage.set_inference_observer(Box::new(move |d| m.inference.observe(d)));
    }
    let fe = FeatureStage::new(source.sample_rate(), &meta.features)?;

    // Sinks and hub.
    let hello = Hello {
        version: PROTOCOL_VERSION,
        model: meta.name.clone(),
        classes: meta.classes.clone(),
        source: describe.clone(),
    };
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    let mut socket_stats = None;
    if let Some((path, so)) = &opts.socket {
        let sink = SocketSink::bind(path, hello.to_outgoing(), meta.classes.clone(), *so)?;
        socket_stats = Some(sink.stats());
        sinks.push(Box::new(sink));
    }
    // Spectrogram columns and page scores: about MEL_COLUMNS_PER_S per second.
    let page_every = ((meta.features.frame_rate() / MEL_COLUMNS_PER_S).round() as usize).max(1);
    if let Some(h) = &opts.http {
        sinks.push(Box::new(HttpSink::start(
            HttpOptions {
                scores_every: page_every,
                ..*h
            },
            hello.to_outgoing(),
            metrics.clone(),
        )?));
    }
    if opts.stdout {
        sinks.push(Box::new(StdoutSink::start(4096, false)?));
    }
    let publish_scores = opts.socket.is_some() || opts.http.is_some();
    let (hub, hub_tx) = Hub::start(meta.classes.clone(), sinks, 4096)?;
    hub_tx.send(Message::Status(Status {
        state: StreamState::Running,
        t: 0.0,
        dropped_samples: 0,
        nonfinite_samples: 0,
        dropped_frames: 0,
        windows: 0,
        open_events: 0,
    }));
    tracing::info!(source = %describe, model = %meta.name, classes = meta.classes.len(), "listening");

    let fps = meta.features.frame_rate();
    let live_out = LiveOutputs {
        metrics,
        socket: socket_stats,
        mel_every: if opts.http.is_some() { page_every } else { 0 },
        n_mels: meta.features.n_mels,
    };
    let queue_chunks = ((f64::from(opts.queue_seconds) * fps / 4.0).ceil() as usize).max(4);
    let (tx, rx) = bounded::<FrontMsg>(queue_chunks);
    let dropped_frames = Arc::new(AtomicU64::new(0));
    let max_samples = opts
        .duration_s
        .map(|d| (d * f64::from(source.sample_rate())).round() as u64);

    let frontend = {
        let (tx, stop, dropped_frames) = (tx.clone(), stop.clone(), dropped_frames.clone());
        let period = meta.features.frame_period_s();
        std::thread::Builder::new()
            .name("hark-frontend".into())
            .spawn(move || {
                frontend_loop(
                    source,
                    fe,
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
    let model_thread = {
        let hub_tx = hub_tx.clone();
        let counters = counters.clone();
        let dropped_frames = dropped_frames.clone();
        let status_interval = opts.status_interval;
        std::thread::Builder::new()
            .name("hark-model".into())
            .spawn(move || {
                let r = model_loop(
                    stage,
                    rx,
                    &hub_tx,
                    &counters,
                    &dropped_frames,
                    fps,
                    publish_scores,
                    status_interval,
                    &live_out,
                );
                hub_tx.shutdown();
                let _ = done_tx.send(r);
            })
            .map_err(|_| PipelineError::Thread("hark-model".into()))?
    };
    drop(hub_tx);

    // Wait for the end of the stream or a stop request.
    let result = loop {
        match done_rx.recv_timeout(Duration::from_millis(50)) {
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

#[allow(clippy::too_many_arguments)]
fn frontend_loop(
    mut source: Box<dyn SourceReader>,
    mut fe: FeatureStage,
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
    let rate = f64::from(source.sample_rate());
    let send =
        |data: Vec<f32>, next_frame: &mut u64, anchor: Option<SystemTime>, n_mels: usize| -> bool {
            if data.is_empty() {
                return true;
            }
            let n = (data.len() / n_mels) as u64;
            let first = *next_frame;
            *next_frame += n;
            let wall = anchor.map(|a| a + Duration::from_secs_f64(first as f64 * frame_period_s));
            let msg = FrontMsg::Frames { first, data, wall };
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
                if anchor.is_none() && paced {
                    anchor = Some(
                        SystemTime::now() - Duration::from_secs_f64(samples_read as f64 / rate),
                    );
                }
                samples_read += n as u64;
                let mut frames = Vec::with_capacity(n_mels * 16);
                if let Err(e) = fe.push(&buf[..n], &mut frames) {
                    tracing::error!(error = %e, "feature extraction failed");
                    break None;
                }
                if !send(frames, &mut next_frame, anchor, n_mels) {
                    return;
                }
            }
            Ok(ReadOutcome::Idle) => {}
            Ok(ReadOutcome::End) => break None,
            Err(e) => break Some(e),
        }
    };
    let mut frames = Vec::new();
    if fe.finish(&mut frames).is_ok() {
        let _ = send(frames, &mut next_frame, anchor, n_mels);
    }
    let _ = tx.send(FrontMsg::End { error });
}

#[allow(clippy::too_many_arguments)]
fn model_loop(
    mut stage: DetectStage,
    rx: Receiver<FrontMsg>,
    hub: &HubHandle,
    counters: &SourceCounters,
    dropped_frames: &AtomicU64,
    fps: f64,
    publish_scores: bool,
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
        let msg = rx.recv().unwrap_or(FrontMsg::End { error: None });
        let (end, error) = match msg {
            FrontMsg::Frames { first, data, wall } => {
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
                        if publish_scores {
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
                .and_then(|_| stage.push(&data, &mut on));
                summary.events += events;
                update_metrics(
                    metrics,
                    live.socket.as_deref(),
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
                        if publish_scores {
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
                if degraded {
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
        live.socket.as_deref(),
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
        open_events: stage.open_events(),
    }
}
