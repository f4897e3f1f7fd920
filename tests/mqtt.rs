//! The MQTT / Home Assistant sink against a real broker: each test starts its own
//! `mosquitto` (Debian package) on 127.0.0.1 and a free port with a temporary config
//! (killed by a drop guard, even when the test fails), runs the `hark` binary and
//! watches the topics with an MQTT client.
//!
//! Checked: the exact discovery payloads, retained states and attributes, removal of
//! a disabled label's entity, the `events` topic against the daemon's own lines, the
//! last will on `kill -9`, re-announcement on Home Assistant's birth message, and
//! reconnection after the broker restarts.

mod common;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver};
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};

use common::*;

/// Longest wait for anything the broker or daemon should do; generous for loaded CI
/// machines. Reaching it fails the test with everything seen so far.
const WAIT: Duration = Duration::from_secs(30);

fn mosquitto_bin() -> Option<PathBuf> {
    ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// The broker binary, or `None` (test skipped) outside CI when it is not installed.
fn need_mosquitto() -> Option<PathBuf> {
    let bin = mosquitto_bin();
    if bin.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "mosquitto is not installed (apt-get install mosquitto)"
        );
        eprintln!("skipped: mosquitto is not installed (apt-get install mosquitto)");
    }
    bin
}

/// A mosquitto process on 127.0.0.1; killed when dropped.
struct Broker {
    bin: PathBuf,
    conf: PathBuf,
    port: u16,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Broker {
    /// An anonymous plain-TCP broker.
    fn start(bin: PathBuf, dir: &Path) -> Broker {
        let port = free_port();
        Self::with_config(
            bin,
            dir,
            port,
            &format!("listener {port} 127.0.0.1\nallow_anonymous true\n"),
        )
    }

    /// A broker with the listeners in `listeners`; ready once `port` accepts.
    fn with_config(bin: PathBuf, dir: &Path, port: u16, listeners: &str) -> Broker {
        // mosquitto started as root drops to its own user: let it read the files.
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(&conf, format!("persistence false\n{listeners}")).unwrap();
        let mut b = Broker {
            bin,
            conf,
            port,
            child: None,
        };
        b.spawn();
        b
    }

    fn spawn(&mut self) {
        let t0 = Instant::now();
        loop {
            let mut child = Command::new(&self.bin)
                .arg("-c")
                .arg(&self.conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start mosquitto");
            // Ready once it accepts connections; retry if it exited (port not free yet).
            loop {
                if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    self.child = Some(child);
                    return;
                }
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                assert!(t0.elapsed() < WAIT, "mosquitto did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(t0.elapsed() < WAIT, "mosquitto did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `kill -9` and start again on the same port (retained messages are lost:
    /// persistence is off).
    fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `hark` process killed when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One message as a subscriber saw it.
#[derive(Debug, Clone)]
struct Msg {
    topic: String,
    payload: String,
    retain: bool,
}

/// An MQTT client that subscribes to `filters` (again after every reconnection)
/// and keeps every message it receives.
struct Sub {
    client: Client,
    rx: Receiver<Msg>,
    seen: Vec<Msg>,
}

impl Sub {
    fn new(port: u16, id: &str, filters: &[&str]) -> Sub {
        let mut opts = MqttOptions::new(id, "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut conn) = Client::new(opts, 64);
        let (tx, rx) = unbounded();
        let c = client.clone();
        let n_filters = filters.len();
        let filters: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
        std::thread::spawn(move || loop {
            match conn.recv() {
                Err(_) => break,
                Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                    for f in &filters {
                        let _ = c.try_subscribe(f.clone(), QoS::AtLeastOnce);
                    }
                }
                Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => {
                    let _ = tx.send(Msg {
                        topic: "$suback".into(),
                        payload: String::new(),
                        retain: false,
                    });
                }
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                    let m = Msg {
                        topic: p.topic.clone(),
                        payload: String::from_utf8_lossy(&p.payload).into_owned(),
                        retain: p.retain,
                    };
                    if tx.send(m).is_err() {
                        break;
                    }
                }
                Ok(Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect))) => break,
                Ok(Ok(_)) => {}
                Ok(Err(_)) => std::thread::sleep(Duration::from_millis(100)),
            }
        });
        let mut s = Sub {
            client,
            rx,
            seen: Vec::new(),
        };
        for _ in 0..n_filters {
            s.wait_for(|m| m.topic == "$suback");
        }
        s
    }

    /// Waits for the first message after those already seen that matches; returns
    /// its index in `seen`.
    fn wait_for(&mut self, pred: impl Fn(&Msg) -> bool) -> usize {
        let from = self.seen.len();
        if let Some(i) = self.seen[from..].iter().position(&pred) {
            return from + i;
        }
        let t0 = Instant::now();
        loop {
            let left = WAIT.saturating_sub(t0.elapsed());
            match self.rx.recv_timeout(left) {
                Ok(m) => {
                    let hit = pred(&m);
                    self.seen.push(m);
                    if hit {
                        return self.seen.len() - 1;
                    }
                }
                Err(_) => panic!("message not seen; got: {:#?}", self.seen),
            }
        }
    }

    fn wait_topic(&mut self, topic: &str, payload: &str) -> usize {
        self.wait_for(|m| m.topic == topic && m.payload == payload)
    }

    /// Every message already queued by the broker before a marker published now:
    /// all retained messages of the subscriptions, then the marker.
    fn sync(&mut self, marker: &str) {
        self.client
            .publish("test/marker", QoS::AtLeastOnce, false, marker)
            .unwrap();
        self.wait_topic("test/marker", marker);
    }

    /// Messages on `topic` seen so far, from index `from`.
    fn payloads(&self, topic: &str, from: usize) -> Vec<&Msg> {
        self.seen[from..]
            .iter()
            .filter(|m| m.topic == topic)
            .collect()
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.client.try_disconnect();
    }
}

/// Publishes one retained message and waits until the broker has it.
fn publish_retained(port: u16, topic: &str, payload: &str) {
    let (client, mut conn) = Client::new(MqttOptions::new("test-pub", "127.0.0.1", port), 8);
    client
        .publish(topic, QoS::AtLeastOnce, true, payload)
        .unwrap();
    for ev in conn.iter() {
        match ev.expect("publish to the test broker") {
            Event::Incoming(Packet::PubAck(_)) => break,
            _ => continue,
        }
    }
    client.disconnect().unwrap();
    for ev in conn.iter() {
        if ev.is_err() || matches!(ev, Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect))) {
            break;
        }
    }
}

fn write_config(dir: &Path, port: u16) -> PathBuf {
    let p = dir.join("hark.toml");
    std::fs::write(
        &p,
        format!(
            r#"[mqtt]
host = "127.0.0.1"
port = {port}
node_id = "testnode"
reconnect_max_s = 1.0
keep_alive_s = 5

[classes.gamma]
enabled = false
"#
        ),
    )
    .unwrap();
    p
}

fn event_lines(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["type"] == "start" || v["type"] == "stop"
        })
        .map(String::from)
        .collect()
}

