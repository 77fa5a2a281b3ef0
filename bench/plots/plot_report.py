#!/usr/bin/env python3
"""Plots of the bench report (matplotlib, PNG, small): reads the JSON that
scripts/bench_report.py collected and draws one PNG per sweep it finds.

  plot_report.py OUT_DIR IMG_DIR

  ring_latency.png  ring-spin*.json   round-trip percentiles per path and spin setting
  disk_ratio.png    disk.json         D tier / raw device per block size (+ GB/s)
  kernels_cpu.png   kernels.json      CPU kernel latency against context length
  eval_recall.png   eval.json         mass recall against budget, per retriever, one panel per trace

A missing or unreadable JSON skips its plot (said on stdout); exit status 0 unless
matplotlib itself is missing.
"""
import glob
import json
import os
import sys

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    sys.exit("plot_report: matplotlib is missing (Debian: python3-matplotlib; TIERKV_DEPS_EXTRA=1 deploy/install-deps.sh)")

DPI = 100
SIZE = (7.5, 4.2)


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def save(fig, img_dir, name):
    path = os.path.join(img_dir, name)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    print(f"plot_report: {path} ({os.path.getsize(path) // 1024} KiB)")


def plot_ring(out_dir, img_dir):
    series = []
    for path in sorted(glob.glob(os.path.join(out_dir, "ring-*.json"))):
        d = load(path)
        if not d:
            continue
        for name, r in d.get("results", {}).items():
            series.append((f"{name}, spin {d.get('spin_us', '?')} µs", r))
    if not series:
        return "no ring-*.json"
    fig, ax = plt.subplots(figsize=SIZE)
    pcts = [50, 90, 99]
    xs = range(len(pcts))
    for label, r in series:
        ax.plot(xs, [r.get(f"p{p}_us") for p in pcts], marker="o", label=label)
    ax.scatter([0, 2], [5, 50], marker="_", s=400, color="black", zorder=5, label="target (shm ring, spinning)")
    ax.set_yscale("log")
    ax.set_xticks(list(xs), [f"p{p}" for p in pcts])
    ax.set_ylabel("round trip, µs (log)")
    ax.set_title("Round trip: shared-memory ring vs control socket")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, img_dir, "ring_latency.png")
    return None


def plot_disk(out_dir, img_dir):
    d = load(os.path.join(out_dir, "disk.json"))
    cases = [c for c in (d or {}).get("disk", []) if c.get("ratio")]
    if not cases:
        return "no disk.json with results"
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.2))
    groups = {}
    for c in cases:
        groups.setdefault(f"{c['pattern']} {c['op']} (QD {c['qd']})", []).append(c)
    for label, cs in sorted(groups.items()):
        cs.sort(key=lambda c: c["block_kib"])
        kib = [c["block_kib"] for c in cs]
        ax1.plot(kib, [c["ratio"] for c in cs], marker="o", label=label)
        line, = ax2.plot(kib, [c["tier_gbps"] for c in cs], marker="o", label=f"tier, {label}")
        ax2.plot(kib, [c["raw_gbps"] for c in cs], marker="x", linestyle="--", color=line.get_color(),
                 label=f"raw, {label}")
    sizes = sorted({c["block_kib"] for c in cases})
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(k) for k in sizes])
        ax.minorticks_off()
    ax1.axhline(0.9, color="black", linestyle=":", label="target for reads (0.90)")
    ax1.set_xlabel("block size, KiB")
    ax1.set_ylabel("D tier / raw io_uring")
    ax1.set_ylim(0, max(1.1, max(c["ratio"] for c in cases) * 1.05))
    ax1.set_title("D tier as a share of the raw device")
    ax1.grid(True, alpha=0.3)
    ax1.legend(fontsize=7)
    ax2.set_xlabel("block size, KiB")
    ax2.set_ylabel("GB/s")
    ax2.set_title("Throughput (solid: tier, dashed: raw)")
    ax2.grid(True, alpha=0.3)
    ax2.legend(fontsize=6)
    save(fig, img_dir, "disk_ratio.png")
    return None


def plot_kernels(out_dir, img_dir):
    d = load(os.path.join(out_dir, "kernels.json"))
    rows = [r for r in (d or {}).get("rows", []) if r.get("context_tokens")]
    if not rows:
        return "no kernels.json with context sweeps"
    fig, ax = plt.subplots(figsize=SIZE)
    series = {}
    for r in rows:
        series.setdefault(f"{r['kernel']} ({r['backend']})", []).append((r["context_tokens"], r["median_us"]))
    for label, pts in sorted(series.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    ax.set_xscale("log", base=2)
    contexts = sorted({r["context_tokens"] for r in rows})
    ax.set_xticks(contexts, [f"{c >> 20}M" if c >= 1 << 20 else f"{c >> 10}K" for c in contexts])
    ax.minorticks_off()
    ax.set_yscale("log")
    ax.set_xlabel("context, tokens")
    ax.set_ylabel("median µs per call (log)")
    ax.set_title("Kernels, one sequence and layer (32 q / 8 KV heads, d 128, bf16)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    save(fig, img_dir, "kernels_cpu.png")
    return None


def plot_eval(out_dir, img_dir):
    """Mass recall against budget per retriever, one panel per workload (trace)."""
    d = load(os.path.join(out_dir, "eval.json")) or {}
    workloads = [w for w in d.get("workloads", []) if any(r.get("budgets") for r in w.get("runs", []))]
    if not workloads:
        return "no eval.json with workloads"
    fig, axes = plt.subplots(1, len(workloads), figsize=(3.6 * len(workloads), 4.2), sharey=True, squeeze=False)
    for ax, w in zip(axes[0], workloads):
        for run in w["runs"]:
            bs = sorted((b for b in run.get("budgets", []) if b.get("kind", "fraction") == "fraction"),
                        key=lambda b: b["value"])
            if bs:
                ax.plot([100 * b["value"] for b in bs], [b.get("mass_recall") for b in bs], marker="o",
                        markersize=3, label=run.get("retriever", "?"))
        ax.axhline(0.95, color="black", linestyle=":")
        ax.axvline(10, color="grey", linestyle=":", alpha=0.5)
        ax.set_title(w.get("name", "?"), fontsize=9)
        ax.set_xlabel("budget, % of blocks")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("attention-mass recall (target 0.95 at 10%)")
    axes[0][-1].legend(fontsize=6)
    save(fig, img_dir, "eval_recall.png")
    return None


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    out_dir, img_dir = sys.argv[1], sys.argv[2]
    os.makedirs(img_dir, exist_ok=True)
    for name, fn in (("ring", plot_ring), ("disk", plot_disk), ("kernels", plot_kernels), ("eval", plot_eval)):
        try:
            why = fn(out_dir, img_dir)
        except Exception as e:  # noqa: BLE001  JSON of another shape: skip this plot, say so
            plt.close("all")
            why = f"unexpected JSON ({type(e).__name__}: {e})"
        if why:
            stale = {"ring": "ring_latency.png", "disk": "disk_ratio.png", "kernels": "kernels_cpu.png",
                     "eval": "eval_recall.png"}[name]
            if os.path.exists(os.path.join(img_dir, stale)):
                os.remove(os.path.join(img_dir, stale))  # never show a plot of an older run
            print(f"plot_report: {name}: skipped ({why})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
