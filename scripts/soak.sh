#!/usr/bin/env bash
# Daemon soak (issue 16): the crash and soak tests of tests/integration/daemon_crash_test.cc
# run long. Client processes (tierkv_soak_client) work through the public client API
# against a real tierkvd:
#   crash: several clients put write-through blocks, tierkvd is SIGKILLed at random
#          moments and restarted, every acknowledged-durable block must read back byte
#          for byte (--crash-rounds rounds);
#   soak:  --clients clients run every kind of operation (put, get, retrieve, prefix
#          lookup/load, close) for --minutes, clients SIGKILLed at random, the policy
#          changed now and then, G, H and D too small for the load (D fills: puts go on
#          without D); tierkvd's RSS, descriptors, threads, channels and leases printed
#          every second; at the end every channel and lease must be reclaimed, then a
#          kill -9 and every acknowledged block read back. --crash-every-s also kills
#          the daemon during the soak.
# Zero lost acknowledged blocks and zero wrong bytes, or it exits non-zero.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/soak.sh [options]

  --mode M           crash | soak | both (default both)
  --crash-rounds N   kill -9 rounds of the crash mode (default 100)
  --minutes M        length of the soak, may be fractional (default 3)
  --clients N        client processes at a time in the soak (default 4)
  --crash-every-s S  also kill -9 the daemon every S seconds of the soak (default 0: only at the end)
  --seed S           seed (default: random, printed; replays a failure)
  --short            the CI form: 20 crash rounds and a 15 s soak
  --build DIR        build directory (default: build/release)
  --log FILE         also write the output to FILE
  -h, --help         this help

Builds nothing: build first with
  cmake --build build/release -j2 --target tierkv_daemon_crash_tests tierkvd
USAGE
}

mode=both rounds=100 minutes=3 clients=4 crash_every=0 seed="" build="build/release" log=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --mode) mode="$2"; shift 2 ;;
    --crash-rounds) rounds="$2"; shift 2 ;;
    --minutes) minutes="$2"; shift 2 ;;
    --clients) clients="$2"; shift 2 ;;
    --crash-every-s) crash_every="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --short) rounds=20; minutes=0.25; shift ;;
    --build) build="$2"; shift 2 ;;
    --log) log="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
done
case "$mode" in crash|soak|both) ;; *) echo "--mode: crash, soak or both" >&2; exit 2 ;; esac

bin="$build/tests/integration/tierkv_daemon_crash_tests"
[[ -x "$bin" ]] || { echo "$bin not found: build the tierkv_daemon_crash_tests target first" >&2; exit 2; }
[[ -n "$seed" ]] || seed=$(( (RANDOM << 15) | RANDOM ))
seconds=$(awk -v m="$minutes" 'BEGIN { printf "%d", m * 60 }')
[[ -n "$log" ]] && exec > >(tee -a "$log") 2>&1

run() {  # filter, then the environment
  local filter="$1"; shift
  env TIERKV_SOAK_SEED="$seed" "$@" "$bin" --gtest_filter="$filter" --gtest_brief=1 2>&1 | grep -v '^I '
}

start=$(date +%s)
if [[ "$mode" != soak ]]; then
  echo "== crash: $rounds kill -9 rounds, seed $seed"
  if ! run 'DaemonCrashTest.*' TIERKV_CRASH_ROUNDS="$rounds"; then
    echo "crash mode FAILED; replay with: scripts/soak.sh --mode crash --crash-rounds $rounds --seed $seed" >&2
    exit 1
  fi
fi
if [[ "$mode" != crash ]]; then
  echo "== soak: $seconds s, $clients clients, daemon kill every ${crash_every} s, seed $seed"
  if ! run 'DaemonSoakTest.*' TIERKV_SOAK_SECONDS="$seconds" TIERKV_SOAK_CLIENTS="$clients" \
       TIERKV_SOAK_CRASH_EVERY_S="$crash_every"; then
    echo "soak FAILED; replay with: scripts/soak.sh --mode soak --minutes $minutes --clients $clients" \
         "--crash-every-s $crash_every --seed $seed" >&2
    exit 1
  fi
fi
echo "soak.sh passed in $(( $(date +%s) - start )) s"
