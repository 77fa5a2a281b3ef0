#!/usr/bin/env bash
# Validates the deployment files in deploy/ without Docker, Kubernetes or Grafana:
#   scripts/check_deploy.sh [TIERKVD_BINARY]
#
# - promtool: check config (prometheus.yml), check rules (alerts), test rules
#   (tierkv-alerts.test.yml: each alert fires on the series that should raise it),
#   check rules on every Grafana query turned into a recording rule (PromQL syntax)
# - python3 + PyYAML (scripts/check_deploy.py): YAML/JSON parse, Kubernetes objects
#   consistent, PrometheusRule = alert rules, metric names exported by the daemon
# - tierkvd --check-config on every shipped config (when the binary is given)
# - systemd-analyze verify on the unit (skipped with a note when systemd is absent)
# - bash -n on the shell scripts; COPY sources of the Containerfile exist
#
# Run by ctest (test check_deploy, label unit) and cheap: a few seconds.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TIERKVD=${1:-}
[[ -n $TIERKVD ]] && TIERKVD=$(realpath "$TIERKVD")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tierkv-check-deploy-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
failures=0
fail() { echo "  FAIL $*"; failures=$((failures + 1)); }
pass() { echo "  ok   $*"; }

# Debian's python3 carries PyYAML (python3-yaml); a python3 earlier on PATH
# (pyenv, venv) may not.
PY=""
for p in /usr/bin/python3 python3; do
  if command -v "$p" >/dev/null && "$p" -c 'import yaml' 2>/dev/null; then PY=$p; break; fi
done

echo "check_deploy: promtool"
if ! command -v promtool >/dev/null; then
  fail "promtool not found: install the Debian package prometheus (deploy/install-deps.sh)"
else
  out=$(promtool check config "$ROOT/deploy/prometheus/prometheus.yml" 2>&1) && pass "promtool check config prometheus.yml" \
    || fail "promtool check config prometheus.yml:"$'\n'"$out"
  out=$(promtool check rules "$ROOT/deploy/prometheus/tierkv-alerts.yml" 2>&1) && pass "promtool check rules tierkv-alerts.yml" \
    || fail "promtool check rules tierkv-alerts.yml:"$'\n'"$out"
  out=$(cd "$ROOT/deploy/prometheus" && promtool test rules tierkv-alerts.test.yml 2>&1) \
    && pass "promtool test rules tierkv-alerts.test.yml" || fail "promtool test rules:"$'\n'"$out"
fi

echo "check_deploy: YAML, JSON, Kubernetes, dashboard"
if [[ -z $PY ]]; then
  fail "no python3 with PyYAML: install python3-yaml (deploy/install-deps.sh)"
else
  "$PY" "$ROOT/scripts/check_deploy.py" "$ROOT" "$WORK" || fail "scripts/check_deploy.py"
  if command -v promtool >/dev/null && [[ -f $WORK/dashboard-rules.yml ]]; then
    out=$(promtool check rules "$WORK/dashboard-rules.yml" 2>&1) && pass "dashboard queries parse as PromQL" \
      || fail "dashboard queries (as recording rules):"$'\n'"$out"
  fi
fi

echo "check_deploy: tierkvd configs"
if [[ -n $TIERKVD ]]; then
  for cfg in deploy/systemd/tierkvd.toml deploy/container/tierkvd.toml; do
    out=$("$TIERKVD" --check-config --config "$ROOT/$cfg" 2>&1) && pass "tierkvd --check-config $cfg" \
      || fail "tierkvd --check-config $cfg: $out"
  done
else
  echo "  skip tierkvd --check-config (no binary given)"
fi

