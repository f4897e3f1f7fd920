//! Command-line interface (clap). `anyhow` is used only here, at the binary's edge;
//! every subcommand returns `anyhow::Result<()>` and [`main`] maps errors to exit
//! codes: 0 success, 1 runtime error or bad input, 2 usage error (clap).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use hark::audio::InputSpec;
use hark::config::{Config, DEFAULT_CONFIG_PATH};
use hark::events::http::{parse_addr, HttpOptions};
use hark::events::socket::SocketOptions;
use hark::model::Model;
use hark::pipeline::{self, OfflineDetector, RunOptions};

mod eval;
mod synth;
mod train;
mod tune;

/// hark — real-time sound event detection.
#[derive(Debug, Parser)]
#[command(name = "hark", version, about, long_about = None)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace). `HARK_LOG` overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Listen to a microphone, file or stdin and publish events live (the daemon).
    Run(RunArgs),
    /// Detect events in audio files, as fast as possible (DCASE TSV output).
    Detect(DetectArgs),
    /// Connect to a running daemon's socket and print its events, one JSON per line.
    Listen(ListenArgs),
    /// List audio input devices and their supported configurations.
    Devices,
    /// Inspect model files.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Validate a config file (and, with a model, its per-class labels).
    CheckConfig(CheckConfigArgs),
    /// Evaluate detections against a reference (sed_eval / sed_scores_eval metrics).
    Eval(eval::EvalArgs),
    /// Make strongly labelled soundscapes from event and background recordings.
    Synth(synth::SynthArgs),
    /// Train a model from a training config (TOML).
    Train(train::TrainArgs),
    /// Choose per-class post-processing on a validation set; store it in the model.
    Tune(tune::TuneArgs),
}

/// `hark model ...`
#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Print a model file's architecture, classes, features and post-processing.
    Info {
        /// The `.safetensors` model file.
        file: PathBuf,
    },
    /// Write an UNTRAINED CRNN with seeded random weights (the trainer's starting
    /// point, and a way to exercise the pipeline end to end before training).
    Init(InitArgs),
}

/// Arguments of `hark model init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to write the `.safetensors` file.
    pub output: PathBuf,
    /// Class labels, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub classes: Vec<String>,
    /// Architecture and parameters as JSON, e.g. `{"name":"amn","tau":0.5}`
    /// (crnn, amn, two_step_ae, atp_sedb, context_attention; defaults: the papers' sizes).
    #[arg(long, default_value = r#"{"name":"crnn"}"#)]
    pub arch: String,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Frames per streaming window (50 frames = 1 s at the default features).
    #[arg(long, default_value_t = 100)]
    pub window_frames: usize,
    /// Frames between streaming windows.
    #[arg(long, default_value_t = 50)]
    pub hop_frames: usize,
}

/// Arguments of `hark run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Audio input: `mic`, `mic:NAME`, `file:PATH` (or a bare path),
    /// `stdin:FORMAT:RATE:CHANNELS` with FORMAT s16le or f32le.
    #[arg(short, long)]
    pub input: Option<String>,
    /// Model file (.safetensors). Default: `[model] path` of the config.
    #[arg(short, long)]
    pub model: Option<PathBuf>,
    /// Config file (TOML). Default: /etc/hark/hark.toml if it exists.
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// Serve JSON-lines events on this Unix socket.
    #[arg(short, long)]
    pub socket: Option<PathBuf>,
    /// Also print events to stdout when serving a socket (always on without one).
    #[arg(long)]
    pub stdout: bool,
    /// Pace file input in real time, as if it were a microphone.
    #[arg(long)]
    pub realtime: bool,
    /// Stop after this many seconds of audio.
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Serve the live web page, Server-Sent Events and Prometheus `/metrics` on
    /// this address (`127.0.0.1:8080`, or a bare port for loopback). No
    /// authentication: use a non-loopback address only on a trusted network.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,
}

