#!/usr/bin/env python3
"""kiln train, eval and predict on an image folder written here (PNGs of
three classes, gray, colour and 16-bit mixed), with augmentation, and the
errors for bad folders, bad files and bad keys. usage: check_images.py KILN

The images are made with zlib alone: each class is bright in a place of
its own, so a small CNN separates them."""
import csv
import io
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

KILN = sys.argv[1]
failures = []

MODEL = """[input]
shape = 1x8x8
[conv2d]
out = 4
size = 3
pad = 1
[relu]
[flatten]
[linear]
out = 3
[train]
optimizer = adam
lr = 0.02
batch = 16
epochs = 6
val = 0.2
seed = 5
resize = 8
random_crop = 8, 1
flip = horizontal
color_jitter = 0.2, 0.2
workers = 2
"""


def run(*args, timeout=300):
    return subprocess.run([KILN, *args], capture_output=True, text=True, timeout=timeout)


def check(name, ok, detail=""):
    print(("ok    " if ok else "FAIL  ") + name)
    if not ok:
        failures.append(name)
        print("      " + str(detail).replace("\n", "\n      "))


def png(width, height, rows, color=0, depth=8):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\x00" + row for row in rows)
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def value(c, k, x, y):
    """Class c is bright in its own third of the image (rows for 0, columns for 1,
    the diagonal for 2), with a little noise by image k."""
    on = (y < 3) if c == 0 else (x < 3) if c == 1 else abs(x - y) < 2
    return (210 if on else 30) + (k * 7 + x * 3 + y) % 20


