#!/usr/bin/env bash
# Crash soak: the crash test (tests/fault/storage_crash_test.cc) for many more
# rounds: a child process puts blocks into a write-through BlockStore (real RocksDB,
# O_DIRECT slab files) and is SIGKILLed at random moments; after every restart each
# durable put must read back and no corrupt block may be served.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/crash_soak.sh [options]

  --rounds N     kill/restart rounds per run (default 1000)
  --runs N       runs, each with a fresh seed; 0 = until --minutes is up (default 1)
  --minutes M    stop starting new runs after M minutes (default: no limit)
  --kill-ms MS   each kill comes uniformly within MS ms of the child's start (default 400)
  --seed S       seed of the first run (default: random; printed, replays a failure)
  --dir DIR      keep the store in DIR across runs (default: a fresh scratch dir per run)
  --build DIR    build directory (default: build/release)
  -h, --help     this help

Builds nothing: build first with
  cmake --build build/release -j2 --target tierkv_storage_crash_tests
Exits non-zero at the first failing run and prints the seed to replay it.
USAGE
}

rounds=1000 runs=1 minutes=0 kill_ms=400 seed="" dir="" build="build/release"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --minutes) minutes="$2"; shift 2 ;;
    --kill-ms) kill_ms="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    --build) build="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
done

bin="$build/tests/fault/tierkv_storage_crash_tests"
[[ -x "$bin" ]] || { echo "$bin not found: build the tierkv_storage_crash_tests target first" >&2; exit 2; }
[[ -n "$seed" ]] || seed=$(( (RANDOM << 15) | RANDOM ))
start=$(date +%s)
run=0
while :; do
  if [[ "$runs" -gt 0 && "$run" -ge "$runs" ]]; then break; fi
  if [[ "$minutes" -gt 0 && $(( $(date +%s) - start )) -ge $(( minutes * 60 )) ]]; then break; fi
  s=$(( seed + run * 7919 ))
  echo "== run $run: $rounds rounds, seed $s"
  # pipefail: the run fails when the test binary does (grep only hides the log lines).
  if ! TIERKV_CRASH_ROUNDS="$rounds" TIERKV_CRASH_KILL_MS="$kill_ms" TIERKV_CRASH_SEED="$s" \
       TIERKV_CRASH_DIR="$dir" "$bin" --gtest_brief=1 2>&1 | grep -v '^I ' ; then
    echo "crash soak FAILED in run $run; replay with: scripts/crash_soak.sh --rounds $rounds --seed $s" >&2
    exit 1
  fi
  run=$(( run + 1 ))
done
echo "crash soak passed: $run run(s) of $rounds rounds in $(( $(date +%s) - start )) s"
