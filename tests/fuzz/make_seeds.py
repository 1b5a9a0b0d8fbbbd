#!/usr/bin/env python3
"""Writes the seed corpus of each fuzz harness into tests/fuzz/corpus/.
Run from the repository root; the seeds are small valid and near-valid
inputs, the fuzzers' starting points."""
import gzip
import io
import json
import os
import shutil
import base64
import struct
import zipfile
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def write(target, name, data):
    os.makedirs(os.path.join(ROOT, target), exist_ok=True)
    with open(os.path.join(ROOT, target, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def idx(dtype, dims, payload):
    return struct.pack(">HBB", 0, dtype, len(dims)) + b"".join(struct.pack(">I", d) for d in dims) + payload


def idx_pair(images, labels):
    return struct.pack(">H", len(images)) + images + labels


def models():
    for name in ("robust_mlp.ini", "fashion_mlp.ini", "fashion_cnn.ini", "seed_loop.ini"):
        shutil.copy(os.path.join("examples", name), os.path.join(ROOT, "model", name))
    write("model", "residual.ini", "[input]\nshape = 8\n[linear]\nname = a\nout = 8\n[relu]\n"
          "[add]\nfrom = a, input\n[concat]\nfrom = a, input\n[layernorm]\n[gelu]\n[softmax]\n")
    write("model", "pools.ini", "[input]\nshape = 3x9x9\n[conv2d]\nout = 4\nsize = 3\nstride = 2\n"
          "pad = 1\n[avgpool]\nsize = 2\n[batchnorm]\n[leaky_relu]\nslope = 0.1\n[maxpool]\n"
          "size = 2\n[flatten]\n[dropout]\np = 0.5\n[linear]\nout = 3\n[sigmoid]\n")


def idx_seeds():
    pixels = bytes(range(2 * 3 * 3))
    images = idx(0x08, [2, 3, 3], pixels)
    labels = idx(0x08, [2], bytes([1, 7]))
    write("idx", "pair", idx_pair(images, labels))
    write("idx", "pair-gz", idx_pair(gzip.compress(images, mtime=0), gzip.compress(labels, mtime=0)))
    write("idx", "float", idx_pair(idx(0x0D, [1, 2], struct.pack(">ff", 0.5, -1.0)),
                                   idx(0x08, [1], b"\x00")))
    write("idx", "truncated", idx_pair(images[:-3], labels))


def csv_seeds():
    write("csv", "header", b"\x01a,b,label\n1,2,0\n3.5,-4e2,1\n")
    write("csv", "index", b"\x020.1,0.2,3\n0.4,0.5,6\n")
    write("csv", "regression", b"\x01x,y\n1,0.5\n2,1.5\n")
    write("csv", "quoted", b"\x01\"a\",b,label\n1,,0\n\n")


def npy(descr, shape, payload, version=1):
    text = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape)
    start = 10 if version == 1 else 12
    text += " " * (-(start + len(text) + 1) % 64) + "\n"
    size = struct.pack("<H" if version == 1 else "<I", len(text))
    return b"\x93NUMPY" + bytes([version, 0]) + size + text.encode() + payload


def npy_seeds():
    x = npy("<f4", "(2, 3)", struct.pack("<6f", 0.5, -1, 2, 3, 4, 5))
    y = npy("<i8", "(2,)", struct.pack("<2q", 1, 0))
    write("npy", "pair", struct.pack(">H", len(x)) + x + y)
    write("npy", "v2-u1", struct.pack(">H", 0) + npy("|u1", "(2, 2)", bytes(4), 2) +
          npy("<f8", "(2, 2)", struct.pack("<4d", 0.5, 1, 2, 3), 3))
    write("npy", "truncated", struct.pack(">H", len(x)) + x[:-5] + y)
    members = io.BytesIO()
    with zipfile.ZipFile(members, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in (("x", x), ("y", y), ("x_test", x), ("y_test", y)):
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            z.writestr(info, data, zipfile.ZIP_DEFLATED if name[0] == "x" else zipfile.ZIP_STORED)
    write("npy", "npz", members.getvalue())
    write("csv", "unlabelled", b"\x09a,b\n1,2\n3,4\n")


def safetensors_seed():
    shapes = [("0.weight", [4, 3]), ("0.bias", [4]), ("1.weight", [4]), ("1.bias", [4]),
              ("1.running_mean", [4]), ("1.running_var", [4])]
    header, body = {}, b""
    for name, shape in shapes:
        n = 1
        for d in shape:
            n *= d
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(body), len(body) + 4 * n]}
        body += struct.pack("<%df" % n, *([0.25] * n))
    header["1.num_batches_tracked"] = {"dtype": "I64", "shape": [], "data_offsets": [len(body), len(body) + 8]}
    body += struct.pack("<q", 3)
    header["__metadata__"] = {"epoch": "1"}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    write("safetensors", "small", struct.pack("<Q", len(text)) + text + body)
    write("safetensors", "short", struct.pack("<Q", 1 << 40) + b"{}")