def image(c, k, kind):
    """8 x 8 (kind 0), 10 x 12 RGB (kind 1: colour and resized) or 8 x 8 16-bit gray."""
    if kind == 1:
        rows = [bytes(v for x in range(10) for v in [value(c, k, x * 8 // 10, y * 8 // 12)] * 3)
                for y in range(12)]
        return png(10, 12, rows, color=2)
    if kind == 2:
        rows = [b"".join(struct.pack(">H", value(c, k, x, y) * 257) for x in range(8))
                for y in range(8)]
        return png(8, 8, rows, depth=16)
    return png(8, 8, [bytes(value(c, k, x, y) for x in range(8)) for y in range(8)])


def make_folder(root, per_class, names=("rows", "columns", "diagonal")):
    for c, name in enumerate(names):
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for k in range(per_class):
            with open(os.path.join(root, name, "%03d.png" % k), "wb") as f:
                f.write(image(c, k, k % 5 if k % 5 < 3 else 0))


def check_training(tmp):
    data = os.path.join(tmp, "shapes")
    make_folder(os.path.join(data, "train"), 40)
    make_folder(os.path.join(data, "val"), 10)
    model = os.path.join(tmp, "cnn.ini")
    with open(model, "w", encoding="ascii") as f:
        f.write(MODEL)
    out = os.path.join(tmp, "run")
    r = run("train", model, "--data", data, "--out", out)
    check("train on an image folder (train/ and val/)", r.returncode == 0
          and "training on 96 samples (24 held out" in r.stdout, r.stdout + r.stderr)
    acc = [line for line in r.stdout.splitlines() if line.startswith("test accuracy")]
    check("the held-out val/ folder is scored", bool(acc), r.stdout)
    if acc:
        check("and mostly right", float(acc[0].split()[2].rstrip("%")) >= 80, acc[0])
    ckpt = os.path.join(out, "final.safetensors")
    p = run("predict", model, ckpt, os.path.join(data, "val"), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(p.stdout)))
    check("predict on a folder: a row per image with its file and class name",
          p.returncode == 0 and len(rows) == 30
          and all(x["class_name"] in ("columns", "diagonal", "rows") for x in rows)
          and rows[0]["file"].endswith("val/columns/000.png"), p.stdout[:300] + p.stderr)
    right = sum(x["class_name"] == ["columns", "diagonal", "rows"][i // 10]
                for i, x in enumerate(rows))
    check("predicted names match the folders", right >= 24, right)
    one = run("predict", model, ckpt, os.path.join(data, "val", "rows", "000.png"), "-f", "text")
    check("predict on one PNG prints its file and class name", one.returncode == 0
          and one.stdout.startswith("sample 0 (" + os.path.join(data, "val", "rows", "000.png")
                                    + "): class 2 rows"), one.stdout + one.stderr)
    e = run("eval", model, ckpt, "--data", data)
    check("eval scores val/", e.returncode == 0 and "30" in e.stdout, e.stdout + e.stderr)
    cached = os.path.join(tmp, "cache.ini")
    with open(cached, "w", encoding="ascii") as f:
        f.write(MODEL + "cache = true\n")
    runs = [run("train", cached, "--data", data, "--out", os.path.join(tmp, "rc"), "--epochs", "1")
            for _ in range(2)]
    check("cache = true writes the decoded images beside the run and reads them back",
          all(x.returncode == 0 for x in runs)
          and os.path.exists(os.path.join(tmp, "rc", "images-train.cache"))
          and os.path.exists(os.path.join(tmp, "rc", "images-test.cache")),
          runs[-1].stderr + str(os.listdir(os.path.join(tmp, "rc"))))
    b = run("bench", "--help")
    check("bench offers --images", "--images DIR" in b.stdout, b.stdout)
    return data, model


def check_errors(tmp, data, model):
    bad = os.path.join(tmp, "bad")
    shutil.copytree(data, bad)
    broken = os.path.join(bad, "train", "rows", "broken.png")
    with open(broken, "wb") as f:
        f.write(image(0, 1, 0)[:60])
    r = run("train", model, "--data", bad, "--epochs", "1", "--out", os.path.join(tmp, "r2"))
    check("a truncated PNG is an error naming it", r.returncode != 0 and broken in r.stderr
          and "skip_bad" in r.stderr, r.stderr)
    skip = os.path.join(tmp, "skip.ini")
    with open(skip, "w", encoding="ascii") as f:
        f.write(MODEL + "skip_bad = true\n")
    r = run("train", skip, "--data", bad, "--epochs", "1", "--out", os.path.join(tmp, "r3"))
    check("skip_bad = true skips it and says so", r.returncode == 0
          and "skipped 1 bad image files" in r.stdout, r.stdout + r.stderr)
    empty = os.path.join(bad, "train", "empty")
    os.makedirs(empty)
    r = run("train", skip, "--data", bad, "--epochs", "1", "--out", os.path.join(tmp, "r4"))
    check("an empty class folder is an error naming it", r.returncode != 0
          and empty in r.stderr and "empty class folder" in r.stderr, r.stderr)
    nothing = os.path.join(tmp, "nothing")
    os.makedirs(nothing)
    r = run("train", model, "--data", nothing, "--epochs", "1", "--out", os.path.join(tmp, "r5"))
    check("a folder without classes is an error naming it", r.returncode != 0
          and nothing in r.stderr and "no class folders" in r.stderr, r.stderr)
    for key, words in (("flip = vertical", "horizontal or none"),
                       ("random_crop = 9", "random_crop = 9 makes 9 x 9 samples"),
                       ("color_jitter = 2", "ColorJitter"),
                       ("random_resized_crop = 0.5", "RandomResizedCrop")):
        path = os.path.join(tmp, "key.ini")
        with open(path, "w", encoding="ascii") as f:
            f.write(MODEL + key + "\n")
        r = run("train", path, "--data", data, "--epochs", "1", "--out", os.path.join(tmp, "r6"))
        check(f"[train] {key} is refused", r.returncode != 0 and words in r.stderr, r.stderr)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        data, model = check_training(tmp)
        check_errors(tmp, data, model)
    print(f"{len(failures)} failed" if failures else "all passed")
    sys.exit(1 if failures else 0)


main()
