#!/usr/bin/env python3
"""kiln beside PyTorch on the CPU, model by model: training throughput
(samples/s: the same layers, batch, loss, optimizer and clipping as the
model file's [train], on random data) and the eval-mode forward at batch 1
and at the batch (ms a call; kiln through the C API, called from Python
with ctypes, and through the Python package's Model.predict; PyTorch under
torch.no_grad() after model.eval()).

Models: the Fashion MLP and CNN, the CIFAR-shaped ResNet
(examples/resnet_cifar.ini) and, where the tree has one, the character GPT
(examples/gpt_char.ini, nanoGPT's GPT from tools/gpt_reference.py); --models
names others among these. kiln and PyTorch alternate, --rounds times per
model, kiln in a child process each time (PoCL's worker threads, left in
this one, slowed PyTorch's steps several times over). Each line prints the
median of the rounds with the range [lowest-highest], and the ratio
kiln/PyTorch as the median [range] of the ratios taken within a round, so
that a shared machine's drift falls on both.

PyTorch is a measuring stick only, never a dependency of kiln. From a kiln
tree built with tools/setup.sh (libkiln in build/), with a virtual
environment that has PyTorch 2.x, numpy and safetensors (the GPT's reference):
    python3 -m venv ~/venv-torch
    ~/venv-torch/bin/pip install torch numpy safetensors
    ~/venv-torch/bin/python bench/pytorch_steps.py --threads 2
(--no-kiln measures PyTorch alone.)
"""
import argparse
import configparser
import ctypes
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---- the models in PyTorch --------------------------------------------------------


def fashion_mlp():
    return nn.Sequential(nn.Linear(784, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Dropout(0.3),
                         nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))


def fashion_cnn(width=(32, 64)):
    a, b = width
    return nn.Sequential(
        nn.Conv2d(1, a, 3, padding=1), nn.BatchNorm2d(a), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(b * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.3),
        nn.Linear(128, 10))


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: two 3x3 convolutions with batchnorm, a 1x1
    projection on the shortcut where the block downsamples."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                    nn.BatchNorm2d(cout)) if stride != 1 else nn.Identity())

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.short(x))


def resnet_cifar():
    """examples/resnet_cifar.ini."""
    return nn.Sequential(nn.Conv2d(3, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                         BasicBlock(32, 32, 1), BasicBlock(32, 64, 2), BasicBlock(64, 128, 2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10))


class TokenLoss(nn.Module):
    """nanoGPT's GPT, whose forward takes the targets too."""

    def __init__(self, gpt):
        super().__init__()
        self.gpt = gpt

    def forward(self, idx, targets):
        return self.gpt(idx, targets)


def gpt_of(path):
    """nanoGPT's GPT (tools/gpt_reference.py) with the sizes of a kiln GPT
    model file: [input] tokens and block, the embedding's out, the
    transformer blocks' count, heads and bias."""
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import gpt_reference
    ini = configparser.ConfigParser(strict=False, inline_comment_prefixes=(";", "#"))
    ini.read(path)
    c = gpt_reference.Config()
    c.vocab_size = int(ini["input"]["tokens"])
    c.block_size = int(ini["input"]["block"])
    c.n_embd = int(ini["embedding"]["out"])
    c.n_layer = int(ini["transformer_block"].get("count", "1"))
    c.n_head = int(ini["transformer_block"]["heads"])
    c.bias = ini["transformer_block"].get("bias", "true").lower() == "true"
    return TokenLoss(gpt_reference.GPT(c)), c


def train_settings(path):
    """[train] of a model file, as a dict."""
    ini = configparser.ConfigParser(strict=False, inline_comment_prefixes=(";", "#"))
    ini.read(path)
    return dict(ini["train"]) if ini.has_section("train") else {}


def optimizer_for(model, t):
    lr = float(t.get("lr", "1e-3"))
    decay = float(t.get("weight_decay", "0"))
    kind = t.get("optimizer", "adam")
    if kind == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=float(t.get("momentum", "0")),
                               weight_decay=decay)
    betas = tuple(float(b) for b in t.get("betas", "0.9, 0.999").split(","))
    cls = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
    return cls(model.parameters(), lr=lr, betas=betas, weight_decay=decay)


