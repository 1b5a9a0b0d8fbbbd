#!/usr/bin/env python3
"""A character-level GPT from the command line, as a user runs it: kiln train
on a text by steps (a log row and curves.svg by step, --json events), Ctrl-C
saving a state that --resume finishes, kiln eval over the validation split,
kiln generate streaming text that the same seed repeats, and every bad input
refused with exit status 1 or 2 and a message that names it: non-UTF-8 bytes
(with the offset), an empty or too short corpus, ids beyond the vocabulary,
a checkpoint of another vocabulary, a prompt character outside it, a
negative temperature and a top-k of 0. Token files: the same ids as a .npy
array, as nanoGPT's train.bin and val.bin (memory-mapped) and as a list of
.bin shards (--shard) train and evaluate alike.

usage: check_text.py KILN SOURCE_DIR"""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

KILN, SOURCE = sys.argv[1], sys.argv[2]
MODEL = os.path.join(SOURCE, "tests", "data", "gpt_sonnets.ini")
TEXT = os.path.join(SOURCE, "tests", "data", "sonnets.txt")
failures = []


def check(name, ok, detail=""):
    print(("ok    " if ok else "FAIL  ") + name)
    if not ok:
        failures.append(name)
        print("      " + str(detail).replace("\n", "\n      "))
    return ok


def kiln(*args, **kw):
    return subprocess.run([KILN, *args], capture_output=True, text=True, timeout=300, **kw)


def refused(name, r, needle, code=1):
    check(name, r.returncode == code and needle in r.stderr,
          f"exit {r.returncode}, stderr: {r.stderr.strip()}")


