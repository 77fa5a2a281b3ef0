#!/usr/bin/env bash
# Runs every kernels check and benchmark on the lent GPU machine in one call
# (GPU.md: device time is scarce). Build and bundle here first:
#   cmake --build build/release -j2 --target tierkv_gpu_tests tierkv_bench_kernels
#   mkdir -p .device/bundle/bin .device/bundle/lib
#   cp build/release/tests/gpu/tierkv_gpu_tests build/release/bench/tierkv_bench_kernels .device/bundle/bin/
# (both programs need only glibc/libstdc++ — cudart and gtest are static — so a
# plain copy is the bundle: ../shared/tools/device-bundle.sh stops with status 1,
# under pipefail, on a program that needs no extra library.)
# then call the device tool with carry [".device"] and the command
#   bash bench/bench_kernels_device.sh
# Results land in $OUT: gpu_tests.xml / gpu_tests.log, bench_kernels.json / .txt.
set -uo pipefail
out=${OUT:-/tmp/kernels_out}
mkdir -p "$out"
export LD_LIBRARY_PATH=.device/bundle/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$out/gpu.txt" 2>&1
.device/bundle/bin/tierkv_gpu_tests --gtest_output="xml:$out/gpu_tests.xml" >"$out/gpu_tests.log" 2>&1
tests_rc=$?
.device/bundle/bin/tierkv_bench_kernels --json "$out/bench_kernels.json" >"$out/bench_kernels.txt" 2>&1
bench_rc=$?
tail -n 40 "$out/gpu_tests.log"
cat "$out/bench_kernels.txt"
echo "tests rc=$tests_rc bench rc=$bench_rc"
exit $(( tests_rc != 0 || bench_rc != 0 ))
