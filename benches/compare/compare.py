#!/usr/bin/env python3
"""PyTorch and librosa side of hark's comparison (run by benches/compare/run.sh).

For every hark model file MODELS/<name>.safetensors it builds the PyTorch twin of the
architecture (the golden-test twins of scripts/golden_*.py, sized from the file's
`hark.model` JSON), loads the *same weights* from the file, checks that the twin's
frame scores on hark's input (MODELS/<name>.hark_io.safetensors) match hark's, and
times inference on a 10 s clip (500 frames) and on the model's streaming window.
It also times log-mel of 60 s at 16 kHz (librosa, and torch.stft + the same mel
matrix) and one training step (batch 16 x 500 frames, clip + frame BCE, gradient
clipping at 5, AdamW) of the CDur-size CRNN and AMN twins. Medians, THREADS threads.
Then it reads hark's timings (HARK.json, from benches/compare_hark.rs) and prints a
markdown table of medians and ratios hark/peer.

    python compare.py MODELS HARK.json [--reps N] [--threads 2] [--json OUT.json]
"""
import argparse
import importlib.util
import json
import pathlib
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file

ROOT = pathlib.Path(__file__).resolve().parents[2]


def load_module(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


gm = load_module("golden_model")
za = load_module("golden_zoo_a")
zb = load_module("golden_zoo_b")


def median_ms(reps, f):
    f()
    ts = []
    for _ in range(max(reps, 1)):
        t0 = time.perf_counter()
        f()
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def blocks_of(spec):
    """hark's [{"channels", "pool": {"time", "mel"}}] -> the twins' [(c, (t, m) | None)]."""
    return [(b["channels"], (b["pool"]["time"], b["pool"]["mel"]) if b.get("pool") else None)
            for b in spec]


def build_twin(meta):
    """The PyTorch twin of a hark model's architecture, and its hark-name function."""
    arch, classes, n_mels = meta["arch"], meta["classes"], meta["features"]["n_mels"]
    name = arch["name"]
    if name == "crnn":
        gm.BLOCKS = blocks_of(arch["blocks"])
        gm.GRU_HIDDEN, gm.CLASSES, gm.N_MELS = arch["gru_hidden"], classes, n_mels
        gm.LP_P, gm.SLOPE = arch["lp_p"], arch["leaky_slope"]
        assert arch["kernel"] == 3
        return gm.Twin(), gm.hark_name
    if name == "amn":
        za.AMN_CHANNELS, za.AMN_MEL_POOLS = arch["channels"], arch["mel_pools"]
        za.AMN_GRU, za.AMN_TAU, za.AMN_MELS = arch["gru_hidden"], arch["tau"], n_mels
        za.SLOPE, za.LP_P, za.CLASSES = arch["leaky_slope"], arch["lp_p"], classes
        za.AMN_ENCODER_AFFINITY = arch.get("encoder_affinity", "softmax")
        return za.AmnTwin(), za.hark_name
    if name == "two_step_ae":
        assert arch["head"]["kind"] == "two_step" and not arch["final_relu"]
        za.AE_MELS, za.AE_CHANNELS = n_mels, arch["channels"]
        za.AE_DECODER, za.CLASSES = arch["decoder_channels"], classes
        return za.TwoStepAeTwin(), za.hark_name
    if name == "atp_sedb":
        assert arch["sedb"] and arch["ifd_projection"]
        zb.ATP_BLOCKS, zb.ATP_KERNEL = blocks_of(arch["blocks"]), arch["kernel"]
        zb.N_MELS, zb.CLASSES, zb.ATP_PROJ = n_mels, classes, arch["projection_dim"]
        mels = n_mels
        for _, p in zb.ATP_BLOCKS:
            mels //= p[1] if p else 1
        d = zb.ATP_BLOCKS[-1][0] * mels
        zb.ATP_DF = arch.get("df_dims") or [d] * len(classes)
        return zb.AtpSedbTwin(), zb.hark_name
    if name == "context_attention":
        zb.LOCAL = (blocks_of(arch["local"]["blocks"]), arch["local"]["gru_hidden"])
        zb.GLOBAL = (blocks_of(arch["global"]["blocks"]), arch["global"]["gru_hidden"])
        zb.SEGMENT, zb.ATT_DIM = arch["segment_frames"], arch["att_dim"]
        zb.FC_HIDDEN, zb.N_SCENES = arch["fc_hidden"], arch["n_scenes"]
        zb.LP_P, zb.SLOPE, zb.N_MELS, zb.CLASSES = arch["lp_p"], arch["leaky_slope"], n_mels, classes
        return zb.ContextAttentionTwin(), lambda n: zb.hark_name(zb.rename_ca(n))
    raise SystemExit(f"no PyTorch twin for architecture {name}")


def frame_of(out):
    return out["frame"] if isinstance(out, dict) else out[0]


def load_twin(path):
    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["hark.model"])
    twin, hark_name = build_twin(meta)
    weights = load_file(str(path))
    state = {}
    for n, t in twin.state_dict().items():
        if n.endswith("num_batches_tracked") or t.numel() == 0:
            continue
        state[n] = weights[hark_name(n)]
    missing, unexpected = twin.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("num_batches_tracked")
               and twin.state_dict()[m].numel() > 0]
    assert not missing and not unexpected, (missing, unexpected)
    return twin.eval(), meta


