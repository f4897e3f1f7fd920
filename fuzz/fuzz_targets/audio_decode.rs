//! Audio decoding entry points: `decode_file` (symphonia: WAV, FLAC, Ogg/Vorbis, MP3,
//! chosen by probing and by the extension) and raw PCM through `StdinSource`.
//! Every input must give samples or a typed error, never a panic or a hang.
#![no_main]

use hark::audio::stdin::StdinSource;
use hark::audio::{decode_file, PcmFormat, ReadOutcome, SourceReader};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let ext = ["wav", "flac", "ogg", "mp3", "bin"][usize::from(sel % 5)];
    let path = common::scratch(&format!("input.{ext}"), body);
    if let Ok((x, rate)) = decode_file(&path) {
        assert!(rate > 0);
        assert!(x.iter().all(|v| v.is_finite()));
    }
    // Raw PCM: format and channel count from the selector byte.
    let format = if sel & 0x80 == 0 {
        PcmFormat::S16Le
    } else {
        PcmFormat::F32Le
    };
    let channels = u16::from((sel >> 3) & 0x7) + 1;
    let mut src = StdinSource::new(body, format, 16_000, channels).expect("valid spec");
    let mut buf = vec![0.0f32; 257];
    loop {
        match src.read(&mut buf) {
            Ok(ReadOutcome::Samples(n)) => {
                assert!(n <= buf.len());
                assert!(buf[..n].iter().all(|v| v.is_finite()));
            }
            Ok(ReadOutcome::Idle) => {}
            Ok(ReadOutcome::End) | Err(_) => break,
        }
    }
});
