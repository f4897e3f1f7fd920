#!/usr/bin/env python3
"""Golden values for hark's `atp_sedb` (paper 001) and `context_attention` (paper 002)
architectures from their PyTorch twins.

Each twin is written from the papers' equations (not from the Rust code) with seeded
random weights and non-trivial batch-norm running statistics, run in eval mode. Writes:

  tests/data/golden/model/zoo_b_atp_sedb.safetensors         hark model file
  tests/data/golden/model/zoo_b_atp_sedb_io.safetensors      inputs + twin outputs
  tests/data/golden/model/zoo_b_context_attention.safetensors
  tests/data/golden/model/zoo_b_context_attention_io.safetensors

Narrow widths keep the files small and the tests fast.

ATP-SEDB twin: [Conv k x k (no bias) -> BatchNorm2d -> ReLU -> MaxPool2d?] x 3 -> frame
embeddings h (B, T', D); ATP head with DF masks m_c: alpha_c = softmax_t(w_c.(m_c*h_t)
+ b_c), e_c = sum_t alpha_c(t) (m_c*h_t), clip_c = sigmoid(u_c.e_c + d_c), frame_c(t) =
sigmoid(u_c.(m_c*h_t) + d_c); SEDB = sigmoid(Linear(h)); projection = Linear(h); frame
outputs interpolated (F.interpolate linear, align_corners=False) to the input length.

Context-attention twin: local CRNN (BatchNorm2d -> Conv3x3 -> LeakyReLU, LPPool2d,
bidirectional GRU) on target segments of L = min(segment_frames, T) frames starting at
min(i*L, T-L) (the last L frames come from the last segment), outputs interpolated to L
frames; global CRNN on the whole window; additive attention softmax_u(v.tanh(W_q q_t +
W_k k_u + b)) over the global outputs (keys = values); [q, context] -> Linear -> ReLU ->
Linear -> sigmoid -> clamp(1e-7, 1); clip = sum p^2 / sum p; scene = Linear(mean_t z).

Usage (from the repository root), with a venv holding torch and safetensors
(VENV defaults to .venv-zoo; e.g. VENV=/work/wt/model/.venv-model reuses torch 2.15):
    python3 -m venv .venv-zoo && .venv-zoo/bin/pip install torch safetensors numpy
    ${VENV:-.venv-zoo}/bin/python scripts/golden_zoo_b.py
"""

import json
import pathlib

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data" / "golden" / "model"
N_MELS = 64
CLASSES = ["dog", "speech", "alarm"]


def features_json():
    return {
        "sample_rate": 16000, "n_fft": 1024, "win_length": 640, "hop_length": 320,
        "window": "hann", "center": True, "n_mels": N_MELS, "fmin": 50.0,
        "fmax": 8000.0, "mel_scale": "slaney", "mel_norm": "slaney", "power": 2.0,
        "log": {"kind": "ln", "eps": 1e-10}, "normalization": {"kind": "none"},
    }


def meta_json(name, arch):
    return json.dumps({
        "format_version": 1,
        "name": name,
        "arch": arch,
        "features": features_json(),
        "classes": CLASSES,
        "postprocess": {
            "default": {"enabled": True, "on": 0.5, "off": 0.3, "median_frames": 5,
                        "min_duration_s": 0.1, "merge_gap_s": 0.2, "hangover_s": 0.0},
            "per_class": {},
        },
        "streaming": {"window_frames": 100, "hop_frames": 50},
        "training": {"note": "random weights for a golden test; detects nothing"},
    })


def randomise_batch_norms(module):
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(1.0 + 0.2 * torch.randn(c))
                m.bias.copy_(0.1 * torch.randn(c))
                m.running_mean.copy_(0.3 * torch.randn(c))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(c))


def hark_name(name):
    """PyTorch parameter name -> hark tensor name (GRU directions get their own prefix)."""
    parts = name.split(".")
    if len(parts) >= 2 and parts[-2] == "gru":
        base = parts[-1]
        prefix = ".".join(parts[:-1])
        if base.endswith("_reverse"):
            return f"{prefix}.bwd.{base[: -len('_reverse')]}"
        return f"{prefix}.fwd.{base}"
    return name


def save_model(twin, stem, name, arch):
    tensors = {}
    for n, t in twin.state_dict().items():
        if n.endswith("num_batches_tracked"):
            continue
        tensors[hark_name(n)] = t.detach().float().contiguous()
    save_file(tensors, str(OUT / f"{stem}.safetensors"),
              metadata={"hark.model": meta_json(name, arch)})


def interp(p, t):
    """(B, T', C) -> (B, t, C), linear, align_corners=False."""
    return F.interpolate(p.transpose(1, 2), t, mode="linear", align_corners=False).transpose(1, 2)


