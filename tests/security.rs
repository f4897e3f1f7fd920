//! Security properties of a running daemon (the README's "Threat model"): the socket
//! is 0660 and the only thing opened by default, no network listener exists unless
//! configured, the web page binds to loopback by default, the MQTT password (TLS +
//! password file) never reaches the logs even at trace level, and the systemd unit
//! is hardened (`systemd-analyze security` exposure ≤ 4.0).

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Inodes of the sockets the process holds (`/proc/PID/fd/* -> socket:[N]`).
fn socket_inodes(pid: u32) -> HashSet<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|t| {
            let t = t.to_string_lossy().into_owned();
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// (protocol, local address as in /proc/net, state) of every IP socket of `pid`.
fn ip_sockets(pid: u32) -> Vec<(String, String, String)> {
    let mine = socket_inodes(pid);
    let mut out = Vec::new();
    for proto in ["tcp", "tcp6", "udp", "udp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{proto}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && f[9].parse().is_ok_and(|i: u64| mine.contains(&i)) {
                out.push((proto.to_string(), f[1].to_string(), f[3].to_string()));
            }
        }
    }
    out
}

fn spawn(model: &Path, extra: &[&str]) -> Child {
    hark()
        .args(["run", "--model", model.to_str().unwrap(), "--input"])
        .arg(clip())
        .arg("--realtime")
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// SIGTERM, then the daemon's stderr (it must exit 0).
fn stop(child: Child) -> String {
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stderr(&out)
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(20), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_socket_is_0660_and_no_network_listener_is_opened_unless_configured() {
    let dir = tempfile::tempdir().unwrap();
    let model = test_model(dir.path());
    // A runtime directory as systemd makes it (0750).
    let run_dir = dir.path().join("run-hark");
    std::fs::create_dir(&run_dir).unwrap();
    std::fs::set_permissions(&run_dir, std::fs::Permissions::from_mode(0o750)).unwrap();
    let sock = run_dir.join("hark.sock");
    let child = spawn(&model, &["--socket", sock.to_str().unwrap()]);
    let pid = child.id();
    wait_for("socket", || UnixStream::connect(&sock).is_ok());
    let md = std::fs::metadata(&sock).unwrap();
    assert_eq!(md.permissions().mode() & 0o777, 0o660, "socket mode");
    assert_eq!(md.uid(), unsafe { libc::getuid() });
    assert_eq!(
        std::fs::metadata(&run_dir).unwrap().permissions().mode() & 0o777,
        0o750,
        "hark must not loosen its runtime directory"
    );
    // No temporary socket name is left behind, nothing else is created there.
    let names: Vec<String> = std::fs::read_dir(&run_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["hark.sock"]);
    assert_eq!(
        ip_sockets(pid),
        vec![],
        "an IP socket without --http or [mqtt]"
    );
    stop(child);
    assert!(!sock.exists());
}

#[test]
fn the_web_page_binds_to_loopback_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let model = test_model(dir.path());
    // A bare port, on the command line and in the config file.
    let cfg = dir.path().join("hark.toml");
    std::fs::write(&cfg, "[http]\naddr = \"0\"\n").unwrap();
    for extra in [vec!["--http", "0"], vec!["--config", cfg.to_str().unwrap()]] {
        let child = spawn(&model, &extra);
        let pid = child.id();
        let mut listening = Vec::new();
        wait_for("listener", || {
            listening = ip_sockets(pid)
                .into_iter()
                .filter(|s| s.2 == "0A")
                .collect();
            !listening.is_empty()
        });
        assert_eq!(listening.len(), 1, "{listening:?}");
        let (proto, local, _) = &listening[0];
        assert_eq!(proto, "tcp", "{listening:?}");
        assert!(local.starts_with("0100007F:"), "not loopback: {local}");
        let port = u16::from_str_radix(local.split(':').nth(1).unwrap(), 16).unwrap();
        assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
        let err = stop(child);
        assert!(!err.contains("no authentication"), "{err}");
    }
}

/// A mosquitto broker with a TLS listener that requires a password; `None` when
/// mosquitto is not installed (outside CI).
fn tls_broker(dir: &Path) -> Option<(Child, u16)> {
    let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(bin) = bin else {
        assert!(std::env::var_os("CI").is_none(), "CI must have mosquitto");
        eprintln!("skipped: mosquitto not installed");
        return None;
    };
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/mqtt");
    for f in ["ca.pem", "server.pem", "server.key"] {
        std::fs::copy(data.join(f), dir.join(f)).unwrap();
    }
    let ok = Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(dir.join("passwd"))
        .args(["hark", "Tr0ub4dor&3-never-logged"])
        .status()
        .unwrap();
    assert!(ok.success());
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in ["passwd", "server.key"] {
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = dir.display();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "persistence false\nlistener {port} 127.0.0.1\nallow_anonymous false\n\
             password_file {d}/passwd\ncafile {d}/ca.pem\ncertfile {d}/server.pem\n\
             keyfile {d}/server.key\n"
        ),
    )
    .unwrap();
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("mosquitto", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    Some((child, port))
}

#[test]
fn the_mqtt_password_never_reaches_the_logs_even_at_trace_level() {
    let dir = tempfile::tempdir().unwrap();
    let Some((mut broker, port)) = tls_broker(dir.path()) else {
        return;
    };
    let model = test_model(dir.path());
    std::fs::write(
        dir.path().join("mqtt-password"),
        "Tr0ub4dor&3-never-logged\n",
    )
    .unwrap();
    let cfg = dir.path().join("hark.toml");
    std::fs::write(
        &cfg,
        format!(
            "[mqtt]\nhost = \"127.0.0.1\"\nport = {port}\nnode_id = \"sec\"\n\
             username = \"hark\"\npassword_file = \"mqtt-password\"\n\
             [mqtt.tls]\nca_file = \"ca.pem\"\n"
        ),
    )
    .unwrap();
    // Every crate at trace level: rumqttc logs its packets, rustls its handshake.
    let out = hark()
        .env("HARK_LOG", "trace")
        .args(["run", "-vv", "--model", model.to_str().unwrap(), "--config"])
        .arg(&cfg)
        .arg("--input")
        .arg(clip())
        .output()
        .unwrap();
    let _ = broker.kill();
    let _ = broker.wait();
    assert!(out.status.success(), "{}", stderr(&out));
    let all = format!("{}{}", stdout(&out), stderr(&out));
    // It did connect (and log a lot) ...
    assert!(
        all.contains("ConnAck") || all.contains("connected"),
        "{all}"
    );
    assert!(all.lines().count() > 50, "trace logs expected");
    // ... and the password, or a piece of it, is nowhere.
    assert!(!all.contains("Tr0ub4dor"), "password in the logs");
    assert!(!all.contains("never-logged"), "password in the logs");
}

#[test]
fn the_systemd_unit_is_hardened() {
    let unit =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/hark.service"))
            .unwrap();
    let lines: HashSet<&str> = unit.lines().map(str::trim).collect();
    for d in [
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=",
        "RuntimeDirectory=hark",
        "RuntimeDirectoryMode=0750",
        "UMask=0027",
        "DevicePolicy=closed",
        "DeviceAllow=char-alsa rw",
        "MemoryDenyWriteExecute=yes",
        "RestrictNamespaces=yes",
        "ProtectProc=invisible",
        "RestrictAddressFamilies=AF_UNIX AF_NETLINK AF_INET AF_INET6",
    ] {
        assert!(lines.contains(d), "systemd/hark.service lacks `{d}`");
    }
    let Ok(o) = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/hark.service"))
        .output()
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have systemd-analyze"
        );
        eprintln!("skipped: systemd-analyze not installed");
        return;
    };
    let text = stdout(&o);
    let level: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for hark.service: ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {text}{}", stderr(&o)));
    println!("systemd-analyze security: exposure {level}");
    assert!(level <= 4.0, "exposure {level}: {text}");
}