class Case:
    """One model: its file, its PyTorch twin and random data of its shape."""

    def __init__(self, path):
        self.path = path
        self.train = train_settings(os.path.join(ROOT, path))
        name = os.path.basename(path)
        self.tokens = None
        if name == "fashion_mlp.ini":
            self.model, self.shape = fashion_mlp(), (784,)
        elif name == "fashion_cnn.ini":
            self.model, self.shape = fashion_cnn(), (1, 28, 28)
        elif name == "resnet_cifar.ini":
            self.model, self.shape = resnet_cifar(), (3, 32, 32)
        else:
            self.model, c = gpt_of(os.path.join(ROOT, path))
            self.shape, self.tokens = (c.block_size,), c.vocab_size
        self.smoothing = float(self.train.get("label_smoothing", "0"))
        self.clip = float(self.train.get("clip_norm", "0"))

    def data(self, batch):
        torch.manual_seed(0)
        if self.tokens:
            x = torch.randint(0, self.tokens, (batch, *self.shape))
            return x, torch.randint(0, self.tokens, (batch, *self.shape))
        return torch.rand(batch, *self.shape), torch.randint(0, 10, (batch,))

    def loss(self, x, y):
        if self.tokens:
            return self.model(x, y)[1]
        return nn.functional.cross_entropy(self.model(x), y, label_smoothing=self.smoothing)

    def samples_per_second(self, batch, steps=20):
        x, y = self.data(batch)
        opt = optimizer_for(self.model, self.train)
        self.model.train()

        def step():
            opt.zero_grad(set_to_none=True)
            self.loss(x, y).backward()
            if self.clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
            opt.step()

        for _ in range(3):
            step()
        return batch / best_of(step, steps)

    def forward_ms(self, n, calls=50):
        x, y = self.data(n)
        self.model.eval()
        with torch.no_grad():
            run = (lambda: self.model(x, y)) if self.tokens else (lambda: self.model(x))
            run()
            return 1e3 * best_of(run, calls, budget=FORWARD_BUDGET)


def best_of(fn, calls, reps=5, budget=0.0):
    """Best seconds per call of timings of calls calls: reps of them, then
    more (up to eight times reps) while all took less than budget seconds. A
    forward of one sample takes 50 calls in a few milliseconds, a window
    that a burst of this shared machine's noise fills; the same budget
    for kiln and PyTorch gives both more chances at a quiet one."""
    best, start, done = float("inf"), time.perf_counter(), 0
    while done < reps or (done < 8 * reps and time.perf_counter() - start < budget):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t0) / calls)
        done += 1
    return best


# Seconds of repetitions a forward's timing may take (best_of's budget).
FORWARD_BUDGET = 1.0


# ---- kiln, in a child process --------------------------------------------------------


class Kiln:
    """libkiln through the Python package's loader: one context on the
    default device (KILN_DEVICE selects another)."""

    def __init__(self):
        sys.path.insert(0, os.path.join(ROOT, "python"))
        import kiln
        from kiln import _capi
        self.package = kiln
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

    def model(self, path, batch):
        """The package's Model of a file, made for batch samples."""
        m = ctypes.c_void_p()
        self.check(self.lib.kiln_model_load(os.path.join(ROOT, path).encode(), ctypes.byref(m)))
        model = self.package.Model.__new__(self.package.Model)
        model._setup(m, None, "bench", max_batch=batch)  # pipelines sized for the batch
        return model

    def samples_per_second(self, path, batch, case):
        if case.tokens:  # kiln_bench_training draws class targets: kiln_net_train_step
            m = self.model(path, batch)
            x, y = (t.to(torch.float32).numpy() for t in case.data(batch))
            fx = x.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            fy = y.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            net = m._live()

            def step():
                self.check(self.lib.kiln_net_train_step(net, fx, fy, batch, None))

            for _ in range(3):
                step()
            rate = batch / best_of(step, 20)
            m.close()
            return rate
        model, rate = ctypes.c_void_p(), ctypes.c_double()
        self.check(self.lib.kiln_model_load(os.path.join(ROOT, path).encode(), ctypes.byref(model)))
        try:
            self.check(self.lib.kiln_bench_training(self.ctx, model, batch, ctypes.byref(rate)))
        finally:
            self.lib.kiln_model_free(model)
        return rate.value

    def forward_ms(self, path, batch, case):
        """ms a call of kiln_net_forward (ctypes) and of Model.predict, at
        batch 1 and at batch, in eval mode (the default)."""
        import numpy as np
        m = self.model(path, batch)
        m.predict(np.zeros((batch, m.input_size), np.float32))  # at the largest batch first
        out = {}
        for n in (1, batch):
            x = case.data(n)[0].reshape(n, -1).to(torch.float32).numpy()
            y = np.empty((n, m.output_size), np.float32)
            fx = x.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            fy = y.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            net = m._live()

            def c_call():
                self.check(self.lib.kiln_net_forward(net, fx, n, fy))

            c_call()
            out[f"c{n}"] = 1e3 * best_of(c_call, 50, budget=FORWARD_BUDGET)
            m.predict(x)
            out[f"py{n}"] = 1e3 * best_of(lambda: m.predict(x), 50,
                                          budget=FORWARD_BUDGET)
        m.close()
        return out


