#!/usr/bin/env bash
# Fetches the Debian packages that hark's default model is trained on and unpacks their
# audio into a cache outside the repository (default ~/.cache/hark-data, or $HARK_DATA).
#
#   models/recipe/fetch.sh            # ~3.7 GB of .deb files, ~6 GB unpacked
#
# Layout of the cache: debs/*.deb and x/<package>/<path>, where <path> is the path inside
# the package, or inside the package's zip archive (.pk3, .wz, public.zip) for the
# packages that keep their audio in one — as the relpath column of
# /work/shared/data/train-manifest.tsv (copied to models/recipe/train-manifest.tsv) expects.
# Then it writes x/manifest.tsv: the selected files of the 11 classes and the
# backgrounds, with speech chosen by the path rules of models/recipe/select_speech.py.
# Needs: apt-get (run as root, or with a configured sudo), dpkg-deb, unzip, python3.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${HARK_DATA:-$HOME/.cache/hark-data}
pkgs=(0ad-data ufoai-sound nexuiz-data openarena-data openarena-081-players
  openarena-085-data openarena-088-data minetest-data widelands-data torcs-data
  ktuberling-data hedgewars-data warzone2100-data megaglest-data naev-data
  endless-sky-data btanks-data lincity-ng-data oxygen-sounds deepin-sound-theme
  lomiri-sounds psi-plus-sounds)
# Packages whose audio sits in zip archives (path inside the .deb → unzip into x/<pkg>).
declare -A zips=(
  [0ad-data]=usr/share/games/0ad/mods/public/public.zip
  [ufoai-sound]=usr/share/games/ufoai/base/0snd.pk3
  [nexuiz-data]=usr/share/games/nexuiz/data/data.pk3
  [openarena-data]="usr/share/games/openarena/baseoa/pak0.pk3 usr/share/games/openarena/missionpack/mp-pak0.pk3"
  [openarena-081-players]=usr/share/games/openarena/baseoa/pak2-players.pk3
  [openarena-085-data]=usr/share/games/openarena/baseoa/pak6-patch085.pk3
  [openarena-088-data]=usr/share/games/openarena/baseoa/pak6-patch088.pk3
  [warzone2100-data]=usr/share/games/warzone2100/base.wz
)

for tool in dpkg-deb unzip python3 apt-get; do
  command -v "$tool" >/dev/null || { echo "fetch.sh: $tool is missing (apt-get install -y dpkg unzip python3)" >&2; exit 1; }
done
mkdir -p "$cache/debs" "$cache/x"
cd "$cache/debs"
missing=()
for p in "${pkgs[@]}"; do
  ls "${p}"_*.deb >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "fetch.sh: downloading ${missing[*]}" >&2
  apt-get download "${missing[@]}"
fi

for p in "${pkgs[@]}"; do
  out="$cache/x/$p"
  [[ -e "$out/.done" ]] && continue
  rm -rf "$out" && mkdir -p "$out"
  deb=$(ls "${p}"_*.deb | head -n1)
  echo "fetch.sh: unpacking $p" >&2
  if [[ -n "${zips[$p]:-}" ]]; then
    tmp=$(mktemp -d "$cache/tmp.XXXXXX")
    members=()
    for z in ${zips[$p]}; do members+=("./$z"); done
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" "${members[@]}"
    for z in ${zips[$p]}; do
      # Audio only; later archives (patches) override earlier ones, as in the games.
      # (exit status 11: one of the patterns matched nothing in this archive)
      unzip -qq -o "$tmp/$z" '*.wav' '*.ogg' '*.opus' '*.WAV' '*.OGG' -d "$out" 2>/dev/null || [[ $? -eq 11 ]]
    done
    rm -rf "$tmp"
  else
    dpkg -x "$deb" "$out"
  fi
  touch "$out/.done"
done

python3 "$here/select_speech.py" "$cache/x" "$here/train-manifest.tsv" > "$cache/x/manifest.tsv"
echo "fetch.sh: $(($(wc -l < "$cache/x/manifest.tsv") - 1)) files listed in $cache/x/manifest.tsv" >&2
