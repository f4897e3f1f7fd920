#!/usr/bin/env bash
# What lower latency costs in accuracy: the shipped model on the validation
# soundscapes with the default streaming (hop 25, full overlap averaging, the tuned
# post-processing) and with the low-latency profile (firmware-config/low-latency.toml:
# hop 10, look-ahead 0, no median filter, no minimum duration), plus the profile's
# streaming with the tuned post-processing, to separate the two parts.
#
#   HARK_DATA=~/.cache/hark-data models/recipe/latency_eval.sh
#
# Needs the validation soundscapes of build.sh. Writes
# models/recipe/results/latency.jsonl (one line per setting: event-F1, segment-F1,
# PSDS1, and the bound on when a frame's score is final).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${HARK_DATA:-$HOME/.cache/hark-data}"
hark="${HARK:-$repo/target/release/hark}"
model="$repo/models/hark-crnn-s11.safetensors"
val="$cache/soundscapes/validation"
work="$cache/latency"
mkdir -p "$work" "$here/results"
python3 "$here/merge_overlaps.py" "$val/strong.tsv" "$work/validation-merged.tsv"
printf '[model]\nhop_frames = 10\nlookahead_frames = 0\n' > "$work/streaming-only.toml"
out="$here/results/latency.jsonl"
: > "$out"
for setting in default low-latency streaming-only; do
  case $setting in
    default) cfg=() ;;
    low-latency) cfg=(--config "$repo/firmware-config/low-latency.toml") ;;
    streaming-only) cfg=(--config "$work/streaming-only.toml") ;;
  esac
  rm -rf "$work/scores-$setting"
  t0=$(date +%s.%N)
  "$hark" detect -m "$model" "${cfg[@]}" "$val"/audio/*.wav \
    --scores "$work/scores-$setting" -o "$work/detections-$setting.tsv"
  t1=$(date +%s.%N)
  "$hark" eval --reference "$work/validation-merged.tsv" --estimate "$work/detections-$setting.tsv" \
    --scores "$work/scores-$setting" --json > "$work/eval-$setting.json"
  python3 - "$setting" "$work/eval-$setting.json" "$t0" "$t1" >> "$out" <<'PY'
import json, sys
setting, path, t0, t1 = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
r = json.load(open(path))
print(json.dumps({
    "setting": setting,
    "event_f1": round(r["event_based"]["macro"]["f_measure"], 4),
    "segment_f1": round(r["segment_based"]["macro"]["f_measure"], 4),
    "tagging_f1": round(r["tagging"]["macro"]["f_measure"], 4),
    "psds1": round(r["psds1"], 4) if isinstance(r.get("psds1"), (int, float)) else None,
    "detect_s": round(t1 - t0, 1),
}))
PY
done
cat "$out"