def png(width, height, depth, color, rows, interlace=0, extra=b""):
    """A PNG of the given IHDR fields; rows are the filtered scanlines."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, interlace)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra +
            chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def png_seeds():
    write("png", "gray8", png(3, 2, 8, 0, b"\x00\x01\x02\x03\x01\x10\x20\x30"))
    write("png", "rgb16", png(2, 1, 16, 2, b"\x00" + bytes(range(12))))
    write("png", "rgba8", png(2, 2, 8, 6, b"\x02" + bytes(8) + b"\x04" + bytes(range(8))))
    plte = struct.pack(">I", 6) + b"PLTE" + b"\x0a\x14\x1e\xc8\x64\x32"
    plte += struct.pack(">I", zlib.crc32(b"PLTE\x0a\x14\x1e\xc8\x64\x32"))
    write("png", "palette1", png(4, 1, 1, 3, b"\x00\x50", extra=plte))
    write("png", "gray1-interlaced", png(5, 5, 1, 0, bytes(22), interlace=1))  # 7 passes
    write("png", "truncated", png(3, 2, 8, 0, b"\x00\x01\x02\x03\x01\x10\x20\x30")[:-20])


# Small JPEGs written by libjpeg-turbo 2.1 (quality 50): an 8 x 8 gray
# baseline, a 16 x 8 colour baseline (4:2:0) and a 9 x 7 progressive one.
JPEGS = {
    "gray": (
        "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDABALDA4MChAODQ4SERATGCgaGBYWGDEjJR0oOjM9PDkzODdASFxOQERX"
        "RTc4UG1RV19iZ2hnPk1xeXBkeFxlZ2P/wAALCAAIAAgBAREA/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcI"
        "CQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcY"
        "GRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKj"
        "pKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/9oACAEBAAA/AIbJ"
        "EsfDFy7qpMsfkqpbGS/y8euASce1f//Z"),
    "rgb": (
        "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDABALDA4MChAODQ4SERATGCgaGBYWGDEjJR0oOjM9PDkzODdASFxOQERX"
        "RTc4UG1RV19iZ2hnPk1xeXBkeFxlZ2P/2wBDARESEhgVGC8aGi9jQjhCY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2Nj"
        "Y2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2P/wAARCAAIABADASIAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAA"
        "AAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAk"
        "M2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKT"
        "lJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QA"
        "HwEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdh"
        "cRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hp"
        "anN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk"
        "5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwCJVWK3MLBQpixnqSfKAH6vj8qsRgG6aF24MnyqF6nzv8I/0ooo"
        "m7artf56Avegr9b/AIbH/9k="),
    "progressive": (
        "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDABALDA4MChAODQ4SERATGCgaGBYWGDEjJR0oOjM9PDkzODdASFxOQERX"
        "RTc4UG1RV19iZ2hnPk1xeXBkeFxlZ2P/2wBDARESEhgVGC8aGi9jQjhCY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2Nj"
        "Y2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2P/wgARCAAHAAkDASIAAhEBAxEB/8QAFgABAQEAAAAAAAAAAAAAAAAA"
        "AAIF/8QAFQEBAQAAAAAAAAAAAAAAAAAAAQP/2gAMAwEAAhADEAAAAY0CJ//EABgQAAIDAAAAAAAAAAAAAAAAAAAB"
        "AhIx/9oACAEBAAEFAsjVH//EABYRAQEBAAAAAAAAAAAAAAAAAAERAP/aAAgBAwEBPwGUHf/EABcRAAMBAAAAAAAA"
        "AAAAAAAAAAABAyH/2gAIAQIBAT8BvVyeH//EABcQAAMBAAAAAAAAAAAAAAAAABARYcH/2gAIAQEABj8CUwf/xAAY"
        "EAACAwAAAAAAAAAAAAAAAAABERCx8P/aAAgBAQABPyEBhJZuD//aAAwDAQACAAMAAAAQj//EABcRAQADAAAAAAAA"
        "AAAAAAAAAAEAMdH/2gAIAQMBAT8QSpeT/8QAGREAAQUAAAAAAAAAAAAAAAAAAQARIVGB/9oACAECAQE/EAxom8X/"
        "xAAZEAEAAgMAAAAAAAAAAAAAAAABABExYZH/2gAIAQEAAT8QA0GC8t0Cd5yf/9k="),
}


def jpeg_seeds():
    for name, text in JPEGS.items():
        data = base64.b64decode("".join(text))
        write("jpeg", name, data)
    write("jpeg", "truncated", base64.b64decode("".join(JPEGS["rgb"]))[:300])


if __name__ == "__main__":
    models()
    idx_seeds()
    csv_seeds()
    npy_seeds()
    safetensors_seed()
    png_seeds()
    jpeg_seeds()
