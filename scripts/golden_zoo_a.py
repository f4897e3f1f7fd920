#!/usr/bin/env python3
"""Golden values for hark's `amn` (paper 000) and `two_step_ae` (2APAE, paper 003)
architectures from independent PyTorch twins.

Each twin is written from the papers' equations with plain torch operations (the
affinity's squared distances as explicit pairwise differences, the mixing as einsums,
nn.LPPool2d, nn.GRU, F.avg_pool2d(3, 1, 1), F.interpolate), seeded random weights and
non-trivial batch-norm running statistics, in eval mode. Writes, under
tests/data/golden/model/:

  amn_tiny.safetensors            hark model file (weights under hark's names + the
                                  `hark.model` JSON), 64 mels, channels 4/8/8, GRU 8,
                                  tau 0.5, AM everywhere, softmax encoder affinity,
                                  linear up-sampling
  amn_tiny_io.safetensors         inputs (T = 37 and 4) and the twin's frame/clip
  two_step_ae_tiny.safetensors    hark model file, 16 mels, encoder 4/4/8/8, decoder
                                  8/4/4, two-step head, linear decoder output
  two_step_ae_tiny_io.safetensors inputs (T = 23 and 1), frame/clip/reconstruction

Usage (from the repository root; torch and safetensors in the venv):
    VENV=${VENV:-.venv-zoo}; $VENV/bin/python scripts/golden_zoo_a.py
(e.g. VENV=/work/wt/model/.venv-model).
"""

import importlib.util
import json
import math
import pathlib

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE.parent / "tests" / "data" / "golden" / "model"
CLASSES = ["dog", "speech", "alarm"]


def base_meta():
    """The CRNN golden script's metadata (features, postprocess, streaming)."""
    spec = importlib.util.spec_from_file_location("golden_model", HERE / "golden_model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return json.loads(mod.meta_json())


def randomise_bn(module):
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(1.0 + 0.2 * torch.randn(c))
                m.bias.copy_(0.1 * torch.randn(c))
                m.running_mean.copy_(0.3 * torch.randn(c))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(c))


def hark_name(name):
    name = name.replace("affinity.half_.", "affinity.half.")
    if name.startswith("gru."):
        base = name[len("gru."):]
        if base.endswith("_reverse"):
            return "gru.bwd." + base[: -len("_reverse")]
        return "gru.fwd." + base
    return name


def export(twin, path, meta):
    tensors = {}
    for name, t in twin.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        tensors[hark_name(name)] = t.detach().float().contiguous()
    save_file(tensors, str(path), metadata={"hark.model": json.dumps(meta)})


# ---------------------------------------------------------------- AMN (paper 000)

AMN_MELS = 64
AMN_CHANNELS = [4, 8, 8]
AMN_MEL_POOLS = [4, 4, 4]
AMN_GRU = 8
AMN_TAU = 0.5
# Eq. 4's A~: "softmax" (class mean of A, hark's default) or "exp" (as printed).
AMN_ENCODER_AFFINITY = "softmax"
SLOPE = 0.1
LP_P = 4.0


class Block2D(torch.nn.Module):
    """BatchNorm2d -> Conv3x3 (no bias) -> LeakyReLU."""

    def __init__(self, cin, cout):
        super().__init__()
        self.bn = torch.nn.BatchNorm2d(cin)
        self.conv = torch.nn.Conv2d(cin, cout, 3, padding=1, bias=False)

    def forward(self, x):
        return F.leaky_relu(self.conv(self.bn(x)), SLOPE)


class Affinity(torch.nn.Module):
    """Eq. 3: A = softmax_j(-||W x_i - W x_j||^2 / (tau sqrt(f)))."""

    def __init__(self, cin, k):
        super().__init__()
        self.proj = torch.nn.Conv2d(cin, k, 1, bias=False)

    def forward(self, x):
        xt = self.proj(x)  # (B, K, t, f)
        diff = xt.unsqueeze(3) - xt.unsqueeze(2)  # (B, K, t, t, f)
        d2 = (diff * diff).sum(-1)
        return torch.softmax(-d2 / (AMN_TAU * math.sqrt(xt.shape[-1])), dim=-1)


