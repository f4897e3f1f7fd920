//! `hark run --http` through the real binary: the page, its Server-Sent Events and
//! `/metrics` while a file is streamed in real time.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;

/// Starts `hark run --http 127.0.0.1:0 --realtime` on the test clip and returns the
/// child and the address it serves, read from its log.
fn start_daemon(
    model: &std::path::Path,
    extra: &[&str],
) -> (Child, SocketAddr, mpsc::Receiver<String>) {
    let mut child = hark()
        .args([
            "run",
            "--model",
            model.to_str().unwrap(),
            "--input",
            &format!("file:{}", clip().display()),
            "--realtime",
            "--http",
            "127.0.0.1:0",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in stderr.lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let addr = loop {
        let l = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("hark logged no `serving the live page` line");
        if let Some(rest) = l.split("url=http://").nth(1) {
            break rest.trim_end_matches('/').trim().parse().unwrap();
        }
    };
    (child, addr, rx)
}

fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

/// The value of the metrics sample line that starts with `name` followed by a space.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {name} in\n{text}"))
        .parse()
        .unwrap()
}

/// Offline `hark detect` spans (label, onset, offset), sorted.
fn offline_spans(model: &std::path::Path) -> Vec<(String, f64, f64)> {
    let o = run(&[
        "detect",
        "--model",
        model.to_str().unwrap(),
        clip().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut v: Vec<_> = parse_tsv(&stdout(&o))
        .into_iter()
        .map(|(_, on, off, l)| (l, on, off))
        .collect();
    v.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    v
}

#[test]
fn page_events_and_metrics_while_a_file_streams() {
    let dir = tempfile::tempdir().unwrap();
    let model = test_model(dir.path());
    let (mut child, addr, _log) = start_daemon(&model, &[]);

    // The page and its assets, embedded in the binary.
    let (head, page) = get(addr, "/");
    assert!(head.contains(" 200 "), "{head}");
    assert!(page.contains("<canvas id=\"spec\""), "{page}");
    assert!(page.contains("app.js"));
    let (_, health) = get(addr, "/healthz");
    assert_eq!(health, "ok\n");

    // Server-Sent Events until the daemon ends the stream.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(s, "GET /events HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut r = BufReader::new(s);
    let mut l = String::new();
    r.read_line(&mut l).unwrap();
    assert!(l.contains(" 200 "), "{l}");
    let mut is_sse = false;
    while l != "\r\n" {
        l.clear();
        r.read_line(&mut l).unwrap();
        is_sse |= l
            .to_lowercase()
            .starts_with("content-type: text/event-stream");
    }
    assert!(is_sse, "not an event stream");
    let mut msgs: Vec<serde_json::Value> = Vec::new();
    let mut metrics_mid_run: Option<String> = None;
    loop {
        l.clear();
        if r.read_line(&mut l).unwrap() == 0 {
            break;
        }
        let Some(data) = l.strip_prefix("data: ") else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(data.trim_end()).unwrap();
        if v["type"] == "stop" && metrics_mid_run.is_none() {
            metrics_mid_run = Some(get(addr, "/metrics").1);
        }
        msgs.push(v);
    }
    assert!(child.wait().unwrap().success());

    assert_eq!(msgs[0]["type"], "hello");
    assert_eq!(
        msgs[0]["classes"],
        serde_json::json!(["alpha", "beta", "gamma"])
    );
    // Every start has its stop, and the spans are those of offline detection.
    let mut open = std::collections::HashMap::new();
    let mut spans = Vec::new();
    for v in &msgs {
        match v["type"].as_str().unwrap() {
            "start" => {
                assert!(open
                    .insert(v["id"].as_str().unwrap().to_string(), v.clone())
                    .is_none());
            }
            "stop" => {
                let s = open
                    .remove(v["id"].as_str().unwrap())
                    .expect("stop without start");
                assert_eq!(s["label"], v["label"]);
                spans.push((
                    v["label"].as_str().unwrap().to_string(),
                    v["t_start"].as_f64().unwrap(),
                    v["t_end"].as_f64().unwrap(),
                ));
            }
            _ => {}
        }
    }
    assert!(open.is_empty(), "starts without stops: {open:?}");
    spans.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    assert!(!spans.is_empty());
    assert_eq!(spans, offline_spans(&model));

    // Lines sent before this page connected are not replayed (only hello, status
    // and events are), so on a slow machine the first columns may be missing:
    // every later one must be there, in order, up to the end of the clip.
    let consecutive_to = |ts: &[f64], last: f64| {
        assert!(
            ts.windows(2).all(|w| (w[1] - w[0] - 0.1).abs() < 1e-9),
            "{ts:?}"
        );
        assert!((ts[ts.len() - 1] - last).abs() < 1e-9, "{ts:?}");
    };
    // Spectrogram columns: 64 bands, one per 5 frames (0.1 s); 262 frames make 52
    // whole columns, t = 0.0 ..= 5.1.
    let mel: Vec<&serde_json::Value> = msgs.iter().filter(|v| v["type"] == "mel").collect();
    assert!(mel.iter().all(|v| v["mel"].as_array().unwrap().len() == 64));
    let ts: Vec<f64> = mel.iter().map(|v| v["t"].as_f64().unwrap()).collect();
    assert!(ts.len() >= 30 && ts.len() <= 52, "{ts:?}");
    consecutive_to(&ts, 5.1);
    // Scores for the top-k view, keyed by label: frames 0, 5, ..., 260 (t ..= 5.2).
    // The first ones come out at 2 s (the first window), so a page connected
    // before that gets all 53.
    let scores: Vec<_> = msgs.iter().filter(|v| v["type"] == "scores").collect();
    let st: Vec<f64> = scores.iter().map(|v| v["t"].as_f64().unwrap()).collect();
    assert!(st.len() >= 30 && st.len() <= 53, "{st:?}");
    consecutive_to(&st, 5.2);
    assert_eq!(scores[0]["scores"].as_object().unwrap().len(), 3);
    let last = msgs.last().unwrap();
    assert_eq!(last["type"], "status");
    assert_eq!(last["state"], "ended");

    // Metrics taken while the stream ran, after the first stop.
    let m = metrics_mid_run.expect("no stop event");
    assert!(sample(&m, "hark_frames_processed_total") > 0.0, "{m}");
    assert!(sample(&m, "hark_windows_total") > 0.0, "{m}");
    assert!(sample(&m, "hark_inference_seconds_count") > 0.0, "{m}");
    assert!(
        sample(&m, "hark_detection_latency_seconds_count") > 0.0,
        "{m}"
    );
    let events: f64 = ["alpha", "beta", "gamma"]
        .iter()
        .map(|c| sample(&m, &format!("hark_events_total{{label=\"{c}\"}}")))
        .sum();
    assert!(events >= 1.0, "{m}");
    assert_eq!(sample(&m, "hark_http_clients"), 1.0, "{m}");
    assert_eq!(sample(&m, "hark_samples_dropped_total"), 0.0, "{m}");
    assert_eq!(
        sample(&m, "hark_source_state{state=\"running\"}"),
        1.0,
        "{m}"
    );
}

#[test]
fn a_bad_or_busy_http_address_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    let o = run(&["model", "init", model.to_str().unwrap(), "--classes", "a,b"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let input = format!("file:{}", clip().display());
    let args = |http: &str| {
        run(&[
            "run",
            "--model",
            model.to_str().unwrap(),
            "--input",
            &input,
            "--http",
            http,
        ])
    };
    let o = args("not-an-address");
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--http") && stderr(&o).contains("HOST:PORT"),
        "{}",
        stderr(&o)
    );
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let o = args(&busy.local_addr().unwrap().to_string());
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("cannot serve the web page on 127.0.0.1:"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_non_loopback_address_warns_that_the_page_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    let o = run(&["model", "init", model.to_str().unwrap(), "--classes", "a"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&[
        "run",
        "--model",
        model.to_str().unwrap(),
        "--input",
        &format!("file:{}", clip().display()),
        "--duration",
        "0.5",
        "--http",
        "0.0.0.0:0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("no authentication"), "{}", stderr(&o));
    // The default (a bare port) is loopback: no warning.
    let o = run(&[
        "run",
        "--model",
        model.to_str().unwrap(),
        "--input",
        &format!("file:{}", clip().display()),
        "--duration",
        "0.5",
        "--http",
        "0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("no authentication"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("url=http://127.0.0.1:"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn the_demo_profile_serves_the_page_on_loopback() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("firmware-config/demo.toml");
    let cfg = hark::config::Config::load(&path).unwrap();
    let addr = hark::events::http::parse_addr(cfg.http.addr.as_deref().unwrap()).unwrap();
    assert!(addr.ip().is_loopback(), "{addr}");
    assert_eq!(addr.port(), 8080);
    assert!(cfg.pipeline.status_interval_s <= 1.0);
    let o = run(&["check-config", path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
}
