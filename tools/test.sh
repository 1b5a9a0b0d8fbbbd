#!/usr/bin/env bash
# Sets kiln up (tools/setup.sh) and runs the whole test suite:
#   1. on the device KILN_DEVICE selects (default: the first GPU, else PoCL);
#   2. when KILN_DEVICE is unset and Mesa's rusticl is installed, again on
#      rusticl's CPU device, a second, independent OpenCL implementation
#      (all but the training-loop suite, `training`, and the tests that
#      pick their drivers themselves, `every-driver`);
#   2a. tools/device-check.sh --dry-run on rusticl (the GPU day's script);
#   2b. the operator and pipeline suites with KILN_GEMM=clblast: CLBlast and
#      the GPU-shaped kernels, which kiln does not pick on a CPU by itself;
#   3. under AddressSanitizer and UndefinedBehaviorSanitizer (build-asan/);
#   3b. the Python package's pytest suite against build/libkiln.so, and
#       beside it the ONNX export against ONNX Runtime (onnx and onnxruntime
#       from PyPI in build/venv-onnx; skipped where pip cannot install them);
#   4. the host-only suite (model files, shape inference, IDX, CSV and
#      safetensors readers over the fuzz corpora) under valgrind memcheck;
#   5. each libFuzzer harness for KILN_FUZZ_SECONDS (default 20) from its
#      corpus (build-fuzz/, clang), two at a time; a crash fails the run
#      and leaves its input in build-fuzz/findings/.
# Extra arguments go to every `meson test` (a suite name, --verbose, ...).
# Ends with one line: "kiln: N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh || exit 1
build=${KILN_BUILD_DIR:-build}

passed=0 failed=0 skipped=0 status=0
timings=()

# One kernel cache for every suite of every pass, inside the build
# directory: suites reuse each other's compiled programs, a run never
# depends on or writes to the user's own cache, and the second run of this
# script starts warm. Tests of the cache itself point KILN_CACHE_DIR at
# directories of their own.
export KILN_CACHE_DIR=${KILN_CACHE_DIR:-$PWD/$build/test-kernel-cache}

# Runs `meson test` in build dir $1 with the environment in $2..., and adds
# its results to the totals.
run_pass() {
  local dir=$1 label=$2
  shift 2
  echo "== tests on $label"
  local started=$SECONDS
  env "$@" meson test -C "$dir" --print-errorlogs "${extra[@]}" || status=1
  timings+=("$(printf '%5d s  %s' $((SECONDS - started)) "$label")")
  read -r p f s < <(python3 - "$dir/meson-logs/testlog.json" <<'PY'
import json, sys
counts = {"p": 0, "f": 0, "s": 0}
for line in open(sys.argv[1]):
    result = json.loads(line)["result"]
    counts["p" if result in ("OK", "EXPECTEDFAIL") else "s" if result == "SKIP" else "f"] += 1
print(counts["p"], counts["f"], counts["s"])
PY
  )
  passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
}

extra=("$@")
run_pass "$build" "${KILN_DEVICE:-the default device}"

if [[ -z ${KILN_DEVICE:-} ]]; then
  if RUSTICL_ENABLE=llvmpipe "$build/kiln" devices 2>/dev/null | grep -q rusticl; then
    # without the training-loop suite (suite training: early stopping,
    # resume, interrupts over thousands of samples), which tests host
    # logic the first pass covers and took 510 s of the pass on llvmpipe,
    # and without the tests that choose their devices themselves (suite
    # every-driver: the first pass ran them on rusticl too)
    extra_saved=("${extra[@]}")
    extra+=(--no-suite training --no-suite every-driver)
    run_pass "$build" "rusticl (llvmpipe)" RUSTICL_ENABLE=llvmpipe KILN_DEVICE=rusticl
    extra=("${extra_saved[@]}")
  else
    echo "== rusticl not installed: the second OpenCL implementation is skipped"
  fi
fi

# tools/device-check.sh, the script for a day with a GPU, as a dry run on
# rusticl: every step, shortened, within a time limit.
if [[ -z ${KILN_DEVICE:-} ]] && RUSTICL_ENABLE=llvmpipe "$build/kiln" devices 2>/dev/null | grep -q rusticl; then
  echo "== tools/device-check.sh --dry-run on rusticl"
  dc_started=$SECONDS
  if OUT=$build/device-check KILN_BUILD_DIR=$build timeout 900 tools/device-check.sh --dry-run; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1)) status=1
  fi
  timings+=("$(printf '%5d s  %s' $((SECONDS - dc_started)) "tools/device-check.sh --dry-run")")
fi

if [[ -z ${KILN_GEMM:-} ]]; then
  extra_saved=("${extra[@]}")
  extra=(ops pipeline blas)
  run_pass "$build" "${KILN_DEVICE:-the default device}, GEMM through CLBlast" KILN_GEMM=clblast
  extra=("${extra_saved[@]}")
fi

asan=${build}-asan
if [[ ! -f $asan/build.ninja ]]; then
  meson setup "$asan" -Db_sanitize=address,undefined -Db_lundef=false >/dev/null || exit 1
fi
meson compile -C "$asan" >"$asan/compile.log" 2>&1 || { cat "$asan/compile.log"; exit 1; }
run_pass "$asan" "${KILN_DEVICE:-the default device}, address and undefined-behaviour sanitizers"

