//! The real cpal capture path, without a sound card: an ALSA `file` PCM plugin reads a
//! raw file as if it were a microphone (see `shared/notes/alsa-file-capture.md`). With
//! the `null` slave there is no pacing: callbacks flood in as fast as the CPU allows and
//! the last period repeats forever once the file is done, so these tests also check
//! that capture stays bounded and counts what it drops.
//!
//! `ALSA_CONFIG_PATH` must be set before the first ALSA call of the process, which is
//! why these tests live in their own test binary and all go through [`setup`]. Every
//! wait is bounded by a deadline. The tests skip (printing why) only if the ALSA library
//! itself cannot be used.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cpal::traits::HostTrait;
use hark::audio::capture::{list_devices, CaptureFormat, MicOptions, MicSource};
use hark::audio::{
    open, AudioError, InputSpec, OpenOptions, ReadOutcome, SourceCounters, SourceReader,
};

/// Longest any test waits for samples.
const DEADLINE: Duration = Duration::from_secs(30);

struct Fixture {
    /// Mono s16le samples behind `testmic` (16 kHz mono i16), as f32.
    mono: Vec<f32>,
    /// Stereo f32le frames behind `testmic_f32` (48 kHz stereo f32).
    stereo: Vec<[f32; 2]>,
    /// Keeps the temporary directory alive.
    _dir: tempfile::TempDir,
}

/// Writes the raw files and the asoundrc, points ALSA at them (once, before any ALSA
/// call), and returns the fixture, or `None` (after printing why) if ALSA is unusable.
fn setup() -> Option<&'static Fixture> {
    static FIXTURE: OnceLock<Option<Fixture>> = OnceLock::new();
    FIXTURE
        .get_or_init(|| {
            let wav = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/audio/speech_chime_16k.wav");
            let samples: Vec<i16> = hound::WavReader::open(&wav)
                .unwrap()
                .samples::<i16>()
                .map(|s| s.unwrap())
                .collect();
            let dir = tempfile::tempdir().unwrap();
            let s16 = dir.path().join("mono_s16.raw");
            std::fs::write(&s16, samples.iter().flat_map(|s| s.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
            // Stereo: left = x, right = -x/2 (so the mean is x/4).
            let stereo: Vec<[f32; 2]> = samples
                .iter()
                .map(|&s| {
                    let x = f32::from(s) / 32768.0;
                    [x, -0.5 * x]
                })
                .collect();
            let f32s = dir.path().join("stereo_f32.raw");
            std::fs::write(
                &f32s,
                stereo.iter().flat_map(|f| f.iter().flat_map(|v| v.to_le_bytes())).collect::<Vec<u8>>(),
            )
            .unwrap();
            let rc = dir.path().join("asoundrc");
            let pcm = |name: &str, infile: &PathBuf, desc: &str| {
                format!(
                    "pcm.{name} {{\n  type file\n  slave.pcm \"null\"\n  file \"/dev/null\"\n  \
                     infile \"{}\"\n  format \"raw\"\n  hint {{ show on description \"{desc}\" }}\n}}\n",
                    infile.display()
                )
            };
            let conf = pcm("testmic", &s16, "hark test mic s16 mono")
                + &pcm("testmic_f32", &f32s, "hark test mic f32 stereo");
            std::fs::write(&rc, conf).unwrap();
            // Safety of set_var: this runs once, before any thread of this process
            // touches ALSA or reads the environment for it.
            std::env::set_var(
                "ALSA_CONFIG_PATH",
                format!("/usr/share/alsa/alsa.conf:{}", rc.display()),
            );
            let host = cpal::default_host();
            if let Err(e) = host.input_devices() {
                println!("SKIP: the ALSA library is unusable here (cannot list devices: {e})");
                return None;
            }
            Some(Fixture {
                mono: samples.iter().map(|&s| f32::from(s) / 32768.0).collect(),
                stereo,
                _dir: dir,
            })
        })
        .as_ref()
}

/// Reads until `n` samples have arrived (or the deadline passes), in `chunk`-sized reads.
fn read_n(src: &mut MicSource, n: usize, chunk: usize) -> Vec<f32> {
    let start = Instant::now();
    let mut out = Vec::with_capacity(n);
    let mut buf = vec![0.0f32; chunk];
    while out.len() < n && start.elapsed() < DEADLINE {
        match src.read(&mut buf).unwrap() {
            ReadOutcome::Samples(k) => {
                assert!(k <= chunk);
                out.extend_from_slice(&buf[..k]);
            }
            ReadOutcome::Idle => {}
            ReadOutcome::End => panic!("a microphone never ends"),
        }
    }
    assert!(
        out.len() >= n,
        "only {} of {n} samples within {DEADLINE:?}",
        out.len()
    );
    out.truncate(n);
    out
}

fn s16_mono() -> MicOptions {
    MicOptions {
        ring_seconds: 10.0,
        sample_rate: Some(16_000),
        channels: Some(1),
        sample_format: Some(CaptureFormat::I16),
        ..MicOptions::default()
    }
}

#[test]
fn captured_samples_equal_the_file() {
    let Some(fx) = setup() else { return };
    // The ring (10 s) holds the whole file, so nothing of it can be dropped.
    let mut mic = MicSource::open(Some("testmic"), &s16_mono()).unwrap();
    assert_eq!(mic.device_id(), "alsa:testmic");
    assert_eq!((mic.sample_rate(), mic.channels()), (16_000, 1));
    assert_eq!(mic.sample_format(), "i16");
    assert!(mic.is_live());
    let got = read_n(&mut mic, fx.mono.len(), 4096);
    let max_err = got
        .iter()
        .zip(&fx.mono)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        max_err < 1e-7,
        "captured samples differ from the file by {max_err}"
    );
    assert!(mic.since_last_callback().is_some());
}