#[test]
fn a_client_can_only_read_events() {
    // Whatever a client sends, the only effect is on its own subscription: another
    // client's stream is unchanged, and nothing the daemon does is controllable.
    let dir = tempfile::tempdir().unwrap();
    let model = test_model(dir.path());
    let sock = dir.path().join("hark.sock");
    let child = spawn(&model, &["--socket", sock.to_str().unwrap()]);
    wait_for("socket", || UnixStream::connect(&sock).is_ok());
    let mut other = UnixStream::connect(&sock).unwrap();
    use std::io::Write;
    for cmd in [
        "{\"stop\":true}",
        "{\"reload\":{}}",
        "{\"config\":{\"socket\":{\"path\":\"/tmp/x\"}}}",
        "{\"subscribe\":{\"labels\":[\"alpha\"],\"scores\":true,\"exec\":\"sh\"}}",
        "SHUTDOWN",
    ] {
        writeln!(other, "{cmd}").unwrap();
    }
    let mut r = BufReader::new(other.try_clone().unwrap());
    let mut errors = 0;
    let mut line = String::new();
    while errors < 5 {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "closed early");
        if line.contains("\"error\"") {
            errors += 1;
        }
    }
    drop(r);
    drop(other);
    // The daemon is still running and serving.
    let mut s = String::new();
    BufReader::new(UnixStream::connect(&sock).unwrap())
        .read_line(&mut s)
        .unwrap();
    assert!(s.contains("\"hello\""), "{s}");
    stop(child);
}