def infer(models_dir, reps, res):
    for path in sorted(models_dir.glob("*.safetensors")):
        name = path.name[: -len(".safetensors")]
        if "." in name:
            continue
        twin, meta = load_twin(path)
        io = load_file(str(models_dir / f"{name}.hark_io.safetensors"))
        x = io["input"]
        with torch.inference_mode():
            diff = (frame_of(twin(x)) - io["frame"]).abs().max().item()
            res[f"max_abs_diff/{name}"] = diff
            res[f"infer_clip/{name}"] = median_ms(reps, lambda: twin(x))
            w = max(meta["streaming"]["window_frames"], 1)
            xw = x[:, :w].contiguous()
            res[f"infer_window/{name}"] = median_ms(reps * 5, lambda: twin(xw))
        print(f"{name}: max |twin - hark| = {diff:.2e}, clip {res[f'infer_clip/{name}']:.2f} ms, "
              f"window {res[f'infer_window/{name}']:.3f} ms", flush=True)


def logmel(reps, res):
    import librosa

    sr, n = 16000, 60 * 16000
    i = np.arange(n, dtype=np.uint64)
    y = (np.sin(i.astype(np.float32) * np.float32(0.013)) * 0.3
         + ((i * np.uint64(2654435761)) % np.uint64(1000)).astype(np.float32) / 5000.0
         ).astype(np.float32)
    kw = dict(sr=sr, n_fft=1024, hop_length=320, win_length=640, window="hann", center=True,
              pad_mode="constant", power=2.0, n_mels=64, fmin=50.0, fmax=8000.0, htk=False,
              norm="slaney")

    def lib():
        return np.log(librosa.feature.melspectrogram(y=y, **kw) + 1e-10)

    res["logmel_60s/librosa"] = median_ms(reps, lib)
    mel = torch.from_numpy(librosa.filters.mel(sr=sr, n_fft=1024, n_mels=64, fmin=50.0,
                                               fmax=8000.0, htk=False, norm="slaney"))
    win = torch.hann_window(640, periodic=True)
    yt = torch.from_numpy(y)

    def tor():
        with torch.inference_mode():
            s = torch.stft(yt, 1024, 320, 640, win, center=True, pad_mode="constant",
                           return_complex=True)
            return torch.log(mel @ (s.real.square() + s.imag.square()) + 1e-10)

    res["logmel_60s/torch"] = median_ms(reps, tor)
    print(f"log-mel 60 s: librosa {res['logmel_60s/librosa']:.2f} ms, "
          f"torch {res['logmel_60s/torch']:.2f} ms", flush=True)


