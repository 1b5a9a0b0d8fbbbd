#!/usr/bin/env python3
"""The kiln command's help, man page, --json training and predictions as
data. usage: check_cli.py KILN MAN_PAGE

Each case runs the command as a user or a script would and checks its
exit status and output.
"""
import csv
import io
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

KILN, MAN = sys.argv[1], sys.argv[2]
failures = []


def run(*args, timeout=300):
    return subprocess.run([KILN, *args], capture_output=True, text=True, timeout=timeout)


def check(name, ok, detail=""):
    print(("ok    " if ok else "FAIL  ") + name)
    if not ok:
        failures.append(name)
        print("      " + str(detail).replace("\n", "\n      "))


def commands():
    out = run("help").stdout
    block = out.split("commands:\n", 1)[1].split("\n\n", 1)[0]
    return [line.split()[0] for line in block.splitlines()]


def flags_of(help_text):
    """(flag, a value it takes or None) for every flag the help lists."""
    found = re.findall(r"^  --([a-z-]+)(?: (\S+))?", help_text, re.M)
    return [(name, arg.split("|")[0] if "|" in arg else "1" if arg else None)
            for name, arg in found if name != "help"]


def check_help():
    cmds = commands()
    check("help lists the commands", {"train", "predict", "help", "summary"} <= set(cmds), cmds)
    for cmd in cmds:
        a, b = run("help", cmd), run(cmd, "--help")
        check(f"help {cmd} = {cmd} --help", a.returncode == 0 and b.returncode == 0
              and a.stdout == b.stdout and a.stdout.startswith(f"usage: kiln {cmd}"),
              a.stdout[:200] + b.stdout[:200] + b.stderr)
        # every listed flag is one the command accepts: parsing stops at --help
        for flag, value in flags_of(a.stdout):
            r = run(cmd, f"--{flag}", *([value] if value else []), "--help")
            check(f"{cmd} accepts --{flag}", r.returncode == 0, r.stderr)
    train = run("help", "train").stdout
    for flag in ("data", "epochs", "batch", "lr", "out", "resume", "json", "device"):
        check(f"train's help explains --{flag}", f"--{flag}" in train)
    check("a default is shown", "(default: runs/latest)" in train.replace("\n", " ").replace(
        "  ", " ") or "runs/latest" in train, train)
    r = run("train", "--bogus")
    check("an unknown flag is a usage error naming it",
          r.returncode == 2 and "--bogus" in r.stderr and "kiln help train" in r.stderr, r.stderr)
    r = run("train", "m.ini", "--epochs")
    check("a flag without its value is a usage error",
          r.returncode == 2 and "--epochs needs a value" in r.stderr, r.stderr)
    r = run("help", "nosuch")
    check("help for an unknown command", r.returncode == 2 and "nosuch" in r.stderr, r.stderr)


def check_man():
    page = run("help", "--man").stdout
    with open(MAN, encoding="utf-8") as f:
        check("the built man page is kiln help --man", f.read() == page)
    check("the man page has its sections", all(s in page for s in (
        ".TH KILN 1", ".SH NAME", ".SH SYNOPSIS", ".SH COMMANDS", ".SH ENVIRONMENT")))
    for cmd in commands():
        check(f"the man page describes kiln {cmd}", f'.SS "kiln {cmd}' in page)
    check("the man page lists the flags", "\\fB\\-\\-epochs\\fR \\fIN\\fR" in page)
    if shutil.which("groff"):
        r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", MAN], capture_output=True,
                           text=True)
        check("groff renders the man page without a warning", r.returncode == 0 and not r.stderr,
              r.stderr)


def blobs(path, n, with_label=True, seed=1):
    """Three separable classes in 2-D, as CSV."""
    rng = random.Random(seed)
    centres = [(-2, 0), (2, 0), (0, 2.5)]
    with open(path, "w", encoding="ascii") as f:
        f.write("a,b,label\n" if with_label else "a,b\n")
        for i in range(n):
            c = i % 3
            x, y = centres[c][0] + rng.gauss(0, 0.4), centres[c][1] + rng.gauss(0, 0.4)
            f.write(f"{x:.6f},{y:.6f},{c}\n" if with_label else f"{x:.6f},{y:.6f}\n")