fn device() -> Value {
    json!({
        "identifiers": ["hark_testnode"],
        "name": "hark testnode",
        "model": "test-random-crnn",
        "manufacturer": "hark",
        "sw_version": env!("CARGO_PKG_VERSION"),
    })
}

fn origin() -> Value {
    json!({"name": "hark", "sw_version": env!("CARGO_PKG_VERSION")})
}

fn expected_label_config(label: &str, name: &str) -> Value {
    json!({
        "name": name,
        "unique_id": format!("hark_testnode_{label}"),
        "device_class": "sound",
        "state_topic": format!("hark/testnode/{label}/state"),
        "json_attributes_topic": format!("hark/testnode/{label}/attributes"),
        "payload_on": "ON",
        "payload_off": "OFF",
        "availability_topic": "hark/testnode/availability",
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": device(),
        "origin": origin(),
    })
}

const GAMMA_CONFIG: &str = "homeassistant/binary_sensor/testnode/gamma/config";
const EVENT_CONFIG: &str = "homeassistant/event/testnode/sound_event/config";
const AVAILABILITY: &str = "hark/testnode/availability";

#[test]
fn file_run_publishes_discovery_retained_states_and_every_event() {
    let Some(bin) = need_mosquitto() else { return };
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(bin, dir.path());
    let model = test_model(dir.path());
    let cfg = write_config(dir.path(), broker.port);
    // A config left by an earlier run in which `gamma` was enabled.
    publish_retained(broker.port, GAMMA_CONFIG, r#"{"name":"Gamma"}"#);
    let mut live = Sub::new(
        broker.port,
        "test-live",
        &["hark/testnode/#", "homeassistant/#"],
    );
    live.wait_for(|m| m.topic == GAMMA_CONFIG && m.retain);

    let out = hark()
        .args(["run", "--input"])
        .arg(format!("file:{}", clip().display()))
        .arg("--model")
        .arg(&model)
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = event_lines(&stdout(&out));
    assert!(lines.len() >= 4, "the test model gives events: {lines:?}");

    // A clean stop ends with `offline`, after every event.
    live.wait_topic(AVAILABILITY, "offline");
    let events: Vec<String> = live
        .payloads("hark/testnode/events", 0)
        .iter()
        .map(|m| m.payload.clone())
        .collect();
    assert_eq!(events, lines, "the events topic carries the daemon's lines");
    for m in live.payloads("hark/testnode/events", 0) {
        assert!(!m.retain);
    }
    // States follow the events, label by label, after the initial OFF.
    for label in ["alpha", "beta"] {
        let states: Vec<String> = live
            .payloads(&format!("hark/testnode/{label}/state"), 0)
            .iter()
            .map(|m| m.payload.clone())
            .collect();
        let mut expected = vec!["OFF".to_string()];
        for l in &lines {
            let v: Value = serde_json::from_str(l).unwrap();
            if v["label"] == label {
                expected.push(if v["type"] == "start" { "ON" } else { "OFF" }.into());
            }
        }
        assert_eq!(states, expected, "{label}");
    }
    // The disabled label's entity was removed, and it has no state.
    let gamma: Vec<&Msg> = live.payloads(GAMMA_CONFIG, 0);
    assert_eq!(gamma.last().unwrap().payload, "");
    assert!(live.payloads("hark/testnode/gamma/state", 0).is_empty());
    // One `detected` per start, for the Home Assistant event entity.
    let starts: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] == "start")
        .collect();
    let detected = live.payloads("hark/testnode/detected", 0);
    assert_eq!(detected.len(), starts.len());
    for (d, s) in detected.iter().zip(&starts) {
        let d: Value = serde_json::from_str(&d.payload).unwrap();
        assert_eq!(d["event_type"], s["label"]);
        assert_eq!(d["id"], s["id"]);
    }

    // What a client (Home Assistant) connecting later finds, retained.
    let mut later = Sub::new(
        broker.port,
        "test-later",
        &["hark/testnode/#", "homeassistant/#", "test/marker"],
    );
    later.sync("after-run");
    let retained: std::collections::BTreeMap<String, String> = later
        .seen
        .iter()
        .filter(|m| m.retain)
        .map(|m| (m.topic.clone(), m.payload.clone()))
        .collect();
    let json_of = |t: &str| -> Value {
        serde_json::from_str(
            retained
                .get(t)
                .unwrap_or_else(|| panic!("{t} not retained")),
        )
        .unwrap()
    };
    assert_eq!(
        json_of("homeassistant/binary_sensor/testnode/alpha/config"),
        expected_label_config("alpha", "Alpha")
    );
    assert_eq!(
        json_of("homeassistant/binary_sensor/testnode/beta/config"),
        expected_label_config("beta", "Beta")
    );
    assert_eq!(
        json_of("homeassistant/binary_sensor/testnode/any_sound/config"),
        json!({
            "name": "Any sound",
            "unique_id": "hark_testnode_any_sound",
            "device_class": "sound",
            "state_topic": "hark/testnode/any_sound/state",
            "payload_on": "ON",
            "payload_off": "OFF",
            "availability_topic": "hark/testnode/availability",
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": device(),
            "origin": origin(),
        })
    );
    assert_eq!(
        json_of(EVENT_CONFIG),
        json!({
            "name": "Sound event",
            "unique_id": "hark_testnode_sound_event",
            "state_topic": "hark/testnode/detected",
            "event_types": ["alpha", "beta"],
            "availability_topic": "hark/testnode/availability",
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": device(),
            "origin": origin(),
        })
    );
    assert!(!retained.contains_key(GAMMA_CONFIG), "{retained:#?}");
    assert_eq!(retained[AVAILABILITY], "offline");
    assert_eq!(retained["hark/testnode/alpha/state"], "OFF");
    assert_eq!(retained["hark/testnode/beta/state"], "OFF");
    assert_eq!(retained["hark/testnode/any_sound/state"], "OFF");
    // The attributes of the last stop of each label with events.
    for label in ["alpha", "beta"] {
        let Some(last_stop) = lines
            .iter()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .rfind(|v| v["type"] == "stop" && v["label"] == label)
        else {
            continue;
        };
        let a = json_of(&format!("hark/testnode/{label}/attributes"));
        assert_eq!(a["id"], last_stop["id"]);
        for k in ["t_start", "t_end", "peak", "mean"] {
            let (x, y) = (a[k].as_f64().unwrap(), last_stop[k].as_f64().unwrap());
            assert!((x - y).abs() < 1e-9, "{label} {k}: {x} vs {y}");
        }
    }
    // Nothing of hark's is retained but availability, configs, states, attributes.
    for t in retained.keys() {
        assert!(
            !t.ends_with("/events") && !t.ends_with("/detected") && !t.ends_with("/status"),
            "{t} retained"
        );
    }
}

