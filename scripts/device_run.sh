#!/usr/bin/env bash
# Runs on the lent GPU machine (see scripts/device_bundle.sh): every GPU test, the
# GPU end-to-end tests against a real tierkvd, the kernel benchmarks, the Retrieve
# round trip on the host and the GPU path, the Python package's tests and the
# reference engine decoding on CUDA. Each step has its own time limit so that the
# whole run ends inside one device call; everything lands in $OUT/results.tar.gz
# (the device tool brings back at most 8 files) plus $OUT/summary.txt.
#   usage: bash scripts/device_run.sh [STEP...]   (default: every step)
set -uo pipefail
out=${OUT:-/tmp/device_out}
mkdir -p "$out"
work=$(mktemp -d)
chmod 755 "$work"  # the Python ACL test runs a client as another uid: it must reach libtierkv.so
res=$work/results
mkdir -p "$res"
tar -C "$work" -xzf .device/bundle.tar.gz
b=$work/bundle
export LD_LIBRARY_PATH=$b/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export TIERKVD=$b/bin/tierkvd TIERKV_LIBRARY=$b/lib/libtierkv.so TIERKV_STORIES260K=$b/stories260K.bin
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/python
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv >"$res/gpu.txt" 2>&1
python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.is_available())' >>"$res/gpu.txt" 2>&1
cat "$res/gpu.txt"
rc=0
steps=" ${*:-gpu_tests gpu_e2e_tests pinning_gpu_tests memcheck_e2e per_head_on_gpu batch_on_gpu bench_kernels bench_retrieve_gpu bench_retrieve_cpu batch_retrieve_gpu bench_ring bench_putget python engine engine_per_head engine_profile bench_disk bench_durable bench_remote} "
run() {  # name, seconds, command...
  local name=$1 limit=$2; shift 2
  [[ $steps == *" $name "* ]] || return 0
  echo "== $name"
  local t0=$SECONDS
  timeout -k 5 "$limit" "$@" >"$res/$name.txt" 2>&1
  local st=$?
  echo "$name: rc $st, $((SECONDS - t0)) s" | tee -a "$res/summary.txt"
  (( st == 0 )) || rc=1
  tail -n 30 "$res/$name.txt"
  cp "$res/summary.txt" "$out/"
  tar -C "$work" -czf "$out/results.tar.gz" results  # after every step: a killed run keeps what it did
}
run gpu_tests 90 "$b/bin/tierkv_gpu_tests" --gtest_output="xml:$res/gpu_tests.xml"
run gpu_e2e_tests 90 "$b/bin/tierkv_gpu_e2e_tests" --gtest_output="xml:$res/gpu_e2e_tests.xml"
run pinning_gpu_tests 40 "$b/bin/tierkv_storage_pinning_gpu_tests" --gtest_output="xml:$res/pinning_gpu_tests.xml"
run memcheck_e2e 60 compute-sanitizer --tool memcheck --target-processes all --error-exitcode 9 \
  "$b/bin/tierkv_gpu_e2e_tests"
# Per-head namespaces and batched Retrieve through a daemon whose G is the real GPU.
run per_head_on_gpu 60 "$b/bin/tierkv_per_head_namespace_tests"
run batch_on_gpu 60 "$b/bin/tierkv_retrieve_batch_tests"
run bench_kernels 60 "$b/bin/tierkv_bench_kernels" --json "$res/bench_kernels.json"
run bench_retrieve_gpu 60 "$b/bin/tierkv_bench_retrieve" --gpu --contexts 32768,131072 --steps 100 --json "$res/bench_retrieve_gpu.json"
run bench_retrieve_cpu 45 "$b/bin/tierkv_bench_retrieve" --contexts 32768,131072 --steps 100 --json "$res/bench_retrieve_cpu.json"
# Issue 12 item 3 on the GPU: a batch of B sequences at 128K tokens per layer, the
# selections of one batched Retrieve scored in shared SelectBatch runs (decision 0029).
run batch_retrieve_gpu 150 "$b/bin/tierkv_bench_retrieve" --batch 1,8,32 --contexts 131072 --steps 15 \
  --json "$res/batch_retrieve_gpu.json"
# Issue 15 on 16 cores: the ring's round trip on a quiet machine, put/get vs Redis.
run bench_ring 40 "$b/bin/tierkv_bench_ring" --iters 50000 --spin-us 50 --json "$res/bench_ring.json"
run bench_putget 120 env PATH="$b/bin:$PATH" "$b/bin/tierkv_bench_putget" --blocks 1024 --rounds 3 --clients 1,4 \
  --json "$res/bench_putget.json"
run python 50 python3 -m pytest -q -p no:cacheprovider python/tests
run engine 120 python3 examples/engine/run.py --device cuda --contexts 512,2048 --steps 32 --batch 8 --seeds 1 \
  --budgets 0.2 --retrievers "exact;mean" --tasks greedy,nll --out "$res/engine"
run engine_per_head 90 python3 examples/engine/run.py --device cuda --contexts 512 --steps 32 --batch 8 --seeds 1 \
  --budgets 0.2 --retrievers "exact;mean:r=4" --tasks nll --granularity head --out "$res/engine_per_head"
run engine_profile 60 python3 examples/engine/profile_retrieve.py --device cuda --json "$res/engine_profile.json"
# The machine's own disk (issue 15: is it NVMe-fast, and what does the D tier keep of
# it?), durable puts there (issue 16), the remote tier with Redis on spare cores
# (issue 13: put p50 with R on vs off).
run bench_disk 90 "$b/bin/tierkv_bench_disk" --file-mib 512 --rounds 2 --rand-kib 16,64,256 \
  --json "$res/bench_disk.json"
run bench_durable 60 "$b/bin/tierkv_bench_durable" --rounds 2 --block-kib 8,64 --json "$res/bench_durable.json"
run bench_remote 60 env PATH="$b/bin:$PATH" "$b/bin/tierkv_bench_remote" --rounds 2 --json "$res/bench_remote.json"
echo "rc=$rc" | tee -a "$res/summary.txt"
cp "$res/summary.txt" "$out/"
tar -C "$work" -czf "$out/results.tar.gz" results
exit $rc