MODEL = """[input]
shape = 2
[linear]
out = 16
[relu]
[linear]
out = 3
[softmax]
[train]
loss = cross_entropy
optimizer = adam
lr = 0.02
batch = 32
epochs = 3
"""


def check_summary(tmp):
    bad = os.path.join(tmp, "bad.ini")
    with open(bad, "w", encoding="ascii") as f:
        f.write(MODEL.replace("lr = 0.02", "lr = fast"))
    r = run("summary", bad)
    check("summary checks [train]: a bad lr names the file and line",
          r.returncode == 1 and f"{bad}:12" in r.stderr and "lr" in r.stderr, r.stderr)
    with open(bad, "w", encoding="ascii") as f:
        f.write(MODEL.replace("optimizer = adam", "optimizer = adamx"))
    r = run("summary", bad)
    check("summary checks [train]: an unknown optimizer",
          r.returncode == 1 and f"{bad}:11" in r.stderr and "adamx" in r.stderr, r.stderr)
    r = run("train", bad, "--data", bad)
    check("train reports a bad [train] before it opens a device",
          r.returncode == 1 and "adamx" in r.stderr and "device:" not in r.stdout, r.stdout)


def check_train_json(tmp, model, data):
    out = os.path.join(tmp, "run")
    r = run("train", model, "--data", data, "--out", out, "--json")
    lines = r.stdout.splitlines()
    try:
        events = [json.loads(line) for line in lines]
    except ValueError as e:
        events = []
        check("every line of train --json is JSON", False, f"{e}: {r.stdout}")
    check("train --json succeeds", r.returncode == 0, r.stderr)
    epochs = [e for e in events if e.get("event") == "epoch"]
    check("one JSON object per epoch", [e["epoch"] for e in epochs] == [1, 2, 3], r.stdout)
    check("epochs carry the losses", all(math.isfinite(e["loss"]) and
                                         math.isfinite(e["val_loss"]) for e in epochs), epochs)
    check("the last line is the result", events and events[-1].get("event") == "result"
          and events[-1]["epochs_run"] == 3 and events[-1]["out"] == out, events[-1:])
    check("the human lines go to stderr", "device:" in r.stderr and "best epoch" in r.stderr,
          r.stderr)
    return os.path.join(out, "best.safetensors")


def read_csv(text):
    return list(csv.DictReader(io.StringIO(text)))


def write_npy(path, rows, dtype="<f4"):
    """A C-order .npy file of rows (version 1.0), written without numpy."""
    import struct
    shape = f"({len(rows)}, {len(rows[0])})" if isinstance(rows[0], list) else f"({len(rows)},)"
    header = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {shape}, }}"
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    flat = [v for r in rows for v in r] if isinstance(rows[0], list) else rows
    code = {"<f4": "f", "<i8": "q"}[dtype]
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
        f.write(struct.pack(f"<{len(flat)}{code}", *flat))


def check_numpy(tmp, model, labelled, ckpt, csv_text):
    rows = read_csv(open(labelled, encoding="ascii").read())
    x = [[float(r["a"]), float(r["b"])] for r in rows]
    y = [int(r["label"]) for r in rows]
    xs, ys = os.path.join(tmp, "x.npy"), os.path.join(tmp, "y.npy")
    write_npy(xs, x)
    write_npy(ys, y, "<i8")
    r = run("predict", model, ckpt, xs, "--format", "csv")
    check("predict on a .npy gives what it gives on the CSV", r.returncode == 0
          and r.stdout == csv_text, r.stderr)
    r = run("train", model, "--data", xs, "--label", ys, "--epochs", "1", "--out",
            os.path.join(tmp, "npy-run"), "--json")
    lines = [json.loads(line) for line in r.stdout.splitlines()] if r.returncode == 0 else []
    check("train --data x.npy --label y.npy", lines and lines[-1]["event"] == "result", r.stderr)


