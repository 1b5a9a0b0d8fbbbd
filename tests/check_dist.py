#!/usr/bin/env python3
"""Data-parallel training under mpirun gives the weights of one process:
2 ranks (an even split of each global batch) and 3 ranks (an uneven one,
and a short last batch of 4 samples) against 1 rank on the same data, after
3 epochs of SGD with momentum (24 steps); within 1e-5 relative, and so
are the validation loss and accuracy, of which each rank scores its share. With
sync_batchnorm, a downsampling block with batchnorms trained by 2 ranks (an even split)
and 3 ranks (42, 43 and 43 samples, and a last batch of 2 samples in
which one rank has none) gives one process's weights and running
statistics after 20 steps; without it, 2 ranks differ from 1 (each rank
normalizes with its own statistics, as PyTorch's DDP). `kiln bench` under
mpirun prints the distributed lines once. Then a rank that fails (rank 0 cannot create its output directory; rank 1 names a
device that does not exist) ends the job quickly, naming the rank.

usage: check_dist.py KILN MPIRUN"""
import csv
import os
import random
import subprocess
import sys
import tempfile

from checks import weights

KILN, MPIRUN = sys.argv[1], sys.argv[2]
MODEL = ("[input]\nshape = 8\n[linear]\nout = 32\n[relu]\n[linear]\nout = 3\n[train]\n"
         "optimizer = sgd\nlr = 0.1\nmomentum = 0.9\nbatch = 128\nepochs = 3\nval = 0.1\n")
# a downsampling block whose 1 x 1 shortcut runs backward after the main
# path (compiler/lower.c), with gradient buckets of 1 KiB: each rank must
# run the batchnorms' exchanges in the same order, and read a bucket back
# only once every layer in it has run backward
BN_MODEL = ("[input]\nshape = 2x2x2\n[conv2d]\nout = 3\nsize = 3\npad = 1\nbias = false\n"
            "[batchnorm]\n[relu]\nname = a\n[conv2d]\nout = 4\nsize = 3\nstride = 2\npad = 1\n"
            "bias = false\n[batchnorm]\n[relu]\nname = main\n[conv2d]\nfrom = a\nout = 4\n"
            "size = 1\nstride = 2\nbias = false\n[batchnorm]\n"
            "name = short\n[add]\nfrom = main, short\n[flatten]\n[linear]\nout = 3\n"
            "[train]\noptimizer = sgd\nlr = 0.1\nmomentum = 0.9\nbatch = 128\nepochs = 1\n"
            "val = 0\nsync_batchnorm = {}\n")
BN_SAMPLES = 19 * 128 + 2  # 20 steps, the last of 2 samples


def train(tmp, ranks, model="m.ini", data="d.csv", extra=()):
    out = os.path.join(tmp, f"{model}-{ranks}-{len(extra)}")
    cmd = [KILN, "train", os.path.join(tmp, model), "--data", os.path.join(tmp, data),
           "--out", out] + list(extra)
    if ranks > 1:
        cmd = [MPIRUN, "--oversubscribe", "-np", str(ranks)] + cmd
        if os.geteuid() == 0:
            cmd.insert(1, "--allow-run-as-root")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, POCL_MAX_PTHREAD_COUNT="1", KILN_BUCKET_KB="1"))
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    if ranks > 1 and f"rank {ranks - 1} of {ranks}: device" not in r.stdout:
        sys.exit(f"{ranks} ranks were asked for, but rank 0 did not list them:\n{r.stdout}")
    return weights(os.path.join(out, "final.safetensors"))


def last_validation(tmp, ranks):
    """The last epoch's validation loss and accuracy in log.csv of train(tmp, ranks)."""
    with open(os.path.join(tmp, f"m.ini-{ranks}-0", "log.csv")) as f:
        rows = list(csv.DictReader(f))
    return float(rows[-1]["val_loss"]), float(rows[-1]["val_accuracy"])


def write_data(path, count, rng):
    with open(path, "w") as f:
        f.write(",".join(f"x{i}" for i in range(8)) + ",label\n")
        for _ in range(count):
            x = [rng.gauss(0, 1) for _ in range(8)]
            s = x[0] + x[1]
            f.write(",".join(f"{v:.6f}" for v in x) + f",{0 if s < -0.5 else 1 if s < 0.5 else 2}\n")


