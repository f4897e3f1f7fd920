//! Microphone capture with cpal, and the device list for `hark devices`.
//!
//! [`MicSource`] opens an input device (the default one, or the first whose name or id
//! contains a given text, since card numbers change on re-plug) at its native config
//! (or at a requested rate/channels/format) and starts a cpal stream. The cpal data
//! callback only converts the interleaved samples to mono `f32` through a stack scratch
//! and pushes them into the SPSC ring ([`super::ring`]): no allocation, lock, log,
//! `unwrap` or blocking call. What does not fit is counted in
//! [`SourceCounters::samples_dropped`]. Stream errors reported by cpal are recorded in
//! atomics by the error callback and surfaced (logged, or as an error when the device is
//! gone) by [`MicSource::read`] on the reader's thread.
//!
//! Some backends stop delivering without reporting an error (an ALSA `file` device at
//! its end, a lost sound server): [`MicSource::heartbeat`] gives the time of the last
//! callback, for a stall watchdog. Dropping a [`MicSource`] drops its stream on a
//! detached thread, because dropping a stuck stream can hang.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, SampleFormat, SizedSample, StreamConfig};

use super::ring::{ring, Heartbeat, RingConsumer, RingProducer};
use super::{AudioError, ReadOutcome, SourceCounters, SourceReader};

/// How long a waiting `read` sleeps between looks at the ring.
const POLL_STEP: Duration = Duration::from_millis(2);
/// Minimum time between two overflow or stream-error warnings.
const WARN_EVERY: Duration = Duration::from_secs(5);
/// How long cpal may take to set a stream up (where the backend honours it).
const BUILD_TIMEOUT: Duration = Duration::from_secs(5);

/// A sample format a capture can be asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureFormat {
    /// Signed 8-bit.
    I8,
    /// Signed 16-bit.
    I16,
    /// Signed 32-bit.
    I32,
    /// Unsigned 8-bit.
    U8,
    /// Unsigned 16-bit.
    U16,
    /// 32-bit float.
    F32,
    /// 64-bit float.
    F64,
}

impl CaptureFormat {
    fn to_cpal(self) -> SampleFormat {
        match self {
            CaptureFormat::I8 => SampleFormat::I8,
            CaptureFormat::I16 => SampleFormat::I16,
            CaptureFormat::I32 => SampleFormat::I32,
            CaptureFormat::U8 => SampleFormat::U8,
            CaptureFormat::U16 => SampleFormat::U16,
            CaptureFormat::F32 => SampleFormat::F32,
            CaptureFormat::F64 => SampleFormat::F64,
        }
    }
}

/// How [`MicSource::open`] sets up the capture.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MicOptions {
    /// Ring capacity in seconds of audio at the device rate (> 0).
    pub ring_seconds: f32,
    /// Longest wait of one [`SourceReader::read`] before it returns `Idle`.
    pub poll_timeout: Duration,
    /// Ask for this rate instead of the device's default config.
    pub sample_rate: Option<u32>,
    /// Ask for this channel count instead of the device's default config.
    pub channels: Option<u16>,
    /// Ask for this sample format instead of the device's default config.
    pub sample_format: Option<CaptureFormat>,
}

impl Default for MicOptions {
    /// A 2 s ring, 100 ms poll timeout, the device's default config.
    fn default() -> Self {
        Self {
            ring_seconds: 2.0,
            poll_timeout: Duration::from_millis(100),
            sample_rate: None,
            channels: None,
            sample_format: None,
        }
    }
}

/// An input device, as listed by `hark devices`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Human name (e.g. `USB Audio Device, USB Audio`); `mic:NAME` matches a substring.
    pub name: String,
    /// Backend id (e.g. `alsa:hw:CARD=Device,DEV=0`); `mic:NAME` matches it too.
    pub id: String,
    /// Whether this is the host's default input device.
    pub is_default: bool,
    /// Supported input configs, e.g. `i16, 2 ch, 8000-48000 Hz`, or one line saying why
    /// they could not be read.
    pub configs: Vec<String>,
}

