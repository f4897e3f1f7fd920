#!/usr/bin/env bash
# Makes the small audio fixtures under tests/data/audio/ from the one real recording
# there, speech_chime_16k.wav (see tests/data/audio/README.md). Needs sox, flac, lame,
# oggenc and python3 (standard library only). Deterministic: rerunning gives the same
# WAV/FLAC files and the same random bytes; lossy encoders may differ by version.
#
#   scripts/make_test_audio.sh
set -euo pipefail

dir="$(cd "$(dirname "$0")/.." && pwd)/tests/data/audio"
src="$dir/speech_chime_16k.wav"
cd "$dir"

# Same audio, other containers and codecs (16 kHz mono, whole 5.2 s).
flac --silent --force --best -o speech_chime_16k.flac "$src"
oggenc --quiet -q 3 -o speech_chime_16k.ogg "$src"
lame --quiet --preset cbr 48 "$src" speech_chime_16k.mp3

# Other rates and channel counts: short excerpts (from 0.5 s: the first word) so the
# files stay small. Every channel is the same signal with a different gain, so the
# mono downmix (mean of channels) is the excerpt times the mean gain.
sox "$src" -b 16 speech_44k1_stereo.wav trim 0.5 0.4 rate -v 44100 remix 1v1.0 1v0.5
sox "$src" -b 16 speech_16k_8ch.wav trim 0.5 0.3 \
    remix 1v1.0 1v0.875 1v0.75 1v0.625 1v0.5 1v0.375 1v0.25 1v0.125

# One second (from 0.5 s) for the WAV whose header lies about its length.
sox "$src" -b 16 speech_1s_16k.wav trim 0.5 1.0

# Zero-length: a valid WAV header and no samples.
sox -n -r 16000 -c 1 -b 16 empty.wav trim 0 0

python3 - <<'EOF'
import random, struct

src = open("speech_chime_16k.wav", "rb").read()

# Cut inside the data chunk: the header promises 5.2 s, the file holds 0.5 s
# (44-byte header + 8000 samples of 2 bytes).
open("truncated_data.wav", "wb").write(src[: 44 + 8000 * 2])

# Cut inside the header: nothing can be decoded.
open("truncated_header.wav", "wb").write(src[:30])

# A header that lies about its length: RIFF and data sizes 0xFFFFFFFF, as streaming
# writers (arecord to a pipe) leave them. The data itself is complete (1 s).
one = open("speech_1s_16k.wav", "rb").read()
assert one[36:40] == b"data", "expected a plain 44-byte WAV header"
lying = bytearray(one)
lying[4:8] = struct.pack("<I", 0xFFFFFFFF)
lying[40:44] = struct.pack("<I", 0xFFFFFFFF)
open("lying_length.wav", "wb").write(bytes(lying))
import os
os.remove("speech_1s_16k.wav")

# Random bytes: not audio at all.
rng = random.Random(1234)
open("corrupt.bin", "wb").write(bytes(rng.getrandbits(8) for _ in range(4096)))

# A FLAC file with garbage in the middle (a few frames fail their CRC and are skipped).
flac = bytearray(open("speech_chime_16k.flac", "rb").read())
mid = len(flac) // 2
flac[mid : mid + 600] = bytes(rng.getrandbits(8) for _ in range(600))
open("corrupt_middle.flac", "wb").write(bytes(flac))

# 32-bit float WAV, 16 kHz mono, 1000 samples of a 440 Hz sine at 0.5 with four
# non-finite samples: NaN at 100 and 200, +Inf at 300, -Inf at 400.
import math
n = 1000
samples = [0.5 * math.sin(2 * math.pi * 440 * i / 16000) for i in range(n)]
for i, v in ((100, float("nan")), (200, float("nan")), (300, float("inf")), (400, float("-inf"))):
    samples[i] = v
data = b"".join(struct.pack("<f", s) for s in samples)
rate, ch, bits = 16000, 1, 32
fmt = struct.pack("<HHIIHH", 3, ch, rate, rate * ch * bits // 8, ch * bits // 8, bits)
fact = struct.pack("<I", n)
body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
        + b"fact" + struct.pack("<I", len(fact)) + fact
        + b"data" + struct.pack("<I", len(data)) + data)
open("nonfinite_f32.wav", "wb").write(b"RIFF" + struct.pack("<I", len(body)) + body)
EOF

ls -l "$dir"
