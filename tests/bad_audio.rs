//! Bad audio input, table-driven: truncated and corrupted WAV, FLAC, Ogg and MP3
//! (cut and overwritten at many places), a header lying about its length, zero
//! length, one sample, 8 kHz and 192 kHz, 8 channels, NaN/Inf/denormal samples,
//! full-scale clipping, DC offset, and an hour of silence. Each input gives either a
//! clear error naming the file, or audio that is analysed normally (finite scores in
//! [0, 1], every start with its stop, the counted recovery reported) — never a panic.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::*;
use hark::audio::{decode_file, AudioError};
use hark::model::Model;
use hark::pipeline::OfflineDetector;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/audio")
        .join(name)
}

/// A small deterministic generator (xorshift64*) for corruption offsets and bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Writes a WAV with `channels` interleaved f32 samples at `rate`.
fn write_f32_wav(path: &Path, rate: u32, channels: u16, samples: &[f32]) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for s in samples {
        w.write_sample(*s).unwrap();
    }
    w.finalize().unwrap();
}

/// Writes a 16-bit WAV.
fn write_i16_wav(path: &Path, rate: u32, channels: u16, samples: &[i16]) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for s in samples {
        w.write_sample(*s).unwrap();
    }
    w.finalize().unwrap();
}

fn sine(freq: f64, rate: u32, n: usize, amp: f64) -> Vec<f32> {
    (0..n)
        .map(|i| {
            (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin()) as f32
        })
        .collect()
}

/// What analysing one file gave.
enum Outcome {
    /// A clear error (its message).
    Error(String),
    /// Analysed: samples decoded, frames, events.
    Analysed { samples: usize, frames: usize },
}

/// Decodes `path` and runs it through the offline detector, checking the
/// invariants of either outcome.
fn analyse(det: &mut OfflineDetector, path: &Path) -> Outcome {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let decoded = decode_file(path);
    let detected = det.detect_file(path, true);
    match (decoded, detected) {
        (Err(e), Err(e2)) => {
            let msg = e.to_string();
            assert!(msg.contains(&name), "error does not name {name}: {msg}");
            assert!(
                matches!(e, AudioError::Decode { .. } | AudioError::Empty { .. }),
                "{name}: unexpected error kind {e:?}"
            );
            assert_eq!(msg, e2.to_string(), "{name}: decode and detect disagree");
            Outcome::Error(msg)
        }
        (Ok((x, rate)), Ok(r)) => {
            assert!(rate > 0, "{name}: rate 0");
            assert!(x.iter().all(|v| v.is_finite()), "{name}: non-finite sample");
            assert!(
                r.scores
                    .iter()
                    .all(|s| s.is_finite() && (0.0..=1.0).contains(s)),
                "{name}: scores outside [0, 1]"
            );
            assert_eq!(r.scores.len(), r.n_frames * 3, "{name}");
            for e in &r.events {
                assert!(
                    e.onset.is_finite() && e.offset >= e.onset,
                    "{name}: event {e:?}"
                );
                assert!(e.offset <= r.n_frames as f64 * r.frame_period_s + 1e-6);
            }
            Outcome::Analysed {
                samples: x.len(),
                frames: r.n_frames,
            }
        }
        (d, r) => panic!(
            "{name}: decoding gave {:?} but detection gave {:?}",
            d.map(|(x, _)| x.len()),
            r.map(|r| r.n_frames)
        ),
    }
}

fn detector(dir: &Path) -> OfflineDetector {
    let model = Model::load(&test_model(dir)).unwrap();
    let pp = model.meta().postprocess.clone();
    OfflineDetector::new(model, &pp).unwrap()
}

#[test]
fn truncated_compressed_and_wav_files_give_what_is_there_or_a_named_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut det = detector(dir.path());
    let mut tried = 0;
    for name in [
        "speech_chime_16k.wav",
        "speech_chime_16k.flac",
        "speech_chime_16k.ogg",
        "speech_chime_16k.mp3",
    ] {
        let bytes = std::fs::read(data(name)).unwrap();
        let full = match analyse(&mut det, &data(name)) {
            Outcome::Analysed { samples, .. } => samples,
            Outcome::Error(e) => panic!("{e}"),
        };
        // Cuts inside the header (every byte of the first 64) and at 30 places in
        // the data.
        let mut cuts: Vec<usize> = (0..64.min(bytes.len())).collect();
        cuts.extend((1..30).map(|k| bytes.len() * k / 30));
        for cut in cuts {
            let p = dir.path().join(format!("cut{cut}_{name}"));
            std::fs::write(&p, &bytes[..cut]).unwrap();
            if let Outcome::Analysed { samples, .. } = analyse(&mut det, &p) {
                // A cut file never yields more than the whole file (MP3/Vorbis frames
                // may decode a packet's worth of padding).
                assert!(
                    samples <= full + 4096,
                    "{name} cut at {cut}: {samples} > {full}"
                );
            }
            tried += 1;
        }
    }
    assert!(tried > 300);
}

