#!/usr/bin/env bash
# One script for the day a GPU is lent: builds kiln, lists the OpenCL
# devices, runs the test suite on the first GPU, tunes the GEMM for it with
# a two-minute budget and benchmarks the example models, writing every
# result under $OUT (default: device-check/). It is planned to finish in
# under 9 minutes; each step has a time limit of its own, and a step that
# fails or runs out of time is recorded and the next one still runs.
#
#   tools/device-check.sh              on the first GPU (KILN_DEVICE=gpu)
#   tools/device-check.sh --dry-run    every step, shortened (one test suite,
#                                      one tuning candidate, bench --quick), on
#                                      rusticl's CPU device: what CI runs
#   tools/device-check.sh --fetch-debs downloads the Debian packages kiln
#                                      needs into device-debs/, for a machine
#                                      that can reach no package registry
#
# A machine without a package registry: run --fetch-debs where apt works,
# copy the tree with device-debs/ across, and the check unpacks them (into
# /, as root) before building when the build's tools or headers are missing.
#
# Results: devices.json, tests.log, tune.log, bench.json (kiln bench --json
# on the examples), peak.json (the device's peak bandwidth and float32
# FLOPS from its specification, where the device is in the table below),
# steps.tsv (each step's status and seconds) and summary.txt.
set -uo pipefail
cd "$(dirname "$0")/.."

mode=gpu
case ${1:-} in
  --dry-run) mode=dry ;;
  --fetch-debs) mode=fetch ;;
  --help|-h) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  '') ;;
  *) echo "device-check: unknown argument '$1' (see --help)" >&2; exit 2 ;;
esac

# The Debian packages a build and the GPU run need (tools/setup.sh installs
# these and more where apt works).
debs=(meson ninja-build pkg-config ocl-icd-opencl-dev ocl-icd-libopencl1 opencl-headers
      opencl-c-headers opencl-clhpp-headers libclblast-dev libclblast1 libinih-dev libinih1
      libcjson-dev libcjson1 zlib1g-dev libzip-dev libzip4 check libsubunit-dev
      libsubunit0 clinfo python3-mesonpy)

if [[ $mode == fetch ]]; then
  mkdir -p device-debs
  (cd device-debs && apt-get download "${debs[@]}") || {
    echo "device-check: apt-get download failed (run 'apt-get update' first?)" >&2; exit 1; }
  echo "device-check: $(ls device-debs | wc -l) packages in device-debs/"
  exit 0
fi

OUT=${OUT:-device-check}
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
build=${KILN_BUILD_DIR:-build}
steps=$OUT/steps.tsv
: >"$steps"
started=$SECONDS

if [[ $mode == dry ]]; then
  export KILN_DEVICE=rusticl RUSTICL_ENABLE=llvmpipe
  limit_build=600 limit_tests=300 limit_tune=120 limit_bench=400
  tests=("$build/tests/test_model") bench_flags=(--quick)
  tune=(--worker --engine kiln --kiln-tile 4x8/7 --shapes NN:5x9x30)
  models=(examples/fashion_mlp.ini)
else
  export KILN_DEVICE=${KILN_DEVICE:-gpu}
  limit_build=150 limit_tests=210 limit_tune=150 limit_bench=120
  tests=(meson test -C "$build" --print-errorlogs --suite unit) bench_flags=()
  tune=(--budget 2m)
  models=(examples/fashion_mlp.ini examples/fashion_cnn.ini)
  for m in examples/gpt*.ini examples/resnet*.ini; do [[ -f $m ]] && models+=("$m"); done
fi
# On the GPU, kernels compiled here stay here, so the timings start from
# the same (cold) state every time and the user's own cache is never
# touched; the dry run keeps the cache it is given (the test suite's).
[[ $mode == gpu ]] && export KILN_CACHE_DIR=$OUT/kernel-cache

# Runs step $1 with a time limit of $2 seconds, its output in $OUT/$1.log,
# and records its status and seconds.
step() {
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS rc
  timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
  rc=$?
  local how=ok
  ((rc == 124 || rc == 137)) && how="timed out after ${limit} s"
  ((rc != 0 && rc != 124 && rc != 137)) && how="failed (exit $rc)"
  printf '%s\t%s\t%d\n' "$name" "$how" $((SECONDS - t0)) >>"$steps"
  echo "device-check: $name: $how ($((SECONDS - t0)) s)"
  return "$rc"
}