def mix_encoder(a, x):
    """Eq. 4: A~ = mean_k A_k (or mean_k exp(A_k) as printed), repeated over channels,
    times X'."""
    at = a.mean(1) if AMN_ENCODER_AFFINITY == "softmax" else a.exp().mean(1)
    return torch.einsum("bij,bcjf->bcif", at, x)


def mix_decoder(a, z):
    """Z~ = A Z' per class: z (B, t, K)."""
    return torch.einsum("bkij,bjk->bik", a, z)


class AmnTwin(torch.nn.Module):
    def __init__(self):
        super().__init__()
        c0, c1, c2 = AMN_CHANNELS
        self.blocks = torch.nn.ModuleList([Block2D(1, c0), Block2D(c0, c1), Block2D(c1, c2)])
        m0, m1, m2 = AMN_MEL_POOLS
        self.pools = [torch.nn.LPPool2d(LP_P, (2, m0)), torch.nn.LPPool2d(LP_P, (2, m1)),
                      torch.nn.LPPool2d(LP_P, (1, m2))]
        # "half" is a Module method: the key is "half_" and export() drops the "_".
        self.affinity = torch.nn.ModuleDict({"half_": Affinity(c0, len(CLASSES)),
                                             "quarter": Affinity(c1, len(CLASSES))})
        mels = AMN_MELS // m0 // m1 // m2
        self.gru = torch.nn.GRU(c2 * mels, AMN_GRU, bidirectional=True, batch_first=True)
        self.out = torch.nn.Linear(2 * AMN_GRU, len(CLASSES))

    def forward(self, x):
        t = x.shape[1]
        h = self.pools[0](self.blocks[0](x.unsqueeze(1)))
        a_half = self.affinity["half_"](h)
        h = mix_encoder(a_half, self.blocks[1](h))
        t_half = h.shape[2]
        h = self.pools[1](h)
        a_quarter = self.affinity["quarter"](h)
        h = mix_encoder(a_quarter, self.blocks[2](h))
        h = self.pools[2](h)
        h = h.transpose(1, 2).contiguous().flatten(-2)
        h, _ = self.gru(h)
        z = torch.sigmoid(self.out(h))
        z = mix_decoder(a_quarter, z)
        z = F.interpolate(z.transpose(1, 2), t_half, mode="linear", align_corners=False)
        z = mix_decoder(a_half, z.transpose(1, 2))
        z = F.interpolate(z.transpose(1, 2), t, mode="linear", align_corners=False)
        frame = z.transpose(1, 2).clamp(1e-7, 1.0)
        clip = ((frame * frame).sum(1) / frame.sum(1)).clamp(1e-7, 1.0)
        return frame, clip


# ---------------------------------------------------------------- 2APAE (paper 003)

AE_MELS = 16
AE_CHANNELS = [4, 4, 8, 8]
AE_DECODER = [8, 4, 4]


