#!/usr/bin/env bash
# Installs tierkvd as a systemd service from a Release build of this checkout:
#   cmake --preset release && cmake --build build/release -j
#   sudo deploy/install-service.sh [BUILD_DIR]        # default build/release
#
# Installs /usr/local/bin/{tierkvd,tierkvctl}, the unit, the system user (sysusers)
# and /etc/tierkv/tierkvd.toml (kept when it already exists), checks the config,
# then enables and (re)starts the service. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build/release}
PREFIX=${PREFIX:-/usr/local}

if [[ $(id -u) -ne 0 ]]; then
  echo "install-service: run as root (sudo $0)" >&2
  exit 1
fi
for f in "$BUILD/daemon/tierkvd" "$BUILD/client/tierkvctl"; do
  [[ -x $f ]] || { echo "install-service: $f missing: build Release first" >&2; exit 1; }
done

install -D -m 0755 "$BUILD/daemon/tierkvd" "$PREFIX/bin/tierkvd"
install -D -m 0755 "$BUILD/client/tierkvctl" "$PREFIX/bin/tierkvctl"
install -D -m 0644 docs/operations.md "$PREFIX/share/doc/tierkv/operations.md"
install -D -m 0644 deploy/systemd/tierkv.sysusers.conf /usr/lib/sysusers.d/tierkv.conf
unit=deploy/systemd/tierkvd.service
if [[ $PREFIX != /usr/local ]]; then
  sed "s|/usr/local/bin/|$PREFIX/bin/|g" "$unit" > /etc/systemd/system/tierkvd.service
else
  install -m 0644 "$unit" /etc/systemd/system/tierkvd.service
fi
systemd-sysusers /usr/lib/sysusers.d/tierkv.conf
if [[ ! -e /etc/tierkv/tierkvd.toml ]]; then
  install -D -m 0640 -g tierkv deploy/systemd/tierkvd.toml /etc/tierkv/tierkvd.toml
else
  echo "install-service: keeping /etc/tierkv/tierkvd.toml"
fi
"$PREFIX/bin/tierkvd" --check-config --config /etc/tierkv/tierkvd.toml
systemctl daemon-reload
systemctl enable tierkvd.service
systemctl restart tierkvd.service
for _ in $(seq 50); do
  if "$PREFIX/bin/tierkvctl" --socket /run/tierkv/tierkvd.sock ping >/dev/null 2>&1; then
    echo "install-service: tierkvd is running (systemctl status tierkvd; journalctl -u tierkvd)"
    exit 0
  fi
  sleep 0.2
done
echo "install-service: tierkvd did not answer; see journalctl -u tierkvd" >&2
exit 1
