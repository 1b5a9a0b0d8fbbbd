#!/usr/bin/env python3
"""Faults met through the command: full disks, damaged training states,
CSV files as other tools write them, and bad labels. usage:
check_faults.py KILN SOURCE_DIR

Each case runs kiln and checks its exit status and what it says.
"""
import os
import random
import subprocess
import sys
import tempfile

KILN, SOURCE = sys.argv[1], sys.argv[2]
PERCEPTRON = os.path.join(SOURCE, "examples", "perceptron.ini")
failures = []


def run(*args, timeout=120):
    return subprocess.run([KILN, *args], capture_output=True, text=True, timeout=timeout)


def check(name, ok, detail=""):
    print(("ok    " if ok else "FAIL  ") + name)
    if not ok:
        failures.append(name)
        print("      " + str(detail).replace("\n", "\n      "))


def write_csv(path, rows, header="x0,x1,label"):
    with open(path, "w", encoding="ascii") as f:
        f.write(header + "\n")
        for r in rows:
            f.write(",".join(str(v) for v in r) + "\n")


def samples(n, seed=1):
    g = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = g.uniform(-1, 1), g.uniform(-1, 1)
        out.append((round(a, 4), round(b, 4), int(a + b > 0)))
    return out


def full_disk(tmp, good, ckpt):
    r = run("predict", PERCEPTRON, ckpt, good, "--out", "/dev/full")
    check("predict --out /dev/full names the path and the reason", r.returncode == 1 and
          "/dev/full: cannot write (No space left on device)" in r.stderr, r.stderr)
    check("predict --out /dev/full prints no empty error line",
          not any(l.strip() == "kiln predict:" for l in r.stderr.splitlines()), r.stderr)
    small = os.path.join(tmp, "small")
    os.mkdir(small)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs",
                                            small], capture_output=True).returncode != 0:
        print("skip  a full tmpfs (needs root and mount)")
        return
    try:
        with open(os.path.join(small, "filler"), "wb") as f:
            try:
                f.write(b"\0" * 65536)
            except OSError:
                pass
        r = run("train", PERCEPTRON, "--data", good, "--epochs", "2", "--out",
                os.path.join(small, "run"))
        check("train on a full disk names the file and the reason", r.returncode == 1 and
              os.path.join(small, "run") in r.stderr and "No space left on device" in r.stderr,
              r.stderr)
        out = os.path.join(small, "p.csv")
        r = run("predict", PERCEPTRON, ckpt, good, "--out", out)
        check("predict --out on a full disk names the file and the reason",
              r.returncode == 1 and f"{out}: cannot write (No space left on device)" in r.stderr,
              r.stderr)
        check("predict --out on a full disk leaves no file",
              not [f for f in os.listdir(small) if f.startswith("p.csv")], os.listdir(small))
    finally:
        subprocess.run(["umount", small], capture_output=True)


CE_MODEL = "[input]\nshape = 2\n[linear]\nout = 3\n[train]\nepochs = 2\nbatch = 16\nseed = 3\n"


def summary_line(r):
    return [l for l in r.stdout.splitlines() + r.stderr.splitlines() if l.startswith("best epoch")]


def quoted_csv(tmp, good_rows):
    """CSV as pandas (quoting=QUOTE_ALL), R and Excel write it: quoted
    fields, "" for a quote, commas and a line break inside a header."""
    model = os.path.join(tmp, "ce.ini")
    with open(model, "w", encoding="ascii") as f:
        f.write(CE_MODEL)
    plain, quoted = os.path.join(tmp, "plain.csv"), os.path.join(tmp, "quoted.csv")
    write_csv(plain, good_rows)
    with open(quoted, "w", encoding="ascii") as f:
        f.write('"x ""zero""","x, one\nsecond line","label"\r\n')
        for a, b, c in good_rows:
            f.write(f'"{a}", "{b}" ,"{c}"\r\n')
    r1 = run("train", model, "--data", plain, "--out", os.path.join(tmp, "plain"))
    r2 = run("train", model, "--data", quoted, "--out", os.path.join(tmp, "quoted"))
    check("a CSV with quoted fields trains as the same file unquoted",
          r1.returncode == 0 and r2.returncode == 0 and summary_line(r1) and
          summary_line(r1)[0].split(";")[0] == summary_line(r2)[0].split(";")[0],
          r1.stderr + r2.stderr)
    tiny = os.path.join(tmp, "tiny.csv")
    rows = [list(r) for r in good_rows]
    rows[5][1] = "1e-320"
    write_csv(tiny, rows)
    r = run("train", model, "--data", tiny, "--epochs", "1", "--out", os.path.join(tmp, "tiny"))
    check("a value that underflows (1e-320) reads as 0", r.returncode == 0, r.stderr)
    bad = os.path.join(tmp, "bad.csv")
    with open(bad, "w", encoding="ascii") as f:
        f.write('"x0","x1, with a comma\nand a line break",label\n\n')  # and a blank line
        for i, (a, b, c) in enumerate(good_rows):
            f.write(f"{a},{b},{5 if i == 40 else c}\n")
    for seed in ("3", "4"):
        with open(model, "w", encoding="ascii") as f:
            f.write(CE_MODEL.replace("seed = 3", "seed = " + seed))
        r = run("train", model, "--data", bad, "--out", os.path.join(tmp, "bad"))
        check(f"a bad training label is named by file and line (seed {seed})",
              r.returncode == 1 and f"{bad}:44: label is 5; cross_entropy needs class indices "
              "0 to 2" in r.stderr, r.stderr)


with tempfile.TemporaryDirectory() as tmp:
    good = os.path.join(tmp, "good.csv")
    write_csv(good, samples(200))
    first = os.path.join(tmp, "first")
    r = run("train", PERCEPTRON, "--data", good, "--epochs", "2", "--out", first)
    check("a short run trains", r.returncode == 0, r.stderr)
    ckpt = os.path.join(first, "best.safetensors")
    full_disk(tmp, good, ckpt)
    quoted_csv(tmp, samples(200))

print(f"faults: {len(failures)} of the cases failed" if failures else "faults: every case holds")
sys.exit(1 if failures else 0)
