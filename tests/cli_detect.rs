//! `hark detect`, `hark model info` and `hark check-config` through the real binary.

mod common;

use common::*;

#[test]
fn detect_writes_dcase_tsv_json_and_score_tables() {
    let dir = tempfile::tempdir().unwrap();
    let model = test_model(dir.path());
    let m = model.to_str().unwrap();
    let clip = clip();
    let o = run(&["detect", "--model", m, clip.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = parse_tsv(&stdout(&o));
    assert!(!rows.is_empty(), "the test model should emit events");
    for (f, on, off, label) in &rows {
        assert_eq!(f, "speech_chime_16k.wav");
        assert!(on < off && *on >= 0.0 && *off <= 5.24, "{on} {off}");
        assert!(["alpha", "beta", "gamma"].contains(&label.as_str()));
    }

    // JSON lines carry the same events.
    let o = run(&[
        "detect",
        "--model",
        m,
        "--format",
        "json",
        clip.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let json: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(json.len(), rows.len());
    for (j, r) in json.iter().zip(&rows) {
        assert_eq!(j["onset"].as_f64().unwrap(), r.1);
        assert_eq!(j["event_label"], r.3.as_str());
        assert!(j["peak"].as_f64().unwrap() >= j["mean"].as_f64().unwrap());
    }

    // Score tables: one row per frame, `onset offset <classes>`.
    let scores = dir.path().join("scores");
    let out = dir.path().join("events.tsv");
    let o = run(&[
        "detect",
        "--model",
        m,
        "--scores",
        scores.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        clip.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(parse_tsv(&std::fs::read_to_string(&out).unwrap()), rows);
    let table = std::fs::read_to_string(scores.join("speech_chime_16k.tsv")).unwrap();
    let mut lines = table.lines();
    assert_eq!(lines.next(), Some("onset\toffset\talpha\tbeta\tgamma"));
    let body: Vec<&str> = lines.collect();
    // 83714 samples, hop 320, centred frames: 1 + 83714 / 320 = 262.
    assert_eq!(body.len(), 262);
    let last: Vec<f64> = body[261].split('\t').map(|x| x.parse().unwrap()).collect();
    assert!((last[0] - 5.22).abs() < 1e-9 && (last[1] - 5.24).abs() < 1e-9);
    assert!(last[2..].iter().all(|p| (0.0..=1.0).contains(p)));
}

#[test]
fn detect_reports_each_bad_file_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let model = test_model(dir.path());
    let m = model.to_str().unwrap();
    let empty = dir.path().join("empty.wav");
    std::fs::write(&empty, b"").unwrap();
    let junk = dir.path().join("junk.wav");
    std::fs::write(&junk, [0x52u8, 0x49, 0x46, 0x46, 1, 2, 3, 4, 5, 6, 7, 8, 9]).unwrap();
    let missing = dir.path().join("missing.wav");
    let clip = clip();
    let o = run(&[
        "detect",
        "--model",
        m,
        missing.to_str().unwrap(),
        empty.to_str().unwrap(),
        junk.to_str().unwrap(),
        clip.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    for name in ["missing.wav", "empty.wav", "junk.wav"] {
        assert!(err.contains(name), "no mention of {name} in {err}");
    }
    assert!(err.contains("3 of 4 files"), "{err}");
    // The good file was still processed.
    assert!(!parse_tsv(&stdout(&o)).is_empty());
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_model_files_are_rejected_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let clip = clip();
    let model = test_model(dir.path());
    let bytes = std::fs::read(&model).unwrap();
    let truncated = dir.path().join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"this is not a model").unwrap();
    for (path, needle) in [
        (dir.path().join("nope.safetensors"), "nope.safetensors"),
        (truncated, "truncated.safetensors"),
        (garbage, "garbage.safetensors"),
    ] {
        let o = run(&[
            "detect",
            "--model",
            path.to_str().unwrap(),
            clip.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(1), "{needle}");
        let e = stderr(&o);
        assert!(e.contains(needle) && !e.contains("panicked"), "{e}");
    }
    let o = run(&["detect", clip.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--model"), "{}", stderr(&o));
}

#[test]
fn model_info_describes_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = test_model(dir.path());
    let o = run(&["model", "info", model.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    for needle in [
        "test-random-crnn",
        "crnn",
        "alpha",
        "beta",
        "gamma",
        "16000",
    ] {
        assert!(s.contains(needle), "missing {needle} in:\n{s}");
    }
}

#[test]
fn config_overrides_apply_and_bad_configs_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let model = test_model(dir.path());
    let m = model.to_str().unwrap();
    let clip = clip();
    // Disabling a class removes its events.
    let cfg = dir.path().join("hark.toml");
    std::fs::write(&cfg, "[classes.alpha]\nenabled = false\n").unwrap();
    let o = run(&[
        "detect",
        "--model",
        m,
        "--config",
        cfg.to_str().unwrap(),
        clip.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let with = parse_tsv(&stdout(&run(&[
        "detect",
        "--model",
        m,
        clip.to_str().unwrap(),
    ])));
    let without = parse_tsv(&stdout(&o));
    assert!(
        with.iter().any(|r| r.3 == "alpha"),
        "fixture should have alpha events"
    );
    assert!(without.iter().all(|r| r.3 != "alpha"));
    assert_eq!(
        without.len(),
        with.iter().filter(|r| r.3 != "alpha").count()
    );

    let o = run(&["check-config", cfg.to_str().unwrap(), "--model", m]);
    assert!(o.status.success(), "{}", stderr(&o));

    for (text, needle) in [
        ("[classes.zebra]\non = 0.5\n", "classes.zebra"),
        ("[source]\nring_secs = 1\n", "ring_secs"),
        ("[classes.alpha]\non = \"high\"\n", "line 2"),
        ("[classes.alpha]\non = 0.2\noff = 0.9\n", "off"),
    ] {
        std::fs::write(&cfg, text).unwrap();
        let o = run(&["check-config", cfg.to_str().unwrap(), "--model", m]);
        assert_eq!(o.status.code(), Some(1), "{text}");
        let e = stderr(&o);
        assert!(e.contains(needle) && e.contains("hark.toml"), "{text}: {e}");
    }
}

#[test]
fn model_init_builds_every_architecture_and_rejects_bad_arch_json() {
    let dir = tempfile::tempdir().unwrap();
    for arch in [
        "crnn",
        "amn",
        "atp_sedb",
        "context_attention",
        "two_step_ae",
    ] {
        let out = dir.path().join(format!("{arch}.safetensors"));
        let o = run(&[
            "model",
            "init",
            out.to_str().unwrap(),
            "--classes",
            "a,b",
            "--arch",
            &format!("{{\"name\":\"{arch}\"}}"),
        ]);
        assert!(o.status.success(), "{arch}: {}", stderr(&o));
        let info = run(&["model", "info", out.to_str().unwrap()]);
        assert!(stdout(&info).contains("UNTRAINED") || stdout(&info).contains("untrained"));
        assert!(stdout(&info).contains(arch), "{}", stdout(&info));
    }
    for (bad, needle) in [
        ("{\"name\":\"resnet\"}", "resnet"),
        ("{\"name\":\"crnn\",\"gru_hiden\":3}", "gru_hiden"),
        ("not json", "--arch"),
    ] {
        let o = run(&[
            "model",
            "init",
            dir.path().join("x.safetensors").to_str().unwrap(),
            "--classes",
            "a",
            "--arch",
            bad,
        ]);
        assert_eq!(o.status.code(), Some(1), "{bad}");
        assert!(stderr(&o).contains(needle), "{bad}: {}", stderr(&o));
    }
    let o = run(&[
        "model",
        "init",
        dir.path().join("y.safetensors").to_str().unwrap(),
        "--classes",
        "a,a",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("twice"));
}
