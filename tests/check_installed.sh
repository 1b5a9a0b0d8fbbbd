#!/usr/bin/env bash
# Installs kiln from build dir $1 into a temporary prefix and builds, as a
# user would, with `pkg-config --cflags --libs kiln` only: the C examples
# (examples/c/) and a C++ file that includes kiln.h. Then runs them.
set -euo pipefail
build=$1 source=$2
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
meson install -C "$build" --destdir "$prefix" --no-rebuild >"$prefix/install.log" 2>&1 ||
  { cat "$prefix/install.log"; exit 1; }
root=$prefix$(meson introspect "$build" --buildoptions |
  python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "prefix"))')
pc=$(dirname "$(find "$root" -name kiln.pc | head -1)")
export PKG_CONFIG_PATH=$pc PKG_CONFIG_SYSROOT_DIR=$prefix
flags=$(pkg-config --cflags --libs kiln)
export LD_LIBRARY_PATH=$(dirname "$pc") # kiln.pc lives in LIBDIR/pkgconfig
cd "$prefix"
for example in robust_mlp custom_loop; do
  cc -std=c11 -Wall -Wextra -Werror "$source/examples/c/$example.c" $flags -lm -o "$example"
  echo "== examples/c/$example.c ($(wc -l <"$source/examples/c/$example.c") lines)"
  "./$example" "$source/examples/robust_mlp.ini"
done
g++ -std=c++17 -Wall -Wextra -Werror "$source/tests/cxx_header.cpp" $flags -o cxx_header
./cxx_header
man=$(find "$root" -path '*/man1/kiln.1' | head -1)
[[ -n $man ]] || { echo "kiln.1 was not installed under $root"; exit 1; }
grep -q "^.SS \"kiln predict" "$man" || { echo "$man does not describe kiln predict"; exit 1; }
echo "== kiln(1) installed as ${man#"$root"/}"
