//! Audio sources end to end: decoding every supported format against reference
//! decoders (hound for WAV, the lossless FLAC, correlation for lossy codecs), downmix,
//! resampling quality, raw PCM, and one test per error case. Fixtures are made by
//! `scripts/make_test_audio.sh` (see `tests/data/audio/README.md`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hark::audio::file::FileSource;
use hark::audio::resample::Resampler;
use hark::audio::stdin::StdinSource;
use hark::audio::{
    decode_file, open, AudioError, InputSpec, OpenOptions, PcmFormat, ReadOutcome, SourceCounters,
    SourceReader,
};
use rand::{Rng, SeedableRng};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/audio")
        .join(name)
}

/// The reference: hound's samples, downmixed by averaging, as f32 (i16 / 32768).
fn hound_mono(name: &str) -> (Vec<f32>, u32) {
    let mut r = hound::WavReader::open(data(name)).unwrap();
    let spec = r.spec();
    let ch = usize::from(spec.channels);
    let s: Vec<f32> = r
        .samples::<i16>()
        .map(|v| f32::from(v.unwrap()) / 32768.0)
        .collect();
    let mono = s
        .chunks_exact(ch)
        .map(|f| f.iter().sum::<f32>() / ch as f32)
        .collect();
    (mono, spec.sample_rate)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn correlation(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let ma = a.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
    let mb = b.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x) - ma, f64::from(y) - mb);
        sab += x * y;
        saa += x * x;
        sbb += y * y;
    }
    sab / (saa * sbb).sqrt()
}

fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len() as f64).sqrt()
}

fn read_all(src: &mut dyn SourceReader, chunk: usize) -> Vec<f32> {
    let mut out = Vec::new();
    let mut buf = vec![0.0f32; chunk];
    loop {
        match src.read(&mut buf).unwrap() {
            ReadOutcome::Samples(n) => out.extend_from_slice(&buf[..n]),
            ReadOutcome::Idle => {}
            ReadOutcome::End => return out,
        }
    }
}

/// Runs `f` with a tracing subscriber that writes to a string, and returns that text.
fn logs_of<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sink = Sink(Arc::new(Mutex::new(Vec::new())));
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .with_writer(move || writer.clone())
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    (out, text)
}

const N_16K: usize = 83_714;

#[test]
fn wav_decode_equals_hound_samples() {
    let (x, rate) = decode_file(&data("speech_chime_16k.wav")).unwrap();
    let (want, want_rate) = hound_mono("speech_chime_16k.wav");
    assert_eq!((rate, want_rate), (16_000, 16_000));
    assert_eq!(x.len(), N_16K);
    assert!(max_abs_diff(&x, &want) < 1e-7);
}

#[test]
fn flac_equals_wav_exactly() {
    let (wav, _) = decode_file(&data("speech_chime_16k.wav")).unwrap();
    let (flac, rate) = decode_file(&data("speech_chime_16k.flac")).unwrap();
    assert_eq!(rate, 16_000);
    assert!(max_abs_diff(&flac, &wav) < 1e-7);
}

#[test]
fn ogg_vorbis_is_close_to_wav() {
    let (wav, _) = decode_file(&data("speech_chime_16k.wav")).unwrap();
    let (ogg, rate) = decode_file(&data("speech_chime_16k.ogg")).unwrap();
    assert_eq!(rate, 16_000);
    assert_eq!(ogg.len(), N_16K, "Vorbis in Ogg is gapless");
    let c = correlation(&ogg, &wav);
    assert!(c > 0.98, "correlation {c}");
}

#[test]
fn mp3_is_close_to_wav() {
    let (wav, _) = decode_file(&data("speech_chime_16k.wav")).unwrap();
    let (mp3, rate) = decode_file(&data("speech_chime_16k.mp3")).unwrap();
    assert_eq!(rate, 16_000);
    // LAME's gapless info lets the decoder trim the encoder delay and padding.
    assert_eq!(mp3.len(), N_16K);
    let c = correlation(&mp3, &wav);
    assert!(c > 0.95, "correlation {c}");
}

#[test]
fn stereo_44k1_is_downmixed_by_averaging() {
    let (x, rate) = decode_file(&data("speech_44k1_stereo.wav")).unwrap();
    let (want, _) = hound_mono("speech_44k1_stereo.wav");
    assert_eq!(rate, 44_100);
    assert_eq!(x.len(), 17_640);
    assert!(max_abs_diff(&x, &want) < 1e-6);
}

