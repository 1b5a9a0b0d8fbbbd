#!/usr/bin/env bash
# Installs what kiln needs from Debian's packages (only what is missing;
# silent when everything is there) and builds kiln into build/.
# Run as root, or as a user with sudo. Safe to run again and again.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  gcc g++ libc6-dev python3 meson ninja-build pkg-config   # build (g++: the C++ header test)
  ocl-icd-opencl-dev opencl-headers libclblast-dev      # OpenCL and CLBlast
  libinih-dev libcjson-dev zlib1g-dev check             # model files, checkpoints, gzip, tests
  libzip-dev                                            # NumPy .npz archives
  libpng-dev libjpeg62-turbo-dev                        # image folders (PNG, JPEG)
  pocl-opencl-icd mesa-opencl-icd clinfo                # CPU OpenCL drivers
  dataset-fashion-mnist                                 # the demo data
  valgrind clang libclang-rt-14-dev                     # leak checks and fuzzing (tools/test.sh)
  libopenblas0                                          # the host baseline of kiln bench
  python3-numpy python3-pytest python3-mesonpy          # the Python package: its tests, its wheel (meson-python)
  openmpi-bin libopenmpi-dev                            # data-parallel training (mpirun)
  libprotobuf-c-dev protobuf-c-compiler                 # ONNX export (onnx.proto)
  python3-venv                                          # the ONNX tests' venv (tools/test.sh)
  iproute2                                              # the two-host test's namespaces (ip netns)
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null || { echo "setup: run as root to install: ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
  fi
  echo "setup: installing ${missing[*]}"
  log=$(mktemp)
  if ! { "${sudo[@]}" apt-get update -qq &&
         "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
           --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "setup: installing packages failed" >&2
    exit 1
  fi
  rm -f "$log"
fi

build=${KILN_BUILD_DIR:-build}
if [[ ! -f $build/build.ninja ]]; then
  meson setup "$build" >"$build.setup.log" 2>&1 || { cat "$build.setup.log" >&2; exit 1; }
  rm -f "$build.setup.log"
fi
log=$build/compile.log
meson compile -C "$build" >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
