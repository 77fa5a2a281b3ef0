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
)
# Extra packages for the benchmark report (make bench-report) and the Redis peer.
if [[ "${TIERKV_DEPS_EXTRA:-0}" == 1 ]]; then
  PKGS+=(redis-server libhiredis-dev python3-matplotlib)
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
