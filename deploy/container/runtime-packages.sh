#!/usr/bin/env bash
# Prints, one per line, the Debian/Ubuntu packages that own the shared libraries
# the given programs load (ldd), except those a CUDA runtime image already has
# (libc, libstdc++, libgcc, CUDA). Used by deploy/Containerfile to install only
# what the runtime stage needs.
set -euo pipefail
[[ $# -gt 0 ]] || { echo "usage: $0 PROGRAM..." >&2; exit 2; }
owner() {  # dpkg -S with and without the merged-/usr prefix
  local f=$1
  dpkg -S "$f" 2>/dev/null || dpkg -S "${f#/usr}" 2>/dev/null || dpkg -S "/usr$f" 2>/dev/null || true
}
for lib in $(ldd "$@" | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u); do
  owner "$lib"
  real=$(readlink -f "$lib")
  [[ $real != "$lib" ]] && owner "$real"
done | cut -d: -f1 | sort -u \
  | grep -v -E '^(libc6|libgcc-s1|libstdc\+\+6|cuda-.*|libcu.*|libnv.*)$' || true
