#!/usr/bin/env bash
# Checks that the bench report renders whatever the benchmarks left (ctest
# bench_report_render, label unit): a run that was skipped, one that failed, one
# whose JSON has another shape, one that is fine. Needs python3; plots only when
# matplotlib is installed (without it the report renders without plots).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tierkv-bench-report-test-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
PY=python3
[[ -x /usr/bin/python3 ]] && PY=/usr/bin/python3
mkdir -p "$WORK/out"
cat > "$WORK/out/runs.json" <<'JSON'
{"machine": {"cpu": "test CPU", "cores": 2, "kernel": "6.1", "date": "2026-01-01 00:00 UTC", "commit": "abc"},
 "total_seconds": 12.5,
 "runs": [
  {"key": "ring", "tag": "spin50", "name": "ring-spin50", "status": "ok", "command": "ring --json x", "seconds": 1.0},
  {"key": "disk", "tag": "", "name": "disk", "status": "failed", "reason": "exit status 1 (see disk.log)", "command": "disk", "seconds": 2.0},
  {"key": "kernels", "tag": "", "name": "kernels", "status": "ok", "command": "kernels", "seconds": 3.0},
  {"key": "eval", "tag": "", "name": "eval", "status": "timed out", "reason": "stopped after 300 s"},
  {"key": "eval", "tag": "headline", "name": "eval-headline", "status": "ok", "command": "eval", "seconds": 5.0},
  {"key": "store", "tag": "", "name": "store", "status": "skipped", "reason": "not built"},
  {"key": "putget", "tag": "", "name": "putget", "status": "ok", "command": "putget", "seconds": 4.0}]}
JSON
cat > "$WORK/out/ring-spin50.json" <<'JSON'
{"benchmark": "ring_round_trip", "iters": 1000, "spin_us": 50,
 "results": {"shm ring no-op": {"p50_us": 2.5, "p90_us": 4.0, "p99_us": 60.0},
             "control socket ping": {"p50_us": 15.0, "p90_us": 19.0, "p99_us": 30.0}}}
JSON
echo '{"rows": "another shape"}' > "$WORK/out/kernels.json"
cat > "$WORK/out/eval-headline.json" <<'JSON'
{"bench": "tierkv_bench_eval", "summary": [
  {"budget": "10%", "workload": "synthetic v2 16384", "retriever": "exact", "seeds": 4, "mass_recall_mean": 0.967, "mass_recall_sd": 0.009},
  {"budget": "10%", "workload": "synthetic v2 16384", "retriever": "exact/head", "seeds": 4, "mass_recall_mean": 0.984, "mass_recall_sd": 0.005},
  {"budget": "10%", "workload": "synthetic v2 16384", "retriever": "minmax", "seeds": 4, "mass_recall_mean": 0.951, "mass_recall_sd": 0.014},
  {"budget": "10%", "workload": "synthetic v2 16384", "retriever": "minmax/head", "seeds": 4, "mass_recall_mean": 0.978, "mass_recall_sd": 0.007},
  {"budget": "10%", "workload": "synthetic v2 65536", "retriever": "minmax/head", "seeds": 4, "mass_recall_mean": 0.931, "mass_recall_sd": 0.012}]}
JSON
cat > "$WORK/out/putget.json" <<'JSON'
{"benchmark": "putget", "results": [
  {"clients": 1, "op": "get", "tierkv_gbs": 15.0, "redis_gbs": 1.5, "ratio": 10.0},
  {"clients": 4, "op": "get", "tierkv_gbs": 9.0, "redis_gbs": 3.0, "ratio": 3.0}]}
JSON
"$PY" "$ROOT/scripts/bench_report.py" --render-only --out "$WORK/out" --img "$WORK/img" --target "$WORK/B.md" > "$WORK/log" 2>&1 \
  || { cat "$WORK/log"; echo "bench_report_selftest: rendering failed"; exit 1; }
fail=0
expect() { grep -qF -- "$1" "$WORK/B.md" || { echo "bench_report_selftest: missing: $1"; fail=1; }; }
expect "| shm ring no-op | 50 µs | 2.50 | 4.00 | 60.00 |"
expect "| shm ring round trip p50 (spin 50 µs) | 2.50 µs | ≤ 5 µs | met |"
expect "| shm ring round trip p99 (spin 50 µs) | 60.00 µs | ≤ 50 µs | not met |"
expect 'Not measured: `disk`: failed: exit status 1 (see disk.log)'
expect 'Not measured: `eval`: timed out: stopped after 300 s'
expect 'Not measured: `store`: skipped: not built'
expect "| test CPU, 2 cores"
expect "| get of 128 KiB blocks, one client: tierkv / Redis on loopback | 10.00x (15.00 vs 1.50 GB/s) | ≥ 5x | met |"
expect "| get of 128 KiB blocks, 4 clients: tierkv / Redis on loopback | 3.00x (9.00 vs 3.00 GB/s) | ≥ 10x | not met |"
expect "| mass recall at 10% budget, synthetic v2 16384: best retriever, mean over 4 seeds | 0.978 ±0.007 (minmax/head; oracle exact 0.967, exact/head 0.984) | ≥ 0.95 | met |"
expect "| … a rerun with 4 other seeds moves it by at most (95%: 1.96·sd·√(2/4)) | 0.0097 | < 0.01 | met |"
expect "| … a rerun with 4 other seeds moves it by at most (95%: 1.96·sd·√(2/4)) | 0.0166 | < 0.01 | not met |"
if grep -q "@@" "$WORK/B.md"; then echo "bench_report_selftest: placeholders left"; fail=1; fi
[[ $fail -eq 0 ]] && echo "bench_report_selftest: the report renders partial and broken results"
exit $fail