/// Output format of `hark detect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DetectFormat {
    /// DCASE TSV: `filename onset offset event_label`, with a header line.
    Tsv,
    /// One JSON object per event and line.
    Json,
}

/// Arguments of `hark detect`.
#[derive(Debug, Args)]
pub struct DetectArgs {
    /// Audio files (WAV, FLAC, Ogg/Vorbis, MP3; any rate and channel count).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Model file (.safetensors). Default: `[model] path` of the config.
    #[arg(short, long)]
    pub model: Option<PathBuf>,
    /// Config file for per-class overrides (TOML).
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// Write events here instead of stdout.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DetectFormat::Tsv)]
    pub format: DetectFormat,
    /// Also write per-file frame score tables (sed_scores_eval form) into this folder.
    #[arg(long, value_name = "DIR")]
    pub scores: Option<PathBuf>,
}

/// Arguments of `hark listen`.
#[derive(Debug, Args)]
pub struct ListenArgs {
    /// The daemon's socket.
    #[arg(short, long, default_value = "/run/hark/hark.sock")]
    pub socket: PathBuf,
    /// Only events of these labels (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub labels: Vec<String>,
    /// Also print per-frame score lines.
    #[arg(long)]
    pub scores: bool,
}

/// Arguments of `hark check-config`.
#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// The config file.
    pub file: PathBuf,
    /// Check per-class labels against this model (default: the config's model).
    #[arg(short, long)]
    pub model: Option<PathBuf>,
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    hark::model::tune_allocator();
    init_tracing(
        cli.verbose,
        matches!(
            cli.command,
            Command::Run(_) | Command::Train(_) | Command::Tune(_) | Command::Synth(_)
        ),
    );
    let r = match cli.command {
        Command::Run(a) => run(a),
        Command::Detect(a) => detect(a),
        Command::Listen(a) => listen(a),
        Command::Devices => devices(),
        Command::Model(ModelCommand::Info { file }) => model_info(&file),
        Command::Model(ModelCommand::Init(a)) => model_init(a),
        Command::CheckConfig(a) => check_config(a),
        Command::Eval(a) => eval::run(&a),
        Command::Synth(a) => synth::run(&a),
        Command::Train(a) => train::run(&a),
        Command::Tune(a) => tune::run(&a),
    };
    match r {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            1
        }
    }
}

