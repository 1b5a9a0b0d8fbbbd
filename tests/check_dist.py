#!/usr/bin/env python3
"""Data-parallel training under mpirun gives the weights of one process:
2 ranks (an even split of each global batch) and 3 ranks (an uneven one,
and a short last batch of 4 samples) against 1 rank on the same data, after
3 epochs of SGD with momentum (24 steps); within 1e-5 relative. Then a
rank that fails (rank 0 cannot create its output directory; rank 1 names a
device that does not exist) ends the job quickly, naming the rank.

usage: check_dist.py KILN MPIRUN"""
import json
import os
import random
import struct
import subprocess
import sys
import tempfile

KILN, MPIRUN = sys.argv[1], sys.argv[2]
MODEL = ("[input]\nshape = 8\n[linear]\nout = 32\n[relu]\n[linear]\nout = 3\n[train]\n"
         "optimizer = sgd\nlr = 0.1\nmomentum = 0.9\nbatch = 128\nepochs = 3\nval = 0.1\n")


def weights(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, t in header.items():
        if name != "__metadata__" and t["dtype"] == "F32":
            begin, end = t["data_offsets"]
            out[name] = struct.unpack(f"<{(end - begin) // 4}f", data[8 + n + begin:8 + n + end])
    return out


def train(tmp, ranks):
    out = os.path.join(tmp, f"ranks{ranks}")
    cmd = [KILN, "train", os.path.join(tmp, "m.ini"), "--data", os.path.join(tmp, "d.csv"),
           "--out", out]
    if ranks > 1:
        cmd = [MPIRUN, "--oversubscribe", "-np", str(ranks)] + cmd
        if os.geteuid() == 0:
            cmd.insert(1, "--allow-run-as-root")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, POCL_MAX_PTHREAD_COUNT="1"))
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    if ranks > 1 and f"rank {ranks - 1} of {ranks}: device" not in r.stdout:
        sys.exit(f"{ranks} ranks were asked for, but rank 0 did not list them:\n{r.stdout}")
    return weights(os.path.join(out, "final.safetensors"))


with tempfile.TemporaryDirectory() as tmp:
    rng = random.Random(5)
    with open(os.path.join(tmp, "d.csv"), "w") as f:
        f.write(",".join(f"x{i}" for i in range(8)) + ",label\n")
        for _ in range(1000):
            x = [rng.gauss(0, 1) for _ in range(8)]
            s = x[0] + x[1]
            f.write(",".join(f"{v:.6f}" for v in x) + f",{0 if s < -0.5 else 1 if s < 0.5 else 2}\n")
    with open(os.path.join(tmp, "m.ini"), "w") as f:
        f.write(MODEL)
    one = train(tmp, 1)
    failed = False
    for ranks in (2, 3):
        got = train(tmp, ranks)
        worst = max(abs(a - b) / (max(abs(v) for v in one[k]) or 1)
                    for k in one for a, b in zip(one[k], got[k]))
        ok = worst < 1e-5 and set(got) == set(one)
        failed |= not ok
        print(f"{'ok  ' if ok else 'FAIL'} {ranks} ranks against 1: worst relative difference "
              f"{worst:.3g}")
    for what, extra, expect in (
            ("rank 0 fails after MPI_Init", ["--out", os.path.join(tmp, "d.csv", "sub")],
             "rank 0 of 2 failed"),
            ("rank 1 fails to open its device", ["--out", os.path.join(tmp, "dev"),
                                                 "--device", "0,no-such-device"],
             "rank 1 of 2 failed")):
        cmd = [MPIRUN, "--oversubscribe", "-np", "2", KILN, "train", os.path.join(tmp, "m.ini"),
               "--data", os.path.join(tmp, "d.csv")] + extra
        if os.geteuid() == 0:
            cmd.insert(1, "--allow-run-as-root")
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                               env=dict(os.environ, POCL_MAX_PTHREAD_COUNT="1"))
            ok = r.returncode != 0 and expect in r.stdout + r.stderr
            why = f"exit status {r.returncode}"
        except subprocess.TimeoutExpired:
            ok, why = False, "hung for 120 s"
        failed |= not ok
        print(f"{'ok  ' if ok else 'FAIL'} {what}: {why}")
        if not ok and why != "hung for 120 s":
            print(r.stdout, r.stderr)
    sys.exit(1 if failed else 0)
