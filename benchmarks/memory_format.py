"""Training-step time of each CPU-profile model in the default (NCHW) and channels_last memory formats.

``trainables/train.py`` turns channels_last on for CUDA only; this measures whether it pays on the CPU too. Each
model runs warm-up steps and then timed steps of forward + backward + Adam on a random grey batch, both formats
interleaved (A B A B) in one process; the last line is the median speed-up per model.

    python benchmarks/memory_format.py [--threads 1] [--batch-size 32] [--steps 6]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from trainables.models import create_model

CASES = [
    ("tinyvgg", {}, 64),
    ("cifar_cnn", {"width": 0.5}, 96),
    ("resnet18", {}, 96),
    ("alexnet_gray", {"width": 0.5}, 96),
]


def _step_ms(name: str, kwargs: dict, size: int, channels_last: bool, batch: int, steps: int) -> float:
    torch.manual_seed(0)
    model = create_model(name, in_channels=1, num_classes=3, image_size=(size, size), **kwargs)
    x = torch.randn(batch, 1, size, size)
    y = torch.randint(0, 3, (batch,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters())
    for i in range(steps + 2):
        if i == 2:
            t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / steps * 1000


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    speedups = {}
    for name, kwargs, size in CASES:
        pairs = []
        for _ in range(args.rounds):
            nchw = _step_ms(name, kwargs, size, False, args.batch_size, args.steps)
            cl = _step_ms(name, kwargs, size, True, args.batch_size, args.steps)
            pairs.append(nchw / cl)
            print(f"{name} {size}px nchw_ms={nchw:.0f} channels_last_ms={cl:.0f}")
        speedups[name] = statistics.median(pairs)
    print(" ".join(f"{k}={v:.2f}" for k, v in speedups.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