with tempfile.TemporaryDirectory() as tmp:
    run = os.path.join(tmp, "run")
    r = kiln("train", MODEL, "--data", TEXT, "--steps", "40", "--out", run, "--json")
    events = [json.loads(line) for line in r.stdout.splitlines()]
    check("train by steps: an event per evaluation and a result", r.returncode == 0 and
          [e["event"] for e in events] == ["epoch", "epoch", "result"] and
          events[-1]["steps_run"] == 40 and events[-1]["tokens_per_second"] > 0, r.stderr)
    with open(os.path.join(run, "log.csv"), encoding="ascii") as f:
        rows = f.read().splitlines()
    check("log.csv: a row per evaluation, by step", rows[0].startswith("step,lr,") and
          [row.split(",")[0] for row in rows[1:]] == ["20", "40"], rows)
    with open(os.path.join(run, "curves.svg"), encoding="utf-8") as f:
        svg = f.read()
    check("curves.svg is drawn against the step", ">step<" in svg and "best step" in svg)

    trace = os.path.join(tmp, "trace.json")
    r = kiln("train", MODEL, "--data", TEXT, "--steps", "8", "--profile", trace)
    # the attention layer's forward, backward and ratio under the table's header
    RATIO_ROW = r"^backward against forward .*\n(\d+ .*\n)*\d+ attention( +[\d.]+){3}$"
    names = set()
    if os.path.exists(trace):
        with open(trace, encoding="utf-8") as f:
            names = {e.get("name") for e in json.load(f)["traceEvents"]}
    check("--profile traces a token model's steps 2 to 6 and prints the layers, and each "
          "layer's backward against its forward",
          r.returncode == 0 and "profile of 5 training steps" in r.stdout and
          "attn_forward" in names and "forward" in r.stdout and "attention" in r.stdout and
          re.search(RATIO_ROW, r.stdout, re.M) is not None,
          r.stdout + r.stderr)

    r = kiln("eval", MODEL, os.path.join(run, "final.safetensors"), "--data", TEXT)
    check("eval scores the validation split's windows",
          r.returncode == 0 and "\n35 samples: loss " in r.stdout, r.stdout + r.stderr)

    # Ctrl-C saves the state; --resume finishes the run
    stopped = os.path.join(tmp, "stopped")
    p = subprocess.Popen([KILN, "train", MODEL, "--data", TEXT, "--steps", "100000", "--out",
                          stopped], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not os.path.exists(os.path.join(stopped, "log.csv")):
        time.sleep(0.2)
    time.sleep(1)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    check("Ctrl-C stops and saves the state", p.returncode == 130 and
          "resume with --resume" in out and
          os.path.exists(os.path.join(stopped, "last.state.safetensors")), out + err)
    r = kiln("train", MODEL, "--data", TEXT, "--steps", "60", "--out", stopped, "--resume",
             stopped)
    check("--resume goes on to the last step", r.returncode == 0 and
          "resuming after step" in r.stdout and "of 60" in r.stdout, r.stdout + r.stderr)

    # generation
    ckpt = os.path.join(run, "final.safetensors")
    a = kiln("generate", MODEL, ckpt, "--prompt", "Thy", "--tokens", "30", "--seed", "7")
    b = kiln("generate", MODEL, ckpt, "--prompt", "Thy", "--tokens", "30", "--seed", "7")
    check("generate: the same seed writes the same text", a.returncode == 0 and
          a.stdout == b.stdout and a.stdout.startswith("Thy") and len(a.stdout) == 3 + 30 + 1,
          repr(a.stdout) + a.stderr)
    refused("generate: a prompt character outside the vocabulary",
            kiln("generate", MODEL, ckpt, "--prompt", "Zeal"),
            "the character 'Z' (U+005A) at byte offset 0 is not in the vocabulary")
    refused("generate: a negative temperature", kiln("generate", MODEL, ckpt, "--temperature",
                                                     "-0.5"), "--temperature -0.5", 2)
    refused("generate: top-k 0", kiln("generate", MODEL, ckpt, "--top-k", "0"), "--top-k 0", 2)
    refused("generate: top-k beyond the vocabulary",
            kiln("generate", MODEL, ckpt, "--top-k", "57"), "larger than the vocabulary of 56")

    # bad corpora
    def corpus(name, data):
        path = os.path.join(tmp, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    # the same ids as a .npy array, train.bin and val.bin, and .bin shards
    n = 2000
    ids = [(i * 7 + i // 13) % 56 for i in range(n)]
    u16 = lambda part: b"".join(bytes((v, 0)) for v in part)
    head = "{'descr': '<u2', 'fortran_order': False, 'shape': (%d,), }" % n
    head += " " * (-(10 + len(head) + 1) % 64) + "\n"
    npy = corpus("ids.npy", b"\x93NUMPY\x01\x00" + bytes((len(head) % 256, len(head) // 256)) +
                 head.encode() + u16(ids))
    os.makedirs(os.path.join(tmp, "nano"))
    corpus("nano/val.bin", u16(ids[1800:]))
    nano = corpus("nano/train.bin", u16(ids[:1800]))
    os.makedirs(os.path.join(tmp, "parts"))
    for k, (a, b) in enumerate([(0, 5), (5, 700), (700, 701), (701, 1811), (1811, n)]):
        corpus(f"parts/p-{k:02d}.bin", u16(ids[a:b]))
    pattern = os.path.join(tmp, "parts", "p-*.bin")
    runs = {}
    for name, args in [("npy", [npy]), ("bin", [nano]), ("shards", [pattern, "--shard"])]:
        out = os.path.join(tmp, "tok-" + name)
        r = kiln("train", MODEL, "--data", *args, "--steps", "6", "--out", out, "--json")
        result = json.loads(r.stdout.splitlines()[-1]) if r.returncode == 0 else {}
        with open(os.path.join(out, "final.safetensors"), "rb") if r.returncode == 0 \
                else open(os.devnull, "rb") as f:
            raw = f.read()  # the tensors, past the header (whose metadata names the data)
            runs[name] = (result.get("best_val_loss"),
                          raw[8 + int.from_bytes(raw[:8], "little"):] if raw else b"")
        check(f"token ids as {name}: trains", r.returncode == 0, r.stderr)
    check("train.bin (mapped) and .bin shards train as the .npy of the same ids",
          runs["npy"][0] is not None and runs["npy"] == runs["bin"] == runs["shards"],
          {k: v[0] for k, v in runs.items()})
    ckpt_tok = os.path.join(tmp, "tok-npy", "final.safetensors")
    scores = [kiln("eval", MODEL, ckpt_tok, "--data", *args).stdout
              for args in ([npy], [nano], [pattern, "--shard"])]
    check("eval: the .npy, train.bin's val.bin and the shards' last 10% score alike",
          scores[0] and "samples: loss" in scores[0] and scores[0] == scores[1] == scores[2],
          scores)
    refused("--shard: a pattern matching nothing",
            kiln("train", MODEL, "--shard", "--data", os.path.join(tmp, "parts", "q-*.bin"),
                 "--out", os.path.join(tmp, "x")), "no file matches")
    corpus("parts/odd.bin", b"abc")
    refused("--shard: a shard of an odd number of bytes, named",
            kiln("train", MODEL, "--shard", "--data", pattern + "," +
                 os.path.join(tmp, "parts", "odd.bin"), "--out", os.path.join(tmp, "x")),
            "odd.bin: 3 bytes is not a whole number of uint16 token ids")

    refused("non-UTF-8 bytes, with the offset",
            kiln("train", MODEL, "--data", corpus("latin1.txt", b"a" * 300 + b"caf\xe9" * 50),
                 "--out", os.path.join(tmp, "x")), "byte offset 303 is not UTF-8")
    refused("an empty corpus", kiln("train", MODEL, "--data", corpus("empty.txt", b""),
                                    "--out", os.path.join(tmp, "x")), "the corpus is empty")
    refused("a corpus shorter than a block",
            kiln("train", MODEL, "--data", corpus("short.txt", b"abc " * 30), "--out",
                 os.path.join(tmp, "x")), "shorter than one window of block + 1 = 17")
    ids = bytes(b for i in range(400) for b in ((i % 40, 0) if i % 50 != 7 else (90, 0)))
    corpus("val.bin", ids)
    refused("ids beyond the vocabulary, with the file and offset",
            kiln("train", MODEL, "--data", corpus("train.bin", ids), "--out",
                 os.path.join(tmp, "x")), "train.bin: the token id at byte offset 514 is 90, "
                                          "at or beyond the model's vocabulary")  # 514 = 2 x 257
    other = corpus("other.txt", ("".join(chr(c) for c in range(0x30, 0x68)) * 40).encode())
    refused("a checkpoint of another vocabulary",
            kiln("eval", MODEL, ckpt, "--data", other), "another vocabulary")

print(f"{len(failures)} failure(s)" if failures else "all passed")
sys.exit(1 if failures else 0)