/// Starts `hark run` reading raw PCM from a pipe that the test holds open.
fn spawn_stdin_daemon(model: &Path, cfg: &Path) -> Daemon {
    Daemon(
        hark()
            .args(["run", "--input", "stdin:s16le:16000:1", "--model"])
            .arg(model)
            .arg("--config")
            .arg(cfg)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

#[test]
fn kill_9_leaves_the_last_will_and_home_assistant_birth_reannounces() {
    let Some(bin) = need_mosquitto() else { return };
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(bin, dir.path());
    let model = test_model(dir.path());
    let cfg = write_config(dir.path(), broker.port);
    let mut sub = Sub::new(
        broker.port,
        "test-lwt",
        &["hark/testnode/#", "homeassistant/#"],
    );
    let mut daemon = spawn_stdin_daemon(&model, &cfg);
    sub.wait_topic(AVAILABILITY, "online");
    let first = sub.wait_for(|m| m.topic == EVENT_CONFIG);

    // Home Assistant restarts: its birth message makes hark announce again.
    let ha = Client::new(MqttOptions::new("test-ha", "127.0.0.1", broker.port), 8);
    ha.0.publish("homeassistant/status", QoS::AtLeastOnce, false, "online")
        .unwrap();
    let ha_thread = std::thread::spawn(move || {
        let mut conn = ha.1;
        for ev in conn.iter() {
            if matches!(ev, Ok(Event::Incoming(Packet::PubAck(_))) | Err(_)) {
                break;
            }
        }
    });
    let again = sub.wait_for(|m| m.topic == EVENT_CONFIG);
    assert!(again > first);
    sub.wait_for(|m| m.topic == "hark/testnode/alpha/state" && m.payload == "OFF");
    ha_thread.join().unwrap();

    // kill -9: no clean `offline` from hark; the broker sends the last will.
    daemon.0.kill().unwrap();
    daemon.0.wait().unwrap();
    let will = sub.wait_topic(AVAILABILITY, "offline");
    // Still retained for later clients.
    let mut later = Sub::new(
        broker.port,
        "test-lwt-later",
        &[AVAILABILITY, "test/marker"],
    );
    later.sync("after-kill");
    assert!(later
        .seen
        .iter()
        .any(|m| m.topic == AVAILABILITY && m.payload == "offline" && m.retain));
    assert!(will > again);
}

#[test]
fn daemon_reconnects_after_the_broker_restarts() {
    let Some(bin) = need_mosquitto() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(bin, dir.path());
    let model = test_model(dir.path());
    let cfg = write_config(dir.path(), broker.port);
    let mut daemon = spawn_stdin_daemon(&model, &cfg);
    {
        let mut sub = Sub::new(broker.port, "test-rc-1", &[AVAILABILITY]);
        sub.wait_topic(AVAILABILITY, "online");
    }
    // The new broker starts empty (no persistence): whatever it holds afterwards was
    // published by hark after reconnecting.
    broker.restart();
    let mut sub = Sub::new(
        broker.port,
        "test-rc-2",
        &["hark/testnode/#", "homeassistant/#"],
    );
    sub.wait_topic(AVAILABILITY, "online");
    sub.wait_for(|m| m.topic == EVENT_CONFIG);
    sub.wait_for(|m| m.topic == "hark/testnode/beta/state" && m.payload == "OFF");

    // Audio after the reconnection: its events arrive.
    let pcm: Vec<u8> = hound::WavReader::open(clip())
        .unwrap()
        .samples::<i16>()
        .flat_map(|s| s.unwrap().to_le_bytes())
        .collect();
    let mut stdin = daemon.0.stdin.take().unwrap();
    stdin.write_all(&pcm).unwrap();
    drop(stdin);
    let mut child_out = daemon.0.stdout.take().unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut child_out, &mut text).unwrap();
    let status = daemon.0.wait().unwrap();
    assert!(status.success());
    let lines = event_lines(&text);
    assert!(!lines.is_empty());
    sub.wait_topic(AVAILABILITY, "offline");
    let events: Vec<String> = sub
        .payloads("hark/testnode/events", 0)
        .iter()
        .map(|m| m.payload.clone())
        .collect();
    assert_eq!(events, lines);
}

#[test]
fn home_assistant_firmware_profile_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("firmware-config/home-assistant.toml");
    let cfg = hark::config::Config::load(&path).unwrap();
    let m = cfg.mqtt.expect("the profile turns MQTT on");
    assert!(m.discovery);
    assert_eq!(m.port(), 1883);
    assert_eq!(m.qos, hark::events::mqtt::Qos::AtLeastOnce);
    let out = hark().arg("check-config").arg(&path).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn an_unreadable_password_file_is_named_and_the_password_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let model = test_model(dir.path());
    let cfg = dir.path().join("hark.toml");
    std::fs::write(
        &cfg,
        "[mqtt]\nhost = \"127.0.0.1\"\nusername = \"u\"\npassword_file = \"missing-pw\"\n",
    )
    .unwrap();
    let out = hark()
        .args(["run", "--input"])
        .arg(format!("file:{}", clip().display()))
        .arg("--model")
        .arg(&model)
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("mqtt.password_file") && err.contains("missing-pw"),
        "{err}"
    );
    // With the password inline, a failed connection must not show it in the logs.
    std::fs::write(
        &cfg,
        "[mqtt]\nhost = \"127.0.0.1\"\nport = 1\nusername = \"u\"\npassword = \"hunter2-secret\"\n",
    )
    .unwrap();
    let out = hark()
        .env("HARK_LOG", "trace")
        .args(["run", "--input"])
        .arg(format!("file:{}", clip().display()))
        .arg("--model")
        .arg(&model)
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(all.contains("mqtt"), "the sink logs: {all}");
    assert!(!all.contains("hunter2-secret"), "{all}");
}

