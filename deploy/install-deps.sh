#!/usr/bin/env bash
# Installs the Debian packages tierkv needs to build, test and benchmark.
# Idempotent: installs only what is missing, runs `apt-get update` at most once.
# Runs as root, or through sudo when available. CUDA is expected in /usr/local/cuda
# (optional: the build works without it).
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config make
  liburing-dev librocksdb-dev libfaiss-dev libopenblas-dev liblapack-dev
  libboost-dev prometheus-cpp-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libtomlplusplus-dev nlohmann-json3-dev libxxhash-dev
  curl
  # Operations tests (make test): a real Prometheus + promtool, PyYAML for scripts/check_deploy.sh.
  prometheus python3-yaml
  # Python tests (make test, label python): the tierkv package (numpy, pytest) and the
  # reference engine in examples/engine (torch, matplotlib) on /usr/bin/python3.
  python3-numpy python3-pytest python3-torch python3-matplotlib
  # The remote tier R (storage/remote/, make test): hiredis to build, a local Redis
  # Cluster of redis-server processes for its tests (they start their own); zstd
  # for its optional value compression; OpenSSL (libssl-dev) for TLS ([remote] tls)
  # and the openssl CLI that makes the TLS cluster test's certificates.
  redis-server libhiredis-dev libzstd-dev libssl-dev openssl
  # The thread-safety build (make tsa): clang's -Wthread-safety.
  clang
)
# Extra packages for the benchmark report (make bench-report).
if [[ "${TIERKV_DEPS_EXTRA:-0}" == 1 ]]; then
  PKGS+=(python3-matplotlib)
fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#PKGS[@]} packages present"
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "install-deps: missing ${missing[*]}; run as root or install sudo" >&2
    exit 1
  fi
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Debian starts redis-server as a service on install: tierkv's tests and benchmarks
# start their own servers on free ports, so the packaged one must not keep running.
if [[ " ${missing[*]} " == *" redis-server "* ]]; then
  if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
    $SUDO systemctl disable --now redis-server >/dev/null 2>&1 || true
  elif command -v service >/dev/null; then
    $SUDO service redis-server stop >/dev/null 2>&1 || true
  fi
fi
