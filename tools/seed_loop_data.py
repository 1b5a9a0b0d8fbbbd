#!/usr/bin/env python3
"""Writes the random data of the chapter's Example 3 as CSV: 250 rows of ten
standard-normal features x0..x9 and a standard-normal target y (200 for
training and 50 that examples/seed_loop.ini holds out for validation).

usage: seed_loop_data.py [OUT.csv] [SEED]
"""
import random
import sys


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "seed_loop.csv"
    rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 42)
    with open(out, "w", encoding="ascii") as f:
        f.write(",".join("x%d" % i for i in range(10)) + ",y\n")
        for _ in range(250):
            row = [rng.gauss(0.0, 1.0) for _ in range(11)]
            f.write(",".join("%.6f" % v for v in row) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
