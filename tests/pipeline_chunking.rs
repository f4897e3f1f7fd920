//! The same audio fed through the pipeline stages in one block or in random-sized
//! chunks gives identical frames, scores and events (design: "Feeding a file in one
//! block or in random-sized chunks gives identical frames, scores and events").

mod common;

use hark::audio::decode_file;
use hark::detect::event::Event;
use hark::pipeline::{DetectStage, FeatureStage, StageOutput};
use proptest::prelude::*;

/// Runs `samples` (at `rate`) through both stages, cutting the input at `cuts`
/// (sizes in samples, cycled); returns (frames, scores, events).
fn run(
    model: &std::path::Path,
    samples: &[f32],
    rate: u32,
    cuts: &[usize],
) -> (Vec<f32>, Vec<f32>, Vec<Event>) {
    let m = hark::model::Model::load(model).unwrap();
    let meta = m.meta().clone();
    let mut fe = FeatureStage::new(rate, &meta.features).unwrap();
    let mut st = DetectStage::new(m, &meta.postprocess, "t".into()).unwrap();
    let (mut frames, mut scores, mut events) = (Vec::new(), Vec::new(), Vec::new());
    let mut chunk_frames = Vec::new();
    let mut on = |o: StageOutput<'_>| match o {
        StageOutput::Scores { scores: s, .. } => scores.extend_from_slice(s),
        StageOutput::Event(e) => events.push(e),
    };
    let mut pos = 0;
    let mut i = 0;
    while pos < samples.len() {
        let n = if cuts.is_empty() {
            samples.len()
        } else {
            cuts[i % cuts.len()].max(1)
        };
        let end = (pos + n).min(samples.len());
        chunk_frames.clear();
        fe.push(&samples[pos..end], &mut chunk_frames).unwrap();
        frames.extend_from_slice(&chunk_frames);
        st.push(&chunk_frames, &mut on).unwrap();
        pos = end;
        i += 1;
    }
    chunk_frames.clear();
    fe.finish(&mut chunk_frames).unwrap();
    frames.extend_from_slice(&chunk_frames);
    st.push(&chunk_frames, &mut on).unwrap();
    st.finish(&mut on).unwrap();
    (frames, scores, events)
}

fn fixture() -> &'static (tempfile::TempDir, std::path::PathBuf) {
    static F: std::sync::OnceLock<(tempfile::TempDir, std::path::PathBuf)> =
        std::sync::OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let model = common::test_model(dir.path());
        (dir, model)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn random_chunkings_give_identical_frames_scores_and_events(
        cuts in proptest::collection::vec(1usize..9000, 1..12),
        resampled in any::<bool>(),
    ) {
        let (_, model) = fixture();
        // Either the 16 kHz recording itself or its 44.1 kHz stereo excerpt (resampled).
        let name = if resampled { "speech_44k1_stereo.wav" } else { "speech_chime_16k.wav" };
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/audio").join(name);
        let (samples, rate) = decode_file(&path).unwrap();
        let whole = run(model, &samples, rate, &[]);
        let chunked = run(model, &samples, rate, &cuts);
        prop_assert!(!whole.0.is_empty());
        prop_assert_eq!(whole.0.len(), chunked.0.len());
        let max_frame_diff = whole.0.iter().zip(&chunked.0).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        prop_assert!(max_frame_diff <= 1e-5, "frames differ by {}", max_frame_diff);
        prop_assert_eq!(whole.1.len(), chunked.1.len());
        let max_score_diff = whole.1.iter().zip(&chunked.1).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        prop_assert!(max_score_diff <= 1e-6, "scores differ by {}", max_score_diff);
        prop_assert_eq!(whole.2, chunked.2);
    }
}

#[test]
fn nonfinite_samples_are_zeroed_counted_and_reported_by_detect() {
    let (_, model) = fixture();
    let f =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/audio/nonfinite_f32.wav");
    let o = common::run(&[
        "detect",
        "--model",
        model.to_str().unwrap(),
        f.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let e = common::stderr(&o);
    assert!(e.contains("non-finite") && e.contains("samples=4"), "{e}");
}
