//! Bad config files, table-driven, through the real binary: unknown keys, wrong
//! types, out-of-range values, unknown labels, missing files, not TOML at all. Each
//! is refused by `hark check-config` and by `hark run` with exit code 1 and a message
//! naming the file and the key (or line), before any audio is opened.

mod common;

use std::path::Path;

use common::*;

/// (config text, what the error must name besides the file)
const BAD: &[(&str, &[&str])] = &[
    // Unknown keys and tables, at every level.
    ("[sourc]\ninput = \"mic\"\n", &["sourc", "line 1"]),
    ("[source]\nrign_seconds = 2\n", &["rign_seconds", "line 2"]),
    ("[model]\npth = \"m.safetensors\"\n", &["pth"]),
    ("[socket]\npaht = \"/tmp/x.sock\"\n", &["paht"]),
    ("[pipeline]\nqueue_secs = 2\n", &["queue_secs"]),
    ("[http]\nadr = \"127.0.0.1:1\"\n", &["adr"]),
    ("[mqtt]\nhots = \"localhost\"\n", &["hots"]),
    (
        "[mqtt]\nhost = \"h\"\n[mqtt.tls]\ncafile = \"x\"\n",
        &["cafile"],
    ),
    ("[classes.alpha]\nonn = 0.5\n", &["onn"]),
    ("verbose = true\n", &["verbose"]),
    // Wrong types.
    ("[source]\nring_seconds = \"two\"\n", &["line 2"]),
    ("[source]\nrealtime = \"yes\"\n", &["line 2"]),
    ("[source]\ninput = 5\n", &["line 2"]),
    ("[socket]\nclient_queue = -1\n", &["line 2"]),
    ("[socket]\nmax_clients = 1.5\n", &["line 2"]),
    ("[classes.alpha]\nenabled = 1\n", &["line 2"]),
    ("[classes.alpha]\non = \"high\"\n", &["line 2"]),
    ("[classes]\nalpha = 0.5\n", &["line 2"]),
    ("[mqtt]\nhost = \"h\"\nport = \"x\"\n", &["line 3"]),
    ("[mqtt]\nhost = \"h\"\nport = 70000\n", &["line 3"]),
    (
        "[mqtt]\nhost = \"h\"\nqos = \"sometimes\"\n",
        &["sometimes"],
    ),
    ("source = \"mic\"\n", &["line 1"]),
    // Out-of-range values.
    ("[source]\nring_seconds = 0\n", &["source.ring_seconds"]),
    ("[source]\nring_seconds = nan\n", &["source.ring_seconds"]),
    ("[source]\nring_seconds = inf\n", &["source.ring_seconds"]),
    (
        "[source]\nstall_timeout_s = 0.01\n",
        &["source.stall_timeout_s"],
    ),
    (
        "[source]\ninput = \"stdin:s16le:16000:0\"\n",
        &["source.input"],
    ),
    ("[source]\ninput = \"mic:\"\n", &["source.input"]),
    ("[socket]\nclient_queue = 0\n", &["socket.client_queue"]),
    ("[socket]\nmax_clients = 0\n", &["socket.max_clients"]),
    (
        "[pipeline]\nqueue_seconds = 0\n",
        &["pipeline.queue_seconds"],
    ),
    (
        "[pipeline]\nstatus_interval_s = -1\n",
        &["pipeline.status_interval_s"],
    ),
    (
        "[pipeline]\nenergy_gate_dbfs = 10\n",
        &["pipeline.energy_gate_dbfs"],
    ),
    ("[pipeline]\nloud_dbfs = -1000\n", &["pipeline.loud_dbfs"]),
    ("[model]\nhop_frames = 0\n", &["model.hop_frames"]),
    ("[model]\nhop_frames = 101\n", &["model.hop_frames", "100"]),
    (
        "[model]\nlookahead_frames = 100\n",
        &["model.lookahead_frames", "100"],
    ),
    ("[model]\nlookahead_frames = -1\n", &["lookahead_frames"]),
    (
        "[pipeline]\nmodel_threads = 0\n",
        &["pipeline.model_threads"],
    ),
    (
        "[pipeline]\nmodel_threads = 65\n",
        &["pipeline.model_threads"],
    ),
    ("[http]\naddr = \"here:there\"\n", &["http.addr"]),
    ("[http]\nclient_queue = 1\n", &["http.client_queue"]),
    ("[http]\nmax_clients = 0\n", &["http.max_clients"]),
    ("[mqtt]\nhost = \"\"\n", &["mqtt.host"]),
    ("[mqtt]\nhost = \"h\"\nport = 0\n", &["mqtt.port"]),
    (
        "[mqtt]\nhost = \"h\"\nreconnect_max_s = -1\n",
        &["mqtt.reconnect_max_s"],
    ),
    (
        "[mqtt]\nhost = \"h\"\nbuffer_events = 2000000\n",
        &["mqtt.buffer_events"],
    ),
    (
        "[mqtt]\nhost = \"h\"\npassword_file = \"p\"\n",
        &["mqtt.username"],
    ),
    (
        "[mqtt]\nhost = \"h\"\nkeep_alive_s = 1\n",
        &["mqtt.keep_alive_s"],
    ),
    (
        "[mqtt]\nhost = \"h\"\npassword = \"a\"\npassword_file = \"b\"\n",
        &["mqtt.password"],
    ),
    (
        "[mqtt]\nhost = \"h\"\ntopic_prefix = \"a/#\"\n",
        &["mqtt.topic_prefix"],
    ),
    ("[classes.alpha]\non = 1.5\n", &["alpha", "on"]),
    ("[classes.alpha]\non = 0.2\noff = 0.9\n", &["alpha", "off"]),
    (
        "[classes.alpha]\nmedian_frames = 4\n",
        &["alpha", "median_frames"],
    ),
    (
        "[classes.alpha]\nmin_duration_s = -1\n",
        &["alpha", "min_duration_s"],
    ),
    (
        "[classes.alpha]\nhangover_s = 1e9\n",
        &["alpha", "hangover_s"],
    ),
    // Unknown labels.
    (
        "[classes.zebra]\non = 0.5\n",
        &["classes.zebra", "alpha, beta, gamma"],
    ),
    ("[classes.Alpha]\nenabled = false\n", &["classes.Alpha"]),
    ("[classes.loud]\non = 0.5\n", &["classes.loud"]),
    // Not a config at all.
    ("[source\ninput = \"mic\"\n", &["line 1"]),
    (
        "[source]\ninput = \"mic\"\ninput = \"file:x\"\n",
        &["line 3"],
    ),
    ("<?xml version=\"1.0\"?><hark/>\n", &["line 1"]),
];

