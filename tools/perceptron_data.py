#!/usr/bin/env python3
"""Writes linearly separable data for the chapter's perceptron
(examples/perceptron.ini) as CSV: 400 rows of two features x0, x1 drawn
uniformly from [-1, 1] and a label 1 where x0 + 2 x1 > 0.1, else 0; points
within 0.05 of the boundary are left out, so a line separates the classes
with a margin.

usage: perceptron_data.py [OUT.csv] [SEED]
"""
import random
import sys


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "perceptron.csv"
    rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    rows = []
    while len(rows) < 400:
        x0, x1 = rng.uniform(-1, 1), rng.uniform(-1, 1)
        margin = x0 + 2 * x1 - 0.1
        if abs(margin) >= 0.05:
            rows.append((x0, x1, 1 if margin > 0 else 0))
    with open(out, "w", encoding="ascii") as f:
        f.write("x0,x1,label\n")
        for x0, x1, label in rows:
            f.write("%.6f,%.6f,%d\n" % (x0, x1, label))
    print("wrote", out)


if __name__ == "__main__":
    main()
