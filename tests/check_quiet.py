"""A cold start is quiet: kiln train with empty kernel caches (kiln's,
PoCL's and Mesa's) prints nothing on stderr, no compiler warnings and no
driver chatter; with KILN_VERBOSE=1 a line per program built appears, and
a second run loads every program from kiln's cache. On every CPU driver
found (PoCL, and rusticl when `kiln devices` lists it).

usage: check_quiet.py KILN SOURCE_ROOT"""
import os
import subprocess
import sys
import tempfile


def train(kiln, root, model, limit, env, out):
    cmd = [kiln, "train", os.path.join(root, "examples", model), "--data", "fashion-mnist",
           "--limit", str(limit), "--epochs", "1", "--out", out]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (cmd, r.stdout, r.stderr)
    return r.stderr.splitlines()


def check(kiln, root, device, model, limit):
    with tempfile.TemporaryDirectory() as caches, tempfile.TemporaryDirectory() as out:
        env = dict(os.environ, KILN_CACHE_DIR=os.path.join(caches, "kiln"),
                   XDG_CACHE_HOME=caches, POCL_CACHE_DIR=os.path.join(caches, "pocl"),
                   HOME=caches, KILN_DEVICE=device)
        env.pop("KILN_VERBOSE", None)
        if device == "rusticl":
            env["RUSTICL_ENABLE"] = "llvmpipe"
        quiet = train(kiln, root, model, limit, env, out)
        assert quiet == [], (device, model, "stderr of a cold start", quiet)

        env["KILN_VERBOSE"] = "1"
        warm = train(kiln, root, model, limit, env, out)
        assert any(line.startswith("kiln: loaded ") for line in warm), (device, model, warm)
        assert not any(line.startswith("kiln: compiled ") for line in warm), (device, model, warm)

        env["KILN_CACHE_DIR"] = os.path.join(caches, "kiln-verbose")
        verbose = train(kiln, root, model, limit, env, out)
        assert any(line.startswith("kiln: compiled ") for line in verbose), (device, verbose)
        strange = [line for line in verbose if not line.startswith("kiln")]
        assert not strange, (device, model, "driver output", strange)
        print(f"{device} {model}: quiet cold start, {len(verbose)} lines when verbose")


def main():
    kiln, root = sys.argv[1], sys.argv[2]
    listed = subprocess.run([kiln, "devices"], capture_output=True, text=True,
                            env=dict(os.environ, RUSTICL_ENABLE="llvmpipe")).stdout
    check(kiln, root, "Portable", "fashion_mlp.ini", 256)
    check(kiln, root, "Portable", "fashion_cnn.ini", 64)
    if "rusticl" in listed:
        check(kiln, root, "rusticl", "fashion_mlp.ini", 256)


main()