fn init_tracing(verbose: u8, daemon: bool) {
    let default = match (verbose, daemon) {
        (0, true) => "hark=info",
        (0, false) => "hark=warn",
        (1, _) => "hark=debug",
        _ => "hark=trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("HARK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

/// Loads the config: the given file, else the default path if it exists, else defaults.
fn load_config(path: Option<&Path>) -> Result<(Config, Option<PathBuf>)> {
    match path {
        Some(p) => Ok((Config::load(p)?, Some(p.to_path_buf()))),
        None => {
            let p = Path::new(DEFAULT_CONFIG_PATH);
            if p.exists() {
                Ok((Config::load(p)?, Some(p.to_path_buf())))
            } else {
                Ok((Config::default(), None))
            }
        }
    }
}

fn load_model(flag: Option<&Path>, cfg: &Config) -> Result<Model> {
    let path = flag
        .map(Path::to_path_buf)
        .or_else(|| cfg.model.path.clone())
        .context("no model given: pass --model FILE or set `[model] path` in the config")?;
    let m = Model::load(&path)?;
    if is_untrained(&m) {
        tracing::warn!(model = %path.display(), "this model is UNTRAINED (random weights): its events are meaningless");
    }
    Ok(m)
}

/// Whether the model file says it was never trained (`hark model init`).
fn is_untrained(m: &Model) -> bool {
    m.meta().training.get("untrained") == Some(&serde_json::Value::Bool(true))
}

fn run(a: RunArgs) -> Result<()> {
    let (cfg, cfg_path) = load_config(a.config.as_deref())?;
    let model = load_model(a.model.as_deref(), &cfg)?;
    let cfg_name = cfg_path
        .clone()
        .unwrap_or_else(|| PathBuf::from("(defaults)"));
    cfg.check_against(&cfg_name, model.meta())?;
    let pp = cfg.postprocess(&model.meta().postprocess);
    let model_streaming = model.meta().streaming;
    let input: InputSpec = a.input.as_deref().unwrap_or(&cfg.source.input).parse()?;
    if let Some(d) = a.duration {
        if !(d.is_finite() && d > 0.0) {
            bail!("--duration {d}: expected a positive number of seconds");
        }
    }
    let sinks = sink_spec(&a, &cfg)?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while stopping exits at once.
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())
            .context("installing signal handler")?;
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handler")?;
    }
    let opts = RunOptions {
        input,
        realtime: a.realtime || cfg.source.realtime,
        ring_seconds: cfg.source.ring_seconds,
        duration_s: a.duration,
        socket: sinks.socket,
        stdout: sinks.stdout,
        mqtt: sinks.mqtt,
        http: sinks.http,
        queue_seconds: cfg.pipeline.queue_seconds,
        status_interval: Duration::from_secs_f32(cfg.pipeline.status_interval_s),
        streaming: Some(cfg.model.streaming(model_streaming)),
        model_threads: cfg.pipeline.model_threads,
        energy_gate_dbfs: cfg.pipeline.energy_gate_dbfs,
        loud_dbfs: cfg.pipeline.loud_dbfs,
        stall_timeout: Duration::from_secs_f32(cfg.source.stall_timeout_s),
        // A test hook: simulate a model slower than real time (README, Reliability).
        inference_delay: std::env::var("HARK_TEST_INFERENCE_DELAY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
            .unwrap_or(Duration::ZERO),
    };
    // SIGHUP re-reads the config file: per-class settings and sinks change without
    // touching the audio stream (flags given on the command line still win).
    let reload = match cfg_path.clone() {
        Some(path) => {
            let requested = Arc::new(AtomicBool::new(false));
            signal_hook::flag::register(signal_hook::consts::SIGHUP, requested.clone())
                .context("installing SIGHUP handler")?;
            let meta = model.meta().clone();
            let started_with = cfg.clone();
            // Whether lines go to stdout is decided once, at start.
            let stdout = opts.stdout;
            Some(pipeline::Reloader {
                requested,
                load: Box::new(move || {
                    let new = Config::load(&path).map_err(|e| e.to_string())?;
                    new.check_against(&path, &meta).map_err(|e| e.to_string())?;
                    let mut sinks = sink_spec(&a, &new).map_err(|e| format!("{e:#}"))?;
                    sinks.stdout = stdout;
                    if new.source != started_with.source
                        || new.model != started_with.model
                        || new.pipeline != started_with.pipeline
                    {
                        tracing::warn!(
                            "[source], [model] and [pipeline] changes need a restart; \
                             [classes] and the sinks were reloaded"
                        );
                    }
                    tracing::info!(config = %path.display(), "reloading config");
                    Ok(pipeline::Reloaded {
                        postprocess: new.postprocess(&meta.postprocess),
                        sinks,
                    })
                }),
            })
        }
        None => None,
    };
    let summary = pipeline::run(model, &pp, opts, stop, reload)?;
    tracing::info!(
        audio_s = summary.audio_s,
        events = summary.events,
        windows = summary.windows,
        dropped_samples = summary.dropped_samples,
        dropped_frames = summary.dropped_frames,
        "stopped"
    );
    Ok(())
}

/// The sinks of `hark run`: flags first, then the config file.
fn sink_spec(a: &RunArgs, cfg: &Config) -> Result<pipeline::SinkSpec> {
    let socket = a.socket.clone().or(cfg.socket.path.clone()).map(|p| {
        (
            p,
            SocketOptions {
                client_queue: cfg.socket.client_queue,
                max_clients: cfg.socket.max_clients,
                ..SocketOptions::default()
            },
        )
    });
    let http = match a.http.as_deref().or(cfg.http.addr.as_deref()) {
        Some(s) => Some(HttpOptions {
            addr: parse_addr(s).map_err(|e| anyhow::anyhow!("--http {e}"))?,
            client_queue: cfg.http.client_queue,
            max_clients: cfg.http.max_clients,
            ..HttpOptions::default()
        }),
        None => None,
    };
    Ok(pipeline::SinkSpec {
        stdout: a.stdout || socket.is_none(),
        socket,
        mqtt: cfg.mqtt.clone(),
        http,
    })
}

/// Rounds seconds to microseconds for text output.
fn round_us(t: f64) -> f64 {
    (t * 1e6).round() / 1e6
}

fn detect(a: DetectArgs) -> Result<()> {
    let (cfg, cfg_path) = match &a.config {
        Some(p) => (Config::load(p)?, Some(p.clone())),
        None => (Config::default(), None),
    };
    let model = load_model(a.model.as_deref(), &cfg)?;
    let meta = model.meta().clone();
    if let Some(p) = &cfg_path {
        cfg.check_against(p, &meta)?;
    }
    let pp = cfg.postprocess(&meta.postprocess);
    if let Some(dir) = &a.scores {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create scores folder {}", dir.display()))?;
    }
    let mut out: Box<dyn Write> = match &a.output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    if a.format == DetectFormat::Tsv {
        writeln!(out, "filename\tonset\toffset\tevent_label")?;
    }
    let mut det = OfflineDetector::with_options(
        model,
        &pp,
        &hark::pipeline::StageOptions {
            streaming: Some(cfg.model.streaming(meta.streaming)),
            ..Default::default()
        },
    )?;
    let mut failed = 0usize;
    for file in &a.files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| file.display().to_string());
        let r = match det.detect_file(file, a.scores.is_some()) {
            Ok(r) => r,
            Err(e) => {
                failed += 1;
                tracing::error!(file = %file.display(), "{e}");
                let _ = writeln!(std::io::stderr(), "error: {e}");
                continue;
            }
        };
        if r.nonfinite_samples > 0 {
            tracing::warn!(file = %file.display(), samples = r.nonfinite_samples, "non-finite samples replaced by zeros");
        }
        for e in &r.events {
            match a.format {
                DetectFormat::Tsv => writeln!(
                    out,
                    "{name}\t{}\t{}\t{}",
                    round_us(e.onset),
                    round_us(e.offset),
                    e.event_label
                )?,
                DetectFormat::Json => writeln!(
                    out,
                    "{}",
                    serde_json::json!({
                        "filename": name,
                        "onset": round_us(e.onset),
                        "offset": round_us(e.offset),
                        "event_label": e.event_label,
                        "peak": e.peak,
                        "mean": e.mean,
                    })
                )?,
            }
        }
        if let Some(dir) = &a.scores {
            let stem = file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| name.clone());
            let path = dir.join(format!("{stem}.tsv"));
            write_scores(&path, &meta.classes, &r.scores, r.frame_period_s)
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    out.flush()?;
    if failed > 0 {
        bail!("{failed} of {} files could not be processed", a.files.len());
    }
    Ok(())
}

