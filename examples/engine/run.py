#!/usr/bin/python3
"""Reference decode engine: stories260K with its KV cache in tierkv; quality and cost.

For each context length C and seed it samples a batch of sequences from the model
itself (no tokenizer ships), prefills C - steps tokens, and decodes `steps` tokens:
  - greedy: free-running greedy generation; agreement with the local full-attention
    baseline (share of positions with the same token, and the first divergent step);
  - nll: teacher-forced on the sampled continuation; mean NLL per token and its
    difference to the baseline, and top-1 agreement with the baseline's argmax.
Modes: the local baseline, tierkv full (budget = every block) and tierkv sparse at
each budget fraction, for each retriever of the namespace policy. Cost per decode
step: time in retrieval (the retrieve calls and the copy of the blocks to the
engine) vs the rest (the model's compute), and bytes moved.

Writes <out>/results.json, <out>/results.md (tables) and <out>/quality_vs_budget.png.
With --export-traces DIR, also the local baseline's attention traces (one file per
sequence, docs/trace-format.md) for tierkv_bench_eval --trace=FILE.
Example: /usr/bin/python3 examples/engine/run.py --out /tmp/engine --contexts 512 --seeds 1
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import signal
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import torch  # noqa: E402

from engine import PagedEngine, budget_fn, generate, sample_sequences, teacher_forced  # noqa: E402
from kv_backend import LocalBackend, TierkvBackend, default_daemon  # noqa: E402
from tinyllama import ROPE_THETA, Model  # noqa: E402
from trace_export import TraceRecorder  # noqa: E402

DEFAULT_MODEL = os.environ.get("TIERKV_STORIES260K", str(HERE.parents[2] / "shared" / "data" / "stories260K.bin"))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=DEFAULT_MODEL, help="llama2.c checkpoint (default: %(default)s)")
    p.add_argument("--out", default="engine-out", help="output folder (default: %(default)s)")
    p.add_argument("--contexts", default="512,2048",
                   help="context lengths C, comma-separated; C > 512 uses untrained positions (default: %(default)s)")
    p.add_argument("--steps", type=int, default=256, help="decode steps per run (default: %(default)s)")
    p.add_argument("--batch", type=int, default=8, help="sequences decoded together (default: %(default)s)")
    p.add_argument("--seeds", default="1,2,3", help="one batch per seed, comma-separated (default: %(default)s)")
    p.add_argument("--block-tokens", type=int, default=8, help="tokens per KV block (default: %(default)s)")
    p.add_argument("--budgets", default="0.1,0.2,0.4", help="sparse budget fractions (default: %(default)s)")
    p.add_argument("--retrievers", default="exact;minmax;mean;mean:r=4",
                   help="namespace policy retrievers: exact, minmax, mean or index/ factory strings, "
                        "separated by ';' if a factory string has commas (default: %(default)s)")
    p.add_argument("--trigger", default="every", choices=["every", "drift", "every_n"],
                   help="namespace policy trigger (default: %(default)s)")
    p.add_argument("--drift-tau", type=float, default=0.9, help="drift trigger threshold (default: %(default)s)")
    p.add_argument("--trigger-every", type=int, default=4, help="every_n trigger period (default: %(default)s)")
    p.add_argument("--sink-blocks", type=int, default=1, help="policy sink_blocks (default: %(default)s)")
    p.add_argument("--recent-window", type=int, default=2, help="policy recent_window (default: %(default)s)")
    p.add_argument("--granularity", default="layer", choices=["layer", "head"],
                   help="selection per layer or per KV head (the namespace's granularity; default: %(default)s)")
    p.add_argument("--dtype", default="f32", choices=["f32", "f16"], help="namespace dtype (default: %(default)s)")
    p.add_argument("--tasks", default="greedy,nll", help="greedy and/or nll (default: %(default)s)")
    p.add_argument("--daemon", default=None, help=f"tierkvd to start (default: $TIERKVD or {default_daemon()})")
    p.add_argument("--socket", default=None, help="use a running tierkvd at this socket instead of starting one")
    p.add_argument("--device", default="cpu", help="torch device: cpu or cuda (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)")
    p.add_argument("--no-plot", action="store_true", help="skip the plot")
    p.add_argument("--export-traces", default=None, metavar="DIR",
                   help="write the local full-attention run's traces (the first task's: greedy or nll) into DIR, "
                        "one per sequence, C<context>-seed<seed>-seq<b>.trace; evaluate them with "
                        "tierkv_bench_eval --trace=FILE (docs/trace-format.md)")
    p.add_argument("--per-sequence-retrieve", action="store_true",
                   help="one retrieve per (sequence, layer) instead of one batched retrieve per layer")
    p.add_argument("--per-sequence-acquire-put", action="store_true",
                   help="full mode: one acquire per (sequence, layer), and one put per (sequence, layer), instead of "
                        "one acquire_batch / put_batch per layer (decision 0028)")
    a = p.parse_args(argv)
    a.contexts = [int(x) for x in a.contexts.split(",")]
    a.seeds = [int(x) for x in a.seeds.split(",")]
    a.budgets = [float(x) for x in a.budgets.split(",")]
    a.retrievers = [x for x in (a.retrievers.split(";") if ";" in a.retrievers else a.retrievers.split(",")) if x]
    a.tasks = a.tasks.split(",")
    for c in a.contexts:
        if c - a.steps < 1:
            p.error(f"context {c} must exceed --steps {a.steps}")
    return a


class Progress:
    def __init__(self):
        self.t0 = time.monotonic()
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def __call__(self, label: str, i: int, n: int):
        now = time.monotonic()
        if i + 1 < n and now - self.last < (0.5 if self.tty else 10.0):
            return
        self.last = now
        line = f"[{now - self.t0:7.1f}s] {label}: step {i + 1}/{n}"
        print(("\r" + line.ljust(100)) if self.tty else line, end="" if self.tty else "\n", file=sys.stderr, flush=True)

    def done(self, msg: str):
        print(("\r" if self.tty else "") + f"[{time.monotonic() - self.t0:7.1f}s] {msg}".ljust(100),
              file=sys.stderr, flush=True)


def run_mode(model, backend, args, sampled, ref, label, budget, progress, recorder=None) -> dict:
    """One mode on one batch: greedy and/or teacher-forced, quality vs `ref` and cost.
    recorder: records the first task's run (trace_export.TraceRecorder)."""
    seqs, P = sampled.tokens, sampled.prompt_len
    out = {}
    cost = {"steps": 0, "total_s": 0.0, "retrieve_s": 0.0, "put_s": 0.0,
            "retrieve_s_per_layer": [0.0] * model.config.n_layers}
    s0 = vars(backend.stats).copy()
    if "greedy" in args.tasks:
        eng = PagedEngine(model, backend, args.block_tokens, recorder)
        recorder = None
        toks = generate(eng, seqs[:, :P], args.steps, budget, lambda i: progress(f"{label} greedy", i, args.steps),
                        sampled.prefill)
        out["greedy_tokens"] = toks
        _add_times(cost, eng.times)
    if "nll" in args.tasks:
        eng = PagedEngine(model, backend, args.block_tokens, recorder)
        nll, top = teacher_forced(eng, seqs, P, budget, lambda i: progress(f"{label} nll", i, args.steps),
                                  sampled.prefill)
        out["nll"], out["top1"] = nll, top
        _add_times(cost, eng.times)
    s1 = vars(backend.stats)
    moved = {k: s1[k] - s0[k] for k in s1}
    r = {"cost": cost, "moved": moved}
    if ref is not None:
        r.update(compare(out, ref))
    if "nll" in out:
        r["nll"] = out["nll"].mean().item()
    return r, out