#[test]
fn tls_with_a_ca_file_and_a_password_file_connects() {
    let Some(bin) = need_mosquitto() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/mqtt");
    for f in ["ca.pem", "server.pem", "server.key"] {
        std::fs::copy(data.join(f), dir.path().join(f)).unwrap();
    }
    // mosquitto's own password file format (salted PBKDF2-SHA512 hash).
    let passwd = Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(dir.path().join("passwd"))
        .args(["hark", "s3cret pass"])
        .status()
        .expect("mosquitto_passwd (package mosquitto)");
    assert!(passwd.success());
    for f in ["passwd", "server.key"] {
        std::fs::set_permissions(
            dir.path().join(f),
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .unwrap();
    }
    let (plain, tls) = (free_port(), free_port());
    let d = dir.path().display();
    let broker = Broker::with_config(
        bin,
        dir.path(),
        plain,
        &format!(
            "per_listener_settings true\n\
             listener {plain} 127.0.0.1\nallow_anonymous true\n\
             listener {tls} 127.0.0.1\nallow_anonymous false\npassword_file {d}/passwd\n\
             cafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n"
        ),
    );
    let mut sub = Sub::new(broker.port, "test-tls", &["hark/testnode/#"]);
    let model = test_model(dir.path());
    std::fs::write(dir.path().join("mqtt-password"), "s3cret pass\n").unwrap();
    let cfg = dir.path().join("hark.toml");
    std::fs::write(
        &cfg,
        format!(
            "[mqtt]\nhost = \"127.0.0.1\"\nport = {tls}\nnode_id = \"testnode\"\n\
             username = \"hark\"\npassword_file = \"mqtt-password\"\n\
             [mqtt.tls]\nca_file = \"ca.pem\"\n"
        ),
    )
    .unwrap();
    let out = hark()
        .args(["run", "--input"])
        .arg(format!("file:{}", clip().display()))
        .arg("--model")
        .arg(&model)
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = event_lines(&stdout(&out));
    sub.wait_topic(AVAILABILITY, "online");
    sub.wait_topic(AVAILABILITY, "offline");
    let events: Vec<String> = sub
        .payloads("hark/testnode/events", 0)
        .iter()
        .map(|m| m.payload.clone())
        .collect();
    assert_eq!(events, lines);
}
