#!/usr/bin/env python3
"""Training throughput of the two Fashion-MNIST examples in PyTorch on the
CPU beside kiln's on the same machine: the same layers, batch, loss
(cross-entropy with the examples' label smoothing), Adam with
clip_grad_norm_, on random data. PyTorch: best of five timed runs of 20
steps; kiln: kiln_bench_training, what `kiln bench`'s training lines print.
The two alternate, --rounds times per model, and the best of each gives the
ratio, so that a shared machine's drift falls on both. kiln runs in a child
process each time: PoCL's worker threads, left in this one, slowed
PyTorch's steps several times over.

PyTorch is a measuring stick only, never a dependency of kiln. From a kiln
tree built with tools/setup.sh (libkiln in build/), with a virtual
environment that has PyTorch 2.x and numpy:
    python3 -m venv ~/venv-torch
    ~/venv-torch/bin/pip install torch numpy
    ~/venv-torch/bin/python bench/pytorch_steps.py --threads 2
(--no-kiln measures PyTorch alone.)
"""
import argparse
import ctypes
import datetime
import os
import platform
import subprocess
import sys
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


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Kiln:
    """libkiln through the Python package's loader: one context on the
    default device (KILN_DEVICE selects another)."""

    def __init__(self):
        sys.path.insert(0, os.path.join(ROOT, "python"))
        from kiln import _capi
        self.lib, _ = _capi.load()
        self.lib.kiln_bench_training.restype = ctypes.c_int
        self.lib.kiln_bench_training.argtypes = [ctypes.c_void_p, ctypes.c_void_p,
                                                 ctypes.c_size_t,
                                                 ctypes.POINTER(ctypes.c_double)]
        self.ctx = ctypes.c_void_p()
        self.check(self.lib.kiln_ctx_create(None, ctypes.byref(self.ctx)))
        self.device = (f"kiln {self.lib.kiln_version().decode()} on "
                       f"{self.lib.kiln_ctx_device(self.ctx).contents.name.decode()}")

    def check(self, status):
        if status != 0:
            raise RuntimeError("kiln: " + self.lib.kiln_last_error().decode())

    def samples_per_second(self, path, batch):
        model, rate = ctypes.c_void_p(), ctypes.c_double()
        self.check(self.lib.kiln_model_load(os.path.join(ROOT, path).encode(), ctypes.byref(model)))
        try:
            self.check(self.lib.kiln_bench_training(self.ctx, model, batch, ctypes.byref(rate)))
        finally:
            self.lib.kiln_model_free(model)
        return rate.value


def kiln_in_child(path, batch):
    """kiln's samples/s for one model, and its device, from a child process."""
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--kiln-child", path,
                          "--batch", str(batch)], check=True, capture_output=True, text=True)
    rate, device = out.stdout.strip().split(" ", 1)
    return float(rate), device


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3, help="alternations of kiln and PyTorch")
    p.add_argument("--no-kiln", action="store_true", help="measure PyTorch alone")
    p.add_argument("--kiln-child", metavar="MODEL", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.kiln_child:
        kiln = Kiln()
        print(kiln.samples_per_second(args.kiln_child, args.batch), kiln.device)
        kiln.lib.kiln_ctx_free(kiln.ctx)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{datetime.date.today()}, {cpu_name()}, {os.cpu_count()} cores")
    print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}, batch {args.batch}")
    print(f"training {'':34s} {'kiln':>10s} {'PyTorch':>10s} {'kiln/PyTorch':>12s}  (samples/s)")
    device = None
    for name, build in (("examples/fashion_mlp.ini", fashion_mlp),
                        ("examples/fashion_cnn.ini", fashion_cnn)):
        model, shape, smoothing = build()
        ours = theirs = 0.0
        for _ in range(max(args.rounds, 1)):
            if not args.no_kiln:
                rate, device = kiln_in_child(name, args.batch)
                ours = max(ours, rate)
            theirs = max(theirs, samples_per_second(model, shape, smoothing, args.batch))
        ours_text = f"{'-':>10s}" if args.no_kiln else f"{ours:10.0f}"
        ratio = f"{'-':>12s}" if args.no_kiln else f"{ours / theirs:12.2f}"
        print(f"training {name:34s} {ours_text} {theirs:10.0f} {ratio}", flush=True)
    if device:
        print(device)


if __name__ == "__main__":
    main()
