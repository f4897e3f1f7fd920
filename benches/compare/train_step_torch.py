#!/usr/bin/env python3
"""PyTorch twin of one hark CRNN training step (benches/train_step.rs).

CDur-size CRNN (blocks 32/128/128/128/128, LP pools (2,4) (2,4) (1,4), BiGRU 128),
batch 16 x 500 frames x 64 mels, 10 classes; clip BCE + frame BCE, gradient clipping
at norm 5, AdamW (lr 1e-3, weight decay 1e-2). Prints the mean forward+loss, backward
and optimiser times over N steps after one warm-up, at THREADS threads (default 2,
as the 2-core machine hark trains on).

    VENV=/work/wt/model/.venv-model
    $VENV/bin/python benches/compare/train_step_torch.py [N] [THREADS]
"""
import pathlib
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "scripts"))
import golden_model as gm  # noqa: E402  (the CRNN twin)

gm.BLOCKS = [(32, (2, 4)), (128, None), (128, (2, 4)), (128, None), (128, (1, 4))]
gm.GRU_HIDDEN = 128
gm.CLASSES = [f"c{i}" for i in range(10)]

B, T, NM, C = 16, 500, 64, 10


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = gm.Twin().train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-2)
    x = torch.randn(B, T, NM)
    weak = torch.zeros(B, C)
    strong = torch.zeros(B, T, C)
    for k in range(B):
        weak[k, k % C] = 1
        strong[k, 100:300, k % C] = 1

    def step(times):
        t0 = time.perf_counter()
        frame, clip = net(x)
        loss = F.binary_cross_entropy(clip, weak) + F.binary_cross_entropy(frame, strong)
        loss.item()
        t1 = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        if times is not None:
            times.append((t1 - t0, t2 - t1, t3 - t2))

    step(None)
    times = []
    for _ in range(n):
        step(times)
    fw = sum(t[0] for t in times) / n
    bw = sum(t[1] for t in times) / n
    st = sum(t[2] for t in times) / n
    print(f"torch {torch.__version__} CRNN train step (B={B}, T={T}, F={NM}, {threads} threads): "
          f"forward+loss {fw:.3f} s, backward {bw:.3f} s, AdamW {st:.3f} s, "
          f"total {fw + bw + st:.3f} s/step over {n} steps")


if __name__ == "__main__":
    main()