#[test]
fn corrupted_bytes_anywhere_are_skipped_or_refused_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut det = detector(dir.path());
    let mut rng = Rng(0x5eed_1234);
    let (mut errors, mut analysed) = (0, 0);
    for name in [
        "speech_chime_16k.wav",
        "speech_chime_16k.flac",
        "speech_chime_16k.ogg",
        "speech_chime_16k.mp3",
        "speech_44k1_stereo.wav",
        "nonfinite_f32.wav",
    ] {
        let bytes = std::fs::read(data(name)).unwrap();
        for trial in 0..25 {
            let mut b = bytes.clone();
            // Overwrite 1 to 4 runs of 1..256 random bytes; the first trials hit the
            // header, where the format is decided.
            for _ in 0..1 + rng.below(4) {
                let at = if trial < 8 {
                    rng.below(64.min(b.len()))
                } else {
                    rng.below(b.len())
                };
                let len = 1 + rng.below(256);
                for x in b.iter_mut().skip(at).take(len) {
                    *x = rng.next() as u8;
                }
            }
            let p = dir.path().join(format!("corrupt{trial}_{name}"));
            std::fs::write(&p, &b).unwrap();
            match analyse(&mut det, &p) {
                Outcome::Error(_) => errors += 1,
                Outcome::Analysed { .. } => analysed += 1,
            }
        }
    }
    assert_eq!(errors + analysed, 150);
    // Most damage lies in the audio data and is skipped, not fatal.
    assert!(analysed > errors, "analysed {analysed}, refused {errors}");
}

#[test]
fn unusual_but_valid_audio_is_analysed() {
    let dir = tempfile::tempdir().unwrap();
    let mut det = detector(dir.path());
    let d = dir.path();
    let second = |rate: u32| sine(440.0, rate, rate as usize, 0.5);
    // (file, seconds of audio it holds)
    let mut cases: Vec<(PathBuf, f64)> = Vec::new();
    let mut add = |name: &str, secs: f64, write: &dyn Fn(&Path)| {
        let p = d.join(name);
        write(&p);
        cases.push((p, secs));
    };
    add("one_sample.wav", 1.0 / 16_000.0, &|p| {
        write_i16_wav(p, 16_000, 1, &[1234])
    });
    add("one_sample_44k.wav", 1.0 / 44_100.0, &|p| {
        write_i16_wav(p, 44_100, 1, &[-1234])
    });
    add("rate_8k.wav", 1.0, &|p| {
        write_f32_wav(p, 8_000, 1, &second(8_000))
    });
    add("rate_192k.wav", 1.0, &|p| {
        write_f32_wav(p, 192_000, 1, &second(192_000))
    });
    add("eight_channels_48k.wav", 1.0, &|p| {
        let x = second(48_000);
        let inter: Vec<f32> = x.iter().flat_map(|v| [*v; 8]).collect();
        write_f32_wav(p, 48_000, 8, &inter)
    });
    add("denormals.wav", 1.0, &|p| {
        // Subnormal f32 values (and signed zeros) throughout.
        let x: Vec<f32> = (0..16_000)
            .map(|i| match i % 4 {
                0 => f32::MIN_POSITIVE / 3.0,
                1 => -f32::MIN_POSITIVE / 7.0,
                2 => -0.0,
                _ => 1e-45,
            })
            .collect();
        write_f32_wav(p, 16_000, 1, &x)
    });
    add("full_scale_clipping.wav", 1.0, &|p| {
        // A square wave at full scale (i16 limits), and f32 beyond ±1.
        let x: Vec<i16> = (0..16_000)
            .map(|i| {
                if (i / 20) % 2 == 0 {
                    i16::MAX
                } else {
                    i16::MIN
                }
            })
            .collect();
        write_i16_wav(p, 16_000, 1, &x)
    });
    add("over_full_scale_f32.wav", 1.0, &|p| {
        let x: Vec<f32> = sine(440.0, 16_000, 16_000, 40.0);
        write_f32_wav(p, 16_000, 1, &x)
    });
    add("dc_offset.wav", 1.0, &|p| {
        let x: Vec<f32> = second(16_000).iter().map(|v| 0.2 * v + 0.7).collect();
        write_f32_wav(p, 16_000, 1, &x)
    });
    add("dc_only.wav", 1.0, &|p| {
        write_f32_wav(p, 16_000, 1, &[1.0; 16_000])
    });
    add("nan_inf_mix.wav", 1.0, &|p| {
        let x: Vec<f32> = (0..16_000)
            .map(|i| match i % 5 {
                0 => f32::NAN,
                1 => f32::INFINITY,
                2 => f32::NEG_INFINITY,
                _ => 0.1,
            })
            .collect();
        write_f32_wav(p, 16_000, 1, &x)
    });
    add("all_nan.wav", 1.0, &|p| {
        write_f32_wav(p, 16_000, 1, &[f32::NAN; 16_000])
    });
    for (p, secs) in &cases {
        let name = p.file_name().unwrap().to_string_lossy();
        match analyse(&mut det, p) {
            Outcome::Analysed { frames, .. } => {
                // 50 frames per second of audio (the last partial frame padded).
                let want = (secs * 50.0).ceil();
                assert!(
                    (frames as f64 - want).abs() <= 2.0,
                    "{name}: {frames} frames for {secs} s"
                );
            }
            Outcome::Error(e) => panic!("{name}: {e}"),
        }
    }
    // Non-finite samples are counted and reported by `hark detect`.
    let o = run(&[
        "detect",
        "--model",
        dir.path().join("model.safetensors").to_str().unwrap(),
        d.join("nan_inf_mix.wav").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("samples=9600"), "{}", stderr(&o));
}

#[test]
fn detect_and_run_exit_1_naming_each_unreadable_file() {
    let dir = tempfile::tempdir().unwrap();
    let model = test_model(dir.path());
    let m = model.to_str().unwrap();
    let bytes = std::fs::read(data("speech_chime_16k.ogg")).unwrap();
    let ogg_cut = dir.path().join("cut_header.ogg");
    std::fs::write(&ogg_cut, &bytes[..40]).unwrap();
    let mp3 = std::fs::read(data("speech_chime_16k.mp3")).unwrap();
    let mp3_junk = dir.path().join("junk.mp3");
    std::fs::write(&mp3_junk, &mp3[..3]).unwrap();
    let zero = dir.path().join("zero_bytes.wav");
    std::fs::write(&zero, b"").unwrap();
    let bad = [
        data("corrupt.bin"),
        data("truncated_header.wav"),
        data("empty.wav"),
        ogg_cut,
        mp3_junk,
        zero,
        dir.path().join("missing.flac"),
    ];
    for f in &bad {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        for args in [
            vec!["detect", "--model", m, f.to_str().unwrap()],
            vec!["run", "--model", m, "--input", f.to_str().unwrap()],
        ] {
            let o = run(&args);
            let e = stderr(&o);
            assert_eq!(o.status.code(), Some(1), "{args:?}: {e}");
            assert!(
                e.contains(&name),
                "{args:?}: error does not name {name}: {e}"
            );
            assert!(!e.contains("panicked"), "{e}");
        }
    }
    // Good and bad files together: the good ones are detected, each bad one named.
    let mut args = vec!["detect", "--model", m];
    let good = clip();
    args.push(good.to_str().unwrap());
    let bad_strs: Vec<String> = bad.iter().map(|p| p.display().to_string()).collect();
    args.extend(bad_strs.iter().map(String::as_str));
    let o = run(&args);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("7 of 8 files"), "{}", stderr(&o));
    assert!(!parse_tsv(&stdout(&o)).is_empty());
}