def train_step(reps, res):
    b, t, nm, c = 16, 500, 64, 10
    classes = [f"c{i}" for i in range(c)]
    cdur = [(32, (2, 4)), (128, None), (128, (2, 4)), (128, None), (128, (1, 4))]
    gm.BLOCKS, gm.GRU_HIDDEN, gm.CLASSES, gm.N_MELS = cdur, 128, classes, nm
    gm.LP_P, gm.SLOPE = 4.0, 0.1
    za.AMN_CHANNELS, za.AMN_MEL_POOLS, za.AMN_GRU = [32, 128, 128], [4, 4, 4], 128
    za.AMN_TAU, za.AMN_MELS, za.CLASSES, za.SLOPE, za.LP_P = 1.0, nm, classes, 0.1, 4.0
    za.AMN_ENCODER_AFFINITY = "softmax"
    x = torch.stack([torch.sin(torch.arange(t * nm, dtype=torch.float32) * (k + 1) * 1e-3)
                     .reshape(t, nm) for k in range(b)])
    weak = torch.zeros(b, c)
    strong = torch.zeros(b, t, c)
    for k in range(b):
        weak[k, k % c] = 1
        strong[k, 100:300, k % c] = 1
    for name, make in [("crnn", gm.Twin), ("amn", za.AmnTwin)]:
        torch.manual_seed(0)
        net = make().train()
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-2)

        def step():
            frame, clip = net(x)[:2]
            loss = F.binary_cross_entropy(clip, weak) + F.binary_cross_entropy(frame, strong)
            loss.item()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()

        res[f"train_step/{name}"] = median_ms(min(reps, 5), step)
        print(f"{name} train step: {res[f'train_step/{name}']:.0f} ms", flush=True)


def table(hark, peer):
    rows = []

    def row(work, key, peer_name, peer_key=None):
        h, p = hark.get(key), peer.get(peer_key or key)
        if h is None or p is None:
            return
        rows.append(f"| {work} | {peer_name} {p:.2f} ms | hark {h:.2f} ms | {h / p:.2f}× |")

    row("log-mel, 60 s at 16 kHz", "logmel_60s", "librosa", "logmel_60s/librosa")
    row("log-mel, 60 s at 16 kHz", "logmel_60s", "torch.stft", "logmel_60s/torch")
    row("log-mel, 60 s, split across threads", "logmel_60s_parallel", "librosa",
        "logmel_60s/librosa")
    names = sorted(k.split("/", 1)[1] for k in hark if k.startswith("infer_clip/"))
    for n in names:
        row(f"{n}: inference, 10 s clip", f"infer_clip/{n}", "PyTorch")
        wf = hark.get(f"window_frames/{n}")
        row(f"{n}: inference, streaming window ({wf} frames)", f"infer_window/{n}", "PyTorch")
    for n in ["crnn", "amn"]:
        row(f"{n} (CDur size): training step, 16 × 10 s", f"train_step/{n}", "PyTorch")
    out = ["| work | peer | hark | hark/peer |", "|---|---|---|---|"] + rows
    diffs = [f"{k.split('/', 1)[1]} {v:.1e}" for k, v in sorted(peer.items())
             if k.startswith("max_abs_diff/")]
    return "\n".join(out) + "\n\nSame weights, max |PyTorch − hark| of the frame scores: " + \
        ", ".join(diffs) + "."


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", type=pathlib.Path)
    ap.add_argument("hark", type=pathlib.Path)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=pathlib.Path)
    ap.add_argument("--skip-train", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    res = {"torch": torch.__version__, "threads": a.threads}
    logmel(a.reps, res)
    infer(a.models, a.reps, res)
    if not a.skip_train:
        train_step(a.reps, res)
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    hark = json.loads(a.hark.read_text())
    print()
    print(f"torch {torch.__version__}, {a.threads} threads each; medians of {a.reps} runs")
    print()
    print(table(hark, res))


if __name__ == "__main__":
    main()
