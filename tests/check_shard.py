#!/usr/bin/env python3
"""Datasets of .npy shards (`shard = true`, `--shard`): four shards of 100,
77, 150 and 13 samples train to the same weights as one .npy file holding
them all (2 epochs of SGD with momentum, a seeded validation split, batch
32 with a short last batch), bit for bit in one process; under mpirun, 2
and 3 ranks, each reading only its slices of every batch, end within
1e-5 relative of one process, and so does `kiln eval --shard`'s score.
Shards that disagree (sample counts of features and labels, sample shape,
dtype) are refused at start naming the file, also under mpirun; ranks
given other files refuse to start; a pattern given without --shard says
to set it. Token shards (nanoGPT's uint16 .bin): 2 ranks train a GPT on
three .bin shards to the weights of 2 ranks on a .npy of the same ids, and
within 1e-3 relative of one process (AdamW's first steps magnify the sums'
rounding); a pattern without
--shard says to set it.
usage: check_shard.py KILN [MPIRUN]"""
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile

import checks
from checks import report, weights

KILN = os.path.abspath(sys.argv[1])
MPIRUN = sys.argv[2] if len(sys.argv) > 2 else None
MODEL = ("[input]\nshape = 8\n[linear]\nout = 16\n[relu]\n[linear]\nout = 3\n[train]\n"
         "optimizer = sgd\nlr = 0.1\nmomentum = 0.9\nbatch = 32\nepochs = 2\nval = 0.1\n{}")
SIZES = (100, 77, 150, 13)
ENV = dict(os.environ, POCL_MAX_PTHREAD_COUNT="1")


def write_npy(path, shape, values, descr="<f4"):
    fmt = {"<f4": "f", "<f8": "d", "<i8": "q"}[descr]
    dims = ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "")
    head = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (descr, dims)
    head += " " * ((64 - (10 + len(head) + 1) % 64) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head.encode())
        f.write(struct.pack(f"<{len(values)}{fmt}", *values))


def write_shards(tmp):
    rng = random.Random(5)
    xs, ys = [], []
    for k, n in enumerate(SIZES):
        x, y = [], []
        for _ in range(n):
            v = [rng.gauss(2, 3) for _ in range(8)]
            s = v[0] + v[1] - 4
            x += v
            y.append(0 if s < -0.5 else 1 if s < 0.5 else 2)
        write_npy(os.path.join(tmp, f"x_{k}.npy"), (n, 8), x)
        write_npy(os.path.join(tmp, f"y_{k}.npy"), (n,), y, "<i8")
        xs += x
        ys += y
    write_npy(os.path.join(tmp, "all_x.npy"), (len(ys), 8), xs)
    write_npy(os.path.join(tmp, "all_y.npy"), (len(ys),), ys, "<i8")
    write_npy(os.path.join(tmp, "short_y.npy"), (76,), ys[:76], "<i8")
    write_npy(os.path.join(tmp, "wide_x.npy"), (77, 9), [0.5] * 77 * 9)
    write_npy(os.path.join(tmp, "f8_x.npy"), (77, 8), xs[:77 * 8], "<f8")
    for name, extra in (("m.ini", ""), ("shard.ini", "shard = true\n")):
        with open(os.path.join(tmp, name), "w", encoding="ascii") as f:
            f.write(MODEL.format(extra))


def kiln(tmp, args, ranks=1, timeout=300):
    cmd = [KILN] + args
    if ranks > 1:
        cmd = [MPIRUN, "--oversubscribe", "-np", str(ranks)] + cmd
        if os.geteuid() == 0:
            cmd.insert(1, "--allow-run-as-root")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ENV,
                          cwd=tmp)


def train(tmp, name, model, data, label, extra=(), ranks=1):
    r = kiln(tmp, ["train", model, "--data", data, "--label", label, "--out", name] +
             list(extra), ranks)
    if r.returncode != 0:
        sys.exit(f"{name}: kiln train failed:\n{r.stdout}\n{r.stderr}")
    return weights(os.path.join(tmp, name, "final.safetensors"))


def worst(a, b):
    if set(a) != set(b):
        return float("inf")
    return max(abs(x - y) / max(max(abs(v) for v in a[k]), 0.01)
               for k in a for x, y in zip(a[k], b[k]))


def refused(tmp, data, label, expect, ranks=1):
    r = kiln(tmp, ["train", "m.ini", "--shard", "--data", data, "--label", label, "--out",
                   "bad"], ranks, timeout=120)
    report(r.returncode != 0 and all(e in r.stderr for e in expect),
           f"{ranks} rank(s), --data {data} --label {label}: refused naming {expect}",
           r.stdout + r.stderr)


def score(tmp, run, ranks=1):
    r = kiln(tmp, ["eval", "m.ini", os.path.join(run, "final.safetensors"), "--shard",
                   "--data", "x_*.npy", "--label", "y_*.npy"], ranks)
    lines = [l for l in r.stdout.splitlines() if " samples: loss " in l]
    return lines[0] if r.returncode == 0 and lines else r.stdout + r.stderr