echo "check_deploy: systemd unit"
if command -v systemd-analyze >/dev/null; then
  # verify needs the ExecStart programs to exist: point them at one that does.
  exe=${TIERKVD:-/bin/true}
  sed "s|/usr/local/bin/tierkvd|$exe|g" "$ROOT/deploy/systemd/tierkvd.service" > "$WORK/tierkvd.service"
  out=$(cd "$WORK" && systemd-analyze verify ./tierkvd.service 2>&1) || true
  # verify exits 0 on unknown keys and bad values: any message is a failure.
  out=$(grep -v -e '^$' <<<"$out" || true)
  if [[ -z $out ]]; then pass "systemd-analyze verify tierkvd.service"; else fail "systemd-analyze verify:"$'\n'"$out"; fi
  grep -q '^LimitMEMLOCK=infinity$' "$ROOT/deploy/systemd/tierkvd.service" || fail "unit: LimitMEMLOCK=infinity missing"
  grep -q '^PrivateDevices=yes' "$ROOT/deploy/systemd/tierkvd.service" && fail "unit: PrivateDevices=yes hides /dev/nvidia*"
  grep -q '^DeviceAllow=char-nvidia\* rw' "$ROOT/deploy/systemd/tierkvd.service" || fail "unit: GPU devices not allowed"
else
  echo "  skip systemd-analyze verify (systemd-analyze not installed)"
fi

echo "check_deploy: stop timeouts exceed the shutdown drain"
# storage.shutdown_drain_s of a shipped config (else the documented default), which
# the service manager's stop timeout must exceed by 30 s (stop + drain + flush).
drain_of() {
  local v
  v=$(awk -F= '/^[[:space:]]*shutdown_drain_s[[:space:]]*=/ {gsub(/[[:space:]]|#.*/, "", $2); print $2; exit}' "$ROOT/$1")
  [[ -n $v ]] || v=$(awk -F= '/^[[:space:]]*shutdown_drain_s[[:space:]]*=/ {gsub(/[[:space:]]|#.*/, "", $2); print $2; exit}' "$ROOT/deploy/tierkvd.toml")
  echo "${v:-0}"
}
check_stop() {  # what, its stop timeout, the config it runs
  local drain; drain=$(drain_of "$3")
  if [[ -z $2 ]]; then fail "$1: no stop timeout found"
  elif (( $2 >= drain + 30 )); then pass "$1 stop timeout $2 s >= shutdown_drain_s $drain s of $3 + 30"
  else fail "$1 stop timeout $2 s < shutdown_drain_s $drain s of $3 + 30 (the drain would be killed)"; fi
}
check_stop "systemd unit" "$(sed -n 's/^TimeoutStopSec=\([0-9]*\)$/\1/p' "$ROOT/deploy/systemd/tierkvd.service")" \
  deploy/systemd/tierkvd.toml
check_stop "Kubernetes DaemonSet" \
  "$(sed -n 's/^ *terminationGracePeriodSeconds: *\([0-9]*\)$/\1/p' "$ROOT/deploy/k8s/daemonset.yaml")" \
  deploy/container/tierkvd.toml

echo "check_deploy: scripts and Containerfile"
for s in "$ROOT"/deploy/*.sh "$ROOT"/deploy/container/*.sh "$ROOT"/scripts/check_deploy.sh "$ROOT"/scripts/bench_report*.sh; do
  [[ -e $s ]] || continue
  bash -n "$s" || fail "bash -n ${s#$ROOT/}"
done
while read -r src; do
  [[ -e $ROOT/$src ]] || fail "Containerfile: COPY source $src does not exist"
done < <(awk '$1 == "COPY" && $2 !~ /^--from/ {for (i = 2; i < NF; ++i) print $i}' "$ROOT/deploy/Containerfile")
grep -q '^FROM .*nvidia/cuda:.*devel.* AS build' "$ROOT/deploy/Containerfile" || fail "Containerfile: no CUDA devel build stage"
grep -q '^FROM .*nvidia/cuda:.*runtime' "$ROOT/deploy/Containerfile" || fail "Containerfile: no CUDA runtime stage"
[[ $failures -eq 0 ]] && pass "shell syntax, Containerfile COPY sources and stages"

if [[ $failures -ne 0 ]]; then
  echo "check_deploy: $failures check(s) failed"
  exit 1
fi
echo "check_deploy: all checks passed"
