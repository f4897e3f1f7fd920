//! systemd integration: the unit file passes `systemd-analyze verify`, and the daemon
//! speaks the notify protocol (READY once audio flows, WATCHDOG while it makes
//! progress, STOPPING at the end) to a `NOTIFY_SOCKET` this test listens on.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn unit_file_passes_systemd_analyze_verify() {
    let Ok(v) = Command::new("systemd-analyze").arg("--version").output() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have systemd-analyze"
        );
        eprintln!("skipped: systemd-analyze not installed");
        return;
    };
    assert!(v.status.success());
    let dir = tempfile::tempdir().unwrap();
    let unit =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/hark.service"))
            .unwrap()
            .replace("/usr/local/bin/hark", env!("CARGO_BIN_EXE_hark"));
    let path = dir.path().join("hark.service");
    std::fs::write(&path, unit).unwrap();
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        stdout(&o),
        stderr(&o)
    );
}

#[test]
fn daemon_notifies_ready_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let model = test_model(dir.path());
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let child = hark()
        .args([
            "run",
            "--model",
            model.to_str().unwrap(),
            "--input",
            clip().to_str().unwrap(),
            "--realtime",
            "--duration",
            "3",
        ])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "300000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = sock.recv(&mut buf).expect("no notification in time");
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        let stop = msg.contains("STOPPING=1");
        got.push(msg);
        if stop {
            break;
        }
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let ready = got
        .iter()
        .position(|m| m.contains("READY=1"))
        .expect("READY=1");
    assert!(got[ready].contains("STATUS="), "{got:?}");
    let pings = got.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    // 3 s of paced audio with a 0.3 s watchdog: pings every ~0.1 s while frames flow.
    assert!(pings >= 3, "only {pings} watchdog pings: {got:?}");
    assert!(got.last().unwrap().contains("STOPPING=1"));
}
