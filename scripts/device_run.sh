#!/usr/bin/env bash
# Runs on the lent GPU machine (see scripts/device_bundle.sh): every GPU test, the
# GPU end-to-end tests against a real tierkvd, the kernel benchmarks and the
# Retrieve round trip on the host and the GPU path. Results land in $OUT:
# gpu.txt, gpu_tests / gpu_e2e_tests / pinning_gpu_tests .{xml,txt}, bench_kernels.{json,txt},
# bench_retrieve_{cpu,gpu}.{json,txt}.
set -uo pipefail
out=${OUT:-/tmp/device_out}
mkdir -p "$out"
work=$(mktemp -d)
tar -C "$work" -xzf .device/bundle.tar.gz
b=$work/bundle
export LD_LIBRARY_PATH=$b/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export TIERKVD=$b/bin/tierkvd
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$out/gpu.txt" 2>&1
rc=0
run() {  # name, command...
  local name=$1; shift
  echo "== $name"
  "$@" >"$out/$name.txt" 2>&1 || { echo "$name failed (rc $?)"; rc=1; }
  tail -n 25 "$out/$name.txt"
}
run gpu_tests "$b/bin/tierkv_gpu_tests" --gtest_output="xml:$out/gpu_tests.xml"
run gpu_e2e_tests "$b/bin/tierkv_gpu_e2e_tests" --gtest_output="xml:$out/gpu_e2e_tests.xml"
run pinning_gpu_tests "$b/bin/tierkv_storage_pinning_gpu_tests" --gtest_output="xml:$out/pinning_gpu_tests.xml"
run bench_kernels "$b/bin/tierkv_bench_kernels" --json "$out/bench_kernels.json"
run bench_retrieve_gpu "$b/bin/tierkv_bench_retrieve" --gpu --contexts 32768,131072 --json "$out/bench_retrieve_gpu.json"
run bench_retrieve_cpu "$b/bin/tierkv_bench_retrieve" --contexts 32768,131072 --json "$out/bench_retrieve_cpu.json"
echo "rc=$rc"
exit $rc