#[test]
fn eight_channels_are_downmixed_by_averaging() {
    let (x, rate) = decode_file(&data("speech_16k_8ch.wav")).unwrap();
    let (want, _) = hound_mono("speech_16k_8ch.wav");
    assert_eq!(rate, 16_000);
    assert_eq!(x.len(), 4_800);
    assert!(max_abs_diff(&x, &want) < 1e-6);
    // Channel gains 1, 0.875 … 0.125 average to 0.5625: the mono mix is the excerpt
    // (0.5 s .. 0.8 s of the recording) times 0.5625, up to 16-bit rounding per channel.
    let (orig, _) = decode_file(&data("speech_chime_16k.wav")).unwrap();
    let excerpt: Vec<f32> = orig[8_000..12_800].iter().map(|v| v * 0.5625).collect();
    assert!(max_abs_diff(&x, &excerpt) < 8.0 / 32768.0);
}

#[test]
fn stereo_44k1_resampled_to_16k_matches_the_original() {
    let (x, _) = decode_file(&data("speech_44k1_stereo.wav")).unwrap();
    let mut r = Resampler::new(44_100, 16_000).unwrap();
    let mut y = Vec::new();
    r.process(&x, &mut y).unwrap();
    r.finish(&mut y).unwrap();
    assert_eq!(y.len(), 6_400);
    // Gains 1 and 0.5 average to 0.75; the excerpt starts at 0.5 s.
    let (orig, _) = decode_file(&data("speech_chime_16k.wav")).unwrap();
    let want: Vec<f32> = orig[8_000..14_400].iter().map(|v| v * 0.75).collect();
    let c = correlation(&y, &want);
    assert!(c > 0.999, "correlation {c}");
    let gain = rms(&y) / rms(&want);
    assert!((gain - 1.0).abs() < 0.01, "gain {gain}");
    // Skip the edges (filter start-up in sox's and our resampler).
    let err = max_abs_diff(&y[100..6_300], &want[100..6_300]);
    assert!(err < 0.01, "max error {err}");
}

fn sine(freq: f64, rate: u32, n: usize, amp: f64) -> Vec<f32> {
    (0..n)
        .map(|i| {
            (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin()) as f32
        })
        .collect()
}

/// Resamples `x` fed in random-sized pieces (seeded).
fn resample_in_pieces(from: u32, to: u32, x: &[f32], seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut r = Resampler::new(from, to).unwrap();
    let mut out = Vec::new();
    let mut i = 0;
    while i < x.len() {
        let n = rng.random_range(1..=3000).min(x.len() - i);
        r.process(&x[i..i + n], &mut out).unwrap();
        i += n;
    }
    r.finish(&mut out).unwrap();
    out
}

/// The time lag (in output samples, on a 0.005 grid within ±2) that best aligns `y`
/// with the ideal sine, and the RMS error there.
fn best_lag(y: &[f32], freq: f64, amp: f64, rate: f64) -> (f64, f64) {
    let mid = 2_000..y.len() - 2_000;
    let mut best = (0.0, f64::INFINITY);
    for k in -400..=400 {
        let lag = f64::from(k) * 0.005;
        let e: f64 = mid
            .clone()
            .map(|j| {
                let t = (j as f64 + lag) / rate;
                let d = f64::from(y[j]) - amp * (2.0 * std::f64::consts::PI * freq * t).sin();
                d * d
            })
            .sum();
        let e = (e / mid.len() as f64).sqrt();
        if e < best.1 {
            best = (lag, e);
        }
    }
    best
}

#[test]
fn resampling_preserves_a_sines_frequency_amplitude_and_phase() {
    // Output sample j is the input signal at time j / 16000: compare with the ideal sine.
    for &(from, freq) in &[
        (44_100u32, 1_000.0),
        (44_100, 6_000.0),
        (48_000, 3_000.0),
        (8_000, 1_000.0),
        (22_050, 5_000.0),
    ] {
        let n = from as usize * 2;
        let x = sine(freq, from, n, 0.5);
        let y = resample_in_pieces(from, 16_000, &x, 7);
        assert_eq!(
            y.len(),
            (n as f64 * 16_000.0 / f64::from(from)).round() as usize
        );
        let want = sine(freq, 16_000, y.len(), 0.5);
        let mid = 2_000..y.len() - 2_000;
        let err = max_abs_diff(&y[mid.clone()], &want[mid.clone()]);
        assert!(err < 1e-3, "{from} Hz, {freq} Hz sine: max error {err}");
        let gain = rms(&y[mid.clone()]) / rms(&want[mid]);
        assert!(
            (gain - 1.0).abs() < 0.002,
            "{from} Hz, {freq} Hz: gain {gain}"
        );
    }
    // An odd rate pair uses the sinc resampler, whose delay is fractional: aligned to
    // within one output sample, with frequency and amplitude intact.
    let x = sine(1_000.0, 44_101, 88_202, 0.5);
    let y = resample_in_pieces(44_101, 16_000, &x, 7);
    let (lag, err) = best_lag(&y, 1_000.0, 0.5, 16_000.0);
    assert!(lag.abs() < 1.0 && err < 1e-3, "lag {lag}, rms error {err}");
}