#[test]
fn f32_stereo_capture_is_downmixed_in_the_callback() {
    let Some(fx) = setup() else { return };
    let opts = MicOptions {
        ring_seconds: 10.0,
        sample_rate: Some(48_000),
        channels: Some(2),
        sample_format: Some(CaptureFormat::F32),
        ..MicOptions::default()
    };
    let mut mic = MicSource::open(Some("testmic_f32"), &opts).unwrap();
    assert_eq!((mic.sample_rate(), mic.channels()), (48_000, 2));
    let got = read_n(&mut mic, fx.stereo.len(), 1000);
    let max_err = got
        .iter()
        .zip(&fx.stereo)
        .map(|(g, [l, r])| (g - (l + r) * 0.5).abs())
        .fold(0.0f32, f32::max);
    assert!(max_err < 1e-7, "downmix differs by {max_err}");
}

#[test]
fn an_unpaced_flood_stays_bounded_and_overflow_is_counted() {
    let Some(fx) = setup() else { return };
    // A 50 ms ring (800 samples) against callbacks arriving far faster than real time.
    let opts = MicOptions {
        ring_seconds: 0.05,
        ..s16_mono()
    };
    let mut mic = MicSource::open(Some("testmic"), &opts).unwrap();
    assert_eq!(mic.ring_capacity(), 800);
    let n = fx.mono.len();
    let mut read = 0u64;
    let mut buf = vec![0.0f32; 256];
    let start = Instant::now();
    // Read the file's length, then stop.
    while read < n as u64 && start.elapsed() < DEADLINE {
        assert!(
            mic.queued() <= 800,
            "ring above its bound: {}",
            mic.queued()
        );
        if let ReadOutcome::Samples(k) = mic.read(&mut buf).unwrap() {
            read += k as u64;
        }
    }
    assert!(read >= n as u64, "only {read} samples read");
    // Wait (bounded) until the repeating last period has overflowed the ring.
    let c = mic.counters();
    while SourceCounters::get(&c.samples_dropped) == 0 && start.elapsed() < DEADLINE {
        std::thread::sleep(Duration::from_millis(5));
    }
    mic.stop().unwrap();
    let (sin, dropped) = (
        SourceCounters::get(&c.samples_in),
        SourceCounters::get(&c.samples_dropped),
    );
    assert!(
        dropped > 0,
        "nothing was dropped although the reader fell behind"
    );
    // Every sample delivered was read, dropped, or is still queued.
    assert_eq!(
        sin,
        read + dropped + mic.queued() as u64,
        "in {sin}, read {read}, dropped {dropped}"
    );
    assert!(mic.queued() <= 800);
}