/// Streams an hour of digital silence through `hark run` on stdin (as fast as
/// possible), with `config` (TOML text), and returns the output lines.
fn run_an_hour_of_silence(dir: &Path, model: &Path, config: &str) -> Vec<serde_json::Value> {
    let cfg = dir.join("silence.toml");
    std::fs::write(&cfg, config).unwrap();
    let mut child = hark()
        .args(["run", "--model", model.to_str().unwrap(), "--config"])
        .arg(&cfg)
        .args(["--input", "stdin:s16le:16000:1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let zeros = vec![0u8; 32_000]; // 1 s
        for _ in 0..3600 {
            stdin.write_all(&zeros).unwrap();
        }
    });
    let o = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let last = lines.last().unwrap();
    assert_eq!(last["state"], "ended");
    assert!(
        (last["t"].as_f64().unwrap() - 3600.0).abs() < 0.05,
        "{last}"
    );
    assert_eq!(last["nonfinite_samples"], 0);
    assert_eq!(last["dropped_frames"], 0);
    let starts = lines.iter().filter(|v| v["type"] == "start").count();
    let stops = lines.iter().filter(|v| v["type"] == "stop").count();
    assert_eq!(starts, stops, "every start has its stop");
    lines
}

#[test]
fn an_hour_of_silence_is_analysed_to_the_end_in_a_steady_state() {
    let dir = tempfile::tempdir().unwrap();
    let model = test_model(dir.path());
    // Without the energy gate the random test model sees the same window over and
    // over: whatever it reports, it reports the same in every ten minutes (no
    // drift, no state that grows), and it never stops early.
    let lines = run_an_hour_of_silence(dir.path(), &model, "");
    let mut per_block = [0usize; 6];
    for v in lines.iter().filter(|v| v["type"] == "stop") {
        let t = v["t_start"].as_f64().unwrap();
        per_block[((t / 600.0) as usize).min(5)] += 1;
    }
    let (lo, hi) = (
        per_block.iter().min().unwrap(),
        per_block.iter().max().unwrap(),
    );
    assert!(hi - lo <= 3, "events per 10 min drift: {per_block:?}");
    // With the energy gate, silence costs no inference and gives no event.
    let lines =
        run_an_hour_of_silence(dir.path(), &model, "[pipeline]\nenergy_gate_dbfs = -60.0\n");
    assert_eq!(lines.iter().filter(|v| v["type"] == "start").count(), 0);
    let last = lines.last().unwrap();
    assert_eq!(last["windows"], 0, "{last}");
    assert!(last["windows_gated"].as_u64().unwrap() >= 3500, "{last}");
}
