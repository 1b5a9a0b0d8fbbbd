#!/usr/bin/env python3
"""Checks that kiln's src/ folders depend on each other only downward.

usage: check_layers.py [SRC_DIR]   (default: the src/ beside this tools/)

Reads every `#include "..."` line of the .c and .h files under SRC_DIR and
fails (exit 1, one line per offence) when a file includes a header from a
folder its own folder may not depend on, when an include is not qualified
by its folder from src/ ("ops/ops.h", not "ops.h"; only the public
"kiln.h" stands alone), when an included header does not exist, or when a
folder has no row in ALLOWED. docs/architecture.md draws the same table.
"""
import os
import re
import sys

# What each folder of src/ may include besides its own headers and the
# public kiln.h: a folder name allows all of its headers, a path one header.
# The chain runtime <- blas <- ops <- graph <- compiler <- optim <- net
# <- fit <- bench <- cli. Beside it, data/ (file readers), report/ (curves)
# and dist/ (MPI) stand on runtime/ alone, and net/ and fit/ above may use
# them; ref/ (float64 references) sits on runtime's generator; cli/ sees
# only the public API, the references and the generator, as the `kiln`
# command links nothing else.
CHAIN = ["runtime", "blas", "ops", "graph", "compiler", "optim", "net", "fit", "bench"]
SIDE = ["data", "report", "dist"]
ALLOWED = {folder: CHAIN[:i] for i, folder in enumerate(CHAIN)}
for folder in SIDE:
    ALLOWED[folder] = ["runtime"]
for folder in CHAIN[CHAIN.index("net"):]:
    ALLOWED[folder] = ALLOWED[folder] + SIDE
# export/ (ONNX files) reads a network: net/ and everything below it.
ALLOWED["export"] = CHAIN[:CHAIN.index("net") + 1] + SIDE
ALLOWED["ref"] = ["runtime/rng.h"]
ALLOWED["cli"] = ["ref", "runtime/rng.h"]

PUBLIC = {"kiln.h", "kiln_tools.h"}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def allowed(folder, header):
    if header.split("/")[0] == folder:
        return True
    return any(header == rule or header.startswith(rule + "/")
               for rule in ALLOWED.get(folder, []))


def generated(src, header):
    """protoc-c's header of a schema beside it: export/onnx.pb-c.h from
    export/onnx.proto, made in the build directory."""
    return header.endswith(".pb-c.h") and os.path.isfile(
        os.path.join(src, header[:-len(".pb-c.h")] + ".proto"))


def check(src):
    errors = []
    include_dir = os.path.join(os.path.dirname(os.path.abspath(src)), "include")
    for root, dirs, files in os.walk(src):
        dirs.sort()
        for name in sorted(files):
            if not name.endswith((".c", ".h")):
                continue
            path = os.path.join(root, name)
            rel = os.path.relpath(path, src)
            folder = rel.split(os.sep)[0] if os.sep in rel else ""
            if folder not in ALLOWED:
                errors.append("src/%s: src/%s has no row in tools/check_layers.py's ALLOWED"
                              % (rel, folder or "."))
                continue
            with open(path, encoding="utf-8") as f:
                for number, line in enumerate(f, 1):
                    m = INCLUDE.match(line)
                    if not m:
                        continue
                    header = m.group(1)
                    if header in PUBLIC:
                        continue
                    where = "src/%s:%d" % (rel, number)
                    if "/" not in header:
                        errors.append('%s: "%s" is not qualified by its folder '
                                      '("folder/%s", from src/)' % (where, header, header))
                    elif not (os.path.isfile(os.path.join(src, header)) or
                              os.path.isfile(os.path.join(include_dir, header)) or
                              generated(src, header)):
                        errors.append('%s: "%s" is not a header under src/ or include/'
                                      % (where, header))
                    elif not allowed(folder, header):
                        errors.append('%s: %s/ may not include "%s" (it may include %s)'
                                      % (where, folder, header,
                                         ", ".join(ALLOWED[folder]) or "nothing of kiln's"))
    return errors


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "src")
    if not os.path.isdir(src):
        print("check_layers: %s is not a directory" % src, file=sys.stderr)
        return 2
    errors = check(src)
    for e in errors:
        print(e)
    if errors:
        print("check_layers: %d include(s) break the layering; see docs/architecture.md"
              % len(errors))
        return 1
    print("check_layers: every include of %s points downward" % os.path.normpath(src))
    return 0


if __name__ == "__main__":
    sys.exit(main())