fn check(args: &[&str], cfg: &Path, needles: &[&str], what: &str) {
    let o = run(args);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{what}: {args:?}: {e}");
    assert!(e.starts_with("error: "), "{what}: {e}");
    assert!(
        e.contains(&cfg.display().to_string()),
        "{what}: the error does not name the file: {e}"
    );
    for n in needles {
        assert!(e.contains(n), "{what}: `{n}` missing from: {e}");
    }
    assert!(!e.contains("panicked"), "{e}");
}

#[test]
fn every_bad_config_is_refused_naming_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let model = test_model(dir.path());
    let m = model.to_str().unwrap();
    let clip = clip();
    let cfg = dir.path().join("hark.toml");
    let c = cfg.to_str().unwrap();
    for (text, needles) in BAD {
        std::fs::write(&cfg, text).unwrap();
        check(&["check-config", c, "--model", m], &cfg, needles, text);
        // `hark run` refuses it before opening any input or socket.
        check(
            &[
                "run",
                "--config",
                c,
                "--model",
                m,
                "--input",
                clip.to_str().unwrap(),
            ],
            &cfg,
            needles,
            text,
        );
    }
}

#[test]
fn binary_and_non_utf8_config_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = test_model(dir.path());
    let cfg = dir.path().join("hark.toml");
    for bytes in [
        b"\xff\xfe[source]\n".to_vec(),
        vec![0u8; 100],
        std::fs::read(&model).unwrap(),
    ] {
        std::fs::write(&cfg, &bytes).unwrap();
        let o = run(&[
            "check-config",
            cfg.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(stderr(&o).contains("hark.toml"), "{}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"));
    }
}

