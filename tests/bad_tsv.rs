//! Bad TSV files for `hark eval` (reference/estimate event lists, durations, score
//! tables) and for training (weak, strong, soft and scene metadata), table-driven:
//! missing columns, onset after offset, non-numeric and non-finite times, duplicate
//! header lines and duplicate column names, wrong delimiters, unknown labels. Each
//! is an error naming the file and the line (exit code 1 for the CLI), never a panic.

use std::path::{Path, PathBuf};
use std::process::Output;

use hark::features::FeatureConfig;
use hark::train::{DataConfig, Dataset, SplitConfig};

fn hark(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_hark"))
        .args(args)
        .output()
        .expect("run hark")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const HEADER: &str = "filename\tonset\toffset\tevent_label\n";

/// Event lists that `hark eval` must refuse: (text, what the error names besides
/// the file).
const BAD_EVENTS: &[(&str, &[&str])] = &[
    // Missing columns.
    ("filename\tonset\tevent_label\na.wav\t1\tdog\n", &["line 1", "offset"]),
    ("filename\tonset\toffset\na.wav\t1\t2\n", &["line 1", "event_label"]),
    ("onset\toffset\tevent_label\n1\t2\tdog\n", &["line 1", "filename"]),
    ("", &["line 1", "filename"]),
    ("a.wav\t1\t2\tdog\n", &["line 1", "filename"]),
    // Wrong delimiter: the header is one column.
    ("filename onset offset event_label\na.wav 1 2 dog\n", &["line 1"]),
    ("filename,onset,offset,event_label\na.wav,1,2,dog\n", &["line 1"]),
    // Onset after offset.
    ("filename\tonset\toffset\tevent_label\na.wav\t5\t4\tdog\n", &["line 2", "onset 5 is after offset 4"]),
    // Non-numeric and non-finite times.
    ("filename\tonset\toffset\tevent_label\na.wav\tabc\t2\tdog\n", &["line 2", "abc"]),
    ("filename\tonset\toffset\tevent_label\na.wav\t1\t2s\tdog\n", &["line 2", "2s"]),
    ("filename\tonset\toffset\tevent_label\na.wav\t1,5\t2\tdog\n", &["line 2", "1,5"]),
    ("filename\tonset\toffset\tevent_label\na.wav\tNaN\t2\tdog\n", &["line 2", "onset"]),
    ("filename\tonset\toffset\tevent_label\na.wav\t1\tinf\tdog\n", &["line 2", "offset"]),
    ("filename\tonset\toffset\tevent_label\na.wav\t-1\t2\tdog\n", &["line 2", "onset"]),
    // Duplicate header lines (two files concatenated) and duplicate column names.
    (
        "filename\tonset\toffset\tevent_label\na.wav\t1\t2\tdog\nfilename\tonset\toffset\tevent_label\nb.wav\t1\t2\tdog\n",
        &["line 3", "onset"],
    ),
    ("filename\tonset\tonset\toffset\tevent_label\na.wav\t1\t3\t2\tdog\n", &["line 1", "onset", "more than once"]),
    ("filename\tfilename\tonset\toffset\tevent_label\na\tb\t1\t2\tdog\n", &["line 1", "filename", "more than once"]),
    // Missing cells.
    ("filename\tonset\toffset\tevent_label\na.wav\t1\t2\n", &["line 2"]),
    ("filename\tonset\toffset\tevent_label\n\t1\t2\tdog\n", &["line 2", "file name"]),
    ("filename\tonset\toffset\tevent_label\na.wav\t1\t2\t\n", &["line 2", "label"]),
];

fn expect_error(args: &[&str], file: &Path, needles: &[&str], what: &str) {
    let o = hark(args);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{what:?}: {e}");
    assert!(e.starts_with("error: "), "{what:?}: {e}");
    assert!(
        e.contains(&file.display().to_string()),
        "{what:?}: the error does not name {}: {e}",
        file.display()
    );
    for n in needles {
        assert!(e.contains(n), "{what:?}: `{n}` missing from: {e}");
    }
    assert!(!e.contains("panicked"), "{e}");
}

#[test]
fn eval_refuses_each_bad_event_list_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(
        dir.path(),
        "good.tsv",
        &format!("{HEADER}a.wav\t1\t2\tdog\n"),
    );
    let g = good.to_str().unwrap();
    for (i, (text, needles)) in BAD_EVENTS.iter().enumerate() {
        let bad = write(dir.path(), &format!("bad{i}.tsv"), text);
        let b = bad.to_str().unwrap();
        // As the estimate and as the reference.
        expect_error(
            &["eval", "--reference", g, "--estimate", b],
            &bad,
            needles,
            text,
        );
        expect_error(
            &["eval", "--reference", b, "--estimate", g],
            &bad,
            needles,
            text,
        );
    }
    // Not text at all.
    let bin = dir.path().join("binary.tsv");
    std::fs::write(&bin, b"\xff\xfe\x00\x01filename").unwrap();
    expect_error(
        &[
            "eval",
            "--reference",
            bin.to_str().unwrap(),
            "--estimate",
            g,
        ],
        &bin,
        &[],
        "binary",
    );
}

