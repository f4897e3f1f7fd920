#!/usr/bin/env bash
# Side-by-side timings of hark vs PyTorch and librosa, same models and weights.
#
#   benches/compare/run.sh [REPS]        (from anywhere; THREADS=2 by default)
#
# 1. makes .venv-bench (torch, librosa, safetensors from PyPI) once;
# 2. writes untrained hark model files of every architecture (`hark model init`,
#    seeded random weights): the shipping default CRNN, the CDur-size CRNN and the
#    other architectures at their default (paper) sizes;
# 3. times hark (benches/compare_hark.rs, release build) and the PyTorch twins loaded
#    with the same weights (benches/compare/compare.py), which also checks that both
#    give the same frame scores;
# 4. prints a markdown table of medians and ratios hark/peer (also written to
#    target/compare/table.md).
# Both sides run with THREADS threads (RAYON_NUM_THREADS for candle,
# torch.set_num_threads for PyTorch). Speed does not depend on the weights' values.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPS=${1:-20}
THREADS=${THREADS:-2}
VENV=${VENV:-.venv-bench}
OUT=${OUT:-target/compare}
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import torch, librosa, safetensors" 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q torch librosa safetensors numpy
fi
cargo build --release --locked
rm -rf "$OUT/models" && mkdir -p "$OUT/models"
HARK=./target/release/hark
C10=c0,c1,c2,c3,c4,c5,c6,c7,c8,c9
DEFAULT='{"name":"crnn","blocks":[{"channels":32,"pool":{"time":2,"mel":4}},{"channels":64},{"channels":64,"pool":{"time":2,"mel":4}},{"channels":128},{"channels":128,"pool":{"time":1,"mel":4}}],"gru_hidden":128}'
"$HARK" model init "$OUT/models/default_crnn.safetensors" --classes $C10,c10 --arch "$DEFAULT" >/dev/null
for a in crnn amn two_step_ae atp_sedb context_attention; do
    "$HARK" model init "$OUT/models/$a.safetensors" --classes $C10 --arch "{\"name\":\"$a\"}" >/dev/null
done
echo "load: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores" >&2
RAYON_NUM_THREADS=$THREADS cargo bench --locked --bench compare_hark -- "$OUT/models" "$OUT/hark.json" "$REPS"
"$VENV/bin/python" benches/compare/compare.py "$OUT/models" "$OUT/hark.json" \
    --reps "$REPS" --threads "$THREADS" --json "$OUT/peer.json" | tee "$OUT/table.md"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
