#!/usr/bin/env python3
"""Golden log-mel features for hark's front end, computed with librosa.

Run from the repository root:

    python3 scripts/golden_features.py

The script makes (once) a virtual environment `.venv-features/` (gitignored),
pip-installs librosa into it, re-runs itself there, and writes small golden files to
`tests/data/golden/features/`:

- `<name>.json`: the hark `FeatureConfig` (same serde form as the model file), the
  input WAV, the sample rate the samples are *declared* at, the frame count, n_mels
  and the librosa/numpy versions;
- `<name>.f32`: the log-mel matrix, row-major (frames, n_mels), little-endian float32.
- `mel_<name>.json` / `mel_<name>.f32`: `librosa.filters.mel` matrices (n_mels, 1 + n_fft/2).

All feature cases read the same real recording, `tests/data/audio/speech_chime_16k.wav`
(16 kHz mono). For the 22.05 kHz and 32 kHz cases the *same samples* are declared to be
at that rate (no resampling): this keeps the golden files small and still exercises real
audio at every setting. `tests/features_golden.rs` does exactly the same.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-features"
OUT = ROOT / "tests" / "data" / "golden" / "features"
WAV = "tests/data/audio/speech_chime_16k.wav"


def ensure_venv() -> None:
    """Re-executes this script inside `.venv-features` with librosa installed."""
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    py = VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "librosa==0.11.0", "soundfile"],
            check=True,
        )
    os.execv(str(py), [str(py), __file__, *sys.argv[1:]])


def config(**kw):
    """A hark FeatureConfig in its serde (JSON) form, defaults = FeatureConfig::default()."""
    c = {
        "sample_rate": 16000,
        "n_fft": 1024,
        "win_length": 640,
        "hop_length": 320,
        "window": "hann",
        "center": True,
        "n_mels": 64,
        "fmin": 50.0,
        "fmax": 8000.0,
        "mel_scale": "slaney",
        "mel_norm": "slaney",
        "power": 2.0,
        "log": {"kind": "ln", "eps": 1e-10},
        "normalization": {"kind": "none"},
    }
    c.update(kw)
    return c


# name -> hark FeatureConfig. Seed-paper settings: 22.05 kHz / n_fft 2048 / hop 441 and
# 32 kHz / n_fft 2048 / hop 1024; plus a Kaldi-like non-centred 25 ms / 10 ms setting.
CASES = {
    # hark's default model setting.
    "default_16k": config(),
    # 22.05 kHz, 93 ms Hann, 20 ms hop, 128 HTK mels without normalisation, dB.
    "seed_22k_htk_db": config(
        sample_rate=22050,
        n_fft=2048,
        win_length=2048,
        hop_length=441,
        n_mels=128,
        fmin=0.0,
        fmax=11025.0,
        mel_scale="htk",
        mel_norm="none",
        log={"kind": "db", "amin": 1e-10},
    ),
    # 32 kHz, Hamming window shorter than n_fft, magnitude (power 1), ln with eps 1e-6.
    "seed_32k_hamming_mag": config(
        sample_rate=32000,
        n_fft=2048,
        win_length=1500,
        hop_length=1024,
        window="hamming",
        n_mels=64,
        fmin=20.0,
        fmax=14000.0,
        power=1.0,
        log={"kind": "ln", "eps": 1e-6},
    ),
    # 16 kHz, 25 ms / 10 ms, not centred, odd n_fft, HTK scale with Slaney norm, power 1, dB.
    "kaldi_16k_nocenter": config(
        n_fft=401,
        win_length=400,
        hop_length=160,
        center=False,
        n_mels=40,
        fmin=20.0,
        fmax=7600.0,
        mel_scale="htk",
        power=1.0,
        log={"kind": "db", "amin": 1e-5},
    ),
}

# name -> (sr, n_fft, n_mels, fmin, fmax, htk, norm) for librosa.filters.mel.
MEL_CASES = {
    "slaney_16k_256": (16000, 256, 40, 0.0, 8000.0, False, "slaney"),
    "htk_22k_300_nonorm": (22050, 300, 24, 100.0, 10000.0, True, None),
}


def logmel(y, c):
    import librosa
    import numpy as np

    S = librosa.feature.melspectrogram(
        y=y,
        sr=c["sample_rate"],
        n_fft=c["n_fft"],
        hop_length=c["hop_length"],
        win_length=c["win_length"],
        window=c["window"],
        center=c["center"],
        pad_mode="constant",
        power=c["power"],
        n_mels=c["n_mels"],
        fmin=c["fmin"],
        fmax=c["fmax"],
        htk=c["mel_scale"] == "htk",
        norm="slaney" if c["mel_norm"] == "slaney" else None,
    )
    assert S.dtype == np.float32, S.dtype
    log = c["log"]
    if log["kind"] == "ln":
        L = np.log(S + np.float32(log["eps"]))
    else:
        L = librosa.power_to_db(S, ref=1.0, amin=log["amin"], top_db=None)
    # librosa is (n_mels, frames); hark is row-major (frames, n_mels).
    return np.ascontiguousarray(L.T.astype("<f4"))


def main() -> None:
    ensure_venv()
    import librosa
    import numpy as np
    import soundfile as sf

    OUT.mkdir(parents=True, exist_ok=True)
    y, file_sr = sf.read(ROOT / WAV, dtype="float32", always_2d=False)
    assert file_sr == 16000 and y.ndim == 1
    versions = {"librosa": librosa.__version__, "numpy": np.__version__}

    for name, c in CASES.items():
        L = logmel(y, c)
        (OUT / f"{name}.f32").write_bytes(L.tobytes())
        header = {
            "config": c,
            "wav": WAV,
            "declared_sample_rate": c["sample_rate"],
            "n_samples": int(y.shape[0]),
            "n_frames": int(L.shape[0]),
            "n_mels": int(L.shape[1]),
            "data": f"{name}.f32",
            "versions": versions,
        }
        (OUT / f"{name}.json").write_text(json.dumps(header, indent=2) + "\n")
        print(f"{name}: {L.shape[0]} frames x {L.shape[1]} mels, range {L.min():.3f}..{L.max():.3f}")

    for name, (sr, n_fft, n_mels, fmin, fmax, htk, norm) in MEL_CASES.items():
        M = librosa.filters.mel(
            sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk, norm=norm
        ).astype("<f4")
        (OUT / f"mel_{name}.f32").write_bytes(np.ascontiguousarray(M).tobytes())
        header = {
            "sample_rate": sr,
            "n_fft": n_fft,
            "n_mels": n_mels,
            "fmin": fmin,
            "fmax": fmax,
            "mel_scale": "htk" if htk else "slaney",
            "mel_norm": "slaney" if norm == "slaney" else "none",
            "shape": list(M.shape),
            "data": f"mel_{name}.f32",
            "versions": versions,
        }
        (OUT / f"mel_{name}.json").write_text(json.dumps(header, indent=2) + "\n")
        print(f"mel_{name}: {M.shape}")


if __name__ == "__main__":
    main()
