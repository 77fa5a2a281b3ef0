#!/usr/bin/env bash
# The bench report (make bench-report): runs the benchmarks of a Release build at a
# size that fits a 2-core machine in under 40 minutes, plots the sweeps and
# regenerates BENCHMARKS.md. Arguments go to scripts/bench_report.py (--help).
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian's python3 has matplotlib (python3-matplotlib); a python3 earlier on PATH may not.
for py in /usr/bin/python3 python3; do
  if command -v "$py" >/dev/null && "$py" -c 'import matplotlib' 2>/dev/null; then
    exec "$py" scripts/bench_report.py "$@"
  fi
done
echo "bench_report: no python3 with matplotlib: TIERKV_DEPS_EXTRA=1 deploy/install-deps.sh" >&2
exit 1
