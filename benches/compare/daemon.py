#!/usr/bin/env python3
"""`hark run` under paced input: CPU, memory and onset -> `start` latency.

Runs `hark run --input file:AUDIO --realtime --socket SOCK` (the file is paced in real
time, as a microphone would deliver it), connects to the socket as a client that
subscribes to scores, and samples /proc/PID every second. Prints, as JSON:

- cpu_percent_of_one_core: (utime + stime) / wall time over the run after start-up;
- rss_max_mb / rss_last_mb: VmHWM and VmRSS;
- start_latency_ms p50/p95/max: wall time the `start` line reached the client minus
  the event's `wall` (the wall-clock instant of the onset in the paced audio), i.e.
  onset in the audio -> `start` on the socket;
- score_latency_ms p50/p95/max: the same for every frame's `scores` line (frame time
  -> its final score on the socket), the pipeline's share without post-processing.

    python3 daemon.py HARK MODEL AUDIO [--seconds S] [--env K=V ...] [--config FILE]

Only the Python standard library is needed.
"""
import argparse
import datetime
import json
import os
import socket
import statistics
import subprocess
import tempfile
import threading
import time


def parse_wall(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def pct(v, q):
    if not v:
        return None
    v = sorted(v)
    return v[min(len(v) - 1, int(q * (len(v) - 1) + 0.5))]


def proc_sample(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    status = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            status[k] = v.strip()
    kb = lambda k: int(status.get(k, "0 kB").split()[0])  # noqa: E731
    return time.monotonic(), ticks, kb("VmRSS"), kb("VmHWM")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("hark")
    ap.add_argument("model")
    ap.add_argument("audio")
    ap.add_argument("--seconds", type=float, default=180.0)
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--config", help="a hark config file (e.g. a firmware-config profile)")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="hark-daemon-")
    sock = os.path.join(tmp, "hark.sock")
    env = dict(os.environ)
    for kv in a.env:
        k, _, v = kv.partition("=")
        env[k] = v
    cmd = [a.hark, "run", "--model", a.model, "--input", f"file:{a.audio}", "--realtime",
           "--socket", sock, "--duration", str(a.seconds)]
    if a.config:
        cmd += ["--config", a.config]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    c = socket.socket(socket.AF_UNIX)
    for _ in range(600):
        try:
            c.connect(sock)
            break
        except OSError:
            time.sleep(0.05)
    c.sendall(b'{"subscribe":{"scores":true}}\n')
    starts, scores, t0 = [], [], []

    def reader():
        buf = b""
        while True:
            data = c.recv(65536)
            if not data:
                return
            now = time.time()
            buf += data
            *lines, buf = buf.split(b"\n")
            for line in lines:
                m = json.loads(line)
                if m.get("type") == "start":
                    starts.append((now - parse_wall(m["wall"])) * 1e3)
                    t0.append(parse_wall(m["wall"]) - m["t"])
                elif m.get("type") == "scores":
                    scores.append((now, m["t"]))

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    samples = []
    while p.poll() is None:
        try:
            samples.append(proc_sample(p.pid))
        except (FileNotFoundError, ProcessLookupError, IndexError):
            break
        time.sleep(1.0)
    p.wait()
    th.join(timeout=5)
    # Skip the first 5 s (model load, first windows) for the CPU figure.
    steady = [s for s in samples if s[0] >= samples[0][0] + 5] if samples else []
    hz = os.sysconf("SC_CLK_TCK")
    cpu = None
    if len(steady) >= 2:
        (w0, k0, _, _), (w1, k1, _, _) = steady[0], steady[-1]
        cpu = 100.0 * (k1 - k0) / hz / (w1 - w0)
    origin = statistics.median(t0) if t0 else None
    score_lat = [(now - (origin + t)) * 1e3 for now, t in scores] if origin else []
    res = {
        "command": " ".join(cmd),
        "seconds": a.seconds,
        "exit_code": p.returncode,
        "cpu_percent_of_one_core": cpu,
        "rss_last_mb": samples[-1][2] / 1024 if samples else None,
        "rss_max_mb": max(s[3] for s in samples) / 1024 if samples else None,
        "starts": len(starts),
        "start_latency_ms": {"p50": pct(starts, 0.5), "p95": pct(starts, 0.95),
                             "max": max(starts) if starts else None},
        "score_latency_ms": {"p50": pct(score_lat, 0.5), "p95": pct(score_lat, 0.95),
                             "max": max(score_lat) if score_lat else None},
        "load": open("/proc/loadavg").read().split()[:3],
    }
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