#[test]
fn eval_refuses_bad_durations_and_score_tables() {
    let dir = tempfile::tempdir().unwrap();
    let events = write(
        dir.path(),
        "ref.tsv",
        &format!("{HEADER}a.wav\t1\t2\tdog\n"),
    );
    let e = events.to_str().unwrap();
    for (text, needles) in [
        ("filename\nduration\n", &["line 1", "duration"][..]),
        ("filename\tduration\na.wav\tten\n", &["line 2", "ten"]),
        ("filename\tduration\na.wav\t-3\n", &["line 2"]),
        ("filename\tduration\n\t3\n", &["line 2", "file name"]),
        (
            "filename\tduration\tduration\na.wav\t3\t4\n",
            &["line 1", "more than once"],
        ),
    ] {
        let d = write(dir.path(), "dur.tsv", text);
        expect_error(
            &[
                "eval",
                "--reference",
                e,
                "--estimate",
                e,
                "--durations",
                d.to_str().unwrap(),
            ],
            &d,
            needles,
            text,
        );
    }
    let scores = dir.path().join("scores");
    std::fs::create_dir(&scores).unwrap();
    for (text, needles) in [
        ("onset\toffset\n0\t1\n", &["line 1"][..]),
        ("offset\tonset\tdog\n0\t1\t0.5\n", &["line 1"]),
        ("onset\toffset\tdog\n0\t1\n", &["line 2"]),
        ("onset\toffset\tdog\n0\t1\tloud\n", &["line 2", "loud"]),
        ("onset\toffset\tdog\n0\t1\tnan\n", &["line 2", "NaN"]),
        ("onset\toffset\tdog\n1\t0.5\t0.2\n", &["line 2", "offset"]),
        (
            "onset\toffset\tdog\n0\t1\t0.2\n2\t3\t0.2\n",
            &["line 3", "onset"],
        ),
        (
            "onset\toffset\tdog\tdog\n0\t1\t0.2\t0.3\n",
            &["line 1", "dog"],
        ),
        ("onset\toffset\tdog\n", &["no rows"]),
    ] {
        let t = write(&scores, "a.tsv", text);
        expect_error(
            &[
                "eval",
                "--reference",
                e,
                "--estimate",
                e,
                "--scores",
                scores.to_str().unwrap(),
            ],
            &t,
            needles,
            text,
        );
    }
}

/// Loads a training split whose metadata of `kind` is `text`; returns the error.
fn train_error(dir: &Path, kind: &str, text: &str) -> (PathBuf, String) {
    let meta = write(dir, &format!("{kind}.tsv"), text);
    let weak = write(dir, "weak_ok.tsv", "filename\tevent_labels\na.wav\tdog\n");
    let mut split = SplitConfig {
        audio_dir: dir.join("audio"),
        weak: None,
        strong: None,
        soft: None,
        scenes: None,
    };
    match kind {
        "weak" => split.weak = Some(meta.clone()),
        "strong" => split.strong = Some(meta.clone()),
        "soft" => split.soft = Some(meta.clone()),
        _ => {
            split.weak = Some(weak);
            split.scenes = Some(meta.clone());
        }
    }
    let cfg = DataConfig {
        classes: vec!["dog".into(), "cat".into()],
        scene_classes: vec!["home".into()],
        train: split.clone(),
        validation: None,
        validation_fraction: 0.2,
        cache_dir: None,
    };
    let r = Dataset::load_split(&cfg, &split, dir, &FeatureConfig::default(), "data.train");
    match r {
        Ok(_) => panic!("{kind} {text:?} loaded"),
        Err(e) => (meta, e.to_string()),
    }
}

#[test]
fn training_metadata_errors_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("audio")).unwrap();
    let cases: &[(&str, &str, &[&str])] = &[
        // Missing columns and headers.
        ("weak", "filename\tevent_labels\n", &["no files"]),
        ("weak", "a.wav\tdog\n", &[":1:", "header"]),
        ("strong", "filename\tonset\toffset\na.wav\t1\t2\n", &[":2:", "columns"]),
        ("strong", "", &[":1:", "header"]),
        ("soft", "filename\tonset\toffset\tevent_label\na.wav\t1\t2\tdog\n", &[":2:", "5"]),
        // Onset after offset, non-numeric, non-finite, negative.
        ("strong", "filename\tonset\toffset\tevent_label\na.wav\t3\t2\tdog\n", &[":2:", "before onset"]),
        ("strong", "filename\tonset\toffset\tevent_label\na.wav\tx\t2\tdog\n", &[":2:", "`x`"]),
        ("strong", "filename\tonset\toffset\tevent_label\na.wav\t1\tinf\tdog\n", &[":2:", "inf"]),
        ("strong", "filename\tonset\toffset\tevent_label\na.wav\t-1\t2\tdog\n", &[":2:", "-1"]),
        ("soft", "filename\tonset\toffset\tevent_label\tsoft_label\na.wav\t1\t2\tdog\t1.5\n", &[":2:", "above 1"]),
        ("soft", "filename\tonset\toffset\tevent_label\tsoft_label\na.wav\t1\t2\tdog\tmaybe\n", &[":2:", "maybe"]),
        // Duplicate header lines.
        (
            "strong",
            "filename\tonset\toffset\tevent_label\na.wav\t1\t2\tdog\nfilename\tonset\toffset\tevent_label\n",
            &[":3:", "onset"],
        ),
        // Unknown labels.
        ("weak", "filename\tevent_labels\na.wav\tdog,zebra\n", &[":2:", "zebra"]),
        ("strong", "filename\tonset\toffset\tevent_label\na.wav\t1\t2\tDog\n", &[":2:", "Dog"]),
        ("scenes", "filename\tscene_label\na.wav\tstreet\n", &[":2:", "street"]),
        // Well-formed, but the audio it names is missing.
        ("weak", "filename\tevent_labels\nnope.wav\tdog\n", &["nope.wav", "missing"]),
    ];
    for (kind, text, needles) in cases {
        let (file, e) = train_error(dir.path(), kind, text);
        let name = file.display().to_string();
        if !needles.contains(&"missing") && !needles.contains(&"no files") {
            assert!(e.contains(&name), "{kind} {text:?}: {e}");
        }
        for n in *needles {
            assert!(e.contains(n), "{kind} {text:?}: `{n}` missing from: {e}");
        }
    }
}
