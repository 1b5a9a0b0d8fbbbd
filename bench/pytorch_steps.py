#!/usr/bin/env python3
"""Training throughput of the two Fashion-MNIST examples in PyTorch on the
CPU, for comparison with `kiln bench` on the same machine: the same layers,
batch, loss (cross-entropy with the examples' label smoothing), Adam with
clip_grad_norm_, on random data, best of five timed runs of 20 steps.

PyTorch is a measuring stick only, never a dependency of kiln:
    pip install torch   # then
    python3 bench/pytorch_steps.py [--threads N]
"""
import argparse
import time

import torch
from torch import nn


def fashion_mlp():
    return nn.Sequential(nn.Linear(784, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Dropout(0.3),
                         nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10)), (784,), 0.0


def fashion_cnn(width=(32, 64)):
    a, b = width
    return nn.Sequential(
        nn.Conv2d(1, a, 3, padding=1), nn.BatchNorm2d(a), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(b * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.3),
        nn.Linear(128, 10)), (1, 28, 28), 0.1


def samples_per_second(model, shape, smoothing, batch, steps=20):
    torch.manual_seed(0)
    x = torch.rand(batch, *shape)
    y = torch.randint(0, 10, (batch,))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=smoothing)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for _ in range(3):
        step()
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, (time.perf_counter() - t0) / steps)
    return batch / best


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--batch", type=int, default=128)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}")
    for name, build in (("examples/fashion_mlp.ini", fashion_mlp),
                        ("examples/fashion_cnn.ini", fashion_cnn)):
        model, shape, smoothing = build()
        print(f"training {name:34s} {samples_per_second(model, shape, smoothing, args.batch):10.0f} samples/s")


if __name__ == "__main__":
    main()
