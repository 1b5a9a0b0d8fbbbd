#!/usr/bin/env python3
"""Gradient accumulation: `--accumulate 4` at batch 16 (and `accumulate = 4`
in [train]) takes one optimizer step per 4 batches with the gradients of
all 64 samples, so 3 epochs of SGD with momentum end with the weights of
batch 64 without accumulation (within 1e-5 relative; the last step of
each epoch is short: 16 + 12 samples), also under mpirun with 2 ranks;
batch 16 alone differs. accumulate = 0 or 2.5 and --accumulate 0 are
refused, naming the value.
usage: check_accumulate.py KILN [MPIRUN]"""
import os
import random
import subprocess
import sys
import tempfile

import checks
from checks import report, weights

KILN = sys.argv[1]
MPIRUN = sys.argv[2] if len(sys.argv) > 2 else None
MODEL = ("[input]\nshape = 8\n[linear]\nout = 32\n[relu]\n[linear]\nout = 3\n[train]\n"
         "optimizer = sgd\nlr = 0.1\nmomentum = 0.9\nbatch = 64\nepochs = 3\nval = 0.1\n{}")
ENV = dict(os.environ, POCL_MAX_PTHREAD_COUNT="1")


def train(tmp, name, model, extra, ranks=1):
    out = os.path.join(tmp, name)
    cmd = [KILN, "train", os.path.join(tmp, model), "--data", os.path.join(tmp, "d.csv"),
           "--out", out] + extra
    if ranks > 1:
        cmd = [MPIRUN, "--oversubscribe", "-np", str(ranks)] + cmd
        if os.geteuid() == 0:
            cmd.insert(1, "--allow-run-as-root")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=ENV)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}")
    return weights(os.path.join(out, "final.safetensors"))


def worst(a, b):
    if set(a) != set(b):
        return float("inf")
    return max(abs(x - y) / max(max(abs(v) for v in a[k]), 0.01)
               for k in a for x, y in zip(a[k], b[k]))


def refused(tmp, model, extra, expect):
    r = subprocess.run([KILN, "train", os.path.join(tmp, model), "--data",
                        os.path.join(tmp, "d.csv"), "--out", os.path.join(tmp, "bad")] + extra,
                       capture_output=True, text=True, timeout=120, env=ENV)
    report(r.returncode != 0 and expect in r.stderr,
           f"{model} {' '.join(extra)}: refused with \"{expect}\"", r.stdout + r.stderr)


with tempfile.TemporaryDirectory() as tmpdir:
    rng = random.Random(3)
    with open(os.path.join(tmpdir, "d.csv"), "w", encoding="ascii") as f:
        f.write(",".join(f"x{i}" for i in range(8)) + ",label\n")
        for _ in range(600):  # 540 to train: 8 steps of 64 and one of 28
            x = [rng.gauss(0, 1) for _ in range(8)]
            s = x[0] + x[1] - x[2]
            f.write(",".join(f"{v:.6f}" for v in x) +
                    f",{0 if s < -0.6 else 1 if s < 0.6 else 2}\n")
    for name, extra in (("m.ini", ""), ("acc.ini", "accumulate = 4\n"),
                        ("zero.ini", "accumulate = 0\n"), ("half.ini", "accumulate = 2.5\n")):
        with open(os.path.join(tmpdir, name), "w", encoding="ascii") as f:
            f.write(MODEL.format(extra))
    big = train(tmpdir, "big", "m.ini", [])
    w = worst(big, train(tmpdir, "flag", "m.ini", ["--batch", "16", "--accumulate", "4"]))
    report(w < 1e-5, f"--batch 16 --accumulate 4 against --batch 64: {w:.3g}")
    w = worst(big, train(tmpdir, "key", "acc.ini", ["--batch", "16"]))
    report(w < 1e-5, f"accumulate = 4 in [train], --batch 16, against --batch 64: {w:.3g}")
    w = worst(big, train(tmpdir, "small", "m.ini", ["--batch", "16"]))
    report(w > 1e-2, f"--batch 16 without accumulation differs: {w:.3g}")
    if MPIRUN:
        w = worst(big, train(tmpdir, "ranks", "m.ini", ["--batch", "16", "--accumulate", "4"],
                             ranks=2))
        report(w < 1e-5, f"2 ranks, --batch 16 --accumulate 4, against 1 at --batch 64: {w:.3g}")
    refused(tmpdir, "zero.ini", [], "accumulate = 0: expected a whole number")
    refused(tmpdir, "half.ini", [], "accumulate = 2.5: expected a whole number")
    refused(tmpdir, "m.ini", ["--accumulate", "0"], "--accumulate 0: expected")
sys.exit(1 if checks.failed else 0)