with tempfile.TemporaryDirectory() as tmpdir:
    write_shards(tmpdir)
    whole = train(tmpdir, "whole", "m.ini", "all_x.npy", "all_y.npy")
    one = train(tmpdir, "one", "shard.ini", "x_*.npy", "y_*.npy")
    report(one == whole, "shard = true, one process: the weights of one file holding the "
           f"shards (worst {worst(one, whole):.3g})")
    listed = train(tmpdir, "listed", "m.ini", "x_0.npy,x_1.npy,x_[23].npy",
                   "y_0.npy,y_1.npy,y_2.npy,y_3.npy", ["--shard"])
    report(listed == whole, "--shard with a comma-separated list and a pattern: the same")
    want = score(tmpdir, "one")
    report(want.startswith("340 samples"), f"kiln eval --shard scores every sample: {want}")
    if MPIRUN:
        for ranks in (2, 3):
            got = train(tmpdir, f"ranks{ranks}", "m.ini", "x_*.npy", "y_*.npy", ["--shard"],
                        ranks)
            w = worst(one, got)
            report(w < 1e-5, f"{ranks} ranks with --shard against one process: {w:.3g}")
        got = score(tmpdir, "ranks2")
        report(got == want,
               f"kiln eval --shard of the 2-rank weights: {got}")
    refused(tmpdir, "x_0.npy,x_1.npy", "y_0.npy,short_y.npy",
            ["x_1.npy has 77 samples", "short_y.npy has 76 labels"])
    refused(tmpdir, "x_0.npy,wide_x.npy", "y_0.npy,y_1.npy",
            ["wide_x.npy: samples of shape (9,)", "expected (8,)", "as in x_0.npy"])
    refused(tmpdir, "x_0.npy,f8_x.npy", "y_0.npy,y_1.npy",
            ["f8_x.npy: samples of shape (8,) and dtype float64", "float32, as in x_0.npy"])
    refused(tmpdir, "x_*.npy", "y_0.npy", ["4 features files but 1 label files"])
    if MPIRUN:
        refused(tmpdir, "x_0.npy,x_1.npy", "y_0.npy,short_y.npy",
                ["short_y.npy has 76 labels", "rank 1 of 2"], ranks=2)
    if MPIRUN:  # rank 1 names other files, of as many samples and the same labels
        shutil.copy(os.path.join(tmpdir, "x_1.npy"), os.path.join(tmpdir, "copy_x.npy"))
        rank = [KILN, "train", "m.ini", "--shard", "--label", "y_0.npy,y_1.npy", "--out", "bad",
                "--data"]
        cmd = [MPIRUN, "--oversubscribe", "-np", "1"] + rank + ["x_0.npy,x_1.npy", ":", "-np",
                                                                "1"] + rank + ["x_0.npy,copy_x.npy"]
        if os.geteuid() == 0:
            cmd.insert(1, "--allow-run-as-root")
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=ENV,
                           cwd=tmpdir)
        report(r.returncode != 0 and "rank 1 has training values digest" in r.stderr,
               "ranks given other shard files disagree before training", r.stdout + r.stderr)
    gpt = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "gpt_sonnets.ini")
    ids = [(i * 7 + i // 13) % 56 for i in range(1500)]
    for k, (a, b) in enumerate([(0, 400), (400, 401), (401, 1500)]):
        with open(os.path.join(tmpdir, f"tok_{k}.bin"), "wb") as f:
            f.write(struct.pack(f"<{b - a}H", *ids[a:b]))
    tok = ["train", gpt, "--shard", "--data", "tok_*.bin", "--steps", "4", "--out"]
    r = kiln(tmpdir, tok + ["tok1"])
    report(r.returncode == 0, "token shards, one process", r.stdout + r.stderr)
    if MPIRUN and r.returncode == 0:
        write_npy(os.path.join(tmpdir, "tok.npy"), (1500,), ids, "<i8")
        r = kiln(tmpdir, tok + ["tok2"], 2)
        m = kiln(tmpdir, ["train", gpt, "--data", "tok.npy", "--steps", "4", "--out", "npy2"], 2)
        got = weights(os.path.join(tmpdir, "tok2", "final.safetensors")) \
            if r.returncode == 0 else {}
        report(m.returncode == 0 and got and
               got == weights(os.path.join(tmpdir, "npy2", "final.safetensors")),
               "2 ranks on token shards: the weights of 2 ranks on a .npy of the same ids",
               r.stdout + r.stderr + m.stdout + m.stderr)
        w = worst(weights(os.path.join(tmpdir, "tok1", "final.safetensors")), got)
        report(w < 1e-3, f"2 ranks on token shards against one process (AdamW): {w:.3g}")
    r = kiln(tmpdir, ["train", gpt, "--data", "tok_*.bin", "--steps", "4", "--out", "bad"])
    report(r.returncode != 0 and "set shard = true in [train] (or --shard)" in r.stderr,
           "a pattern of .bin files without --shard: refused, saying to set it",
           r.stdout + r.stderr)
    r = kiln(tmpdir, ["train", "m.ini", "--data", "x_*.npy", "--label", "y_*.npy", "--out",
                      "bad"])
    report(r.returncode != 0 and "set shard = true in [train] (or --shard)" in r.stderr,
           "a pattern without --shard: refused, saying to set it", r.stdout + r.stderr)
sys.exit(1 if checks.failed else 0)