/// Writes a sed_scores_eval score table: `onset offset <class>...`, one row per frame.
fn write_scores(
    path: &Path,
    classes: &[String],
    scores: &[f32],
    period: f64,
) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    write!(w, "onset\toffset")?;
    for c in classes {
        write!(w, "\t{c}")?;
    }
    writeln!(w)?;
    for (i, row) in scores.chunks_exact(classes.len().max(1)).enumerate() {
        write!(
            w,
            "{}\t{}",
            round_us(i as f64 * period),
            round_us((i + 1) as f64 * period)
        )?;
        for s in row {
            write!(w, "\t{s}")?;
        }
        writeln!(w)?;
    }
    w.flush()
}

fn listen(a: ListenArgs) -> Result<()> {
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixStream;
    let mut stream = UnixStream::connect(&a.socket).with_context(|| {
        format!(
            "cannot connect to {} (is `hark run --socket {}` running?)",
            a.socket.display(),
            a.socket.display()
        )
    })?;
    if !a.labels.is_empty() || a.scores {
        let mut sub = serde_json::json!({"scores": a.scores});
        if !a.labels.is_empty() {
            sub["labels"] = serde_json::json!(a.labels);
        }
        writeln!(stream, "{}", serde_json::json!({ "subscribe": sub }))?;
    }
    let reader = BufReader::new(stream);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in reader.lines() {
        let line = line.context("reading from the daemon")?;
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
            if v["type"] == "error" {
                let _ = writeln!(std::io::stderr(), "daemon: {}", v["message"]);
            }
        }
        if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
            break; // stdout closed (e.g. `| head`)
        }
    }
    Ok(())
}