def _add_times(cost, t):
    cost["steps"] += t.steps
    cost["total_s"] += t.total_s
    cost["retrieve_s"] += t.retrieve_s
    cost["put_s"] += t.put_s
    cost["retrieve_s_per_layer"] = [a + b for a, b in zip(cost["retrieve_s_per_layer"], t.retrieve_s_per_layer)]


def compare(out, ref) -> dict:
    r = {}
    if "greedy_tokens" in out:
        same = out["greedy_tokens"] == ref["greedy_tokens"]
        r["greedy_agreement"] = same.float().mean().item()
        first = [int((~row).nonzero()[0]) if (~row).any() else row.numel() for row in same]
        r["greedy_first_divergence"] = sum(first) / len(first)
    if "nll" in out:
        r["nll_delta"] = (out["nll"].mean() - ref["nll"].mean()).item()
        r["top1_agreement"] = (out["top1"] == ref["top1"]).float().mean().item()
    return r


def policy_for(args, retriever: str) -> dict:
    return {"retriever": retriever, "trigger": args.trigger, "drift_tau": args.drift_tau,
            "trigger_every": args.trigger_every, "sink_blocks": args.sink_blocks,
            "recent_window": args.recent_window}


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: stop our tierkvd
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    model = Model(args.model, args.device)
    c = model.config
    shape = (2, c.n_kv_heads, args.block_tokens, c.head_dim)
    progress = Progress()
    rows = []
    local = LocalBackend(shape, model.device)
    with TierkvBackend(shape, model.device, num_layers=c.n_layers, num_q_heads=c.n_heads, dtype=args.dtype,
                       policy=policy_for(args, args.retrievers[0] if args.retrievers else "exact"),
                       socket_path=args.socket, daemon=args.daemon,
                       batch_retrieve=not args.per_sequence_retrieve, granularity=args.granularity,
                       batch_acquire_put=not args.per_sequence_acquire_put) as tkv:
        for C in args.contexts:
            for seed in args.seeds:
                tag = f"C={C} seed={seed}"
                sampled = sample_sequences(model, args.batch, C + 1, seed, prompt_len=C - args.steps,
                                           keep_pre_rope=args.export_traces is not None)
                progress.done(f"{tag}: sampled {args.batch} sequences of {C + 1} tokens")
                base = {"context": C, "untrained_positions": C > c.seq_len, "seed": seed,
                        "blocks_at_start": (C - args.steps) // args.block_tokens}
                rec = TraceRecorder(c.n_layers, c.n_heads) if args.export_traces is not None else None
                r, ref = run_mode(model, local, args, sampled, None, f"{tag} local full", budget_fn("full"), progress,
                                  rec)
                if rec is not None:
                    export_traces(rec, args, C, seed, c)
                rows.append({**base, "backend": "local", "mode": "full", "retriever": None, "budget": 1.0, **r})
                modes = [("full", None)] + [(b, ret) for ret in args.retrievers for b in args.budgets]
                for mode, ret in modes:
                    tkv.policy = tkv.client.set_policy(tkv.namespace, policy_for(args, ret or "exact"))
                    label = f"{tag} tierkv {mode}" + (f" {ret}" if ret else "")
                    r, _ = run_mode(model, tkv, args, sampled, ref, label, budget_fn(mode), progress)
                    rows.append({**base, "backend": "tierkv", "mode": "full" if mode == "full" else "sparse",
                                 "retriever": ret, "budget": 1.0 if mode == "full" else mode,
                                 "policy": tkv.policy, **r})
                    progress.done(f"{label}: " + ", ".join(f"{k}={r[k]:.4f}" for k in
                                  ("greedy_agreement", "nll_delta", "top1_agreement") if k in r))
    result = {"args": {k: v for k, v in vars(args).items()}, "model": vars(c) | {"path": args.model},
              "namespace_dtype": args.dtype, "torch": torch.__version__, "python": platform.python_version(),
              "machine": platform.machine(), "cpus": os.cpu_count(), "rows": rows,
              "summary": summarize(rows, args, c)}
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    md = markdown(result)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(md)
    print(md)
    if not args.no_plot:
        plot(result, os.path.join(args.out, "quality_vs_budget.png"))
    return 0


def export_traces(rec, args, C, seed, c):
    task = "greedy" if "greedy" in args.tasks else "nll"
    what = "greedy generation" if task == "greedy" else "teacher-forced on the sampled text"
    desc = (f"{os.path.basename(args.model)} reference engine (examples/engine), local full attention, {what}, "
            f"context {C} ({C - args.steps} prompt tokens + {args.steps} decode steps), seed {seed}"
            + (f"; positions >= {c.seq_len} are past the model's trained context" if C > c.seq_len else ""))
    paths = rec.write(args.export_traces, f"C{C}-seed{seed}", desc, rope_theta=ROPE_THETA)
    print(f"wrote {len(paths)} traces to {args.export_traces}", file=sys.stderr)


def summarize(rows, args, c) -> list[dict]:
    """Means over seeds per (context, backend, retriever, budget)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["context"], r["backend"], r["retriever"], r["budget"]), []).append(r)
    out = []
    for (C, backend, ret, budget), rs in groups.items():
        s = {"context": C, "untrained_positions": C > c.seq_len, "backend": backend, "retriever": ret,
             "budget": budget, "seeds": len(rs)}
        for k in ("greedy_agreement", "greedy_first_divergence", "nll", "nll_delta", "top1_agreement"):
            if k in rs[0]:
                s[k] = sum(r[k] for r in rs) / len(rs)
        steps = sum(r["cost"]["steps"] for r in rs)
        ms = lambda key: 1e3 * sum(r["cost"][key] for r in rs) / steps  # noqa: E731
        s["step_ms"], s["retrieve_ms"], s["put_ms"] = ms("total_s"), ms("retrieve_s"), ms("put_s")
        s["compute_ms"] = s["step_ms"] - s["retrieve_ms"] - s["put_ms"]
        s["retrieve_ms_per_layer"] = [1e3 * sum(r["cost"]["retrieve_s_per_layer"][i] for r in rs) / steps
                                      for i in range(c.n_layers)]
        mv = {k: sum(r["moved"][k] for r in rs) for k in rs[0]["moved"]}
        s["retrieve_calls_per_step"] = mv["retrieve_calls"] / steps
        s["sequence_retrieves_per_step"] = mv["sequence_retrieves"] / steps
        s["blocks_per_retrieve"] = mv["blocks_retrieved"] / max(1, mv["sequence_retrieves"])  # per sequence
        s["bytes_retrieved_per_step"] = mv["bytes_retrieved"] / steps
        s["bytes_query_per_step"] = mv["bytes_query"] / steps
        s["bytes_put_per_step"] = mv["bytes_put"] / steps
        s["us_per_retrieve_call"] = (1e6 * sum(r["cost"]["retrieve_s"] for r in rs) / max(1, mv["retrieve_calls"]))
        out.append(s)
    return out


def _ctx_label(C, untrained):
    return f"{C}" + (" (untrained positions)" if untrained else " (trained range)")


def markdown(result) -> str:
    S = result["summary"]
    a = result["args"]
    lines = [f"Batch {a['batch']} sequences x seeds {a['seeds']}, {a['steps']} decode steps, block_tokens "
             f"{a['block_tokens']}, namespace dtype {a['namespace_dtype'] if 'namespace_dtype' in a else a['dtype']}, "
             f"trigger {a['trigger']}, sink_blocks {a['sink_blocks']}, recent_window {a['recent_window']}, "
             f"selection per {'KV head' if a.get('granularity') == 'head' else 'layer'}.", "",
             "Quality (means over seeds; deltas and agreements against the local full-attention baseline):", "",
             "| context | mode | retriever | budget | greedy agreement | first divergence (step) | mean NLL | "
             "NLL - full | top-1 agreement (teacher-forced) |",
             "|---|---|---|---|---|---|---|---|---|"]
    f = lambda s, k, fmt: (format(s[k], fmt) if k in s else "-")  # noqa: E731
    for s in S:
        mode = "local full" if s["backend"] == "local" else ("tierkv full" if s["retriever"] is None else "tierkv sparse")
        lines.append(f"| {_ctx_label(s['context'], s['untrained_positions'])} | {mode} | {s['retriever'] or '-'} | "
                     f"{s['budget']:.0%} | {f(s, 'greedy_agreement', '.3f')} | "
                     f"{f(s, 'greedy_first_divergence', '.1f')} | {f(s, 'nll', '.4f')} | {f(s, 'nll_delta', '+.4f')} | "
                     f"{f(s, 'top1_agreement', '.3f')} |")
    lines += ["", "Cost per decode step of the whole batch (ms; retrieval = the retrieve calls and the copy of the "
              "blocks into engine memory; compute = the rest of the step: the model and the attention):", "",
              "| context | mode | retriever | budget | step | retrieval | per layer (batch) | compute | put | "
              "retrieve calls | us/call | blocks/call | KiB moved (blocks) | KiB query |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in S:
        mode = "local full" if s["backend"] == "local" else ("tierkv full" if s["retriever"] is None else "tierkv sparse")
        per_layer = sum(s["retrieve_ms_per_layer"]) / len(s["retrieve_ms_per_layer"])
        lines.append(f"| {s['context']} | {mode} | {s['retriever'] or '-'} | {s['budget']:.0%} | {s['step_ms']:.2f} | "
                     f"{s['retrieve_ms']:.2f} | {per_layer:.2f} | {s['compute_ms']:.2f} | {s['put_ms']:.2f} | "
                     f"{s['retrieve_calls_per_step']:.0f} | {s['us_per_retrieve_call']:.0f} | "
                     f"{s['blocks_per_retrieve']:.1f} | {s['bytes_retrieved_per_step'] / 1024:.1f} | "
                     f"{s['bytes_query_per_step'] / 1024:.2f} |")
    return "\n".join(lines) + "\n"


def plot(result, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    S = result["summary"]
    contexts = sorted({s["context"] for s in S})
    metrics = [(k, t) for k, t in (("nll_delta", "mean NLL - full attention (nats)"),
                                   ("greedy_agreement", "greedy agreement with full (256 tokens)"))
               if any(k in s for s in S)]
    fig, axes = plt.subplots(len(metrics), len(contexts), figsize=(5 * len(contexts), 3.6 * len(metrics)),
                             squeeze=False)
    for j, C in enumerate(contexts):
        full = [s for s in S if s["context"] == C and s["backend"] == "tierkv" and s["retriever"] is None]
        for i, (k, title) in enumerate(metrics):
            ax = axes[i][j]
            for ret in sorted({s["retriever"] for s in S if s["retriever"]}):
                pts = sorted((s["budget"], s[k]) for s in S if s["context"] == C and s["retriever"] == ret and k in s)
                pts += [(1.0, full[0][k])] if full and k in full[0] else []
                ax.plot([100 * b for b, _ in pts], [v for _, v in pts], marker="o", label=ret)
            ax.set_xlabel("budget (% of the context's blocks)")
            ax.set_ylabel(title)
            untrained = C > result["model"]["seq_len"]
            ax.set_title(f"context {C}" + (" (untrained positions)" if untrained else " (trained range)"))
            ax.grid(alpha=0.3)
            ax.legend()
    fig.suptitle("stories260K, reference engine with the KV cache in tierkv")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
