#!/usr/bin/env python3
"""Faults in data-parallel training under mpirun: Ctrl-C stops every rank
after the same step with the state saved, and --resume (with another
number of ranks) ends with the weights of an uninterrupted run; a rank
killed mid-run ends the job within seconds, naming the rank.
usage: check_dist_faults.py KILN MPIRUN"""
import csv
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

import checks
from checks import report, weights

KILN, MPIRUN = sys.argv[1], sys.argv[2]
if "rusticl" in os.environ.get("KILN_DEVICE", "").lower():
    # the faults are MPI's; rusticl launches each kernel separately and makes
    # the hundreds of small steps this needs take ten minutes
    print("skipped on rusticl: run on PoCL, where the same faults take seconds")
    sys.exit(77)
MODEL = ("[input]\nshape = 8\n[linear]\nout = 64\n[relu]\n[linear]\nout = 3\n[train]\n"
         "optimizer = sgd\nlr = 0.05\nmomentum = 0.9\nbatch = 8\nepochs = 30\nval = 0.1\n"
         "schedule = constant\n")
ENV = dict(os.environ, POCL_MAX_PTHREAD_COUNT="1")


def mpirun(ranks, tmp, *args):
    cmd = [MPIRUN, "--oversubscribe", "-np", str(ranks), KILN, "train",
           os.path.join(tmp, "m.ini"), "--data", os.path.join(tmp, "d.csv"), *args]
    if os.geteuid() == 0:
        cmd.insert(1, "--allow-run-as-root")
    return cmd


def epochs_logged(out):
    try:
        with open(os.path.join(out, "log.csv"), encoding="ascii") as f:
            return len(f.readlines()) - 1
    except OSError:
        return 0


def interrupt_and_resume(tmp):
    whole = os.path.join(tmp, "whole")
    r = subprocess.run(mpirun(2, tmp, "--out", whole), capture_output=True, text=True,
                       timeout=300, env=ENV)
    if r.returncode != 0:
        sys.exit(f"the uninterrupted run failed:\n{r.stdout}\n{r.stderr}")
    part = os.path.join(tmp, "part")
    p = subprocess.Popen(mpirun(2, tmp, "--out", part), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, env=ENV)
    deadline = time.time() + 120
    while epochs_logged(part) < 2 and p.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    p.send_signal(signal.SIGINT)  # Ctrl-C in the terminal of mpirun
    try:
        p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        report(False, "Ctrl-C in mpirun: the job did not end within 60 s")
        return
    stopped_at = epochs_logged(part)
    report(2 <= stopped_at < 30, f"Ctrl-C in mpirun stopped the run after epoch {stopped_at}")
    with open(os.path.join(part, "last.state.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        meta = json.loads(f.read(n))["__metadata__"]
    report("step" in meta, f"the state was saved at step {meta.get('step')}")
    other = os.path.join(tmp, "part3")
    shutil.copytree(part, other)
    a = weights(os.path.join(whole, "final.safetensors"))
    # the same number of ranks sums in the same order: the same weights
    r = subprocess.run(mpirun(2, tmp, "--out", part, "--resume", part), capture_output=True,
                       text=True, timeout=300, env=ENV)
    report(r.returncode == 0, "--resume with 2 ranks after 2")
    if r.returncode == 0:
        b = weights(os.path.join(part, "final.safetensors"))
        worst = max(abs(x - y) / (max(abs(v) for v in a[k]) or 1)
                    for k in a for x, y in zip(a[k], b[k]))
        report(set(a) == set(b) and worst < 1e-6, "interrupted and resumed = uninterrupted: "
               f"worst relative difference {worst:.3g}")
    # another number sums in another order, so thousands of steps later the
    # weights differ by more than rounding: the run goes on where it stopped
    r = subprocess.run(mpirun(3, tmp, "--out", other, "--resume", other), capture_output=True,
                       text=True, timeout=300, env=ENV)
    report(r.returncode == 0, "--resume with 3 ranks after 2")
    if r.returncode != 0:
        print(r.stdout[-2000:], r.stderr[-2000:])
        return
    resumed, uninterrupted = read_log(other), read_log(whole)
    report([row["epoch"] for row in resumed] == [str(e) for e in range(1, 31)],
           "its log.csv holds every epoch once")
    got, want = float(resumed[-1]["val_accuracy"]), float(uninterrupted[-1]["val_accuracy"])
    report(abs(got - want) < 0.03, f"and ends at validation accuracy {got} against {want}")


def read_log(out):
    with open(os.path.join(out, "log.csv"), encoding="ascii") as f:
        return list(csv.DictReader(f))


def rank_pids(parent):
    """The kiln processes under mpirun, by MPI rank."""
    ranks = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0] == KILN.encode() and env.get(b"OMPI_COMM_WORLD_RANK") and \
                env.get(b"KILN_FAULT_TEST") == str(parent).encode():
            ranks[int(env[b"OMPI_COMM_WORLD_RANK"])] = int(pid)
    return ranks


def kill_a_rank(tmp):
    out = os.path.join(tmp, "killed")
    tag = str(os.getpid())
    p = subprocess.Popen(mpirun(2, tmp, "--out", out, "--epochs", "1000"),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env=dict(ENV, KILN_FAULT_TEST=tag))
    deadline = time.time() + 120
    while epochs_logged(out) < 1 and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    ranks = rank_pids(tag)
    if 1 not in ranks:
        p.kill()
        report(False, f"rank 1 not found among {ranks}")
        return
    os.kill(ranks[1], signal.SIGKILL)
    killed = time.time()
    try:
        text, _ = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        report(False, "killing rank 1: the job hung for 60 s")
        return
    took = time.time() - killed
    report(p.returncode != 0 and "rank 1" in text and took < 30,
           f"killing rank 1 ended the job in {took:.1f} s (exit {p.returncode}), naming rank 1")
    if "rank 1" not in text:
        print(text[-2000:])


with tempfile.TemporaryDirectory() as tmpdir:
    rng = random.Random(11)
    with open(os.path.join(tmpdir, "d.csv"), "w", encoding="ascii") as fd:
        fd.write(",".join(f"x{i}" for i in range(8)) + ",label\n")
        for _ in range(3000):
            x = [rng.gauss(0, 1) for _ in range(8)]
            s = x[0] + x[1] - x[2]
            fd.write(",".join(f"{v:.6f}" for v in x) +
                     f",{0 if s < -0.6 else 1 if s < 0.6 else 2}\n")
    with open(os.path.join(tmpdir, "m.ini"), "w", encoding="ascii") as fm:
        fm.write(MODEL)
    interrupt_and_resume(tmpdir)
    kill_a_rank(tmpdir)
sys.exit(1 if checks.failed else 0)
