#!/usr/bin/env python3
"""Loads kiln's final checkpoints of the two Fashion-MNIST examples into the
same models in PyTorch (safetensors.torch.load_file + load_state_dict with
strict=True) and measures their test accuracy there, normalizing with the
mean and standard deviation kiln stored in the checkpoint.

    pip install torch safetensors numpy
    python3 bench/pytorch_load.py runs/mlp/final.safetensors runs/cnn/final.safetensors
"""
import gzip
import sys

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from pytorch_steps import fashion_cnn, fashion_mlp

DATA = "/usr/share/datasets/fashion-mnist/"


def idx(name):
    with gzip.open(DATA + name) as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def main():
    x = idx("t10k-images-idx3-ubyte.gz").astype(np.float32) / 255
    y = torch.tensor(idx("t10k-labels-idx1-ubyte.gz").astype(np.int64))
    for path, build in zip(sys.argv[1:3], (fashion_mlp, fashion_cnn)):
        model, shape, _ = build()
        print(path, model.load_state_dict(load_file(path), strict=True))
        with safe_open(path, "pt") as f:
            meta = f.metadata()
        mean, std = float(meta["normalize_mean"]), float(meta["normalize_std"])
        model.eval()
        with torch.no_grad():
            inputs = torch.tensor((x - mean) / std).reshape(-1, *shape)
            accuracy = (model(inputs).argmax(1) == y).float().mean().item()
        print(f"  test accuracy in PyTorch: {100 * accuracy:.2f}%")


if __name__ == "__main__":
    main()