/// Lists the input devices of the default host with their supported configs.
pub fn list_devices() -> Result<Vec<DeviceInfo>, AudioError> {
    let host = cpal::default_host();
    let default_id = host
        .default_input_device()
        .and_then(|d| d.id().ok())
        .map(|id| id.to_string());
    let devices = host.input_devices().map_err(|e| AudioError::Device {
        device: host.id().name().to_string(),
        reason: format!("cannot list input devices: {e}"),
    })?;
    Ok(devices
        .map(|d| {
            let (name, id) = names(&d);
            let configs = match d.supported_input_configs() {
                Ok(ranges) => summarize_configs(ranges),
                Err(e) => vec![format!("configs unavailable: {e}")],
            };
            DeviceInfo {
                is_default: default_id.as_deref() == Some(id.as_str()),
                name,
                id,
                configs,
            }
        })
        .collect())
}

/// One line per supported config that hark can capture (DSD and 24-bit packed formats
/// are left out), with runs of channel counts that share a format and rate range merged,
/// e.g. `i16, 1-2 ch, 8000-48000 Hz`.
fn summarize_configs(
    ranges: impl Iterator<Item = cpal::SupportedStreamConfigRange>,
) -> Vec<String> {
    // (format, first channel count, last channel count, min rate, max rate)
    let mut runs: Vec<(SampleFormat, u16, u16, u32, u32)> = Vec::new();
    for r in ranges.filter(|r| supported_format(r.sample_format())) {
        let (f, ch, lo, hi) = (
            r.sample_format(),
            r.channels(),
            r.min_sample_rate(),
            r.max_sample_rate(),
        );
        match runs.last_mut() {
            Some(last)
                if last.0 == f
                    && last.3 == lo
                    && last.4 == hi
                    && last.2.checked_add(1) == Some(ch) =>
            {
                last.2 = ch
            }
            _ => runs.push((f, ch, ch, lo, hi)),
        }
    }
    runs.into_iter()
        .map(|(f, c0, c1, lo, hi)| {
            let ch = if c0 == c1 {
                format!("{c0}")
            } else {
                format!("{c0}-{c1}")
            };
            let rates = if lo == hi {
                format!("{lo} Hz")
            } else {
                format!("{lo}-{hi} Hz")
            };
            format!("{f}, {ch} ch, {rates}")
        })
        .collect()
}

/// Human name and id string of a device.
fn names(d: &cpal::Device) -> (String, String) {
    let id = d.id().map(|i| i.to_string()).unwrap_or_default();
    let name = d
        .description()
        .map(|desc| desc.name().to_string())
        .unwrap_or_else(|_| id.clone());
    (name, id)
}

