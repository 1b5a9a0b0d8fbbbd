#!/usr/bin/env python3
"""Probes `kiln` as a hostile or unlucky user would; each case failed
before it was fixed. usage: probe.py KILN SOURCE_DIR

Every case runs the command and checks its exit status and what it says.
"""
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time

KILN, SOURCE = sys.argv[1], sys.argv[2]
PERCEPTRON = os.path.join(SOURCE, "examples", "perceptron.ini")
failures = []


def run(*args, stdin=None, timeout=120, **kw):
    return subprocess.run([KILN, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=stdin, **kw)


def check(name, ok, detail=""):
    print(("ok    " if ok else "FAIL  ") + name)
    if not ok:
        failures.append(name)
        print("      " + detail.replace("\n", "\n      "))


def csv(path, rows, header="x0,x1,label"):
    with open(path, "w", encoding="ascii") as f:
        f.write(header + "\n")
        for r in rows:
            f.write(",".join(str(v) for v in r) + "\n")


def idx(path, magic_type, dims, data):
    with open(path, "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, magic_type, len(dims)))
        for d in dims:
            f.write(struct.pack(">I", d))
        f.write(bytes(data))


with tempfile.TemporaryDirectory() as tmp:
    rows = [((i % 7) / 7 - 0.5, (i % 5) / 5 - 0.5, int((i % 7) / 7 + 2 * ((i % 5) / 5) > 1.3))
            for i in range(200)]
    good = os.path.join(tmp, "good.csv")
    csv(good, rows)

    # 1. a test label beyond the model's outputs
    d = os.path.join(tmp, "idx")
    os.mkdir(d)
    for split, n, labels in (("train", 30, [i % 3 for i in range(30)]), ("t10k", 5, [0, 1, 200, 2, 1])):
        idx(os.path.join(d, split + "-images-idx3-ubyte"), 8, (n, 2, 2), [i % 251 for i in range(n * 4)])
        idx(os.path.join(d, split + "-labels-idx1-ubyte"), 8, (n,), labels)
    model3 = os.path.join(tmp, "three.ini")
    with open(model3, "w", encoding="ascii") as f:
        f.write("[input]\nshape = 4\n[linear]\nout = 3\n[train]\nbatch = 4\nepochs = 1\n")
    r = run("train", model3, "--data", d, "--out", os.path.join(tmp, "r1"))
    check("test labels outside the classes are refused", r.returncode == 1 and
          "label of sample 2 is 200" in r.stderr, r.stderr)

    # 2. a CSV value beyond float range
    big = os.path.join(tmp, "big.csv")
    csv(big, rows[:5] + [(0.1, "4e38", 1)] + rows[5:10])
    r = run("train", PERCEPTRON, "--data", big, "--out", os.path.join(tmp, "r2"))
    check("a value beyond float32 names file, line and column", r.returncode == 1 and
          "big.csv:7: column 2 is 4e38" in r.stderr, r.stderr)

    # 3. a closed stdout does not kill training; SIGTERM saves a resumable state
    out3 = os.path.join(tmp, "r3")
    p = subprocess.Popen(f"'{KILN}' train '{PERCEPTRON}' --data '{good}' --epochs 40 "
                         f"--out '{out3}' | head -1", shell=True, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    _, err = p.communicate(timeout=120)
    check("kiln train | head -1 trains to the end and saves",
          os.path.exists(os.path.join(out3, "final.safetensors")) and
          "training goes on without console output" in err, err)
    out3b = os.path.join(tmp, "r3b")
    p = subprocess.Popen([KILN, "train", PERCEPTRON, "--data", good, "--epochs", "100000",
                          "--out", out3b], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(600):
        time.sleep(0.1)
        if os.path.exists(os.path.join(out3b, "last.state.safetensors")):
            break
    p.send_signal(signal.SIGTERM)
    o, e = p.communicate(timeout=60)
    check("SIGTERM stops after the batch and saves the state", p.returncode == 130 and
          "resume with --resume" in o, o + e)

    # 4. mse with three outputs and one target per sample
    model_mse = os.path.join(tmp, "mse.ini")
    with open(model_mse, "w", encoding="ascii") as f:
        f.write("[input]\nshape = 2\n[linear]\nout = 3\n[train]\nloss = mse\nepochs = 1\n")
    r = run("train", model_mse, "--data", good, "--out", os.path.join(tmp, "r4"))
    check("mse with 3 outputs and 1 target is refused", r.returncode == 1 and
          "1 target per sample, but mse compares them with the model's 3 outputs" in r.stderr,
          r.stderr)

    # 5. eval scores the whole file with the checkpoint's normalization
    r = run("eval", PERCEPTRON, os.path.join(out3, "final.safetensors"), "--data", good)
    check("eval scores every row of a CSV", r.returncode == 0 and "200 samples" in r.stdout,
          r.stdout + r.stderr)
    empty = os.path.join(tmp, "empty.csv")
    csv(empty, [])
    r = run("eval", PERCEPTRON, os.path.join(out3, "final.safetensors"), "--data", empty)
    check("eval of no samples is an error", r.returncode == 1, r.stdout + r.stderr)

    # 6. two runs into one output directory
    out6 = os.path.join(tmp, "r6")
    p = subprocess.Popen([KILN, "train", PERCEPTRON, "--data", good, "--epochs", "100000",
                          "--out", out6], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        time.sleep(0.1)
        if os.path.exists(os.path.join(out6, "log.csv")):
            break
    r = run("train", PERCEPTRON, "--data", good, "--out", out6)
    p.send_signal(signal.SIGINT)
    p.wait(timeout=60)
    check("a second run into a directory in use is refused", r.returncode == 1 and
          f"in use by another training run (process {p.pid})" in r.stderr, r.stderr)

    # 7. write errors
    with open("/dev/full", "w") as full:
        r = subprocess.run([KILN, "devices"], stdout=full, stderr=subprocess.PIPE, text=True)
    check("kiln devices > /dev/full fails", r.returncode == 1 and "No space left" in r.stderr,
          r.stderr)
    r = run("train", PERCEPTRON, "--data", good, "--profile", "/nonexistent/trace.json",
            "--out", os.path.join(tmp, "r7"))
    check("an unwritable --profile fails before training", r.returncode == 1 and
          "epoch" not in r.stdout, r.stdout + r.stderr)

    # 9. a CSV that never ends
    endless = os.path.join(tmp, "endless.csv")
    os.symlink("/dev/zero", endless)
    r = run("train", PERCEPTRON, "--data", endless, "--out", os.path.join(tmp, "r9"), timeout=30)
    check("/dev/zero as a CSV is refused at once", r.returncode == 1 and
          "not a regular file" in r.stderr, r.stderr)

    # 8. a batch too large for the device names the sizes and a batch that fits
    r = run("train", os.path.join(SOURCE, "examples", "fashion_cnn.ini"), "--batch", "60000",
            "--limit", "100", "--out", os.path.join(tmp, "r8"))
    check("a batch larger than the device can hold suggests one that fits",
          r.returncode == 1 and "try --batch" in r.stderr, r.stderr)

    # 8b. "no driver" and "the drivers failed to start" are told apart
    empty, broken = os.path.join(tmp, "no-icd"), os.path.join(tmp, "bad-icd")
    os.mkdir(empty)
    os.mkdir(broken)
    with open(os.path.join(broken, "gone.icd"), "w") as f:
        f.write("/nonexistent/libOpenCL-driver.so\n")
    r1 = run("devices", env=dict(os.environ, OCL_ICD_VENDORS=empty))
    r2 = run("devices", env=dict(os.environ, OCL_ICD_VENDORS=broken))
    check("no driver and a driver that fails to start get different messages",
          r1.returncode == 1 and "no OpenCL driver is installed" in r1.stderr and
          r2.returncode == 1 and "installed (gone.icd) but none of them started" in r2.stderr,
          r1.stderr + r2.stderr)

    # 9b. a FIFO where a kernel cache file belongs does not hang
    cache = os.path.join(tmp, "cache")
    env = dict(os.environ, KILN_CACHE_DIR=cache)
    once = ["train", PERCEPTRON, "--data", good, "--epochs", "1", "--out",
            os.path.join(tmp, "r9b")]
    run(*once, env=env)  # fills the cache with the programs of kiln's kernels
    os.makedirs(cache, exist_ok=True)
    fifos = 0
    for name in os.listdir(cache):
        path = os.path.join(cache, name)
        if os.path.isfile(path) and name.endswith(".bin"):
            os.unlink(path)
            os.mkfifo(path)
            fifos += 1
    r = run(*once, env=env, timeout=300)
    check(f"FIFOs in the kernel cache ({fifos}) are skipped, not waited on", r.returncode == 0,
          r.stdout + r.stderr)

    # 10. smaller ones
    r = run("train", PERCEPTRON, "--data", good, "--epochs", "1.9")
    check("--epochs 1.9 is refused", r.returncode == 2 and "whole number" in r.stderr, r.stderr)
    bom = os.path.join(tmp, "bom.csv")
    with open(bom, "w", encoding="utf-8-sig") as f:
        f.write("label,x0,x1\n" + "".join(f"{c},{a},{b}\n" for a, b, c in rows))
    r = run("train", PERCEPTRON, "--data", bom, "--epochs", "1", "--out", os.path.join(tmp, "r10"))
    check("a UTF-8 byte order mark does not hide the label column", r.returncode == 0, r.stderr)
    stale = os.path.join(tmp, "r10", "best.safetensors.tmp.Ab12Cd")
    open(stale, "w").close()
    r = run("train", PERCEPTRON, "--data", bom, "--epochs", "1", "--out", os.path.join(tmp, "r10"))
    check("temporary files of a killed run are removed", r.returncode == 0 and
          not os.path.exists(stale), r.stderr)

print(f"probe: {len(failures)} of the cases failed" if failures else "probe: every case holds")
sys.exit(1 if failures else 0)
