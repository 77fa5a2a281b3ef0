#!/usr/bin/env bash
# Checks that index/ is exactly what tierkvd links (issue 16 item 4, decision 0017):
# relinks tierkvd from a configured and built build folder with a linker map, then
# requires every object of libtierkv_index.a to be pulled into the daemon and no
# object of libtierkv_eval.a (the evaluation harness) to be. Also checks that no
# daemon-side folder includes eval/.
# Usage: scripts/check_index_linked.sh [BUILD_DIR]   (default build/release)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build/release}" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tierkv-index-linked-XXXXXX")
trap 'rm -rf "$WORK"' EXIT

if grep -rn '#include "eval/' "$ROOT"/{common,io,kernels,storage,index,daemon,client}; then
  echo "check_index_linked: the files above include eval/ (eval/ depends on index/, never the reverse)" >&2
  exit 1
fi
link="$BUILD/daemon/CMakeFiles/tierkvd.dir/link.txt"
[[ -f $link && -f $BUILD/index/libtierkv_index.a ]] || { echo "build tierkvd in $BUILD first" >&2; exit 1; }
cmd=$(sed "s# -o tierkvd # -o $WORK/tierkvd -Wl,-Map=$WORK/tierkvd.map #" "$link")
(cd "$BUILD/daemon" && eval "$cmd")
ar t "$BUILD/index/libtierkv_index.a" | sort > "$WORK/members"
grep -oE 'libtierkv_index\.a\([A-Za-z0-9_.]+\)' "$WORK/tierkvd.map" | sed 's/.*(//; s/)$//' | sort -u > "$WORK/pulled"
unused=$(comm -23 "$WORK/members" "$WORK/pulled")
if [[ -n $unused ]]; then
  echo "check_index_linked: objects of libtierkv_index.a that tierkvd does not link: $unused" >&2
  exit 1
fi
if grep -q 'libtierkv_eval\.a' "$WORK/tierkvd.map"; then
  echo "check_index_linked: tierkvd links libtierkv_eval.a" >&2
  exit 1
fi
echo "index/ == what tierkvd links: all $(wc -l < "$WORK/members") objects of libtierkv_index.a, nothing of eval/"
