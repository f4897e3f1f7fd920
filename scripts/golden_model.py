#!/usr/bin/env python3
"""Golden values for hark's CRNN from its PyTorch twin.

Builds the CDur-style CRNN of src/model/arch/crnn.rs in PyTorch (BatchNorm2d ->
Conv3x3 (no bias) -> LeakyReLU(0.1) blocks with nn.LPPool2d, bidirectional nn.GRU,
Linear -> sigmoid -> clamp, linear-softmax clip pooling, F.interpolate(mode="linear",
align_corners=False) back to the input frame rate), with seeded random weights and
non-trivial batch-norm running statistics, in eval mode. Writes:

  tests/data/golden/model/crnn_tiny.safetensors     a hark model file (weights under
                                                    hark's names + `hark.model` JSON)
  tests/data/golden/model/crnn_tiny_io.safetensors  inputs and the twin's outputs

The architecture is the CDur layout (5 blocks, pools (2,4) (2,4) (1,4), 64 mels)
with narrow channels (4/8/8/8/8) and GRU 8 so the files stay small.

Usage (from the repository root):
    python3 -m venv .venv-model
    .venv-model/bin/pip install torch safetensors numpy
    .venv-model/bin/python scripts/golden_model.py
"""

import json
import pathlib

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data" / "golden" / "model"

BLOCKS = [(4, (2, 4)), (8, None), (8, (2, 4)), (8, None), (8, (1, 4))]
N_MELS = 64
GRU_HIDDEN = 8
CLASSES = ["dog", "speech", "alarm"]
LP_P = 4.0
SLOPE = 0.1


class Block2D(torch.nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.bn = torch.nn.BatchNorm2d(cin)
        self.conv = torch.nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.act = torch.nn.LeakyReLU(SLOPE)

    def forward(self, x):
        return self.act(self.conv(self.bn(x)))


class Twin(torch.nn.Module):
    def __init__(self):
        super().__init__()
        blocks, pools, cin, mels = [], [], 1, N_MELS
        for cout, pool in BLOCKS:
            blocks.append(Block2D(cin, cout))
            pools.append(torch.nn.LPPool2d(LP_P, pool) if pool else None)
            if pool:
                mels //= pool[1]
            cin = cout
        self.blocks = torch.nn.ModuleList(blocks)
        self.pools = pools
        self.gru = torch.nn.GRU(cin * mels, GRU_HIDDEN, bidirectional=True, batch_first=True)
        self.out = torch.nn.Linear(2 * GRU_HIDDEN, len(CLASSES))

    def forward(self, x):
        t = x.shape[1]
        h = x.unsqueeze(1)
        for block, pool in zip(self.blocks, self.pools):
            h = block(h)
            if pool is not None:
                h = pool(h)
        h = h.transpose(1, 2).contiguous().flatten(-2)
        h, _ = self.gru(h)
        p = torch.sigmoid(self.out(h)).clamp(1e-7, 1.0)
        clip = ((p * p).sum(1) / p.sum(1)).clamp(1e-7, 1.0)
        frame = F.interpolate(p.transpose(1, 2), t, mode="linear", align_corners=False)
        return frame.transpose(1, 2), clip


def hark_name(name):
    """PyTorch parameter name -> hark tensor name."""
    if name.startswith("gru."):
        base = name[len("gru."):]
        if base.endswith("_reverse"):
            return "gru.bwd." + base[: -len("_reverse")]
        return "gru.fwd." + base
    return name


def meta_json():
    arch = {"name": "crnn", "blocks": [], "kernel": 3, "lp_p": LP_P, "leaky_slope": SLOPE,
            "gru_hidden": GRU_HIDDEN}
    for cout, pool in BLOCKS:
        b = {"channels": cout}
        if pool:
            b["pool"] = {"time": pool[0], "mel": pool[1]}
        arch["blocks"].append(b)
    meta = {
        "format_version": 1,
        "name": "golden-crnn-tiny (random weights, PyTorch twin)",
        "arch": arch,
        "features": {
            "sample_rate": 16000, "n_fft": 1024, "win_length": 640, "hop_length": 320,
            "window": "hann", "center": True, "n_mels": N_MELS, "fmin": 50.0,
            "fmax": 8000.0, "mel_scale": "slaney", "mel_norm": "slaney", "power": 2.0,
            "log": {"kind": "ln", "eps": 1e-10}, "normalization": {"kind": "none"},
        },
        "classes": CLASSES,
        "postprocess": {
            "default": {"enabled": True, "on": 0.5, "off": 0.3, "median_frames": 5,
                        "min_duration_s": 0.1, "merge_gap_s": 0.2, "hangover_s": 0.0},
            "per_class": {},
        },
        "streaming": {"window_frames": 100, "hop_frames": 50},
        "training": {"note": "random weights for a golden test; detects nothing"},
    }
    return json.dumps(meta)


def main():
    torch.manual_seed(20261122)
    twin = Twin()
    with torch.no_grad():
        for block in twin.blocks:
            c = block.bn.num_features
            block.bn.weight.copy_(1.0 + 0.2 * torch.randn(c))
            block.bn.bias.copy_(0.1 * torch.randn(c))
            block.bn.running_mean.copy_(0.3 * torch.randn(c))
            block.bn.running_var.copy_(0.5 + 1.5 * torch.rand(c))
    twin.eval()

    tensors = {}
    for name, t in twin.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        tensors[hark_name(name)] = t.detach().float().contiguous()
    OUT.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(OUT / "crnn_tiny.safetensors"), metadata={"hark.model": meta_json()})

    io = {}
    with torch.no_grad():
        for t in (37, 4):
            x = (2.0 * torch.randn(2, t, N_MELS) - 3.0).float()
            frame, clip = twin(x)
            io[f"input_{t}"] = x.contiguous()
            io[f"frame_{t}"] = frame.contiguous()
            io[f"clip_{t}"] = clip.contiguous()
    save_file(io, str(OUT / "crnn_tiny_io.safetensors"),
              metadata={"torch": torch.__version__})
    print(f"wrote {OUT}/crnn_tiny*.safetensors with torch {torch.__version__}")


if __name__ == "__main__":
    main()
