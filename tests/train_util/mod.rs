//! Generated sound sources for the training tests: tones, chirps and noise bursts at
//! several rates, plus a brown-noise background.
#![allow(dead_code)]

use std::f32::consts::PI;
use std::path::Path;

use hark::train::synth::write_wav;

pub const CLASSES: [&str; 3] = ["beep", "chirp", "knock"];

/// Writes `n` variants of each generated sound class into `dir/<class>/`, at different
/// rates and channel counts (so synthesis must resample and downmix).
pub fn make_sources(dir: &Path) {
    for (ci, class) in CLASSES.iter().enumerate() {
        let d = dir.join("fg").join(class);
        std::fs::create_dir_all(&d).unwrap();
        for v in 0..4 {
            let rate = [16_000u32, 22_050, 44_100][(ci + v) % 3];
            let secs = 0.3 + 0.1 * v as f32;
            let n = (secs * rate as f32) as usize;
            let mut lcg = 12345u32.wrapping_add(v as u32 * 7 + ci as u32 * 101);
            let x: Vec<f32> = (0..n)
                .map(|i| {
                    let t = i as f32 / rate as f32;
                    let env = (PI * t / secs).sin();
                    match ci {
                        0 => 0.5 * env * (2.0 * PI * (900.0 + 100.0 * v as f32) * t).sin(),
                        1 => {
                            let f0 = 400.0;
                            let f1 = 3000.0;
                            let ph = 2.0 * PI * (f0 * t + (f1 - f0) * t * t / (2.0 * secs));
                            0.5 * env * ph.sin()
                        }
                        _ => {
                            // Short noise bursts (knocks) every 0.1 s.
                            lcg = lcg.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                            let noise = (lcg >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0;
                            let ph = (t * 10.0).fract();
                            0.6 * noise * (-ph * 40.0).exp()
                        }
                    }
                })
                .collect();
            let path = d.join(format!("{class}_{v}.wav"));
            if v % 2 == 1 {
                // Stereo, 24-bit: synthesis must downmix and convert.
                let spec = hound::WavSpec {
                    channels: 2,
                    sample_rate: rate,
                    bits_per_sample: 24,
                    sample_format: hound::SampleFormat::Int,
                };
                let mut w = hound::WavWriter::create(&path, spec).unwrap();
                for &s in &x {
                    let v = (s * 8_000_000.0) as i32;
                    w.write_sample(v).unwrap();
                    w.write_sample(v / 2).unwrap();
                }
                w.finalize().unwrap();
            } else {
                write_wav(&path, &x, rate).unwrap();
            }
        }
    }
    let bg = dir.join("bg");
    std::fs::create_dir_all(&bg).unwrap();
    let mut lcg = 99u32;
    let mut y = 0.0f32;
    let x: Vec<f32> = (0..48_000)
        .map(|_| {
            lcg = lcg.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let w = (lcg >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0;
            y = 0.98 * y + 0.02 * w;
            y
        })
        .collect();
    write_wav(&bg.join("brown.wav"), &x, 16_000).unwrap();
}
