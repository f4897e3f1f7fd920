//! hark's metrics against the reference tools (sed_eval 0.2.1, sed_scores_eval 0.0.4,
//! scikit-learn) on the corpus made by `scripts/golden_metrics.py`: every number of
//! every case must agree to 1e-6 (absolute), and every `null` (undefined) must be
//! undefined in hark too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hark::metrics::event_based::EventBasedOptions;
use hark::metrics::psds::{psds, PsdsParams};
use hark::metrics::scores::audio_id;
use hark::metrics::tsv::{read_durations, read_events, read_score_dir};
use hark::metrics::{evaluate, EvalInputs, EvalOptions};
use serde_json::Value;

const TOL: f64 = 1e-6;

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/metrics");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("golden corpus present (run scripts/golden_metrics.py)")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.join("expected.json").is_file())
        .collect();
    v.sort();
    v
}

/// Compares `actual` to `expected` recursively; returns (numbers compared, mismatches).
fn compare(path: &str, expected: &Value, actual: &Value, n: &mut usize, bad: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                match a.get(k) {
                    Some(av) => compare(&format!("{path}.{k}"), ev, av, n, bad),
                    None => bad.push(format!("{path}.{k}: missing in hark's output")),
                }
            }
            for k in a.keys() {
                if !e.contains_key(k) {
                    bad.push(format!("{path}.{k}: not in the expected output"));
                }
            }
        }
        (Value::Number(e), Value::Number(a)) => {
            *n += 1;
            let (e, a) = (
                e.as_f64().unwrap_or(f64::NAN),
                a.as_f64().unwrap_or(f64::NAN),
            );
            if (e - a).abs().is_nan() || (e - a).abs() > TOL {
                bad.push(format!(
                    "{path}: expected {e}, hark {a} (diff {:e})",
                    (e - a).abs()
                ));
            }
        }
        (Value::Null, Value::Null) => *n += 1,
        (e, a) => bad.push(format!("{path}: expected {e}, hark {a}")),
    }
}

struct Case {
    inputs: EvalInputs,
    opts: EvalOptions,
    expected: Value,
}

fn load(dir: &Path) -> Case {
    let args: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("args.json")).expect("args.json"))
            .expect("args json");
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("expected.json")).expect("expected"),
    )
    .expect("json");
    let reference = read_events(&dir.join("ref.tsv")).expect("ref.tsv");
    let estimate = read_events(&dir.join("est.tsv")).expect("est.tsv");
    let durations = if args["durations"].as_bool() == Some(true) {
        Some(read_durations(&dir.join("durations.tsv")).expect("durations"))
    } else {
        None
    };
    let scores = if args["scores"].as_bool() == Some(true) {
        Some(read_score_dir(&dir.join("scores")).expect("scores"))
    } else {
        None
    };
    let mut empty_files = reference.empty_files.clone();
    empty_files.extend(estimate.empty_files.iter().cloned());
    let opts = EvalOptions {
        event: EventBasedOptions {
            evaluate_offset: args["onset_only"].as_bool() != Some(true),
            ..Default::default()
        },
        segment_length: args["segment_length"].as_f64().expect("segment_length"),
        threshold: 0.5,
    };
    Case {
        inputs: EvalInputs {
            reference: reference.events,
            estimate: estimate.events,
            empty_files,
            durations,
            scores,
        },
        opts,
        expected,
    }
}

#[test]
fn every_metric_matches_the_reference_tools_on_the_golden_corpus() {
    let cases = cases();
    assert!(cases.len() >= 50, "only {} golden cases", cases.len());
    let mut total = 0usize;
    let mut bad = Vec::new();
    let mut worst = 0.0f64;
    for dir in &cases {
        let case = load(dir);
        let report =
            evaluate(&case.inputs, &case.opts).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut actual = serde_json::to_value(&report).expect("serialise");
        let name = dir
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        // the wide-range PSDS curves exercise more of the curve than the DCASE presets
        if let Some(wide) = case.expected.get("extra_psds_wide") {
            let obj = actual.as_object_mut().expect("object");
            if wide.is_null() {
                obj.insert("extra_psds_wide".into(), Value::Null);
            } else {
                let tables = case.inputs.scores.as_ref().expect("scores");
                let dur: BTreeMap<String, f64> = match &case.inputs.durations {
                    Some(d) => d
                        .iter()
                        .map(|(k, v)| (audio_id(k).to_string(), *v))
                        .collect(),
                    None => tables
                        .iter()
                        .map(|(k, t)| (k.clone(), *t.timestamps.last().expect("ts")))
                        .collect(),
                };
                let mut m = serde_json::Map::new();
                for (key, p) in [("psds1", PsdsParams::PSDS1), ("psds2", PsdsParams::PSDS2)] {
                    let p = PsdsParams {
                        max_efpr: 36000.0,
                        ..p
                    };
                    let v = psds(tables, &case.inputs.reference, &dur, &p).expect("psds");
                    m.insert(key.into(), serde_json::json!(v));
                }
                obj.insert("extra_psds_wide".into(), Value::Object(m));
            }
        }
        let before = bad.len();
        compare(&name, &case.expected, &actual, &mut total, &mut bad);
        if bad.len() == before {
            // track the largest deviation for the report
            fn walk(e: &Value, a: &Value, w: &mut f64) {
                match (e, a) {
                    (Value::Object(e), Value::Object(a)) => {
                        e.iter().for_each(|(k, v)| walk(v, &a[k], w))
                    }
                    (Value::Number(e), Value::Number(a)) => {
                        *w = w.max((e.as_f64().unwrap_or(0.0) - a.as_f64().unwrap_or(0.0)).abs())
                    }
                    _ => {}
                }
            }
            walk(&case.expected, &actual, &mut worst);
        }
    }
    eprintln!(
        "compared {total} numbers in {} cases, largest deviation {worst:e}",
        cases.len()
    );
    assert!(
        bad.is_empty(),
        "{} mismatches:\n{}",
        bad.len(),
        bad.join("\n")
    );
}
