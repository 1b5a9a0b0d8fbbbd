#!/usr/bin/env python3
"""Ranks that disagree never start, and no collective waits forever.

Under mpirun -np 2, each run with a timeout so that a hang fails the test:
- ranks given another --limit, --batch or model file (64 against 32 hidden
  units) fail together before the first step, naming rank 1, its value
  and rank 0's;
- a rank that stops answering (SIGSTOP) mid-run: with [train]
  dist_timeout = 3 the other rank gives up within seconds, naming the
  collective and rank 1, and the job ends;
- the same with a long KILN_DIST_TIMEOUT and SIGTERM to mpirun: the job
  ends within seconds all the same.
usage: check_dist_agree.py KILN MPIRUN"""
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

import checks
from checks import report

KILN, MPIRUN = sys.argv[1], sys.argv[2]
MODEL = ("[input]\nshape = 8\n[linear]\nout = {}\n[relu]\n[linear]\nout = 3\n[train]\n"
         "optimizer = sgd\nlr = 0.1\nbatch = 32\nepochs = 2\n{}")
ENV = dict(os.environ, POCL_MAX_PTHREAD_COUNT="1")


def command(tmp, a, b):
    """mpirun with rank 0 running `kiln train` with arguments a, rank 1 with b."""
    root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    train = [KILN, "train"]
    return ([MPIRUN] + root + ["--oversubscribe", "-np", "1"] + train + a + [":", "-np", "1"] +
            train + b)


def disagree(tmp, what, a, b, expect):
    common = ["--data", os.path.join(tmp, "d.csv"), "--out", os.path.join(tmp, "out")]
    try:
        r = subprocess.run(command(tmp, a + common, b + common), capture_output=True,
                           text=True, timeout=120, env=ENV)
    except subprocess.TimeoutExpired:
        report(False, f"{what}: the job hung for 120 s")
        return
    text = r.stdout + r.stderr
    said = all(f"kiln train: rank {k} of 2: the ranks disagree" in text for k in (0, 1))
    report(r.returncode != 0 and said and expect in text,
           f"{what}: both ranks refuse to start, saying \"{expect}\"", text)


def rank_pids(tag):
    """The kiln processes of the job tagged tag, by MPI rank."""
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
        if cmd and cmd[0] == KILN.encode() and env.get(b"KILN_FAULT_TEST") == tag.encode():
            ranks[int(env[b"OMPI_COMM_WORLD_RANK"])] = int(pid)
    return ranks


def stall(tmp, what, model, env, terminate, within, expect):
    """Stops rank 1 (SIGSTOP) after the first epoch; the job must end within
    `within` seconds of that (after SIGTERM to mpirun with terminate)."""
    out = os.path.join(tmp, "stall-" + str(len(os.listdir(tmp))))
    tag = f"{os.getpid()}-{what}"
    root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    cmd = [MPIRUN] + root + ["--oversubscribe", "-np", "2", KILN, "train",
                             os.path.join(tmp, model), "--data", os.path.join(tmp, "d.csv"),
                             "--out", out, "--epochs", "100000"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env=dict(ENV, KILN_FAULT_TEST=tag, **env))
    deadline = time.time() + 120
    while not os.path.exists(os.path.join(out, "log.csv")) and p.poll() is None and \
            time.time() < deadline:
        time.sleep(0.05)
    ranks = rank_pids(tag)
    if 1 not in ranks:
        p.kill()
        report(False, f"{what}: rank 1 not found among {ranks}", p.communicate()[0])
        return
    os.kill(ranks[1], signal.SIGSTOP)
    stopped = time.time()
    if terminate:
        time.sleep(0.5)
        p.send_signal(signal.SIGTERM)
    try:
        text, _ = p.communicate(timeout=within + 30)
    except subprocess.TimeoutExpired:
        os.kill(ranks[1], signal.SIGKILL)
        p.kill()
        report(False, f"{what}: the job hung for {within + 30} s", p.communicate()[0])
        return
    took = time.time() - stopped
    report(p.returncode != 0 and took < within and all(e in text for e in expect),
           f"{what}: the job ended in {took:.1f} s (exit {p.returncode})", text)


with tempfile.TemporaryDirectory() as tmpdir:
    rng = random.Random(5)
    with open(os.path.join(tmpdir, "d.csv"), "w", encoding="ascii") as f:
        f.write(",".join(f"x{i}" for i in range(8)) + ",label\n")
        for _ in range(600):
            x = [rng.gauss(0, 1) for _ in range(8)]
            s = x[0] + x[1]
            f.write(",".join(f"{v:.6f}" for v in x) +
                    f",{0 if s < -0.5 else 1 if s < 0.5 else 2}\n")
    for name, hidden, extra in (("m64.ini", 64, ""), ("m32.ini", 32, ""),
                                ("t3.ini", 64, "dist_timeout = 3\n")):
        with open(os.path.join(tmpdir, name), "w", encoding="ascii") as f:
            f.write(MODEL.format(hidden, extra))
    m64, m32 = os.path.join(tmpdir, "m64.ini"), os.path.join(tmpdir, "m32.ini")
    disagree(tmpdir, "another --limit", [m64, "--limit", "300"], [m64, "--limit", "200"],
             "rank 1 has limit = 200 where rank 0 has 300")
    disagree(tmpdir, "another --batch", [m64, "--batch", "8"], [m64, "--batch", "16"],
             "rank 1 has batch = 16 where rank 0 has 8")
    disagree(tmpdir, "another model file", [m64], [m32],
             "rank 1 has tensor 0.weight = 32x8 where rank 0 has 64x8")
    stall(tmpdir, "rank 1 stopped, dist_timeout = 3", "t3.ini", {}, False, 20,
          ["timed out after 3.", "rank 1 (on ", "did not answer", "rank 0 of 2 failed"])
    stall(tmpdir, "rank 1 stopped, KILN_DIST_TIMEOUT=600, SIGTERM", "m64.ini",
          {"KILN_DIST_TIMEOUT": "600"}, True, 20, [])
sys.exit(1 if checks.failed else 0)
