"""Measures the Python package's cost per call against a running tierkvd: retrieve +
zero-copy views + release (Python) next to the same through ctypes with no Python
wrapper work, and put/get bandwidth. Usage: measure_overhead.py SOCKET [--iterations N]."""
import argparse
import ctypes
import json
import time

import numpy as np
import tierkv
from tierkv import _lib


def timed(fn, iterations):
    fn()  # warm
    t0 = time.perf_counter()
    for _ in range(iterations):
        fn()
    return (time.perf_counter() - t0) / iterations


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("socket")
    ap.add_argument("--iterations", type=int, default=2000)
    args = ap.parse_args()
    with tierkv.Client.connect(args.socket) as client:
        # A 32-head x 128 model's query; 8 KV heads of 128, 16-token f16 blocks (64 KiB).
        client.create_namespace("py-overhead", num_layers=1, num_q_heads=32, num_kv_heads=8, head_dim=128,
                                block_tokens=16, dtype="f16")
        with client.open_channel("py-overhead", staging_bytes=16 << 20) as ch:
            blocks = np.random.default_rng(0).standard_normal((64,) + ch.block_shape).astype(np.float16)
            ch.put(1, 0, 0, blocks)
            query = np.ones((32, 128), np.float32)

            def py_step():
                with ch.retrieve(1, 0, query, 16) as sel:
                    sel.tensors() if ch.gpu_arena_device else sel.views()  # zero copy either way

            lib, ptr = _lib.lib(), ch._ptr()
            table = (_lib.BlockRefC * 16)()
            count, lease, missing = ctypes.c_uint32(), ctypes.c_uint64(), ctypes.c_uint32()
            q = query.reshape(-1)

            def c_step():
                lib.tierkv_retrieve_ex(ptr, 1, 0, q.ctypes.data, q.size, 16, table, 16, ctypes.byref(count),
                                       ctypes.byref(lease), ctypes.byref(missing))
                lib.tierkv_release(ptr, lease.value)

            n = args.iterations
            bulk = max(1, n // 100)
            out = {
                "retrieve_views_release_python_us": 1e6 * timed(py_step, n),
                "retrieve_release_ctypes_only_us": 1e6 * timed(c_step, n),
                "put_64_blocks_MBps": blocks.nbytes / timed(lambda: ch.put(1, 0, 0, blocks), bulk) / 1e6,
                "get_64_blocks_MBps": blocks.nbytes / timed(lambda: ch.get(1, 0, 0, 64), bulk) / 1e6,
                "block_bytes": ch.block_bytes,
            }
        print(json.dumps({k: round(v, 1) for k, v in out.items()}))


if __name__ == "__main__":
    main()
