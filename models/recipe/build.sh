#!/usr/bin/env bash
# Rebuilds hark's default model from the Debian packages fetched by fetch.sh.
#
#   models/recipe/fetch.sh && models/recipe/build.sh
#
# Steps (each skipped when its output exists, so an interrupted build resumes):
#   1. soundscapes: hark synth (synth-train.toml; synth-validation.toml, and again with
#      --seed 3 for the test split) into $HARK_DATA, and the demo clip models/demo.wav
#      (synth-demo.toml)
#   2. training:    hark train train.toml (--resume continues an interrupted run)
#   3. tuning:      hark tune on the validation soundscapes (per-class post-processing)
#   4. evaluation:  hark detect + hark eval on the validation soundscapes (tuned on) and
#      on the test soundscapes (not tuned on) → metrics in results/
# The model is written to models/hark-crnn-s11.safetensors; the checkpoints and
# training log stay in $HARK_DATA/run. HARK=path/to/hark picks the binary
# (default: target/release/hark, built with cargo build --release --locked).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${HARK_DATA:-$HOME/.cache/hark-data}
hark=${HARK:-$repo/target/release/hark}
name=hark-crnn-s11
[[ -s "$cache/x/manifest.tsv" ]] || { echo "build.sh: run models/recipe/fetch.sh first ($cache/x/manifest.tsv is missing)" >&2; exit 1; }
[[ -x "$hark" ]] || (cd "$repo" && cargo build --release --locked)

mkdir -p "$cache/soundscapes" "$cache/run"
# The demo clip (models/demo.wav) and its reference labels (models/demo.tsv).
if [[ ! -s "$repo/models/demo.wav" ]]; then
  sed "s|@DATA@|$cache|g" "$here/synth-demo.toml" > "$cache/synth-demo.toml"
  rm -rf "$cache/demo"
  "$hark" synth --config "$cache/synth-demo.toml" "$cache/demo"
  cp "$cache/demo/audio/soundscape_0000.wav" "$repo/models/demo.wav"
  { head -n1 "$cache/demo/strong.tsv"; tail -n +2 "$cache/demo/strong.tsv" | sed 's/^soundscape_0000.wav/demo.wav/' | sort -t$'\t' -k2,2g; } > "$repo/models/demo.tsv"
fi
# The test split is the validation config with another mixing seed: the same held-out
# source files, new mixtures, and nothing is tuned on it.
for split in train validation test; do
  out="$cache/soundscapes/$split"
  if [[ ! -s "$out/summary.json" ]]; then
    conf=$split seed=()
    [[ $split == test ]] && conf=validation seed=(--seed 3)
    sed "s|@DATA@|$cache|g" "$here/synth-$conf.toml" > "$cache/synth-$conf.toml"
    rm -rf "$out"
    "$hark" synth --config "$cache/synth-$conf.toml" "${seed[@]}" "$out"
  fi
done

sed -e "s|@DATA@|$cache|g" "$here/train.toml" > "$cache/run/train.toml"
run_model="$cache/run/$name.safetensors"
resume=()
[[ -e "$cache/run/$name.last.safetensors" ]] && resume=(--resume)
"$hark" train "$cache/run/train.toml" "${resume[@]}" ${EPOCHS:+--epochs "$EPOCHS"}

val="$cache/soundscapes/validation"
"$hark" tune "$run_model" --audio "$val/audio" --strong "$val/strong.tsv" --cache "$cache/features"
cp "$run_model" "$repo/models/$name.safetensors"
mkdir -p "$here/results"
for split in validation test; do
  dir="$cache/soundscapes/$split"
  rm -rf "$cache/run/scores-$split"
  "$hark" detect -m "$repo/models/$name.safetensors" "$dir"/audio/*.wav \
    --scores "$cache/run/scores-$split" -o "$cache/run/$split-detections.tsv"
  python3 "$here/merge_overlaps.py" "$dir/strong.tsv" "$cache/run/$split-merged.tsv"
  "$hark" eval --reference "$cache/run/$split-merged.tsv" --estimate "$cache/run/$split-detections.tsv" \
    --scores "$cache/run/scores-$split" --json > "$here/results/$name.$split.json"
done
echo "build.sh: models/$name.safetensors written; metrics in models/recipe/results/$name.{validation,test}.json" >&2
