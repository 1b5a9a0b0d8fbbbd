#!/usr/bin/env python3
"""Writes Fashion-MNIST (Debian's dataset-fashion-mnist, or the IDX files
in --idx) as an image folder: OUT/train/CLASS/00000.png and OUT/val/CLASS/...,
one 8-bit gray PNG per image, class folders named as the dataset's labels.

usage: fashion_png.py OUT [--train N] [--val N] [--idx DIR]
(N: the first N images of each split; default all: 60,000 and 10,000).
Then: kiln train examples/fashion_cnn.ini --data OUT
Needs only Python's standard library (zlib writes the PNGs)."""
import argparse
import gzip
import os
import struct
import zlib

CLASSES = ["0-t-shirt", "1-trouser", "2-pullover", "3-dress", "4-coat", "5-sandal", "6-shirt",
           "7-sneaker", "8-bag", "9-ankle-boot"]


def png_gray(width, height, pixels):
    """An 8-bit grayscale PNG of rows of bytes."""
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
    raw = b"".join(b"\x00" + pixels[y * width:(y + 1) * width] for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def read_idx(path):
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        data = f.read()
    rank = data[3]
    dims = struct.unpack(">" + "I" * rank, data[4:4 + 4 * rank])
    return dims, data[4 + 4 * rank:]


def find(directory, stem):
    for name in (stem, stem + ".gz"):
        if os.path.exists(os.path.join(directory, name)):
            return os.path.join(directory, name)
    raise SystemExit(f"fashion_png: no {stem}[.gz] in {directory}")


def write_split(idx, prefix, out, limit):
    dims, images = read_idx(find(idx, prefix + "-images-idx3-ubyte"))
    _, labels = read_idx(find(idx, prefix + "-labels-idx1-ubyte"))
    n, h, w = dims
    n = min(n, limit) if limit else n
    for c in CLASSES:
        os.makedirs(os.path.join(out, c), exist_ok=True)
    for i in range(n):
        path = os.path.join(out, CLASSES[labels[i]], "%05d.png" % i)
        with open(path, "wb") as f:
            f.write(png_gray(w, h, images[i * h * w:(i + 1) * h * w]))
    return n


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--train", type=int, default=0)
    p.add_argument("--val", type=int, default=0)
    p.add_argument("--idx", default="/usr/share/datasets/fashion-mnist")
    a = p.parse_args()
    n = write_split(a.idx, "train", os.path.join(a.out, "train"), a.train)
    m = write_split(a.idx, "t10k", os.path.join(a.out, "val"), a.val)
    print(f"{a.out}: {n} training and {m} validation images")


if __name__ == "__main__":
    main()