def check_predict(tmp, model, data, ckpt):
    n = 61
    labelled = os.path.join(tmp, "labelled.csv")
    unlabelled = os.path.join(tmp, "unlabelled.csv")
    blobs(labelled, n, True, seed=7)
    blobs(unlabelled, n, False, seed=7)
    r = run("predict", model, ckpt, labelled, "--format", "csv")
    rows = read_csv(r.stdout)
    check("predict --format csv: a row per sample, all of them", r.returncode == 0
          and len(rows) == n and [int(x["sample"]) for x in rows] == list(range(n)), r.stderr)
    check("predict: the device line is not in the data", "device:" not in r.stdout)
    if rows:
        probs = [[float(x[f"p_{j}"]) for j in range(3)] for x in rows]
        check("csv probabilities sum to 1", all(abs(sum(p) - 1) < 1e-5 for p in probs))
        check("csv class is the most probable", all(int(x["class"]) == max(range(3),
              key=lambda j: p[j]) for x, p in zip(rows, probs)))
        check("csv has full precision", any(len(x["p_0"].split(".")[-1]) > 5 for x in rows),
              rows[0])
        right = sum(int(x["class"]) == i % 3 for i, x in enumerate(rows))
        check("the predictions are right on separable data", right >= 0.9 * n, right)
    check_numpy(tmp, model, labelled, ckpt, r.stdout)
    u = run("predict", model, ckpt, unlabelled, "--format", "csv")
    check("a CSV without a label column predicts the same", u.returncode == 0
          and u.stdout == r.stdout, u.stderr)
    j = run("predict", model, ckpt, labelled, "--format", "json", "--count", "5")
    try:
        doc = json.loads(j.stdout)
    except ValueError:
        doc = None
    check("predict --format json: one object per sample", isinstance(doc, list)
          and len(doc) == 5 and all(len(o["probabilities"]) == 3 for o in doc), j.stdout[:300])
    t = run("predict", model, ckpt, labelled, "--format", "text", "--count", "3")
    check("predict --format text", t.returncode == 0 and t.stdout.startswith("sample 0: class")
          and len(t.stdout.splitlines()) == 3, t.stdout)
    target = os.path.join(tmp, "p.json")
    o = run("predict", model, ckpt, labelled, "--out", target)
    ok = o.returncode == 0 and os.path.exists(target)
    if ok:
        with open(target, encoding="ascii") as f:
            ok = len(json.load(f)) == n
    check("--out FILE.json writes JSON", ok, o.stderr)
    check("--out leaves no temporary file", os.listdir(tmp).count("p.json.tmp") == 0)
    bad = run("predict", model, ckpt, labelled, "--out", os.path.join(tmp, "no", "p.csv"))
    check("--out into a missing directory fails and names it",
          bad.returncode == 1 and "no/p.csv" in bad.stderr, bad.stderr)
    f = run("predict", model, ckpt, labelled, "--format", "yaml")
    check("an unknown format is refused", f.returncode == 2 and "yaml" in f.stderr, f.stderr)
    wide = os.path.join(tmp, "wide.csv")
    with open(wide, "w", encoding="ascii") as fw:
        fw.write("a,b,c,d\n1,2,3,4\n")
    w = run("predict", model, ckpt, wide, "--format", "csv")
    check("an input of the wrong width names the file and both widths",
          w.returncode == 1 and "wide.csv" in w.stderr and "4" in w.stderr and "2" in w.stderr,
          w.stderr)


def main():
    check_help()
    check_man()
    with tempfile.TemporaryDirectory() as tmp:
        check_summary(tmp)
        model = os.path.join(tmp, "blobs.ini")
        with open(model, "w", encoding="ascii") as f:
            f.write(MODEL)
        data = os.path.join(tmp, "blobs.csv")
        blobs(data, 300, True)
        ckpt = check_train_json(tmp, model, data)
        if os.path.exists(ckpt):
            check_predict(tmp, model, data, ckpt)
    print(f"{len(failures)} failed" if failures else "all passed")
    sys.exit(1 if failures else 0)


main()