/// Finds the device for `mic` (`None`) or `mic:NAME`: an exact id (with or without the
/// host prefix) or name first, else the first whose name or id contains NAME
/// (case-insensitive).
fn find_device(host: &cpal::Host, wanted: Option<&str>) -> Result<cpal::Device, AudioError> {
    let available = |host: &cpal::Host| -> String {
        let names: Vec<String> = host
            .input_devices()
            .map(|ds| ds.map(|d| names(&d).0).collect())
            .unwrap_or_default();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    };
    let Some(wanted) = wanted else {
        return host
            .default_input_device()
            .ok_or_else(|| AudioError::NoDevice {
                name: "(default input)".into(),
                available: available(host),
            });
    };
    let devices: Vec<(cpal::Device, String, String)> = host
        .input_devices()
        .map_err(|e| AudioError::Device {
            device: wanted.to_string(),
            reason: format!("cannot list input devices: {e}"),
        })?
        .map(|d| {
            let (name, id) = names(&d);
            (d, name, id)
        })
        .collect();
    let bare_id = |id: &str| {
        id.split_once(':')
            .map_or(id.to_string(), |(_, rest)| rest.to_string())
    };
    let lower = wanted.to_lowercase();
    let pick = devices
        .iter()
        .position(|(_, name, id)| id == wanted || bare_id(id) == wanted || name == wanted)
        .or_else(|| {
            devices.iter().position(|(_, name, id)| {
                name.to_lowercase().contains(&lower) || id.to_lowercase().contains(&lower)
            })
        });
    match pick {
        Some(i) => {
            let (device, name, id) =
                devices
                    .into_iter()
                    .nth(i)
                    .ok_or_else(|| AudioError::NoDevice {
                        name: wanted.to_string(),
                        available: "none".into(),
                    })?;
            tracing::debug!(wanted, name = %name, id = %id, "input device chosen");
            Ok(device)
        }
        None => Err(AudioError::NoDevice {
            name: wanted.to_string(),
            available: if devices.is_empty() {
                "none".into()
            } else {
                devices
                    .iter()
                    .map(|(_, name, id)| format!("{name} ({id})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        }),
    }
}

/// Stream errors, recorded lock-free by cpal's error callback.
#[derive(Debug, Default)]
struct StreamErrors {
    /// Errors reported so far.
    count: AtomicU64,
    /// Kind of the last error (see [`kind_code`]).
    last_kind: AtomicU8,
    /// The device is gone or the stream invalid: no more samples will come.
    fatal: AtomicBool,
}

const KINDS: [&str; 6] = [
    "other error",
    "device not available (disconnected?)",
    "stream invalidated",
    "buffer overrun (xrun)",
    "device changed",
    "backend error",
];

fn kind_code(kind: cpal::ErrorKind) -> u8 {
    match kind {
        cpal::ErrorKind::DeviceNotAvailable => 1,
        cpal::ErrorKind::StreamInvalidated => 2,
        cpal::ErrorKind::Xrun => 3,
        cpal::ErrorKind::DeviceChanged => 4,
        cpal::ErrorKind::BackendError => 5,
        _ => 0,
    }
}

impl StreamErrors {
    fn record(&self, err: &cpal::Error) {
        let code = kind_code(err.kind());
        self.last_kind.store(code, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        if code == 1 || code == 2 {
            self.fatal.store(true, Ordering::Release);
        }
    }
}

/// A microphone: a running cpal input stream feeding an SPSC ring.
pub struct MicSource {
    /// The running stream; `None` only while dropping.
    stream: Option<cpal::Stream>,
    /// Read end of the ring.
    cons: RingConsumer,
    /// Device rate, Hz.
    rate: u32,
    /// Device channels (downmixed in the callback).
    channels: u16,
    /// Device sample format.
    format: SampleFormat,
    /// Device name, for messages.
    name: String,
    /// Device id.
    id: String,
    /// Counters shared with the callback.
    counters: Arc<SourceCounters>,
    /// Stamped by every data callback.
    heartbeat: Arc<Heartbeat>,
    /// Stream errors from the error callback.
    errors: Arc<StreamErrors>,
    /// Longest wait of one `read`.
    poll_timeout: Duration,
    /// Dropped-sample total at the last overflow warning.
    warned_dropped: u64,
    /// Error total at the last stream-error warning.
    warned_errors: u64,
    /// When the last warning was logged.
    last_warn: Option<Instant>,
}

impl MicSource {
    /// Opens the default input device (`name = None`) or the first whose name or id
    /// contains `name`, and starts capturing. Errors: [`AudioError::NoDevice`] (listing
    /// the devices there are) or [`AudioError::Device`].
    pub fn open(name: Option<&str>, opts: &MicOptions) -> Result<Self, AudioError> {
        let host = cpal::default_host();
        let device = find_device(&host, name)?;
        let (dev_name, dev_id) = names(&device);
        let dev_err = |reason: String| AudioError::Device {
            device: dev_name.clone(),
            reason,
        };
        let (config, format) = choose_config(&device, opts).map_err(&dev_err)?;
        if !(opts.ring_seconds.is_finite() && opts.ring_seconds > 0.0) {
            return Err(dev_err(format!(
                "ring size {} s: expected a positive number of seconds",
                opts.ring_seconds
            )));
        }
        let capacity = ((f64::from(opts.ring_seconds) * f64::from(config.sample_rate)).round()
            as usize)
            .max(1);
        let counters = SourceCounters::new();
        let (prod, cons, heartbeat) = ring(capacity, counters.clone())?;
        let errors = Arc::new(StreamErrors::default());
        let channels = usize::from(config.channels);
        let stream = build_stream(&device, &config, format, prod, channels, errors.clone())
            .map_err(|e| {
                dev_err(format!(
                    "cannot open a {format} {} ch {} Hz input stream: {e}",
                    config.channels, config.sample_rate
                ))
            })?;
        stream
            .play()
            .map_err(|e| dev_err(format!("cannot start the input stream: {e}")))?;
        tracing::info!(
            device = %dev_name,
            id = %dev_id,
            rate_hz = config.sample_rate,
            channels = config.channels,
            format = %format,
            ring_samples = capacity,
            "capture started"
        );
        Ok(Self {
            stream: Some(stream),
            cons,
            rate: config.sample_rate,
            channels: config.channels,
            format,
            name: dev_name,
            id: dev_id,
            counters,
            heartbeat,
            errors,
            poll_timeout: opts.poll_timeout,
            warned_dropped: 0,
            warned_errors: 0,
            last_warn: None,
        })
    }

    /// Stops taking samples: from now on the callback returns at once without pushing
    /// or counting, so the counters become final (waits up to 1 s for a callback in
    /// flight). Samples already in the ring can still be read. The device stream itself
    /// is closed when the source is dropped.
    pub fn stop(&self) -> Result<(), AudioError> {
        if self.cons.stop_producer(Duration::from_secs(1)) {
            Ok(())
        } else {
            Err(AudioError::Device {
                device: self.name.clone(),
                reason: "a capture callback did not return within 1 s".into(),
            })
        }
    }

    /// The heartbeat stamped by every data callback (for a stall watchdog).
    pub fn heartbeat(&self) -> Arc<Heartbeat> {
        self.heartbeat.clone()
    }

    /// Time since the last data callback, `None` before the first.
    pub fn since_last_callback(&self) -> Option<Duration> {
        self.heartbeat.since_last()
    }

    /// Device channels (the callback downmixes them to mono).
    pub fn channels(&self) -> u16 {
        self.channels
    }

    /// Device sample format, e.g. `i16`.
    pub fn sample_format(&self) -> String {
        self.format.to_string()
    }

    /// Device name.
    pub fn device_name(&self) -> &str {
        &self.name
    }

    /// Device id, e.g. `alsa:hw:CARD=Device,DEV=0`.
    pub fn device_id(&self) -> &str {
        &self.id
    }

    /// Stream errors cpal has reported so far.
    pub fn stream_errors(&self) -> u64 {
        self.errors.count.load(Ordering::Relaxed)
    }

    /// Capacity of the ring, in samples.
    pub fn ring_capacity(&self) -> usize {
        self.cons.capacity()
    }

    /// Samples waiting in the ring.
    pub fn queued(&self) -> usize {
        self.cons.available()
    }

    /// Logs ring overflow and stream errors, at most once per [`WARN_EVERY`].
    fn report(&mut self) {
        let dropped = SourceCounters::get(&self.counters.samples_dropped);
        let errors = self.errors.count.load(Ordering::Relaxed);
        if dropped == self.warned_dropped && errors == self.warned_errors {
            return;
        }
        if self.last_warn.is_some_and(|t| t.elapsed() < WARN_EVERY) {
            return;
        }
        self.last_warn = Some(Instant::now());
        if dropped != self.warned_dropped {
            tracing::warn!(
                device = %self.name,
                dropped_samples = dropped,
                new_dropped_samples = dropped - self.warned_dropped,
                "capture ring overflow: the frontend fell behind, samples dropped"
            );
            self.warned_dropped = dropped;
        }
        if errors != self.warned_errors {
            let kind = KINDS
                [usize::from(self.errors.last_kind.load(Ordering::Relaxed)).min(KINDS.len() - 1)];
            tracing::warn!(device = %self.name, stream_errors = errors, last = kind, "input stream reported errors");
            self.warned_errors = errors;
        }
    }
}

impl Drop for MicSource {
    fn drop(&mut self) {
        if let Some(stream) = self.stream.take() {
            // Dropping a stream whose backend is stuck can hang: never block on it.
            let spawned = std::thread::Builder::new()
                .name("hark-mic-close".into())
                .spawn(move || drop(stream));
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "could not close the input stream on a helper thread");
            }
        }
    }
}

impl SourceReader for MicSource {
    fn sample_rate(&self) -> u32 {
        self.rate
    }

    fn describe(&self) -> String {
        format!("mic:{}", self.name)
    }

    fn is_live(&self) -> bool {
        true
    }

    fn counters(&self) -> Arc<SourceCounters> {
        self.counters.clone()
    }

    /// Returns the samples in the ring, waiting at most the poll timeout for some
    /// (`Idle` if none came). Once the ring is empty: `End` after [`MicSource::stop`],
    /// an [`AudioError::Device`] error if cpal has reported the device gone.
    fn read(&mut self, buf: &mut [f32]) -> Result<ReadOutcome, AudioError> {
        if buf.is_empty() {
            return Ok(ReadOutcome::Idle);
        }
        let deadline = Instant::now() + self.poll_timeout;
        loop {
            let n = self.cons.pop(buf);
            if n > 0 {
                self.report();
                return Ok(ReadOutcome::Samples(n));
            }
            if self.cons.producer_stopped() {
                return Ok(ReadOutcome::End);
            }
            if self.errors.fatal.load(Ordering::Acquire) {
                self.report();
                let kind = KINDS[usize::from(self.errors.last_kind.load(Ordering::Relaxed))
                    .min(KINDS.len() - 1)];
                return Err(AudioError::Device {
                    device: self.name.clone(),
                    reason: format!("input stream lost: {kind}"),
                });
            }
            let now = Instant::now();
            if now >= deadline {
                self.report();
                return Ok(ReadOutcome::Idle);
            }
            std::thread::sleep(POLL_STEP.min(deadline - now));
        }
    }
}

/// The requested config if any part is requested (it must be supported), else the
/// device's default input config.
fn choose_config(
    device: &cpal::Device,
    opts: &MicOptions,
) -> Result<(StreamConfig, SampleFormat), String> {
    if opts.sample_rate.is_none() && opts.channels.is_none() && opts.sample_format.is_none() {
        let c = device
            .default_input_config()
            .map_err(|e| format!("no default input config: {e}"))?;
        return Ok((c.config(), c.sample_format()));
    }
    let ranges: Vec<cpal::SupportedStreamConfigRange> = device
        .supported_input_configs()
        .map_err(|e| format!("cannot read supported input configs: {e}"))?
        .collect();
    let want_fmt = opts.sample_format.map(CaptureFormat::to_cpal);
    for r in &ranges {
        if want_fmt.is_some_and(|f| f != r.sample_format())
            || opts.channels.is_some_and(|c| c != r.channels())
        {
            continue;
        }
        let rate = match opts.sample_rate {
            Some(rate) if r.contains_rate(rate) => rate,
            Some(_) => continue,
            None => r.max_sample_rate().min(48_000).max(r.min_sample_rate()),
        };
        if supported_format(r.sample_format()) {
            let c = r
                .try_with_sample_rate(rate)
                .ok_or_else(|| format!("rate {rate} Hz not in range"))?;
            return Ok((c.config(), c.sample_format()));
        }
    }
    let listed: Vec<String> = ranges
        .iter()
        .map(|r| {
            format!(
                "{} {} ch {}-{} Hz",
                r.sample_format(),
                r.channels(),
                r.min_sample_rate(),
                r.max_sample_rate()
            )
        })
        .collect();
    Err(format!(
        "no supported input config matches rate {:?} Hz, channels {:?}, format {:?}; supported: {}",
        opts.sample_rate,
        opts.channels,
        opts.sample_format,
        if listed.is_empty() {
            "none".into()
        } else {
            listed.join("; ")
        }
    ))
}

fn supported_format(f: SampleFormat) -> bool {
    matches!(
        f,
        SampleFormat::I8
            | SampleFormat::I16
            | SampleFormat::I32
            | SampleFormat::U8
            | SampleFormat::U16
            | SampleFormat::F32
            | SampleFormat::F64
    )
}

fn build_stream(
    device: &cpal::Device,
    config: &StreamConfig,
    format: SampleFormat,
    prod: RingProducer,
    channels: usize,
    errors: Arc<StreamErrors>,
) -> Result<cpal::Stream, String> {
    match format {
        SampleFormat::I8 => build_typed::<i8>(device, config, prod, channels, errors),
        SampleFormat::I16 => build_typed::<i16>(device, config, prod, channels, errors),
        SampleFormat::I32 => build_typed::<i32>(device, config, prod, channels, errors),
        SampleFormat::U8 => build_typed::<u8>(device, config, prod, channels, errors),
        SampleFormat::U16 => build_typed::<u16>(device, config, prod, channels, errors),
        SampleFormat::F32 => build_typed::<f32>(device, config, prod, channels, errors),
        SampleFormat::F64 => build_typed::<f64>(device, config, prod, channels, errors),
        other => Err(format!(
            "sample format {other} is not supported (expected i8, i16, i32, u8, u16, f32 or f64)"
        )),
    }
}

fn build_typed<T>(
    device: &cpal::Device,
    config: &StreamConfig,
    mut prod: RingProducer,
    channels: usize,
    errors: Arc<StreamErrors>,
) -> Result<cpal::Stream, String>
where
    T: SizedSample + Send + 'static,
    f32: FromSample<T>,
{
    device
        .build_input_stream::<T, _, _>(
            *config,
            // The real-time callback: convert, push, count. Nothing else.
            move |data: &[T], _: &cpal::InputCallbackInfo| {
                prod.push_interleaved(data, channels, |s: T| f32::from_sample_(s));
            },
            move |err: cpal::Error| errors.record(&err),
            Some(BUILD_TIMEOUT),
        )
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpal::{SupportedBufferSize, SupportedStreamConfigRange};

    fn range(ch: u16, lo: u32, hi: u32, f: SampleFormat) -> SupportedStreamConfigRange {
        SupportedStreamConfigRange::new(ch, lo, hi, SupportedBufferSize::Unknown, f)
    }

    #[test]
    fn configs_are_merged_into_channel_runs_and_unusable_formats_left_out() {
        let ranges = vec![
            range(1, 8_000, 48_000, SampleFormat::I16),
            range(2, 8_000, 48_000, SampleFormat::I16),
            range(4, 8_000, 48_000, SampleFormat::I16),
            range(2, 44_100, 44_100, SampleFormat::F32),
            range(1, 8_000, 48_000, SampleFormat::I24),
        ];
        assert_eq!(
            summarize_configs(ranges.into_iter()),
            vec![
                "i16, 1-2 ch, 8000-48000 Hz",
                "i16, 4 ch, 8000-48000 Hz",
                "f32, 2 ch, 44100 Hz"
            ]
        );
    }

    #[test]
    fn error_kinds_map_to_fatal_or_not() {
        let errors = StreamErrors::default();
        errors.record(&cpal::Error::from(cpal::ErrorKind::Xrun));
        assert!(!errors.fatal.load(Ordering::Relaxed));
        errors.record(&cpal::Error::from(cpal::ErrorKind::DeviceNotAvailable));
        assert!(errors.fatal.load(Ordering::Relaxed));
        assert_eq!(errors.count.load(Ordering::Relaxed), 2);
        assert_eq!(
            KINDS[usize::from(errors.last_kind.load(Ordering::Relaxed))],
            KINDS[1]
        );
    }
}
