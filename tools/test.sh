#!/usr/bin/env bash
# Sets kiln up (tools/setup.sh) and runs the whole test suite on the device
# that KILN_DEVICE selects (by default the first GPU, else PoCL on the CPU).
# Extra arguments go to `meson test` (e.g. a suite name, --verbose).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
build=${KILN_BUILD_DIR:-build}

status=0
meson test -C "$build" --print-errorlogs "$@" || status=$?

# One closing line that any CI reads: "kiln: N passed, N failed, N skipped".
python3 - "$build/meson-logs/testlog.json" <<'PY'
import json, sys
passed = failed = skipped = 0
for line in open(sys.argv[1]):
    result = json.loads(line)["result"]
    if result in ("OK", "EXPECTEDFAIL"):
        passed += 1
    elif result == "SKIP":
        skipped += 1
    else:
        failed += 1
print(f"kiln: {passed} passed, {failed} failed, {skipped} skipped")
PY
exit "$status"