#[test]
fn a_stopped_mic_drains_its_ring_then_ends() {
    let Some(_) = setup() else { return };
    let mut mic = MicSource::open(Some("testmic"), &s16_mono()).unwrap();
    let mut buf = vec![0.0f32; 1 << 16];
    let start = Instant::now();
    while mic.queued() == 0 && start.elapsed() < DEADLINE {
        std::thread::sleep(Duration::from_millis(1));
    }
    mic.stop().unwrap();
    let queued = mic.queued() as u64;
    let c = mic.counters();
    let settled = (
        SourceCounters::get(&c.samples_in),
        SourceCounters::get(&c.samples_dropped),
    );
    let mut read = 0u64;
    loop {
        match mic.read(&mut buf).unwrap() {
            ReadOutcome::Samples(k) => read += k as u64,
            ReadOutcome::Idle => panic!("a stopped mic with a queue is not idle"),
            ReadOutcome::End => break,
        }
    }
    assert!(queued > 0 && read == queued, "queued {queued}, read {read}");
    // Stopped means stopped: the device keeps calling back, nothing more is taken.
    std::thread::sleep(Duration::from_millis(20));
    let after = (
        SourceCounters::get(&c.samples_in),
        SourceCounters::get(&c.samples_dropped),
    );
    assert_eq!(settled, after);
    assert_eq!(mic.read(&mut buf).unwrap(), ReadOutcome::End);
}

#[test]
fn open_parses_a_mic_spec_and_uses_the_device_default_config() {
    let Some(_) = setup() else { return };
    let spec: InputSpec = "mic:testmic".parse().unwrap();
    let mut src = open(&spec, &OpenOptions::default()).unwrap();
    assert!(src.is_live());
    assert!(src.describe().starts_with("mic:"), "{}", src.describe());
    assert!(src.sample_rate() > 0);
    // Whatever the default config, samples arrive.
    let mut buf = vec![0.0f32; 512];
    let start = Instant::now();
    let mut got = 0;
    while got == 0 && start.elapsed() < DEADLINE {
        if let ReadOutcome::Samples(k) = src.read(&mut buf).unwrap() {
            got = k;
        }
    }
    assert!(got > 0);
}

#[test]
fn unknown_device_name_is_an_error_listing_the_devices() {
    let Some(_) = setup() else { return };
    let e = MicSource::open(Some("no-such-mic"), &MicOptions::default())
        .err()
        .unwrap();
    assert!(matches!(e, AudioError::NoDevice { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("no input device matches `no-such-mic`"),
        "{msg}"
    );
    assert!(msg.contains("alsa:testmic"), "{msg}");
}

#[test]
fn unsupported_config_request_is_an_error_naming_it() {
    let Some(_) = setup() else { return };
    let opts = MicOptions {
        channels: Some(3000),
        ..MicOptions::default()
    };
    let e = MicSource::open(Some("testmic"), &opts).err().unwrap();
    assert!(matches!(e, AudioError::Device { .. }), "{e:?}");
    assert!(e.to_string().contains("channels Some(3000)"), "{e}");
}

#[test]
fn devices_are_listed_with_their_configs() {
    let Some(_) = setup() else { return };
    let devices = list_devices().unwrap();
    let mic = devices
        .iter()
        .find(|d| d.id == "alsa:testmic")
        .unwrap_or_else(|| panic!("testmic not listed: {devices:?}"));
    assert_eq!(mic.name, "hark test mic s16 mono");
    assert!(
        mic.configs
            .iter()
            .any(|c| c.starts_with("i16, 1-") && c.contains(" ch, ")),
        "{:?}",
        mic.configs
    );
}
