"""Where a decode step's retrieval time goes: one batched Retrieve of the engine's
backend split into the daemon call alone, the call plus reading the block tables,
and the engine's whole fetch (the call, the table and the copy of the blocks to the
engine's device). The reference model's shape (5 layers, 8 q / 4 KV heads, head_dim
8, 8-token blocks), B sequences of N blocks, random keys; prints milliseconds per
batched call, means over --iterations.

  PYTHONPATH=python python3 examples/engine/profile_retrieve.py --device cuda
(starts its own tierkvd: $TIERKVD, else build/release/daemon/tierkvd)."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kv_backend import TierkvBackend  # noqa: E402

LAYERS, Q_HEADS, KV_HEADS, BLOCK_TOKENS, HEAD_DIM = 5, 8, 4, 8, 8


def timed_ms(fn, n: int) -> float:
    fn()  # warm
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e3


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="torch device of the engine: cpu or cuda (default: %(default)s)")
    p.add_argument("--batch", type=int, default=8, help="sequences per batched call (default: %(default)s)")
    p.add_argument("--blocks", type=int, default=256, help="blocks per sequence (default: %(default)s)")
    p.add_argument("--budgets", default="51,256", help="budgets in blocks (default: %(default)s)")
    p.add_argument("--retrievers", default="mean,exact", help="policy retrievers (default: %(default)s)")
    p.add_argument("--iterations", type=int, default=30, help="timed calls per figure (default: %(default)s)")
    p.add_argument("--json", default=None, help="also write the figures here")
    args = p.parse_args(argv)
    shape = (2, KV_HEADS, BLOCK_TOKENS, HEAD_DIM)
    seqs = list(range(1, args.batch + 1))
    rng = np.random.default_rng(0)
    rows = []
    with TierkvBackend(shape, torch.device(args.device), num_layers=LAYERS, num_q_heads=Q_HEADS) as tk:
        for s in seqs:
            for layer in range(LAYERS):
                tk.put(s, layer, 0, torch.from_numpy(rng.standard_normal((args.blocks,) + shape).astype(np.float32)))
        queries = torch.from_numpy(rng.standard_normal((args.batch, Q_HEADS * HEAD_DIM)).astype(np.float32))
        q, ch = queries.numpy(), tk.channel
        print(f"G on a real GPU: {ch.gpu_arena_device is not None}; daemon: {tk.client.stats().get('gpu')}")
        for retriever in args.retrievers.split(","):
            tk.client.set_policy(tk.namespace, {"retriever": retriever, "sink_blocks": 1, "recent_window": 2})
            for budget in (int(b) for b in args.budgets.split(",")):
                def call():
                    with ch.retrieve_batch(0, seqs, q, budget):
                        pass

                def tables():
                    with ch.retrieve_batch(0, seqs, q, budget) as b:
                        [b.blocks(i) for i in range(len(seqs))]

                row = {"retriever": retriever, "budget": budget, "call_ms": timed_ms(call, args.iterations),
                       "tables_ms": timed_ms(tables, args.iterations),
                       "fetch_ms": timed_ms(lambda: tk.retrieve_batch(seqs, 0, queries, budget, args.blocks),
                                            args.iterations)}
                rows.append(row)
                print(f"{retriever:8s} budget {budget:4d}: call {row['call_ms']:7.3f} ms   + tables "
                      f"{row['tables_ms']:7.3f} ms   engine fetch {row['fetch_ms']:7.3f} ms")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": args.device, "batch": args.batch, "blocks": args.blocks, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
