#!/usr/bin/env bash
# Soak test of `hark run`: streams HOURS of audio (the test clip looped) as raw PCM
# on stdin as fast as possible, then (optionally) a shorter run paced in real time,
# while sampling the daemon's RSS, open file descriptors and threads from /proc
# into CSV files. Checks that every `start` has its `stop` and that the events a
# socket client received equal an offline `hark detect` of the same audio, and
# prints a summary. Exit status 0 only if every check passed.
#
#   scripts/soak.sh [--hours H] [--paced-minutes M] [--interval S] [--out DIR]
#
# Defaults: 1 hour unpaced, 3 minutes paced, a sample every 2 s, output in
# /tmp/hark-soak. Uses target/release/hark (HARK=path to override; built if
# missing), sox and python3. The model is an untrained CRNN from `hark model init`
# (small by default so that hours of audio take minutes; ARCH='{"name":"crnn"}'
# for the default size) whose per-class thresholds are set from its own scores on
# the clip (70th/50th percentiles), so it emits many events of varied lengths: the
# point is the daemon's behaviour, not the detections.
set -euo pipefail

HOURS=1
PACED_MIN=3
INTERVAL=2
OUT=/tmp/hark-soak
while [ $# -gt 0 ]; do
    case "$1" in
        --hours) HOURS=$2; shift 2 ;;
        --paced-minutes) PACED_MIN=$2; shift 2 ;;
        --interval) INTERVAL=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ARCH=${ARCH:-'{"name":"crnn","blocks":[{"channels":8,"pool":{"time":2,"mel":4}},{"channels":16,"pool":{"time":2,"mel":4}},{"channels":16,"pool":{"time":1,"mel":4}}],"gru_hidden":16}'}
HARK=${HARK:-$ROOT/target/release/hark}
if [ ! -x "$HARK" ]; then
    (cd "$ROOT" && cargo build --release --locked --bin hark)
fi
CLIP=$ROOT/tests/data/audio/speech_chime_16k.wav
mkdir -p "$OUT"
rm -f "$OUT"/*.sock

# ---- Model and config -------------------------------------------------------
MODEL=$OUT/model.safetensors
"$HARK" model init "$MODEL" --classes speech,chime,door --seed 1 --arch "$ARCH" >/dev/null
"$HARK" detect --model "$MODEL" --scores "$OUT/calibration" "$CLIP" >/dev/null 2>"$OUT/detect.log"
python3 - "$OUT/calibration/speech_chime_16k.tsv" "$OUT/classes.toml" <<'EOF'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
head, body = rows[0], rows[1:]
with open(sys.argv[2], "w") as f:
    for c, name in enumerate(head[2:], start=2):
        col = sorted(float(r[c]) for r in body)
        q = lambda p: col[int((len(col) - 1) * p)]
        f.write(f"[classes.{name}]\non = {q(0.7):.6f}\noff = {q(0.5):.6f}\n"
                "median_frames = 3\nmin_duration_s = 0.06\nmerge_gap_s = 0.04\n")
EOF

# ---- Helpers ----------------------------------------------------------------
# sample PID CSV LISTEN_OUT: one row per INTERVAL until PID exits.
sample() {
    local pid=$1 csv=$2 events=$3 t0
    t0=$(date +%s.%N)
    echo "elapsed_s,audio_s,rss_kb,fds,threads" >"$csv"
    while kill -0 "$pid" 2>/dev/null; do
        local rss thr fds audio now
        rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
        thr=$(awk '/^Threads/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
        fds=$(ls "/proc/$pid/fd" 2>/dev/null | wc -l || true)
        audio=$(grep '"type":"status"' "$events" 2>/dev/null | tail -1 |
            sed -n 's/.*"t":\([0-9.]*\).*/\1/p' || true)
        now=$(date +%s.%N)
        [ -n "$rss" ] && echo "$(echo "$now - $t0" | bc),${audio:-0},$rss,$fds,$thr" >>"$csv"
        sleep "$INTERVAL"
    done
}

# check EVENTS.jsonl OFFLINE.tsv NAME: balanced events, equal to the offline ones.
check() {
    python3 - "$1" "$2" "$3" <<'EOF'
import json, sys
events, offline, name = sys.argv[1:]
open_, live = {}, []
for line in open(events):
    v = json.loads(line)
    if v["type"] == "start":
        assert v["id"] not in open_, f"duplicate start {v['id']}"
        open_[v["id"]] = v
    elif v["type"] == "stop":
        s = open_.pop(v["id"])
        assert s["t"] == v["t_start"]
        live.append((v["label"], round(v["t_start"], 6), round(v["t_end"], 6)))
rows = [l.rstrip("\n").split("\t") for l in open(offline)][1:]
off = [(r[3], round(float(r[1]), 6), round(float(r[2]), 6)) for r in rows]
live.sort(key=lambda e: (e[1], e[0])); off.sort(key=lambda e: (e[1], e[0]))
same = len(live) == len(off) and all(
    a[0] == b[0] and abs(a[1] - b[1]) < 2e-6 and abs(a[2] - b[2]) < 2e-6 for a, b in zip(live, off))
print(f"{name}: {len(live)} events live, {len(off)} offline, unmatched starts {len(open_)}, "
      f"{'IDENTICAL' if same else 'DIFFERENT'}")
sys.exit(0 if same and not open_ else 1)
EOF
}