#[test]
fn missing_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let model = test_model(dir.path());
    let m = model.to_str().unwrap();
    let clip = clip();
    let cfg = dir.path().join("hark.toml");
    let c = cfg.to_str().unwrap();
    // The config file itself.
    let o = run(&[
        "check-config",
        dir.path().join("nope.toml").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("nope.toml"), "{}", stderr(&o));
    let o = run(&[
        "run",
        "--config",
        "/nonexistent/hark.toml",
        "--input",
        clip.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("/nonexistent/hark.toml"),
        "{}",
        stderr(&o)
    );
    // The model named by the config (relative to the config's folder).
    std::fs::write(&cfg, "[model]\npath = \"gone.safetensors\"\n").unwrap();
    for args in [
        vec!["check-config", c],
        vec!["run", "--config", c, "--input", clip.to_str().unwrap()],
        vec!["detect", "--config", c, clip.to_str().unwrap()],
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let want = dir.path().join("gone.safetensors");
        assert!(
            stderr(&o).contains(&want.display().to_string()),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    // The input file named by the config.
    std::fs::write(&cfg, "[source]\ninput = \"file:/nonexistent/audio.wav\"\n").unwrap();
    let o = run(&["run", "--config", c, "--model", m]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("/nonexistent/audio.wav"),
        "{}",
        stderr(&o)
    );
    // MQTT secrets and CA files.
    for (text, needle) in [
        (
            "[mqtt]\nhost = \"127.0.0.1\"\nusername = \"u\"\npassword_file = \"no-password\"\n",
            "no-password",
        ),
        (
            "[mqtt]\nhost = \"127.0.0.1\"\n[mqtt.tls]\nca_file = \"no-ca.pem\"\n",
            "no-ca.pem",
        ),
    ] {
        std::fs::write(&cfg, text).unwrap();
        let o = run(&[
            "run",
            "--config",
            c,
            "--model",
            m,
            "--input",
            clip.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(1), "{text}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{text}: {}", stderr(&o));
    }
}

#[test]
fn a_model_whose_classes_do_not_match_the_config_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = test_model(dir.path());
    // A model with other classes than the config was written for.
    let other = dir.path().join("other.safetensors");
    let o = run(&[
        "model",
        "init",
        other.to_str().unwrap(),
        "--classes",
        "dog,cat",
        "--arch",
        r#"{"name":"crnn","blocks":[{"channels":4,"pool":{"time":2,"mel":4}},{"channels":4,"pool":{"time":2,"mel":4}},{"channels":4,"pool":{"time":1,"mel":4}}],"gru_hidden":4}"#,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let cfg = dir.path().join("hark.toml");
    std::fs::write(
        &cfg,
        "[classes.alpha]\non = 0.6\n[classes.beta]\nenabled = false\n",
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let o = run(&["check-config", c, "--model", model.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    for args in [
        vec!["check-config", c, "--model", other.to_str().unwrap()],
        vec![
            "run",
            "--config",
            c,
            "--model",
            other.to_str().unwrap(),
            "--input",
            clip().to_str().unwrap(),
        ],
        vec![
            "detect",
            "--config",
            c,
            "--model",
            other.to_str().unwrap(),
            clip().to_str().unwrap(),
        ],
    ] {
        let o = run(&args);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {e}");
        assert!(
            e.contains("classes.alpha") && e.contains("dog, cat") && e.contains("hark.toml"),
            "{args:?}: {e}"
        );
    }
}