def kiln_in_child(path, batch):
    """kiln's figures for one model, and its device, from a child process."""
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--kiln-child", path,
                          "--batch", str(batch)], check=True, capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result, result.pop("device")


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def spread(values, fmt):
    """median [lowest-highest]"""
    if not values:
        return "-"
    return (f"{fmt.format(statistics.median(values))} "
            f"[{fmt.format(min(values))}-{fmt.format(max(values))}]")


DEFAULT_MODELS = ["examples/fashion_mlp.ini", "examples/fashion_cnn.ini",
                  "examples/resnet_cifar.ini", "examples/gpt_char.ini"]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--rounds", type=int, default=5, help="alternations of kiln and PyTorch")
    p.add_argument("--models", nargs="+", default=DEFAULT_MODELS, metavar="INI",
                   help="model files, from the tree's root (default: the four above)")
    p.add_argument("--no-kiln", action="store_true", help="measure PyTorch alone")
    p.add_argument("--no-forward", action="store_true", help="training throughput only")
    p.add_argument("--kiln-child", metavar="MODEL", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.kiln_child:
        kiln = Kiln()
        case = Case(args.kiln_child)
        result = {"train": kiln.samples_per_second(args.kiln_child, args.batch, case),
                  "device": kiln.device}
        if os.environ.get("KILN_STEPS_FORWARD", "1") == "1":
            result.update(kiln.forward_ms(args.kiln_child, args.batch, case))
        print(json.dumps(result))
        kiln.lib.kiln_ctx_free(kiln.ctx)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ["KILN_STEPS_FORWARD"] = "0" if args.no_forward else "1"
    print(f"{datetime.date.today()}, {cpu_name()}, {os.cpu_count()} cores")
    print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}, batch {args.batch}, "
          f"{args.rounds} alternated rounds: median [lowest-highest]")
    device = None
    for path in args.models:
        if not os.path.exists(os.path.join(ROOT, path)):
            print(f"{path}: not in this tree, skipped")
            continue
        try:
            case = Case(path)
        except ImportError as e:  # the GPT's reference needs safetensors
            print(f"{path}: skipped: {e} (see this script's usage)")
            continue
        rows = {}  # metric -> ([kiln], [torch], [ratio])
        for _ in range(max(args.rounds, 1)):
            ours = {}
            if not args.no_kiln:
                ours, device = kiln_in_child(path, args.batch)
            theirs = {"train": case.samples_per_second(args.batch)}
            for n in ((1, args.batch) if not args.no_forward else ()):
                ms = case.forward_ms(n)
                theirs[f"c{n}"] = theirs[f"py{n}"] = ms
            for key, value in theirs.items():
                k, t, r = rows.setdefault(key, ([], [], []))
                t.append(value)
                if key in ours:
                    k.append(ours[key])
                    # > 1: kiln faster (samples/s up, ms down)
                    r.append(ours[key] / value if key == "train" else value / ours[key])
        print(f"\n{path}")
        print(f"  {'':34s} {'kiln':>26s} {'PyTorch':>26s} {'speed-up':>22s}")
        labels = {"train": "training, samples/s"}
        for n in (1, args.batch):
            labels[f"c{n}"] = f"forward of {n}, C API, ms"
            labels[f"py{n}"] = f"forward of {n}, Python, ms"
        for key, (k, t, r) in rows.items():
            fmt = "{:.0f}" if key == "train" else "{:.3f}"
            print(f"  {labels[key]:34s} {spread(k, fmt):>26s} {spread(t, fmt):>26s} "
                  f"{spread(r, '{:.2f}'):>22s}", flush=True)
    if device:
        print(device)


if __name__ == "__main__":
    main()