# ---------------------------------------------------------------- ATP-SEDB (paper 001)

ATP_BLOCKS = [(4, (2, 4)), (8, (1, 4)), (8, (1, 4))]
ATP_KERNEL = 3
ATP_DF = [5, 8, 3]
ATP_PROJ = 6


class ConvBnRelu(torch.nn.Module):
    def __init__(self, cin, cout, k):
        super().__init__()
        self.conv = torch.nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)
        self.bn = torch.nn.BatchNorm2d(cout)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


class Atp(torch.nn.Module):
    def __init__(self, d, c, df):
        super().__init__()
        self.att = torch.nn.Linear(d, c)
        self.cla = torch.nn.Linear(d, c)
        mask = torch.zeros(c, d)
        for i, n in enumerate(df):
            mask[i, :n] = 1.0
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, h):
        # Per class c: masked embeddings m_c * h_t, shape (B, C, T, D).
        hm = h.unsqueeze(1) * self.mask[None, :, None, :]
        a = (hm * self.att.weight[None, :, None, :]).sum(-1) + self.att.bias[None, :, None]
        alpha = torch.softmax(a, dim=2)  # over time, (B, C, T)
        e = (alpha.unsqueeze(-1) * hm).sum(2)  # (B, C, D)
        clip = torch.sigmoid((e * self.cla.weight[None]).sum(-1) + self.cla.bias)
        frame_logit = (hm * self.cla.weight[None, :, None, :]).sum(-1) + self.cla.bias[None, :, None]
        return clip, torch.sigmoid(frame_logit).transpose(1, 2)


class AtpSedbTwin(torch.nn.Module):
    def __init__(self):
        super().__init__()
        blocks, pools, cin, mels = [], [], 1, N_MELS
        for cout, pool in ATP_BLOCKS:
            blocks.append(ConvBnRelu(cin, cout, ATP_KERNEL))
            pools.append(pool)
            if pool:
                mels //= pool[1]
            cin = cout
        self.encoder = torch.nn.ModuleList(blocks)
        self.pools = pools
        d = cin * mels
        self.atp = Atp(d, len(CLASSES), ATP_DF)
        self.sedb = torch.nn.Linear(d, len(CLASSES))
        self.projection = torch.nn.Linear(d, ATP_PROJ)

    def forward(self, x):
        t = x.shape[1]
        h = x.unsqueeze(1)
        for block, pool in zip(self.encoder, self.pools):
            h = block(h)
            if pool:
                h = F.max_pool2d(h, pool)
        h = h.transpose(1, 2).contiguous().flatten(-2)
        clip, frame = self.atp(h)
        sedb = interp(torch.sigmoid(self.sedb(h)), t)
        return {"frame": interp(frame, t), "clip": clip, "frame_secondary": sedb,
                "embeddings": self.projection(h)}


def atp_arch():
    blocks = []
    for cout, pool in ATP_BLOCKS:
        b = {"channels": cout}
        if pool:
            b["pool"] = {"time": pool[0], "mel": pool[1]}
        blocks.append(b)
    return {"name": "atp_sedb", "blocks": blocks, "kernel": ATP_KERNEL, "df_dims": ATP_DF,
            "sedb": True, "ifd_projection": True, "projection_dim": ATP_PROJ}


# ------------------------------------------------------ context attention (paper 002)

LOCAL = ([(4, (2, 4)), (4, (1, 4)), (4, (1, 4))], 4)
GLOBAL = ([(4, (2, 4)), (6, (2, 4)), (6, (1, 4))], 5)
SEGMENT = 10
ATT_DIM = 6
FC_HIDDEN = 8
N_SCENES = 3
LP_P = 4.0
SLOPE = 0.1


