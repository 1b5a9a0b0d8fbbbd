#!/usr/bin/env python3
"""`kiln plot` draws log.csv files as SVG: every file parses as XML, every
line has a point per logged epoch, each point sits where its value maps
through the panel's own tick labels and inside its plot area, the best
epoch's marker is at that epoch, malformed logs fail naming the file and
line, and no temporary file is left. Then two short `kiln train` runs: one
leaves a curves.svg that parses, one whose curves cannot be written trains
on and warns once.

usage: check_curves.py KILN SOURCE_DIR"""
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

KILN, SOURCE = sys.argv[1], sys.argv[2]
NS = {"s": "http://www.w3.org/2000/svg"}
HEADER = "epoch,lr,train_loss,train_accuracy,val_loss,val_accuracy,val_mae,val_r2,seconds"
failures = []


def check(name, ok, detail=""):
    print(("ok    " if ok else "FAIL  ") + name)
    if not ok:
        failures.append(name)
        print("      " + str(detail).replace("\n", "\n      "))
    return ok


def plot(*args):
    return subprocess.run([KILN, "plot", *args], capture_output=True, timeout=60)


def write_log(path, rows, header=HEADER):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="ascii") as f:
        f.write(header + "\n" + "".join(",".join(str(v) for v in r) + "\n" for r in rows))


def number(cell):
    """A cell as kiln_plot reads it: empty, nan, inf and beyond 1e100 are not drawn."""
    v = float(cell) if cell.strip() else math.nan
    return v if math.isfinite(v) and abs(v) <= 1e100 else None


def one_two_five(step):
    mantissa = step / 10 ** math.floor(math.log10(step) + 1e-9)
    return any(abs(mantissa - m) < 1e-6 for m in (1, 2, 5))


def tick_map(pairs, what):
    """value -> pixel through the first and last (value, pixel) tick, after
    checking the ticks are evenly spaced on a 1-2-5 step."""
    if len(pairs) < 2:
        return None, f"{what}: {len(pairs)} ticks; expected at least 2"
    values = [v for v, _ in pairs]
    steps = [b - a for a, b in zip(values, values[1:])]
    even = all(abs(d - steps[0]) <= 1e-6 * abs(steps[0]) for d in steps)
    if not even or not one_two_five(abs(steps[0])):
        return None, f"{what}: ticks {values} are not evenly spaced on a 1-2-5 step"
    (v0, p0), (v1, p1) = pairs[0], pairs[-1]
    return (lambda v: p0 + (v - v0) * (p1 - p0) / (v1 - v0)), None


def panel_geometry(g):
    """The plot area and both tick maps of a panel <g>."""
    area = g.find("s:rect[@class='area']", NS)
    box = [float(area.get(k)) for k in ("x", "y", "width", "height")]
    xt = [(float(t.text), float(t.get("x"))) for t in g.findall("s:text[@class='xtick']", NS)]
    grid = [ln for ln in g.findall("s:line[@class='grid']", NS) if ln.get("y1") == ln.get("y2")]
    yt = [(float(t.text), float(ln.get("y1")))
          for t, ln in zip(g.findall("s:text[@class='ytick']", NS), grid)]
    fx, ex = tick_map(xt, "x axis")
    fy, ey = tick_map(yt, "y axis")
    return box, fx, fy, ex or ey


# The panels and their series as kiln_plot draws them: (id, [(column, scale)]).
PANELS = [("loss", ["train_loss", "val_loss"]), ("accuracy", ["train_accuracy", "val_accuracy"]),
          ("mae", ["val_mae"]), ("r2", ["val_r2"]), ("lr", ["lr"])]
SCALE = {"train_accuracy": 100, "val_accuracy": 100}
LEGEND = {"train_loss": "train", "val_loss": "validation", "train_accuracy": "train",
          "val_accuracy": "validation", "val_mae": "validation MAE", "val_r2": "validation R²",
          "lr": "learning rate"}


def expected_panels(log):
    """From a log.csv: the panels drawn, each [(column, [(epoch, value)])], and the best epoch."""
    lines = [ln for ln in open(log, encoding="utf-8").read().splitlines() if ln.strip()]
    names = lines[0].split(",")
    rows = [dict(zip(names, ln.split(","))) for ln in lines[1:]]
    panels = []
    for pid, cols in PANELS:
        series = []
        for c in cols:
            pts = [(float(r["epoch"]), number(r.get(c, ""))) for r in rows]
            pts = [(e, v * SCALE.get(c, 1)) for e, v in pts if v is not None]
            if pts:
                series.append((c, pts))
        if series:
            panels.append((pid, series))
    val = [(number(r["val_loss"]), float(r["epoch"])) for r in rows
           if number(r["val_loss"]) is not None]
    best = min(val, key=lambda p: p[0])[1] if val else None  # the first of equal losses
    return panels, best


