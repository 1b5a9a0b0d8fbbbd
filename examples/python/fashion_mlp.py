#!/usr/bin/env python3
"""Trains examples/fashion_mlp.ini on Fashion-MNIST from numpy arrays (the
IDX files of Debian's dataset-fashion-mnist, read with numpy), prints the
test accuracy and time, and saves a plot of the curves when matplotlib is
installed.

usage: fashion_mlp.py [DATA_DIR]   (default /usr/share/datasets/fashion-mnist)
"""
import gzip
import os
import struct
import sys
import time

import numpy as np

import kiln

HERE = os.path.dirname(os.path.abspath(__file__))


def read_idx(path):
    with gzip.open(path) as f:
        data = f.read()
    dims = data[3]
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def main():
    data = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist"
    x = read_idx(f"{data}/train-images-idx3-ubyte.gz") / np.float32(255)
    y = read_idx(f"{data}/train-labels-idx1-ubyte.gz")
    xt = read_idx(f"{data}/t10k-images-idx3-ubyte.gz") / np.float32(255)
    yt = read_idx(f"{data}/t10k-labels-idx1-ubyte.gz")
    held = len(x) // 10  # the last tenth for validation, as [train] val = 0.1 would
    model = kiln.Model.from_file(os.path.join(HERE, "..", "fashion_mlp.ini"))
    print(f"kiln {kiln.__version__} on {model.device.platform} / {model.device.name}")
    start = time.perf_counter()
    history = model.fit(x[:-held], y[:-held], validation_data=(x[-held:], y[-held:]))
    seconds = time.perf_counter() - start
    accuracy = np.mean(model.predict(xt).argmax(axis=1) == yt)
    print(f"test accuracy {100 * accuracy:.2f}% after {len(history['train_loss'])} epochs, "
          f"{seconds:.1f} s of training")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    epochs = range(1, len(history["train_loss"]) + 1)
    a.plot(epochs, history["train_loss"], label="train")
    a.plot(epochs, history["val_loss"], label="validation")
    a.set(xlabel="epoch", ylabel="loss")
    a.legend()
    b.plot(epochs, history["train_acc"], label="train")
    b.plot(epochs, history["val_acc"], label="validation")
    b.set(xlabel="epoch", ylabel="accuracy")
    b.legend()
    fig.tight_layout()
    fig.savefig("fashion_mlp_curves.png")
    print("curves saved to fashion_mlp_curves.png")


if __name__ == "__main__":
    main()
