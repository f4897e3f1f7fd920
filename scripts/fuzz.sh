#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 60), seeded from
# the repository's test files, and prints each target's runs and findings.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Needs a nightly toolchain (`rustup toolchain install nightly`) and cargo-fuzz
# (`cargo install cargo-fuzz`). Crashes are written to fuzz/artifacts/<target>/;
# copy each into tests/data/fuzz/<target>/ so `tests/fuzz_regressions.rs` replays it
# in every `cargo test`. Not part of CI: it is long and CPU-bound.
set -euo pipefail

SECONDS_EACH=${1:-60}
shift || true
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT/fuzz"
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
    TARGETS=(audio_decode config_parse model_load socket_subscribe tsv_eval tsv_train)
fi
JOBS=${CARGO_BUILD_JOBS:-2}

# ---- Seed corpora from the repository ---------------------------------------
seed() {
    local t=$1
    mkdir -p "corpus/$t"
    # Earlier regressions are seeds too.
    if [ -d "$ROOT/tests/data/fuzz/$t" ]; then
        cp -n "$ROOT/tests/data/fuzz/$t"/* "corpus/$t/" 2>/dev/null || true
    fi
}
for t in "${TARGETS[@]}"; do seed "$t"; done
python3 - "$ROOT" <<'EOF'
import glob, os, sys
root = sys.argv[1]
def put(target, name, data):
    d = os.path.join("corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)
# audio_decode: a selector byte (extension, PCM format, channels), then the file.
for i, p in enumerate(sorted(glob.glob(f"{root}/tests/data/audio/*"))):
    if p.endswith(".md"):
        continue
    data = open(p, "rb").read()[:65536]
    ext = {".wav": 0, ".flac": 1, ".ogg": 2, ".mp3": 3}.get(os.path.splitext(p)[1], 4)
    put("audio_decode", f"seed{i}", bytes([ext]) + data)
for i, p in enumerate(sorted(glob.glob(f"{root}/firmware-config/*.toml"))):
    put("config_parse", f"seed{i}", open(p, "rb").read())
put("config_parse", "full", b'[source]\ninput = "mic:USB"\nring_seconds = 4\n[model]\npath = "m"\nhop_frames = 25\n'
    b'[socket]\npath = "/run/hark/hark.sock"\n[pipeline]\nenergy_gate_dbfs = -60.0\n[http]\naddr = "8080"\n'
    b'[mqtt]\nhost = "h"\nusername = "u"\npassword_file = "p"\n[mqtt.tls]\n[classes.speech]\non = 0.7\n')
for i, line in enumerate([b'{"subscribe":{"labels":["speech"],"scores":true}}', b'{"subscribe":{}}',
                          b'{"subscribe":{"labels":[]}}\n{"subscribe":{"scores":false}}']):
    put("socket_subscribe", f"seed{i}", line)
n = 0
for p in sorted(glob.glob(f"{root}/tests/data/metrics/case_00*/*.tsv"))[:20]:
    put("tsv_eval", f"seed{n}", open(p, "rb").read()[:8192]); n += 1
for i, text in enumerate([b"filename\tevent_labels\na.wav\tspeech,door\nb.wav\t\n",
                          b"filename\tonset\toffset\tevent_label\na.wav\t1.0\t2.5\tspeech\n",
                          b"filename\tonset\toffset\tevent_label\tsoft_label\na.wav\t0\t1\tdoor\t0.7\n",
                          b"filename\tscene_label\na.wav\thome\n"]):
    put("tsv_train", f"seed{i}", bytes([i]) + text)
EOF
if [[ " ${TARGETS[*]} " == *" model_load "* ]]; then
    HARK=${HARK:-$ROOT/target/release/hark}
    [ -x "$HARK" ] || HARK=$ROOT/target/debug/hark
    "$HARK" model init corpus/model_load/tiny_crnn --classes speech,door \
        --arch '{"name":"crnn","blocks":[{"channels":2,"pool":{"time":2,"mel":4}},{"channels":2,"pool":{"time":2,"mel":4}},{"channels":2,"pool":{"time":1,"mel":4}}],"gru_hidden":2}' \
        --window-frames 8 --hop-frames 4 >/dev/null
fi

# ---- Build once, run each target ---------------------------------------------
for t in "${TARGETS[@]}"; do
    CARGO_BUILD_JOBS=$JOBS cargo +nightly fuzz build -O "$t" 2>&1 | grep -E '^error|warning: unused' || true
done
# Files in a folder (0 when it does not exist).
count() { if [ -d "$1" ]; then find "$1" -type f | wc -l; else echo 0; fi; }
STATUS=0
for t in "${TARGETS[@]}"; do
    log=$(mktemp)
    before=$(count "artifacts/$t")
    set +e
    cargo +nightly fuzz run -O "$t" "corpus/$t" -- \
        -max_total_time="$SECONDS_EACH" -rss_limit_mb=4096 -malloc_limit_mb=2048 \
        -timeout=20 -print_final_stats=1 >"$log" 2>&1
    rc=$?
    set -e
    after=$(count "artifacts/$t")
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1 || true)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1 || true)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
    printf '%-17s %4s s  %9s runs  %6s/s  %-10s  exit %s  new artifacts %s\n' \
        "$t" "$SECONDS_EACH" "${runs:-?}" "${speed:-?}" "${cov:-}" "$rc" "$((after - before))"
    if [ "$rc" != 0 ]; then
        STATUS=1
        grep -m5 -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" || tail -20 "$log"
    fi
    rm -f "$log"
done
exit $STATUS