# Runs pytest under python $2 with the remaining arguments, against this
# build's libkiln, its output in $3 and its exit status in $3.status.
pytest_run() {
  local py=$1 log=$2 py_status=0
  shift 2
  rm -f "$log.status"
  KILN_LIBRARY=$(realpath "$build")/libkiln.so "$py" -m pytest -q -p no:cacheprovider "$@" \
    >"$log" 2>&1 || py_status=1
  echo "$py_status" >"$log.status"
}

# Prints the end of pytest's output in $2 under label $1 and adds its
# results to the totals.
pytest_count() {
  local label=$1 log=$2 py_status
  py_status=$(cat "$log.status" 2>/dev/null || echo 1)
  echo "== $label"
  tail -15 "$log"
  ((py_status)) && status=1
  read -r p f s < <(python3 - "$log" <<'PY'
import re, sys
last = open(sys.argv[1]).read().strip().splitlines()[-1:] or [""]
count = lambda word: sum(int(n) for n in re.findall(r"(\d+) " + word, last[0]))
print(count("passed"), count("failed") + count("error"), count("skipped"))
PY
  )
  ((py_status && f == 0)) && f=1
  passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
}

# ONNX export against ONNX Runtime: onnx and onnxruntime from PyPI in a
# virtual environment of its own over Debian's Python (whose numpy and
# pytest it sees), made once; where pip cannot install them, the tests of
# test_onnx.py are skipped and say why.
venv=$build/venv-onnx
onnx_python=/usr/bin/python3
if [[ -x $venv/bin/python ]] ||
   /usr/bin/python3 -m venv --system-site-packages "$venv" >"$build/venv-onnx.log" 2>&1; then
  onnx_python=$venv/bin/python
  if ! "$onnx_python" -c 'import onnx, onnxruntime' 2>/dev/null &&
     ! timeout 900 "$venv/bin/pip" install -q --disable-pip-version-check onnx onnxruntime \
       >>"$build/venv-onnx.log" 2>&1; then
    echo "== pip could not install onnx and onnxruntime (see $build/venv-onnx.log)"
  fi
fi

# The Python package (python/) with Debian's numpy and pytest
# (/usr/bin/python3: not a virtual environment's), and the ONNX export,
# side by side: each waits mostly on one compiler thread (kernels built
# for models the suites before did not build).
echo "== the Python package and the ONNX export (pytest, side by side)"
py_started=$SECONDS
pytest_run /usr/bin/python3 "$build/pytest.log" python/tests \
  --ignore=python/tests/test_onnx.py &
pytest_run "$onnx_python" "$build/pytest-onnx.log" python/tests/test_onnx.py &
wait
pytest_count "the Python package (pytest)" "$build/pytest.log"
pytest_count "ONNX export against ONNX Runtime (pytest)" "$build/pytest-onnx.log"
timings+=("$(printf '%5d s  %s' $((SECONDS - py_started)) \
  "the Python package and ONNX export (pytest, side by side)")")

if command -v valgrind >/dev/null; then
  extra_saved=("${extra[@]}")
  extra=(--setup=valgrind --suite=host)
  run_pass "$build" "the host-only suite under valgrind memcheck"
  extra=("${extra_saved[@]}")
else
  echo "== valgrind not installed: the leak check is skipped"
fi

fuzz=${build}-fuzz
seconds=${KILN_FUZZ_SECONDS:-20}
if [[ ! -f $fuzz/build.ninja ]]; then
  CC=clang meson setup "$fuzz" -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
    >"$fuzz.setup.log" 2>&1 || { cat "$fuzz.setup.log"; exit 1; }
  rm -f "$fuzz.setup.log"
fi
meson compile -C "$fuzz" >"$fuzz/compile.log" 2>&1 || { cat "$fuzz/compile.log"; exit 1; }
mkdir -p "$fuzz/findings"
fuzz_started=$SECONDS
# Runs harness $1 for $seconds from its corpus; its output in its log.
fuzz_one() {
  mkdir -p "$fuzz/corpus/$1"
  LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp:print_suppressions=0 \
    "$fuzz/tests/fuzz/fuzz_$1" -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix="$fuzz/findings/$1-" "$fuzz/corpus/$1" "tests/fuzz/corpus/$1" \
    >"$fuzz/$1.log" 2>&1
}
# two harnesses at a time (each is one thread)
targets=(model idx csv safetensors npy png jpeg)
for ((i = 0; i < ${#targets[@]}; i += 2)); do
  pair=("${targets[@]:i:2}") pids=()
  for target in "${pair[@]}"; do
    echo "== fuzzing $target for ${seconds} s"
    fuzz_one "$target" &
    pids+=($!)
  done
  for j in "${!pair[@]}"; do
    target=${pair[j]}
    if wait "${pids[j]}"; then
      passed=$((passed + 1))
      echo "   $target: $(grep -E '^stat::number_of_executed_units' "$fuzz/$target.log")"
    else
      failed=$((failed + 1)) status=1
      echo "== fuzzing $target failed"
      tail -40 "$fuzz/$target.log"
    fi
  done
done

timings+=("$(printf '%5d s  %s' $((SECONDS - fuzz_started)) \
  "fuzzing (7 harnesses, two at a time)")")

echo "== time per pass"
printf '%s\n' "${timings[@]}"
echo "kiln: $passed passed, $failed failed, $skipped skipped"
exit "$status"
