//! `hark eval` end to end: JSON output equal to the reference tools' numbers, tables by
//! default, and exit codes / messages for bad input (1, naming file and line) and
//! usage errors (2).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn hark(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hark"))
        .args(args)
        .output()
        .expect("run hark")
}

fn case(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/metrics")
        .join(name)
}

fn close(e: &Value, a: &Value, path: &str) {
    match (e, a) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, v) in e {
                if k.starts_with("extra_") {
                    continue;
                }
                close(
                    v,
                    a.get(k).unwrap_or_else(|| panic!("{path}.{k} missing")),
                    &format!("{path}.{k}"),
                );
            }
        }
        (Value::Number(e), Value::Number(a)) => {
            let (e, a) = (
                e.as_f64().unwrap_or(f64::NAN),
                a.as_f64().unwrap_or(f64::NAN),
            );
            assert!((e - a).abs() <= 1e-6, "{path}: expected {e}, got {a}");
        }
        (Value::Null, Value::Null) => {}
        (e, a) => panic!("{path}: expected {e}, got {a}"),
    }
}

fn run_case_json(name: &str) -> (Value, Value) {
    let d = case(name);
    let args: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("args.json")).unwrap()).unwrap();
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("expected.json")).unwrap()).unwrap();
    let (r, e, dur, sc) = (
        d.join("ref.tsv"),
        d.join("est.tsv"),
        d.join("durations.tsv"),
        d.join("scores"),
    );
    let seg = args["segment_length"].as_f64().unwrap().to_string();
    let mut a: Vec<&str> = vec![
        "eval",
        "--json",
        "--reference",
        r.to_str().unwrap(),
        "--estimate",
        e.to_str().unwrap(),
        "--segment-length",
        &seg,
    ];
    if args["durations"].as_bool() == Some(true) {
        a.extend(["--durations", dur.to_str().unwrap()]);
    }
    if args["scores"].as_bool() == Some(true) {
        a.extend(["--scores", sc.to_str().unwrap()]);
    }
    if args["onset_only"].as_bool() == Some(true) {
        a.push("--onset-only");
    }
    let out = hark(&a);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let actual: Value = serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    (expected, actual)
}

#[test]
fn json_output_matches_the_reference_tools() {
    // an event-only case, a score-table case and one the score metrics refuse
    for name in ["case_001", "case_003", "case_045", "case_059"] {
        let (expected, actual) = run_case_json(name);
        close(&expected, &actual, name);
    }
}

#[test]
fn tables_by_default() {
    let d = case("case_001");
    let out = hark(&[
        "eval",
        "--reference",
        d.join("ref.tsv").to_str().unwrap(),
        "--estimate",
        d.join("est.tsv").to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Event-based") && text.contains("Segment-based") && text.contains("Tagging"),
        "{text}"
    );
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn expect_error(args: &[&str], needles: &[&str]) {
    let out = hark(args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: "), "{err}");
    for n in needles {
        assert!(err.contains(n), "`{n}` not in: {err}");
    }
}

#[test]
fn bad_input_exits_1_naming_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let good = write(
        tmp.path(),
        "good.tsv",
        "filename\tonset\toffset\tevent_label\na.wav\t1\t2\tdog\n",
    );
    let g = good.to_str().unwrap();
    let missing = write(
        tmp.path(),
        "missing.tsv",
        "filename\tonset\tevent_label\na.wav\t1\tdog\n",
    );
    expect_error(
        &[
            "eval",
            "--reference",
            missing.to_str().unwrap(),
            "--estimate",
            g,
        ],
        &["missing.tsv", "line 1", "offset"],
    );
    let inverted = write(
        tmp.path(),
        "inv.tsv",
        "filename\tonset\toffset\tevent_label\na.wav\t1\t2\tdog\na.wav\t5\t4\tdog\n",
    );
    expect_error(
        &[
            "eval",
            "--reference",
            g,
            "--estimate",
            inverted.to_str().unwrap(),
        ],
        &["inv.tsv", "line 3", "onset 5 is after offset 4"],
    );
    let text = write(
        tmp.path(),
        "nan.tsv",
        "filename\tonset\toffset\tevent_label\na.wav\tabc\t2\tdog\n",
    );
    expect_error(
        &[
            "eval",
            "--reference",
            text.to_str().unwrap(),
            "--estimate",
            g,
        ],
        &["nan.tsv", "line 2", "`abc` is not a number"],
    );
    let dur = write(tmp.path(), "dur.tsv", "filename\tduration\nb.wav\t10\n");
    expect_error(
        &[
            "eval",
            "--reference",
            g,
            "--estimate",
            g,
            "--durations",
            dur.to_str().unwrap(),
        ],
        &["good.tsv", "line 2", "a.wav", "dur.tsv"],
    );
    expect_error(
        &[
            "eval",
            "--reference",
            "/nonexistent/ref.tsv",
            "--estimate",
            g,
        ],
        &["/nonexistent/ref.tsv"],
    );
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(
        hark(&["eval", "--reference", "x.tsv"]).status.code(),
        Some(2)
    );
    assert_eq!(hark(&["eval", "--bogus"]).status.code(), Some(2));
}