#[test]
fn resampling_rejects_content_above_the_new_nyquist() {
    // 10 kHz at 44.1 kHz would alias to 6 kHz at 16 kHz; 9 kHz at 48 kHz to 7 kHz.
    for &(from, freq) in &[
        (44_100u32, 10_000.0),
        (48_000, 9_000.0),
        (44_100, 12_000.0),
        (44_101, 10_000.0),
    ] {
        let x = sine(freq, from, from as usize, 0.5);
        let y = resample_in_pieces(from, 16_000, &x, 3);
        let mid = &y[2_000..y.len() - 2_000];
        let ratio = rms(mid) / rms(&x);
        assert!(
            ratio < 1e-3,
            "{from} Hz, {freq} Hz: passed {ratio} (> -60 dB)"
        );
    }
}

#[test]
fn resampled_output_does_not_depend_on_chunking() {
    let (x, _) = decode_file(&data("speech_44k1_stereo.wav")).unwrap();
    for &(from, to) in &[(44_100u32, 16_000u32), (8_000, 16_000), (44_101, 16_000)] {
        let mut r = Resampler::new(from, to).unwrap();
        let mut whole = Vec::new();
        r.process(&x, &mut whole).unwrap();
        r.finish(&mut whole).unwrap();
        for seed in 0..4 {
            let pieces = resample_in_pieces(from, to, &x, seed);
            let d = max_abs_diff(&pieces, &whole);
            assert!(d < 1e-6, "{from}->{to} seed {seed}: {d}");
        }
    }
}

#[test]
fn file_reads_of_any_size_give_the_same_samples() {
    let (want, _) = hound_mono("speech_chime_16k.wav");
    for chunk in [1usize, 7, 4096, 100_000] {
        let mut src = FileSource::open(&data("speech_chime_16k.flac"), false).unwrap();
        let got = read_all(&mut src, chunk);
        assert!(max_abs_diff(&got, &want) < 1e-7, "chunk {chunk}");
        assert_eq!(
            SourceCounters::get(&src.counters().samples_in),
            N_16K as u64
        );
    }
}

#[test]
fn open_dispatches_a_file_spec() {
    let spec: InputSpec = format!("file:{}", data("speech_chime_16k.ogg").display())
        .parse()
        .unwrap();
    let mut src = open(&spec, &OpenOptions::default()).unwrap();
    assert_eq!(src.sample_rate(), 16_000);
    assert!(!src.is_live());
    assert!(src.describe().starts_with("file:") && src.describe().ends_with(".ogg"));
    assert_eq!(read_all(src.as_mut(), 4096).len(), N_16K);
}