def check_svg(name, svg_path, log):
    try:
        root = ET.parse(svg_path).getroot()
    except (ET.ParseError, OSError) as e:
        return check(f"{name}: the SVG parses", False, e)
    view = root.get("viewBox", "").split()
    if not check(f"{name}: an svg root with a viewBox",
                 root.tag == "{%s}svg" % NS["s"] and len(view) == 4, (root.tag, view)):
        return False
    width, height = float(view[2]), float(view[3])
    panels, best = expected_panels(log)
    groups = root.findall("s:g[@class='panel']", NS)
    drawn = [g.get("id") for g in groups]
    ok = check(f"{name}: panels {[p for p, _ in panels]}", drawn == [p for p, _ in panels], drawn)
    for (pid, series), g in zip(panels, groups):
        box, fx, fy, err = panel_geometry(g)
        if not check(f"{name}/{pid}: axes", err is None, err):
            ok = False
            continue
        x0, y0, w, h = box
        ticks = [t.text for t in g.findall("s:text", NS) if t.get("class") in ("xtick", "ytick")]
        ok &= check(f"{name}/{pid}: no tick reads -0", not any(
            re.fullmatch(r"-0(\.0*)?(e[+-]?0+)?", t) for t in ticks), ticks)
        ok &= check(f"{name}/{pid}: plot area inside the image",
                    0 <= x0 and x0 + w <= width and 0 <= y0 and y0 + h <= height, box)
        legend = [t.text for t in g.findall("s:text[@class='legend']", NS)]
        want = [LEGEND[c] for c, _ in series]
        want += [f"best epoch {best:g}"] if best is not None else []
        ok &= check(f"{name}/{pid}: legend {want}", legend == want, legend)
        lines = g.findall("s:polyline[@class='series']", NS)
        ok &= check(f"{name}/{pid}: a line per series", len(lines) == len(series), len(lines))
        for (col, pts), line in zip(series, lines):
            got = [tuple(map(float, p.split(","))) for p in line.get("points").split()]
            ok &= check(f"{name}/{pid}/{col}: {len(pts)} points", len(got) == len(pts), len(got))
            inside = all(x0 <= x <= x0 + w and y0 <= y <= y0 + h for x, y in got)
            ok &= check(f"{name}/{pid}/{col}: inside the plot area", inside, (box, got))
            off = max((max(abs(x - fx(e)), abs(y - fy(v))) for (x, y), (e, v) in zip(got, pts)),
                      default=0)
            ok &= check(f"{name}/{pid}/{col}: points where the ticks put the values",
                        off < 0.3, f"{off:.2f} px off")
        marker = g.find("s:line[@class='best']", NS)
        if best is None:
            ok &= check(f"{name}/{pid}: no best-epoch marker without validation", marker is None)
        elif check(f"{name}/{pid}: a best-epoch marker", marker is not None):
            bx = float(marker.get("x1"))
            ok &= check(f"{name}/{pid}: the marker at epoch {best:g}",
                        abs(bx - fx(best)) < 0.3 and marker.get("x2") == marker.get("x1"),
                        f"x {bx}, epoch {best:g} is at {fx(best):.2f}")
        else:
            ok = False
    return ok


def no_temporaries(name, directory):
    left = [f for f in os.listdir(directory) if ".tmp." in f]
    return check(f"{name}: no temporary file left", not left, left)


def cosine(e, n):
    return 0.001 * 0.5 * (1 + math.cos(math.pi * (e - 1) / n))


