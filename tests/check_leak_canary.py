#!/usr/bin/env python3
"""Runs tests/leak_canary (argv[1]) and passes only when LeakSanitizer
reported the tensor it forgets, allocated in kiln_tensor_create: the
suppressions of the drivers' leaks must not hide kiln's own."""
import subprocess
import sys

run = subprocess.run([sys.argv[1]], capture_output=True, text=True, timeout=240)
report = run.stderr
if run.returncode == 2 or "LeakSanitizer" not in report:
    sys.exit(f"leak canary: expected a LeakSanitizer report (exit {run.returncode}):\n{report}")
leaks = [block for block in report.split("\n\n") if "leak of" in block]
ours = [block for block in leaks if "kiln_tensor_create" in block]
if not ours:
    sys.exit("leak canary: the tensor forgotten on purpose was not reported; "
             f"the suppressions hide kiln's own leaks:\n{report}")
others = [block for block in leaks if "kiln_tensor_create" not in block]
if others:
    sys.exit("leak canary: leaks other than the canary's were reported (an unsuppressed "
             f"driver leak?):\n{chr(10).join(others)}")
print(f"leak canary: LeakSanitizer reported the forgotten tensor ({len(ours)} allocation(s))")