fn devices() -> Result<()> {
    let devs = hark::audio::capture::list_devices()?;
    if devs.is_empty() {
        println!("no audio input devices found");
    }
    for d in devs {
        println!(
            "{}{}",
            d.name,
            if d.is_default { "  (default)" } else { "" }
        );
        for c in &d.configs {
            println!("    {c}");
        }
    }
    Ok(())
}

fn model_info(file: &Path) -> Result<()> {
    let m = Model::load(file)?;
    if is_untrained(&m) {
        println!("WARNING: untrained model (random weights from `hark model init`)");
    }
    println!("{}", m.describe());
    Ok(())
}

fn model_init(a: InitArgs) -> Result<()> {
    use hark::detect::postprocess::PostprocessConfig;
    use hark::detect::streaming::StreamingConfig;
    use hark::features::FeatureConfig;
    use hark::model::arch::ArchConfig;
    use hark::model::meta::{ModelMeta, FORMAT_VERSION};
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = a.classes.iter().find(|c| !seen.insert(c.as_str())) {
        bail!("--classes: `{dup}` is given twice");
    }
    if let Some(bad) = a.classes.iter().find(|c| c.trim().is_empty()) {
        bail!("--classes: empty label {bad:?}");
    }
    let arch: ArchConfig = serde_json::from_str(&a.arch).with_context(|| {
        format!(
            "--arch {}: expected JSON like {{\"name\":\"crnn\"}}",
            a.arch
        )
    })?;
    let meta = ModelMeta {
        format_version: FORMAT_VERSION,
        name: format!("untrained-{}-seed{}", arch.name(), a.seed),
        arch,
        features: FeatureConfig::default(),
        classes: a.classes.clone(),
        postprocess: PostprocessConfig::default(),
        streaming: StreamingConfig {
            window_frames: a.window_frames,
            hop_frames: a.hop_frames,
            lookahead_frames: None,
        },
        training: serde_json::json!({"untrained": true, "seed": a.seed}),
    };
    meta.streaming
        .validate()
        .map_err(|e| anyhow::anyhow!("--window-frames/--hop-frames: {e}"))?;
    let m = Model::init_random(meta, a.seed)?;
    m.save(&a.output)?;
    println!(
        "wrote {} (UNTRAINED: random weights, {} parameters)",
        a.output.display(),
        m.n_params()
    );
    Ok(())
}

fn check_config(a: CheckConfigArgs) -> Result<()> {
    let cfg = Config::load(&a.file)?;
    let model_path = a.model.clone().or(cfg.model.path.clone());
    match model_path {
        Some(p) => {
            let m = Model::load(&p)?;
            cfg.check_against(&a.file, m.meta())?;
            println!(
                "{}: OK (checked against model {})",
                a.file.display(),
                p.display()
            );
        }
        None => println!(
            "{}: OK (no model given: per-class labels not checked)",
            a.file.display()
        ),
    }
    Ok(())
}
