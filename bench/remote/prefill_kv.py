#!/usr/bin/python3
"""The reference model's prefill, timed, and its KV blocks dumped for tierkv_bench_remote.

Runs stories260K (examples/engine/tinyllama.py) over a prompt of N tokens on the CPU
with torch (dense causal forward, best of --rounds), and writes the prompt's full
blocks of K and V in tierkv's block layout (K[kv_heads][block_tokens][head_dim] then
V, f32), ordered [block][layer], to --out with a JSON header line, so that
`tierkv_bench_remote --kv PATH` puts, loads and compresses these very blocks.

    /usr/bin/python3 bench/remote/prefill_kv.py --tokens 512 --out /tmp/kv.bin
"""
import argparse
import json
import pathlib
import sys
import time

import torch

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "examples" / "engine"))
from tinyllama import Model  # noqa: E402

DEFAULT_MODEL = HERE.parents[3] / "shared" / "data" / "stories260K.bin"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--block-tokens", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: one core)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = Model(a.model)
    c = model.config
    if a.tokens > c.seq_len or a.tokens < a.block_tokens:
        ap.error(f"--tokens must be in [{a.block_tokens}, {c.seq_len}]")
    g = torch.Generator().manual_seed(7)
    prompt = torch.randint(1, c.vocab_size, (1, a.tokens), generator=g)
    best = float("inf")
    for _ in range(a.rounds):
        t0 = time.perf_counter()
        _, keys, values = model.dense_forward(prompt)
        best = min(best, time.perf_counter() - t0)
    nb, bt = a.tokens // a.block_tokens, a.block_tokens
    with open(a.out, "wb") as f:
        header = {"layers": c.n_layers, "q_heads": c.n_heads, "kv_heads": c.n_kv_heads, "head_dim": c.head_dim,
                  "block_tokens": bt, "blocks": nb, "dtype": "f32", "prefill_s": best, "tokens": a.tokens,
                  "threads": a.threads}
        f.write((json.dumps(header) + "\n").encode())
        for b in range(nb):
            for layer in range(c.n_layers):
                k = keys[layer][0, :, b * bt:(b + 1) * bt]  # [Hkv, bt, hd]
                v = values[layer][0, :, b * bt:(b + 1) * bt]
                f.write(torch.cat((k.flatten(), v.flatten())).contiguous().numpy().astype("<f4").tobytes())
    print(f"stories260K prefill of {a.tokens} tokens on the CPU ({a.threads} thread): {best * 1e3:.2f} ms "
          f"(best of {a.rounds}); {nb} blocks x {c.n_layers} layers -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
