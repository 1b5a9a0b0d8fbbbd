#!/usr/bin/env python3
"""The Fashion-MNIST MLP of examples/fashion_mlp.ini, built in code with
kiln.Sequential (as torch.nn.Sequential), trained, scored on the test
split and saved as one file that holds the model and its weights. With
PyTorch installed, the same weights (the input normalization folded into
the first layer) are scored by PyTorch too: both print the same accuracy.

usage: fashion_mlp_code.py [EPOCHS]   (default 15; Debian's dataset-fashion-mnist)
"""
import sys
import time

import numpy as np

import kiln


def build():
    return kiln.Sequential([
        kiln.Linear(256, name="fc1"), kiln.BatchNorm(), kiln.ReLU(), kiln.Dropout(0.3),
        kiln.Linear(128, name="fc2"), kiln.ReLU(),
        kiln.Linear(10, name="head"),
    ], input_shape=784, loss="cross_entropy", optimizer="adam", lr=1e-3, schedule="cosine",
        batch=128, clip_norm=1.0, patience=4, seed=42)


def pytorch_accuracy(state, x, y):
    import torch
    from torch import nn
    net = nn.Sequential()
    net.add_module("fc1", nn.Linear(784, 256))
    net.add_module("1", nn.BatchNorm1d(256))
    net.add_module("2", nn.ReLU())
    net.add_module("3", nn.Dropout(0.3))
    net.add_module("fc2", nn.Linear(256, 128))
    net.add_module("5", nn.ReLU())
    net.add_module("head", nn.Linear(128, 10))
    net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
    with torch.no_grad():
        return (net.eval()(torch.from_numpy(x)).argmax(1).numpy() == y).mean()


def main():
    epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    x, y = kiln.load_data("fashion-mnist")
    xt, yt = kiln.load_data("fashion-mnist", split="test")
    model = build()
    print(model.summary())
    start = time.perf_counter()
    model.fit(x, y, epochs=epochs)  # [train] val = 0.1: the last tenth is held out
    print(f"{time.perf_counter() - start:.1f} s of training")
    accuracy = (model.predict(xt).argmax(1) == yt).mean()
    print(f"kiln test accuracy {100 * accuracy:.2f}%")
    model.save("fashion_mlp.safetensors")  # kiln.Model.load or `kiln eval` need nothing else
    again = kiln.Model.load("fashion_mlp.safetensors")
    print(f"reloaded from one file: {100 * (again.predict(xt).argmax(1) == yt).mean():.2f}%")
    try:
        state = model.state_dict(fold_normalization=True)
        print(f"PyTorch test accuracy {100 * pytorch_accuracy(state, xt, yt):.2f}%")
    except ImportError:
        print("(PyTorch is not installed: no PyTorch check)")


if __name__ == "__main__":
    main()
