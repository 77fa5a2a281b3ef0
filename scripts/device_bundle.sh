#!/usr/bin/env bash
# Builds and packs everything the lent GPU machine runs (GPU.md: build
# here, bring the bundle, one call does all): every gpu-labelled test program (the
# end-to-end ones start the daemon, which travels too), the kernel and Retrieve
# benchmarks, libtierkv.so and the model for the Python package and reference engine, with the shared libraries a bare CUDA machine lacks, stripped and
# gzipped under the 64 MiB carry limit.
#   usage: scripts/device_bundle.sh [BUILD_DIR]      (default build/release)
# Then call the device tool with carry [".device"] and the command
#   bash scripts/device_run.sh
set -euo pipefail
build=${1:-build/release}
programs=(daemon/tierkvd tests/gpu/tierkv_gpu_tests tests/gpu/tierkv_gpu_e2e_tests
          tests/unit/tierkv_storage_pinning_gpu_tests tests/integration/tierkv_per_head_namespace_tests
          tests/integration/tierkv_retrieve_batch_tests bench/tierkv_bench_kernels bench/tierkv_bench_retrieve
          bench/tierkv_bench_ring bench/tierkv_bench_putget bench/tierkv_bench_disk bench/tierkv_bench_durable
          bench/tierkv_bench_remote client/libtierkv.so)
model=${TIERKV_STORIES260K:-$(dirname "$0")/../../shared/data/stories260K.bin}
cmake --build "$build" -j"$(nproc)" --target tierkvd tierkv_gpu_tests tierkv_gpu_e2e_tests \
  tierkv_storage_pinning_gpu_tests tierkv_per_head_namespace_tests tierkv_retrieve_batch_tests tierkv_bench_kernels tierkv_bench_retrieve \
  tierkv_bench_ring tierkv_bench_putget tierkv_bench_disk tierkv_bench_durable tierkv_bench_remote tierkv_shared
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bundle/bin" "$stage/bundle/lib"
# glibc, libstdc++ and libgcc are newer there (Ubuntu 24.04); everything else travels.
skip='/(libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s|ld-linux-x86-64|libcuda)\.so'
# redis-server and redis-cli, the put/get benchmark's peer and the remote tier's
# cluster (the GPU machine has none): from PATH.
redis=$(command -v redis-server redis-cli || true)
for p in "${programs[@]}" $redis; do
  [[ $p == /* ]] || p=$build/$p
  cp -L "$p" "$stage/bundle/bin/"
  { ldd "$p" | awk '/=> \//{print $3}' | grep -Ev "$skip" || true; } | while read -r lib; do
    cp -Ln "$lib" "$stage/bundle/lib/" 2>/dev/null || true
  done
done
strip "$stage"/bundle/bin/*
mv "$stage/bundle/bin/libtierkv.so" "$stage/bundle/lib/"
# The reference engine's model (the Python package and engine travel with the tree).
if [[ -f $model ]]; then cp "$model" "$stage/bundle/"; else echo "no $model: the engine run will skip"; fi
mkdir -p .device
tar -C "$stage" -czf .device/bundle.tar.gz bundle
size=$(stat -c %s .device/bundle.tar.gz)
echo "device bundle: .device/bundle.tar.gz, $((size / 1048576)) MiB (limit 64)"
(( size < 64 * 1048576 ))