class Block2D(torch.nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.bn = torch.nn.BatchNorm2d(cin)
        self.conv = torch.nn.Conv2d(cin, cout, 3, padding=1, bias=False)

    def forward(self, x):
        return F.leaky_relu(self.conv(self.bn(x)), SLOPE)


class Crnn(torch.nn.Module):
    def __init__(self, spec):
        super().__init__()
        layout, hidden = spec
        blocks, pools, cin, mels = [], [], 1, N_MELS
        for cout, pool in layout:
            blocks.append(Block2D(cin, cout))
            pools.append(pool)
            if pool:
                mels //= pool[1]
            cin = cout
        self.blocks = torch.nn.ModuleList(blocks)
        self.pools = pools
        self.gru = torch.nn.GRU(cin * mels, hidden, bidirectional=True, batch_first=True)

    def forward(self, x):
        h = x.unsqueeze(1)
        for block, pool in zip(self.blocks, self.pools):
            h = block(h)
            if pool:
                h = F.lp_pool2d(h, LP_P, pool)
        h = h.transpose(1, 2).contiguous().flatten(-2)
        return self.gru(h)[0]


class Attention(torch.nn.Module):
    def __init__(self, dq, dk, a):
        super().__init__()
        self.query = torch.nn.Linear(dq, a, bias=False)
        self.key = torch.nn.Linear(dk, a)
        self.score = torch.nn.Linear(a, 1, bias=False)

    def forward(self, q, k, v):
        e = torch.tanh(self.query(q)[:, :, None, :] + self.key(k)[:, None, :, :])
        w = torch.softmax(self.score(e).squeeze(-1), dim=-1)
        return w @ v


class ContextAttentionTwin(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.local = Crnn(LOCAL)
        self.global_ = Crnn(GLOBAL)
        dq, dk = 2 * LOCAL[1], 2 * GLOBAL[1]
        self.attention = Attention(dq, dk, ATT_DIM)
        self.fc1 = torch.nn.Linear(dq + dk, FC_HIDDEN)
        self.fc2 = torch.nn.Linear(FC_HIDDEN, len(CLASSES))
        self.scene = torch.nn.Linear(dq + dk, N_SCENES)

    def forward(self, x):
        t = x.shape[1]
        seg = min(SEGMENT, t)
        n = -(-t // seg)
        starts = [min(i * seg, t - seg) for i in range(n)]
        q = torch.empty(x.shape[0], t, 2 * LOCAL[1])
        for i, s in enumerate(starts):
            qi = interp(self.local(x[:, s:s + seg]), seg)
            # Frames before the last segment come from segment j // seg; the last seg
            # frames all come from the last segment (written last, so it wins).
            lo = s if i < n - 1 else t - seg
            q[:, lo:s + seg] = qi[:, lo - s:]
        k = self.global_(x)
        z = torch.cat([q, self.attention(q, k, k)], dim=-1)
        p = torch.sigmoid(self.fc2(torch.relu(self.fc1(z)))).clamp(1e-7, 1.0)
        clip = ((p * p).sum(1) / p.sum(1)).clamp(1e-7, 1.0)
        return {"frame": p, "clip": clip, "scene_logits": self.scene(z.mean(1))}


def ca_arch():
    def enc(spec):
        layout, hidden = spec
        blocks = []
        for cout, pool in layout:
            b = {"channels": cout}
            if pool:
                b["pool"] = {"time": pool[0], "mel": pool[1]}
            blocks.append(b)
        return {"blocks": blocks, "gru_hidden": hidden}

    return {"name": "context_attention", "local": enc(LOCAL), "global": enc(GLOBAL),
            "kernel": 3, "lp_p": LP_P, "leaky_slope": SLOPE, "segment_frames": SEGMENT,
            "att_dim": ATT_DIM, "fc_hidden": FC_HIDDEN, "n_scenes": N_SCENES}


def rename_ca(state_name):
    return state_name.replace("global_.", "global.", 1)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(20261122)

    atp = AtpSedbTwin()
    randomise_batch_norms(atp)
    atp.eval()
    save_model(atp, "zoo_b_atp_sedb", "golden-zoo-b-atp-sedb (random weights, PyTorch twin)",
               atp_arch())
    io = {}
    with torch.no_grad():
        for t in (37, 2):
            x = (2.0 * torch.randn(2, t, N_MELS) - 3.0).float()
            io[f"input_{t}"] = x.contiguous()
            for k, v in atp(x).items():
                io[f"{k}_{t}"] = v.float().contiguous()
    save_file(io, str(OUT / "zoo_b_atp_sedb_io.safetensors"), metadata={"torch": torch.__version__})

    ca = ContextAttentionTwin()
    randomise_batch_norms(ca)
    ca.eval()
    tensors = {}
    for n, t in ca.state_dict().items():
        if n.endswith("num_batches_tracked"):
            continue
        tensors[hark_name(rename_ca(n))] = t.detach().float().contiguous()
    save_file(tensors, str(OUT / "zoo_b_context_attention.safetensors"),
              metadata={"hark.model": meta_json(
                  "golden-zoo-b-context-attention (random weights, PyTorch twin)", ca_arch())})
    io = {}
    with torch.no_grad():
        for t in (37, 20, 4):
            x = (2.0 * torch.randn(2, t, N_MELS) - 3.0).float()
            io[f"input_{t}"] = x.contiguous()
            for k, v in ca(x).items():
                io[f"{k}_{t}"] = v.float().contiguous()
    save_file(io, str(OUT / "zoo_b_context_attention_io.safetensors"),
              metadata={"torch": torch.__version__})
    print(f"wrote {OUT}/zoo_b_*.safetensors with torch {torch.__version__}")


if __name__ == "__main__":
    main()
