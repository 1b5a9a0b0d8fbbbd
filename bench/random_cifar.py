#!/usr/bin/env python3
"""CIFAR-shaped random data for examples/resnet_cifar.ini, as NumPy files
kiln train reads: x.npy (N, 3, 32, 32) float32 uniform in [0, 1) and
y.npy (N,) class indices 0 to 9, from a fixed seed. For benchmarks only:
there is nothing to learn in it.
    python3 bench/random_cifar.py DIR [--samples N]
    kiln train examples/resnet_cifar.ini --data DIR/x.npy --label DIR/y.npy
"""
import argparse
import os

import numpy as np


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dir")
    p.add_argument("--samples", type=int, default=2048)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    os.makedirs(args.dir, exist_ok=True)
    np.save(os.path.join(args.dir, "x.npy"),
            rng.random((args.samples, 3, 32, 32), dtype=np.float32))
    np.save(os.path.join(args.dir, "y.npy"), rng.integers(0, 10, args.samples).astype(np.int64))


if __name__ == "__main__":
    main()
