#!/usr/bin/env python3
"""Fine-tuning as PyTorch users do it: load a pretrained state_dict, freeze
everything but the head, train the head on a new task, and export the
weights back to PyTorch.

The pretrained model: with PyTorch installed, a torch.nn.Sequential
trained here for a few steps on the first task (its state_dict goes to
kiln as is); without PyTorch, the same architecture trained by kiln and
saved as safetensors with PyTorch's names, read back with numpy as
safetensors.torch.load_file would. The new task has other classes on the
same features. The script checks that the frozen layers did not move and,
with PyTorch, that PyTorch's predictions with the exported weights match
kiln's.

usage: finetune.py
"""
import json
import struct

import numpy as np

import kiln


def layers():
    return [kiln.Linear(32, name="body.0"), kiln.ReLU(), kiln.Linear(32, name="body.2"),
            kiln.ReLU(), kiln.Linear(4, name="head")]


def task(n, classes, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, 10)).astype(np.float32)
    score = x[:, :4] @ rng.normal(0, 1, (4, classes)) + 0.5 * np.sin(3 * x[:, 4:8]) @ \
        rng.normal(0, 1, (4, classes))
    return x, score.argmax(1)


def read_safetensors(path):
    """safetensors.torch.load_file, in numpy."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    out = {}
    for name, t in json.loads(data[8:8 + n]).items():
        if name != "__metadata__":
            b, e = t["data_offsets"]
            dtype = {"F32": np.float32, "I64": np.int64}[t["dtype"]]
            out[name] = np.frombuffer(data[8 + n + b:8 + n + e], dtype).reshape(t["shape"])
    return out


def pretrained(x, y):
    """A state_dict with PyTorch's names, trained on the first task."""
    try:
        import torch
        from torch import nn
    except ImportError:
        base = kiln.Sequential(layers(), input_shape=10, normalize="none", lr=3e-3, seed=3)
        base.fit(x, y, epochs=10, verbose=False)
        base.save("pretrained.safetensors")
        return read_safetensors("pretrained.safetensors"), None
    torch.manual_seed(0)
    net = nn.Sequential()
    net.add_module("body", nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 32),
                                         nn.ReLU()))
    net.add_module("head", nn.Linear(32, 4))
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(300):
        opt.zero_grad()
        nn.functional.cross_entropy(net(xt), yt).backward()
        opt.step()
    return net.state_dict(), net


def main():
    xa, ya = task(3000, 4, seed=1)           # the pretraining task
    xb, yb = task(600, 4, seed=2)            # the new task: few samples, other classes
    state, torch_net = pretrained(xa, ya)
    model = kiln.Sequential(layers(), input_shape=10, normalize="none", lr=1e-2, seed=7)
    model.load_state_dict(state)             # torch tensors or numpy arrays, strict names
    print("pretrained head on the new task: "
          f"{100 * (model.predict(xb[400:]).argmax(1) == yb[400:]).mean():.1f}%")
    model.freeze(["body.0", "body.2"])       # requires_grad_(False) on the body
    before = model.state_dict()
    model.fit(xb[:400], yb[:400], epochs=30, validation_data=(xb[400:], yb[400:]),
              verbose=False)
    after = model.state_dict()
    moved = [n for n in before if not np.array_equal(before[n], after[n])]
    print(f"frozen: {', '.join(model.frozen)}; changed by training: {', '.join(moved)}")
    assert moved == ["head.weight", "head.bias"]
    accuracy = (model.predict(xb[400:]).argmax(1) == yb[400:]).mean()
    print(f"fine-tuned head on the new task: {100 * accuracy:.1f}%")
    export = model.state_dict()
    if torch_net is None:
        np.savez("finetuned.npz", **export)
        print("exported to finetuned.npz ({name: array}: torch.from_numpy each for "
              "load_state_dict); PyTorch is not installed: no PyTorch check")
        return
    import torch
    torch_net.load_state_dict({k: torch.from_numpy(v) for k, v in export.items()})
    with torch.no_grad():
        p = torch.softmax(torch_net(torch.from_numpy(xb[400:])), 1).numpy()
    kp = model.predict(xb[400:])
    kp = np.exp(kp - kp.max(1, keepdims=True))
    kp /= kp.sum(1, keepdims=True)
    print(f"PyTorch with the exported weights: {100 * (p.argmax(1) == yb[400:]).mean():.1f}%, "
          f"largest probability difference {np.abs(p - kp).max():.2e}")


if __name__ == "__main__":
    main()