with tempfile.TemporaryDirectory() as tmp:
    # A classification run of 17 epochs whose validation loss is lowest at 12.
    cls = os.path.join(tmp, "cls")
    write_log(os.path.join(cls, "log.csv"),
              [(e, f"{cosine(e, 17):.9g}", 0.6 * math.exp(-e / 5) + 0.2,
                0.8 + 0.1 * (1 - math.exp(-e / 4)),
                0.5 * math.exp(-e / 5) + 0.28 + 0.003 * (e - 12) ** 2,
                0.82 + 0.07 * (1 - math.exp(-e / 4)), "nan", "nan", 1.5) for e in range(1, 18)])
    r = plot(cls)
    check("classification: exit 0", r.returncode == 0, r.stderr)
    check_svg("classification", os.path.join(cls, "curves.svg"), os.path.join(cls, "log.csv"))
    no_temporaries("classification", cls)

    # A regression run (accuracy empty, MAE and R²) with an extra column, to -o.
    reg = os.path.join(tmp, "reg")
    write_log(os.path.join(reg, "log.csv"),
              [(e, 0.01, 10 / e, "", 12 / e + 0.3 * e, "", 3 / e + 0.1 * e, 1 - 1 / e, 0.1, "x")
               for e in range(1, 8)], HEADER + ",note")
    out = os.path.join(tmp, "reg.svg")
    r = plot(reg, "-o", out)
    check("regression: exit 0, says where", r.returncode == 0 and out in r.stdout.decode(), r)
    check_svg("regression", out, os.path.join(reg, "log.csv"))

    # One epoch: every series a single point, drawn as a dot.
    one = os.path.join(tmp, "one")
    write_log(os.path.join(one, "log.csv"), [(1, 0.1, 0.69, 0.5, 0.7, 0.55, "nan", "nan", 0.2)])
    r = plot(os.path.join(one, "log.csv"))
    check("one epoch: exit 0", r.returncode == 0, r.stderr)
    if check_svg("one epoch", os.path.join(one, "curves.svg"), os.path.join(one, "log.csv")):
        dots = ET.parse(os.path.join(one, "curves.svg")).getroot().findall(".//s:circle", NS)
        check("one epoch: a dot per series", len(dots) == 2 + 2 + 1, len(dots))

    # NaN, inf and empty cells are skipped; no validation loss at all: no marker.
    gaps = os.path.join(tmp, "gaps")
    write_log(os.path.join(gaps, "log.csv"),
              [(1, 0.1, 0.69, 0.5, "", "", "nan", "nan", 0.2),
               (2, 0.1, "nan", 0.6, "", 0.6, "", "", 0.2),
               (3, 0.1, 0.5, " 0.7 ", "", 0.65, "nan", "nan", 0.2),
               (4, 0.1, "inf", "-nan", "", "nan", "", "", 0.2)])
    r = plot(gaps)
    check("NaN cells: exit 0", r.returncode == 0, r.stderr)
    check_svg("NaN cells", os.path.join(gaps, "curves.svg"), os.path.join(gaps, "log.csv"))

    # A diverging run (3.4e38, the largest float) and tiny learning rates:
    # ticks in exponent form that still parse and map; 1e300 is not drawn.
    huge = os.path.join(tmp, "huge")
    write_log(os.path.join(huge, "log.csv"),
              [(1, 1e-9, 0.5, "", 1e300, "", "", "", 1), (2, 2e-9, 3e7, "", 3.4e38, "", "", "", 1),
               (3, 3e-9, 1.5e8, "", 0.3, "", "", "", 1), (4, 4e-9, 0.2, "", 0.25, "", "", "", 1)])
    r = plot(huge)
    check("huge values: exit 0", r.returncode == 0, r.stderr)
    check_svg("huge values", os.path.join(huge, "curves.svg"), os.path.join(huge, "log.csv"))

    # Text that XML must escape, and a name that is not UTF-8, in the title.
    odd = os.path.join(tmp, "a&b<c>\"d'")
    write_log(os.path.join(odd, "log.csv"), [(1, 0.1, 0.5, 0.5, 0.5, 0.5, "", "", 1)])
    r = plot(odd)
    try:
        title = ET.parse(os.path.join(odd, "curves.svg")).getroot().find("s:title", NS).text
        check("escaped: the title names the run", odd in title, title)
    except ET.ParseError as e:
        check("escaped: the SVG parses", False, e)
    latin = os.path.join(tmp.encode(), b"caf\xe9")
    write_log(os.path.join(latin, b"log.csv").decode("utf-8", "surrogateescape"),
              [(1, 0.1, 0.5, 0.5, 0.5, 0.5, "", "", 1)])
    r = subprocess.run([KILN.encode(), b"plot", latin], capture_output=True, timeout=60)
    try:
        ET.parse(os.path.join(latin, b"curves.svg"))
        check("not UTF-8: the SVG parses", r.returncode == 0, r.stderr)
    except (ET.ParseError, OSError) as e:
        check("not UTF-8: the SVG parses", False, e)

    # Malformed logs: exit 1, naming the file and the line, and no SVG.
    bad_cases = [
        ("a word in a number column",
         HEADER + "\n1,0.1,0.5,0.5,0.5,0.5,,,1\n2,0.1,lots,0.5,0.5,0.5,,,1\n",
         r"log\.csv:3: train_loss is \"lots\"; expected a number"),
        ("a short row", HEADER + "\n1,0.1,0.5,0.5,0.5,0.5,,,1\n\n2,0.1,0.5,0.5\n",
         r"log\.csv:4: 4 fields; the header has 9"),
        ("a long row", HEADER + "\n1,0.1,0.5,0.5,0.5,0.5,,,1,7\n", r"log\.csv:2: 10 fields"),
        ("no epoch", HEADER + "\n,0.1,0.5,0.5,0.5,0.5,,,1\n", r"log\.csv:2: the epoch is missing"),
        ("a huge epoch", HEADER + "\n1e10,0.1,0.5,0.5,0.5,0.5,,,1\n",
         r"log\.csv:2: the epoch is missing or beyond 1e9"),
        ("no epoch column", "lr,train_loss\n0.1,0.5\n",
         r"log\.csv:1: the header has no epoch \(or step\) column"),
        ("an empty file", "", r"log\.csv: the file is empty"),
        ("a header alone", HEADER + "\n", r"log\.csv: no epoch is logged yet"),
    ]
    for i, (what, text, message) in enumerate(bad_cases):
        d = os.path.join(tmp, f"bad{i}")
        os.makedirs(d)
        with open(os.path.join(d, "log.csv"), "w", encoding="ascii") as f:
            f.write(text)
        r = plot(d)
        err = r.stderr.decode()
        check(f"malformed, {what}: exit 1 naming the file and line",
              r.returncode == 1 and re.search(re.escape(d) + "/" + message, err),
              (r.returncode, err))
        check(f"malformed, {what}: no SVG", not os.path.exists(os.path.join(d, "curves.svg")),
              os.listdir(d))
        no_temporaries(f"malformed, {what}", d)

    r = plot(os.path.join(tmp, "nowhere"))
    check("a missing run: exit 1 naming it",
          r.returncode == 1 and b"nowhere: no such run directory or log.csv" in r.stderr, r.stderr)
    os.makedirs(os.path.join(tmp, "empty_run"))
    r = plot(os.path.join(tmp, "empty_run"))
    check("a run without log.csv: exit 1 naming the log",
          r.returncode == 1 and b"empty_run/log.csv: cannot read" in r.stderr, r.stderr)
    r = plot(cls, "-o", os.path.join(tmp, "no", "such", "dir.svg"))
    check("an unwritable -o: exit 1 naming it",
          r.returncode == 1 and b"no/such/dir.svg" in r.stderr, r.stderr)
    r = plot(cls, "-o", tmp)
    check("-o a directory: exit 1 naming it", r.returncode == 1 and b"is a directory" in r.stderr,
          r.stderr)
    r = plot(cls, "-o", "/dev/stdout")  # a pipe here: written in place, never renamed over
    try:
        ok = r.returncode == 0 and ET.fromstring(r.stdout).tag == "{%s}svg" % NS["s"]
    except ET.ParseError as e:
        ok, r = False, e
    check("-o /dev/stdout: the image alone on stdout", ok and os.path.islink("/dev/stdout"), r)
    for args in ([], [cls, cls], ["--frobnicate", cls]):
        r = plot(*args)
        check(f"usage {args[:1]}: exit 2", r.returncode == 2 and b"usage: kiln plot" in r.stderr, r)
    r = plot("--help")
    check("--help: exit 0", r.returncode == 0 and b"usage: kiln plot" in r.stdout, r)

    # kiln train keeps curves.svg up to date: a short run of the perceptron,
    # whose output directory holds a temporary file a killed plot left.
    rng = random.Random(3)
    data = os.path.join(tmp, "p.csv")
    with open(data, "w", encoding="ascii") as f:
        f.write("x0,x1,label\n")
        for _ in range(300):
            x0, x1 = rng.uniform(-1, 1), rng.uniform(-1, 1)
            f.write(f"{x0:.4f},{x1:.4f},{int(x0 + 2 * x1 > 0.3)}\n")
    model = os.path.join(SOURCE, "examples", "perceptron.ini")
    run_dir = os.path.join(tmp, "run")
    os.makedirs(run_dir)
    open(os.path.join(run_dir, "curves.svg.tmp.Ab12Cd"), "w").close()
    r = subprocess.run([KILN, "train", model, "--data", data, "--epochs", "3", "--out", run_dir],
                       capture_output=True, text=True, timeout=300)
    if check("train: exit 0", r.returncode == 0, r.stdout + r.stderr):
        check_svg("train", os.path.join(run_dir, "curves.svg"), os.path.join(run_dir, "log.csv"))
        no_temporaries("train", run_dir)

    # A curves.svg that cannot be replaced (a directory stands there): the
    # run trains all its epochs and warns once.
    blocked = os.path.join(tmp, "blocked")
    os.makedirs(os.path.join(blocked, "curves.svg", "x"))
    r = subprocess.run([KILN, "train", model, "--data", data, "--epochs", "3", "--out", blocked],
                       capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    check("train, curves blocked: exit 0 and 3 epochs",
          r.returncode == 0 and len(open(os.path.join(blocked, "log.csv")).readlines()) == 4, out)
    check("train, curves blocked: one warning naming curves.svg",
          out.count("warning: no training curves") == 1 and "curves.svg" in out, out)
    no_temporaries("train, curves blocked", blocked)

if failures:
    sys.exit(f"{len(failures)} failed: {', '.join(failures)}")
print("all passed")