def worst_difference(one, got):
    """The largest difference of any value, relative to its tensor's largest
    value or to 0.01 if that is smaller: the bias of a linear layer before a
    batchnorm has a gradient of zero but for rounding, and stays near 1e-9."""
    if set(got) != set(one):
        return float("inf")
    return max(abs(a - b) / max(max(abs(v) for v in one[k]), 0.01)
               for k in one for a, b in zip(one[k], got[k]))


with tempfile.TemporaryDirectory() as tmp:
    rng = random.Random(5)
    write_data(os.path.join(tmp, "d.csv"), 1000, rng)
    write_data(os.path.join(tmp, "bn.csv"), BN_SAMPLES, rng)
    with open(os.path.join(tmp, "m.ini"), "w") as f:
        f.write(MODEL)
    for sync in ("true", "false"):
        with open(os.path.join(tmp, f"bn-{sync}.ini"), "w") as f:
            f.write(BN_MODEL.format(sync))
    one = train(tmp, 1)
    failed = False
    for ranks in (2, 3):
        worst = worst_difference(one, train(tmp, ranks))
        ok = worst < 1e-5
        failed |= not ok
        print(f"{'ok  ' if ok else 'FAIL'} {ranks} ranks against 1: worst relative difference "
              f"{worst:.3g}")
        # each rank scored its share of the validation split; the sums are one process's
        mine, single = last_validation(tmp, ranks), last_validation(tmp, 1)
        ok = (mine[1] == single[1] and abs(mine[0] - single[0]) <= 1e-5 * abs(single[0]))
        failed |= not ok
        print(f"{'ok  ' if ok else 'FAIL'} {ranks} ranks against 1, validation loss and "
              f"accuracy: {mine} against {single}")
    one = train(tmp, 1, "bn-true.ini", "bn.csv")
    if not any(k.endswith("running_var") for k in one):
        sys.exit(f"the batchnorm model's checkpoint has no running statistics: {sorted(one)}")
    for ranks in (2, 3):
        worst = worst_difference(one, train(tmp, ranks, "bn-true.ini", "bn.csv"))
        ok = worst < 1e-5
        failed |= not ok
        print(f"{'ok  ' if ok else 'FAIL'} sync_batchnorm, {ranks} ranks against 1 (weights and "
              f"running statistics): worst relative difference {worst:.3g}")
    # per-rank statistics (one sample per rank in the short batch would be refused)
    limit = ["--limit", str(BN_SAMPLES - 2)]
    worst = worst_difference(train(tmp, 1, "bn-false.ini", "bn.csv", limit),
                             train(tmp, 2, "bn-false.ini", "bn.csv", limit))
    ok = worst > 1e-3
    failed |= not ok
    print(f"{'ok  ' if ok else 'FAIL'} without sync_batchnorm, 2 ranks differ from 1: worst "
          f"relative difference {worst:.3g}")
    # kiln bench under mpirun: the distributed lines alone, from rank 0
    cmd = [MPIRUN, "--oversubscribe", "-np", "2", KILN, "bench", os.path.join(tmp, "m.ini")]
    if os.geteuid() == 0:
        cmd.insert(1, "--allow-run-as-root")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, POCL_MAX_PTHREAD_COUNT="1", KILN_BUCKET_KB="1"))
    lines = [line.strip() for line in r.stdout.splitlines() if line.strip()]
    ok = (r.returncode == 0 and lines.count("data parallelism over MPI, 2 ranks") == 1 and
          sum(line.startswith("allreduce ") for line in lines) == 7 and
          sum("of gradients alone" in line for line in lines) == 1 and "SGEMM" not in r.stdout)
    failed |= not ok
    print(f"{'ok  ' if ok else 'FAIL'} kiln bench under mpirun: {len(lines)} lines from rank 0, "
          f"exit status {r.returncode}")
    if not ok:
        print(r.stdout, r.stderr)
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
                               env=dict(os.environ, POCL_MAX_PTHREAD_COUNT="1", KILN_BUCKET_KB="1"))
            ok = r.returncode != 0 and expect in r.stdout + r.stderr
            why = f"exit status {r.returncode}"
        except subprocess.TimeoutExpired:
            ok, why = False, "hung for 120 s"
        failed |= not ok
        print(f"{'ok  ' if ok else 'FAIL'} {what}: {why}")
        if not ok and why != "hung for 120 s":
            print(r.stdout, r.stderr)
    sys.exit(1 if failed else 0)
