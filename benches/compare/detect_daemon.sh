#!/usr/bin/env bash
# `hark detect` throughput on 1 h of audio, and `hark run` CPU / RSS / latency under
# paced input, for the model MODEL (default: an untrained model of the shipping
# default CRNN, written by `hark model init`; speed does not depend on the weights).
#
#   benches/compare/detect_daemon.sh [MODEL] [DAEMON_SECONDS]
#
# CONFIG=FILE runs both with that config (e.g. firmware-config/low-latency.toml);
# DAEMON_THREADS="1 2" lists the `pipeline.model_threads` values of the paced runs
# (set through a generated config when CONFIG is not given).
#
# Needs a release build (cargo build --release) and python3 (standard library only).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-target/compare}
SECONDS_RUN=${2:-180}
HARK=./target/release/hark
mkdir -p "$OUT"
MODEL=${1:-$OUT/default_crnn.safetensors}
if [ ! -f "$MODEL" ]; then
    DEFAULT='{"name":"crnn","blocks":[{"channels":32,"pool":{"time":2,"mel":4}},{"channels":64},{"channels":64,"pool":{"time":2,"mel":4}},{"channels":128},{"channels":128,"pool":{"time":1,"mel":4}}],"gru_hidden":128}'
    "$HARK" model init "$MODEL" --classes c0,c1,c2,c3,c4,c5,c6,c7,c8,c9,c10 --arch "$DEFAULT" >/dev/null
fi
# 1 h of 16 kHz audio: the test clip repeated.
LONG=$OUT/one_hour_16k.wav
if [ ! -f "$LONG" ]; then
    python3 - "$LONG" <<'PY'
import sys, wave
with wave.open("tests/data/audio/speech_chime_16k.wav") as w:
    assert w.getframerate() == 16000 and w.getsampwidth() == 2
    ch, frames = w.getnchannels(), w.readframes(w.getnframes())
n = 3600 * 16000 * 2 * ch
with wave.open(sys.argv[1], "wb") as o:
    o.setnchannels(ch); o.setsampwidth(2); o.setframerate(16000)
    o.writeframes((frames * (n // len(frames) + 1))[:n])
PY
fi
echo "load: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
for i in 1 2 3; do
    /usr/bin/time -f "%e s elapsed, %M KB max RSS, %P CPU" "$HARK" detect --model "$MODEL" ${CONFIG:+--config "$CONFIG"} "$LONG" >/dev/null 2>"$OUT/detect_$i.log" || true
    tail -n 1 "$OUT/detect_$i.log"
done | tee "$OUT/detect.txt"
python3 - "$OUT/detect.txt" <<'PY'
import statistics, sys
t = [float(l.split()[0]) for l in open(sys.argv[1]) if "elapsed" in l]
m = statistics.median(t)
print(f"hark detect, 1 h of audio: median {m:.2f} s = {3600 / m:.0f}x real time")
PY
# A 16 kHz file long enough for the paced run.
PACED=$OUT/paced_16k.wav
python3 - "$PACED" "$SECONDS_RUN" <<'PY'
import sys, wave
with wave.open("tests/data/audio/speech_chime_16k.wav") as w:
    ch, frames = w.getnchannels(), w.readframes(w.getnframes())
n = int(float(sys.argv[2]) + 5) * 16000 * 2 * ch
with wave.open(sys.argv[1], "wb") as o:
    o.setnchannels(ch); o.setsampwidth(2); o.setframerate(16000)
    o.writeframes((frames * (n // len(frames) + 1))[:n])
PY
for threads in ${DAEMON_THREADS:-1 2}; do
    cfg=${CONFIG:-}
    if [ -z "$cfg" ]; then
        cfg=$OUT/threads_$threads.toml
        printf '[pipeline]\nmodel_threads = %s\n' "$threads" > "$cfg"
    fi
    echo "hark run, model_threads=$threads (config $cfg), $SECONDS_RUN s of paced input:"
    python3 benches/compare/daemon.py "$HARK" "$MODEL" "$PACED" --seconds "$SECONDS_RUN" \
        --config "$cfg" | tee "$OUT/daemon_$threads.json"
    [ -z "${CONFIG:-}" ] || break
done