#[test]
fn realtime_file_is_paced_to_its_rate() {
    // Only a lower bound: pacing sleeps, so reading 0.25 s of audio cannot take less.
    let mut src = FileSource::open(&data("speech_chime_16k.wav"), true).unwrap();
    let start = std::time::Instant::now();
    let mut buf = vec![0.0f32; 400];
    let mut got = 0;
    while got < 4_000 {
        if let ReadOutcome::Samples(n) = src.read(&mut buf).unwrap() {
            got += n;
        }
    }
    assert!(
        start.elapsed().as_secs_f64() >= 0.249,
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn raw_s16le_pcm_equals_the_wav_samples() {
    // The WAV's data chunk is raw s16le mono PCM after its 44-byte header.
    let bytes = std::fs::read(data("speech_chime_16k.wav")).unwrap();
    assert_eq!(&bytes[36..40], b"data");
    let mut src = StdinSource::new(&bytes[44..], PcmFormat::S16Le, 16_000, 1).unwrap();
    assert_eq!(src.describe(), "stdin:s16le:16000:1");
    let got = read_all(&mut src, 333);
    let (want, _) = hound_mono("speech_chime_16k.wav");
    assert!(max_abs_diff(&got, &want) < 1e-7);
}

// ---- Errors: each names the file or value and what was expected. ----

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let e = decode_file(&data("no_such_file.wav")).unwrap_err();
    assert!(matches!(e, AudioError::Io { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("no_such_file.wav") && msg.contains("No such file"),
        "{msg}"
    );
}

#[test]
fn random_bytes_are_rejected_as_not_audio() {
    let e = decode_file(&data("corrupt.bin")).unwrap_err();
    assert!(matches!(e, AudioError::Decode { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("corrupt.bin"), "{msg}");
    assert!(
        msg.contains("expected a WAV, FLAC, Ogg/Vorbis or MP3 file"),
        "{msg}"
    );
}

#[test]
fn wav_cut_inside_its_header_is_an_error() {
    let e = decode_file(&data("truncated_header.wav")).unwrap_err();
    assert!(matches!(e, AudioError::Decode { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("truncated_header.wav") && msg.contains("expected a WAV"),
        "{msg}"
    );
}

#[test]
fn zero_length_wav_is_an_empty_error() {
    let e = decode_file(&data("empty.wav")).unwrap_err();
    assert!(matches!(e, AudioError::Empty { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("empty.wav") && msg.ends_with("contains no audio samples"),
        "{msg}"
    );
}

#[test]
fn wav_cut_inside_its_data_gives_what_is_there_and_warns() {
    let (res, logs) = logs_of(|| decode_file(&data("truncated_data.wav")));
    let (x, rate) = res.unwrap();
    assert_eq!(rate, 16_000);
    assert_eq!(x.len(), 8_000);
    let (want, _) = hound_mono("speech_chime_16k.wav");
    assert!(max_abs_diff(&x, &want[..8_000]) < 1e-7);
    assert!(
        logs.contains("truncated") && logs.contains("truncated_data.wav"),
        "{logs}"
    );
    assert!(logs.contains("declared_s=5.23"), "{logs}");
}

#[test]
fn wav_header_claiming_maximum_length_decodes_all_data() {
    let (res, logs) = logs_of(|| decode_file(&data("lying_length.wav")));
    let (x, _) = res.unwrap();
    let (orig, _) = hound_mono("speech_chime_16k.wav");
    assert_eq!(x.len(), 16_000);
    assert!(max_abs_diff(&x, &orig[8_000..24_000]) < 1e-7);
    assert!(!logs.contains("truncated"), "{logs}");
}

#[test]
fn nonfinite_samples_are_zeroed_counted_and_reported() {
    let (res, logs) = logs_of(|| {
        let mut src = FileSource::open(&data("nonfinite_f32.wav"), false).unwrap();
        let x = read_all(&mut src, 256);
        (x, SourceCounters::get(&src.counters().samples_nonfinite))
    });
    let (x, bad) = res;
    assert_eq!(x.len(), 1_000);
    assert_eq!(bad, 4);
    let mut want = sine(440.0, 16_000, 1_000, 0.5);
    for i in [100, 200, 300, 400] {
        want[i] = 0.0;
    }
    assert!(max_abs_diff(&x, &want) < 1e-6);
    assert!(
        logs.contains("non-finite") && logs.contains("nonfinite_f32.wav"),
        "{logs}"
    );
}

#[test]
fn corrupt_packets_mid_file_are_skipped_counted_and_logged_with_their_time() {
    let (res, logs) = logs_of(|| {
        let mut src = FileSource::open(&data("corrupt_middle.flac"), false).unwrap();
        let x = read_all(&mut src, 4096);
        (x, SourceCounters::get(&src.counters().packets_skipped))
    });
    let (x, skipped) = res;
    assert!(skipped >= 1, "no packet skipped");
    assert!(
        logs.contains("corrupt data skipped") && logs.contains("at_s="),
        "{logs}"
    );
    // The lost frames become silence, so the file keeps its length and timeline: the
    // audio before and after the damage (bytes in the middle) is intact.
    let (want, _) = hound_mono("speech_chime_16k.wav");
    assert_eq!(x.len(), N_16K);
    assert!(max_abs_diff(&x[..32_000], &want[..32_000]) < 1e-7);
    assert!(max_abs_diff(&x[42_000..], &want[42_000..]) < 1e-7);
}

#[test]
fn clean_files_report_nothing_skipped_or_replaced() {
    for name in [
        "speech_chime_16k.wav",
        "speech_chime_16k.flac",
        "speech_chime_16k.ogg",
        "speech_chime_16k.mp3",
        "speech_44k1_stereo.wav",
        "speech_16k_8ch.wav",
    ] {
        let mut src = FileSource::open(&data(name), false).unwrap();
        let n = read_all(&mut src, 4096).len() as u64;
        let c = src.counters();
        assert_eq!(SourceCounters::get(&c.packets_skipped), 0, "{name}");
        assert_eq!(SourceCounters::get(&c.samples_nonfinite), 0, "{name}");
        assert_eq!(SourceCounters::get(&c.samples_in), n, "{name}");
    }
}