# curve CSV: RSS/fds/threads at start, 25/50/75 %, end, and min/max.
curve() {
    python3 - "$1" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
if not rows:
    print("  no samples"); sys.exit(0)
# Skip the first sample (model loading) when there are enough.
body = rows[1:] if len(rows) > 4 else rows
pick = lambda p: body[min(len(body) - 1, int((len(body) - 1) * p))]
for p in (0, 0.25, 0.5, 0.75, 1):
    r = pick(p)
    print(f"  {p*100:5.0f} %  t={float(r['elapsed_s']):7.1f} s  audio={float(r['audio_s'])/3600:6.3f} h"
          f"  RSS={int(r['rss_kb'])/1024:7.1f} MiB  fds={r['fds']:>3}  threads={r['threads']:>3}")
rss = [int(r["rss_kb"]) for r in body]
fds = [int(r["fds"]) for r in body]
thr = [int(r["threads"]) for r in body]
print(f"  RSS {min(rss)/1024:.1f}–{max(rss)/1024:.1f} MiB (after the first quarter: "
      f"{min(rss[len(rss)//4:])/1024:.1f}–{max(rss[len(rss)//4:])/1024:.1f} MiB), "
      f"fds {min(fds)}–{max(fds)}, threads {min(thr)}–{max(thr)}, {len(body)} samples")
EOF
}

# run_daemon NAME FEED INPUT_ARGS... : starts hark with a socket and a listener,
# samples it, waits for the end. FEED is a WAV streamed as raw PCM on stdin once
# the listener is connected (so it misses nothing), or `-` for no stdin.
run_daemon() {
    local name=$1 feed=$2; shift 2
    local sock=$OUT/$name.sock events=$OUT/$name.events.jsonl
    # Unpaced, a client must read ~1,100 lines a second; a big client queue keeps a
    # listener that the (shared) machine descheduled for a moment from being cut off.
    printf '[socket]\npath = "%s"\nclient_queue = 1000000\n[pipeline]\nstatus_interval_s = 5.0\n' \
        "$sock" >"$OUT/$name.toml"
    cat "$OUT/classes.toml" >>"$OUT/$name.toml"
    : >"$events"
    if [ "$feed" = - ]; then
        "$HARK" run --model "$MODEL" --config "$OUT/$name.toml" "$@" 2>"$OUT/$name.log" </dev/null &
    else
        ( while [ ! -s "$events" ]; do sleep 0.02; done; sox "$feed" -t raw - ) |
            "$HARK" run --model "$MODEL" --config "$OUT/$name.toml" "$@" 2>"$OUT/$name.log" &
    fi
    local pid=$!
    for _ in $(seq 400); do [ -S "$sock" ] && break; sleep 0.05; done
    "$HARK" listen --socket "$sock" >"$events" &
    local lpid=$!
    sample "$pid" "$OUT/$name.csv" "$events" &
    local spid=$!
    local t0=$SECONDS rc=0
    wait "$pid" || rc=$?
    echo "$name: hark exited $rc after $((SECONDS - t0)) s"
    # Lines the daemon had to shed or clients it cut off: each means a lost event.
    if grep -E "dropping lines|not reading" "$OUT/$name.log"; then
        echo "$name: the daemon shed lines or cut the listener off"
        OK=1
    fi
    wait "$lpid" "$spid" || true
}

# ---- Unpaced soak ------------------------------------------------------------
OK=0
CLIP_S=$(soxi -D "$CLIP")
REPS=$(python3 -c "import math; print(math.ceil($HOURS * 3600 / $CLIP_S))")
echo "soak: $REPS × the clip = $(python3 -c "print(round($REPS * $CLIP_S / 3600, 3))") h of audio"
sox "$CLIP" "$OUT/soak.wav" repeat $((REPS - 1))
run_daemon soak "$OUT/soak.wav" --input stdin:s16le:16000:1
"$HARK" detect --model "$MODEL" --config "$OUT/soak.toml" "$OUT/soak.wav" >"$OUT/soak.offline.tsv" 2>>"$OUT/detect.log"
check "$OUT/soak.events.jsonl" "$OUT/soak.offline.tsv" soak || OK=1
echo "soak curve ($OUT/soak.csv):"
curve "$OUT/soak.csv"
grep -h "stopped" "$OUT/soak.log" | tail -1

# ---- Paced run -----------------------------------------------------------------
if [ "$PACED_MIN" != 0 ]; then
    PREPS=$(python3 -c "import math; print(math.ceil($PACED_MIN * 60 / $CLIP_S))")
    sox "$CLIP" "$OUT/paced.wav" repeat $((PREPS - 1))
    run_daemon paced - --input "file:$OUT/paced.wav" --realtime
    "$HARK" detect --model "$MODEL" --config "$OUT/paced.toml" "$OUT/paced.wav" >"$OUT/paced.offline.tsv" 2>>"$OUT/detect.log"
    check "$OUT/paced.events.jsonl" "$OUT/paced.offline.tsv" paced || OK=1
    echo "paced curve ($OUT/paced.csv):"
    curve "$OUT/paced.csv"
fi
[ $OK = 0 ] && echo "soak: all checks passed" || echo "soak: CHECKS FAILED"
exit $OK
