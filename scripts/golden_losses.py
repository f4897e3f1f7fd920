#!/usr/bin/env python3
"""Golden values of hark's training losses (src/train/loss.rs) from PyTorch.

Writes tests/data/golden/losses/losses.json: inputs, loss values and input gradients
for BCE on probabilities, BCE on logits, focal loss with soft targets, MSE, scene
cross-entropy and the IFD loss (paper 001 eqs. 1-3, pairs sampled as in
`ifd_pairs`). Run from the repository root:

    VENV=/work/wt/model/.venv-model scripts/golden_losses.py
    (or: $VENV/bin/python scripts/golden_losses.py)
"""
import json
import os
import sys

import numpy as np
import torch

OUT = os.path.join("tests", "data", "golden", "losses", "losses.json")
rng = np.random.default_rng(1234)
torch.set_default_dtype(torch.float64)


def t(a, grad=False):
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


def pack(loss, *inputs):
    loss.backward()
    return {
        "loss": float(loss.item()),
        "grads": [x.grad.numpy().ravel().tolist() for x in inputs],
    }


cases = {}
shape = (3, 7, 4)
mask = (rng.random((3, 7, 1)) > 0.3).astype(np.float64)

# BCE on probabilities (masked mean = sum(l*m)/sum(m)).
p = rng.uniform(0.001, 0.999, shape)
y = rng.uniform(0.0, 1.0, shape)
pt = t(p, True)
l = torch.nn.functional.binary_cross_entropy(pt, t(y), reduction="none")
m = t(np.broadcast_to(mask, shape))
cases["bce"] = {"p": p.ravel().tolist(), "y": y.ravel().tolist(), "shape": list(shape),
                "mask": mask.ravel().tolist(), "mask_shape": [3, 7, 1],
                **pack((l * m).sum() / m.sum(), pt)}

# BCE on logits, including huge logits.
x = rng.normal(0, 5, shape)
x[0, 0, 0], x[0, 0, 1] = 60.0, -80.0
xt = t(x, True)
l = torch.nn.functional.binary_cross_entropy_with_logits(xt, t(y))
cases["bce_logits"] = {"x": x.ravel().tolist(), "y": y.ravel().tolist(),
                       "shape": list(shape), **pack(l, xt)}

# Focal loss on probabilities, soft targets (torchvision.ops.sigmoid_focal_loss form).
gamma, alpha = 2.0, 0.25
pt = t(p, True)
yt = t(y)
ce = torch.nn.functional.binary_cross_entropy(pt, yt, reduction="none")
p_t = pt * yt + (1 - pt) * (1 - yt)
l = ce * (1 - p_t) ** gamma
l = l * (alpha * yt + (1 - alpha) * (1 - yt))
cases["focal"] = {"p": p.ravel().tolist(), "y": y.ravel().tolist(), "shape": list(shape),
                  "gamma": gamma, "alpha": alpha, **pack(l.mean(), pt)}

# MSE, masked.
a = rng.normal(0, 1, shape)
b = rng.normal(0, 1, shape)
at = t(a, True)
l = ((at - t(b)) ** 2 * m).sum() / m.sum()
cases["mse"] = {"a": a.ravel().tolist(), "b": b.ravel().tolist(), "shape": list(shape),
                "mask": mask.ravel().tolist(), "mask_shape": [3, 7, 1], **pack(l, at)}

# Scene cross-entropy.
logits = rng.normal(0, 3, (5, 3))
targets = [0, 2, 1, 2, 0]
lt = t(logits, True)
l = torch.nn.functional.cross_entropy(lt, torch.tensor(targets))
cases["scene_ce"] = {"logits": logits.ravel().tolist(), "shape": [5, 3],
                     "targets": targets, **pack(l, lt)}

# IFD: 5 clips, 6 frames, 3 classes, embeddings of 8 dims.
B, T, C, D = 5, 6, 3, 8
clip = [[1, 0, 0], [1, 0, 0], [0, 1, 1], [0, 1, 0], [1, 1, 0]]
frame = (rng.random((B, T, C)) > 0.4).astype(int) * np.array(clip)[:, None, :]
valid = [6, 5, 6, 4, 6]


def ifd_pairs(clip, frame, valid):
    pos, neg = [], []
    for a_ in range(B):
        for b_ in range(a_ + 1, B):
            ca, cb = clip[a_], clip[b_]
            same = ca == cb and any(ca)
            disjoint = not any(x and y for x, y in zip(ca, cb)) and any(ca) and any(cb)
            if not same and not disjoint:
                continue
            for tt in range(min(valid[a_], valid[b_])):
                fa, fb = list(frame[a_][tt]), list(frame[b_][tt])
                if not any(fa) or not any(fb):
                    continue
                if same and fa == fb:
                    pos.append((a_, b_, tt))
                elif disjoint:
                    neg.append((a_, b_, tt))
    frames = sorted(set([(a_, tt) for a_, _, tt in pos + neg] + [(b_, tt) for _, b_, tt in pos + neg]))
    return pos, neg, frames


pos, neg, frames = ifd_pairs(clip, frame.tolist(), valid)
assert pos and neg, "choose another seed: the golden case needs both kinds of pairs"
emb = rng.normal(0, 1.2, (B, T, D))
et = t(emb, True)


def sim(pairs):
    va = torch.stack([et[a_, tt] for a_, _, tt in pairs])
    vb = torch.stack([et[b_, tt] for _, b_, tt in pairs])
    return (va * vb).sum(1) / D


margin = 0.1
dp, dn = sim(pos), sim(neg)
hinge = torch.clamp(dn[:, None] - dp[None, :] + margin, min=0).mean()
v = torch.stack([et[a_, tt] for a_, tt in frames])
norm = ((v * v).sum(1) / D - 1).abs().mean()
cases["ifd"] = {"emb": emb.ravel().tolist(), "shape": [B, T, D], "clip": clip,
                "frame": frame.tolist(), "valid": valid, "margin": margin,
                "positive": pos, "negative": neg, **pack(hinge + norm, et)}

cases["_meta"] = {"torch": torch.__version__, "script": "scripts/golden_losses.py"}
os.makedirs(os.path.dirname(OUT), exist_ok=True)
with open(OUT, "w") as f:
    json.dump(cases, f)
print(f"wrote {OUT}", file=sys.stderr)