# The NVIDIA driver's OpenCL library, where the container has it but no
# ICD file names it.
register_nvidia_icd() {
  ls /etc/OpenCL/vendors/*nvidia* >/dev/null 2>&1 && return 0
  local lib
  lib=$(ldconfig -p 2>/dev/null | awk '/libnvidia-opencl\.so\.1/ {print $NF; exit}')
  [[ -z $lib ]] && lib=$(find /usr/local/nvidia /usr/lib* -name 'libnvidia-opencl.so.1' 2>/dev/null | head -1)
  [[ -z $lib ]] && return 0
  if mkdir -p /etc/OpenCL/vendors 2>/dev/null && echo "$lib" >/etc/OpenCL/vendors/nvidia.icd; then
    echo "device-check: registered $lib as an OpenCL ICD"
  fi
}

prepare() {
  if ! command -v meson >/dev/null || ! pkg-config --exists clblast 2>/dev/null; then
    if [[ -d device-debs ]] && ((EUID == 0)); then
      for f in device-debs/*.deb; do dpkg -x "$f" / || return 1; done
      ldconfig
    elif [[ $mode == dry ]] || tools/setup.sh; then
      :
    else
      echo "device-check: no meson or CLBlast, no package registry and no device-debs/" >&2
      return 1
    fi
  fi
  [[ $mode == gpu ]] && register_nvidia_icd
  if [[ ! -f $build/build.ninja ]]; then
    meson setup "$build" -Dmpi=disabled || return 1
  fi
  meson compile -C "$build"
}

export -f prepare register_nvidia_icd
export mode build
step build "$limit_build" bash -c prepare || { echo "device-check: the build failed; see $OUT/build.log" >&2; exit 1; }
kiln=$build/kiln
step devices 30 "$kiln" devices --json
cp "$OUT/devices.log" "$OUT/devices.json"
"$kiln" devices >"$OUT/devices.txt" 2>&1

# The device the steps below use, as kiln picks it from KILN_DEVICE.
device_name=$("$kiln" devices --json 2>/dev/null | python3 -c '
import json, os, sys
devices = json.load(sys.stdin)
print(([d for d in devices if d["default"]] or devices or [{}])[0].get("name", "unknown"))' 2>/dev/null)
echo "device-check: device ${device_name:-unknown} (KILN_DEVICE=$KILN_DEVICE)"

# Peak figures from the vendors' specification sheets: memory bandwidth in
# GB/s and float32 (non-tensor) TFLOPS.
python3 - "$device_name" >"$OUT/peak.json" <<'PY'
import json, sys
name = sys.argv[1]
table = [  # (part of the device name, GB/s, float32 TFLOPS, source)
    ("H200", 4800, 67.0, "NVIDIA H200 SXM"),
    ("H100 PCIe", 2000, 51.0, "NVIDIA H100 PCIe"),
    ("H100", 3350, 67.0, "NVIDIA H100 SXM"),
    ("A100-SXM4-80GB", 2039, 19.5, "NVIDIA A100 80GB SXM"),
    ("A100", 1555, 19.5, "NVIDIA A100 40GB"),
    ("L40S", 864, 91.6, "NVIDIA L40S"),
    ("L4", 300, 30.3, "NVIDIA L4"),
    ("RTX 4090", 1008, 82.6, "NVIDIA GeForce RTX 4090"),
    ("MI300X", 5300, 163.4, "AMD Instinct MI300X"),
    ("MI250X", 3277, 47.9, "AMD Instinct MI250X"),
    ("gfx1100", 960, 61.4, "AMD Radeon RX 7900 XTX"),
    ("Arc(TM) A770", 560, 19.7, "Intel Arc A770"),
    ("Max 1550", 3277, 52.4, "Intel Data Center GPU Max 1550"),
]
for key, bw, tflops, what in table:
    if key.lower() in name.lower():
        print(json.dumps({"device": name, "spec": what, "peak_bandwidth_gbs": bw,
                          "peak_fp32_tflops": tflops}))
        break
else:
    print(json.dumps({"device": name, "spec": None,
                      "note": "not in tools/device-check.sh's table"}))
PY

step tests "$limit_tests" "${tests[@]}"
step tune "$limit_tune" "$kiln" tune "${tune[@]}"
step bench "$limit_bench" "$kiln" bench "${models[@]}" --json "${bench_flags[@]}"
# kiln bench prints its JSON document last; progress lines come before it.
python3 - "$OUT/bench.log" >"$OUT/bench.json" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
start = min(i for i in (text.find("["), text.find("{"), len(text)) if i >= 0)
try:
    print(json.dumps(json.loads(text[start:]), indent=1))
except ValueError:
    print(json.dumps({"error": "kiln bench printed no JSON document; see bench.log"}))
PY

{
  echo "device: ${device_name:-unknown} (KILN_DEVICE=$KILN_DEVICE), mode $mode"
  echo "total: $((SECONDS - started)) s"
  column -t -s $'\t' "$steps"
} | tee "$OUT/summary.txt"
! grep -qv $'\tok\t' "$steps"