class ConvBnRelu(torch.nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = torch.nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn = torch.nn.BatchNorm2d(cout)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


class Vgg(torch.nn.Module):
    """[Conv3x3 -> BN -> ReLU] x 2 -> AvgPool2d(3, stride 1, padding 1)."""

    def __init__(self, cin, cout):
        super().__init__()
        self.units = torch.nn.ModuleList([ConvBnRelu(cin, cout), ConvBnRelu(cout, cout)])

    def forward(self, x):
        for u in self.units:
            x = u(x)
        return F.avg_pool2d(x, 3, stride=1, padding=1)


class Decoder(torch.nn.Module):
    def __init__(self, cin):
        super().__init__()
        blocks, c = [], cin
        for cout in AE_DECODER:
            blocks.append(Vgg(c, cout))
            c = cout
        self.blocks = torch.nn.ModuleList(blocks)
        self.out = torch.nn.ModuleList([ConvBnRelu(c, 1), torch.nn.Conv2d(1, 1, 3, padding=1)])

    def forward(self, h):
        for b in self.blocks:
            h = b(h)
        return self.out[1](self.out[0](h)).squeeze(1)


class AttentionStep(torch.nn.Module):
    def __init__(self, n):
        super().__init__()
        self.cla = torch.nn.Linear(n, n)
        self.att = torch.nn.Linear(n, n)


class TwoStepAeTwin(torch.nn.Module):
    def __init__(self):
        super().__init__()
        blocks, c = [], 1
        for cout in AE_CHANNELS:
            blocks.append(Vgg(c, cout))
            c = cout
        self.encoder = torch.nn.ModuleList(blocks)
        k = len(CLASSES)
        self.class_conv = torch.nn.Conv2d(c, k, 1)
        self.head = torch.nn.ModuleDict({"freq": AttentionStep(AE_MELS), "time": AttentionStep(k)})
        self.decoder = Decoder(c)

    def forward(self, x):
        h = x.unsqueeze(1)
        for b in self.encoder:
            h = b(h)
        z = self.class_conv(h)  # (B, K, T, F)
        # Step 1 (eqs. 7-10): over mel bands.
        zc1 = torch.sigmoid(self.head["freq"].cla(z))
        za1 = torch.softmax(torch.sigmoid(self.head["freq"].att(z)), dim=-1)
        zp1 = (zc1 * za1).sum(-1).transpose(1, 2)  # (B, T, K)
        # Step 2 (eqs. 11-14), per-frame linear maps over classes, softmax over time.
        zc2 = torch.sigmoid(self.head["time"].cla(zp1))
        za2 = torch.softmax(torch.sigmoid(self.head["time"].att(zp1)), dim=1)
        clip = (zc2 * za2).sum(1)
        recon = self.decoder(h)
        return zc2.clamp(1e-7, 1.0), clip.clamp(1e-7, 1.0), recon


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    base = base_meta()

    torch.manual_seed(20261123)
    amn = AmnTwin()
    randomise_bn(amn)
    amn.eval()
    meta = dict(base)
    meta["name"] = "golden-amn-tiny (random weights, PyTorch twin)"
    meta["arch"] = {"name": "amn", "channels": AMN_CHANNELS, "mel_pools": AMN_MEL_POOLS,
                    "kernel": 3, "leaky_slope": SLOPE, "lp_p": LP_P, "gru_hidden": AMN_GRU,
                    "tau": AMN_TAU, "encoder_affinity": AMN_ENCODER_AFFINITY}
    meta["features"] = dict(base["features"], n_mels=AMN_MELS)
    export(amn, OUT / "amn_tiny.safetensors", meta)
    io = {}
    with torch.no_grad():
        for t in (37, 4):
            x = (0.5 * torch.randn(2, t, AMN_MELS) - 1.0).float()
            frame, clip = amn(x)
            io[f"input_{t}"] = x.contiguous()
            io[f"frame_{t}"] = frame.contiguous()
            io[f"clip_{t}"] = clip.contiguous()
    save_file(io, str(OUT / "amn_tiny_io.safetensors"), metadata={"torch": torch.__version__})

    torch.manual_seed(20261124)
    ae = TwoStepAeTwin()
    randomise_bn(ae)
    ae.eval()
    meta = dict(base)
    meta["name"] = "golden-two-step-ae-tiny (random weights, PyTorch twin)"
    meta["arch"] = {"name": "two_step_ae", "channels": AE_CHANNELS,
                    "decoder_channels": AE_DECODER, "head": {"kind": "two_step"},
                    "final_relu": False}
    meta["features"] = dict(base["features"], n_mels=AE_MELS)
    export(ae, OUT / "two_step_ae_tiny.safetensors", meta)
    io = {}
    with torch.no_grad():
        for t in (23, 1):
            x = (2.0 * torch.randn(2, t, AE_MELS) - 3.0).float()
            frame, clip, recon = ae(x)
            io[f"input_{t}"] = x.contiguous()
            io[f"frame_{t}"] = frame.contiguous()
            io[f"clip_{t}"] = clip.contiguous()
            io[f"reconstruction_{t}"] = recon.contiguous()
    save_file(io, str(OUT / "two_step_ae_tiny_io.safetensors"),
              metadata={"torch": torch.__version__})
    print(f"wrote {OUT}/amn_tiny*.safetensors and two_step_ae_tiny*.safetensors "
          f"with torch {torch.__version__}")


if __name__ == "__main__":
    main()
