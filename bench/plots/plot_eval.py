#!/usr/bin/python3
"""Plots of tierkv_bench_eval's JSON (docs/retrieval-eval.md).

  /usr/bin/python3 bench/plots/plot_eval.py docs/img bench/report/tierkv_bench_eval.json [more.json ...]

Workloads come from every JSON given; latency rows of all of them are merged
(e.g. a separate run that times the slow-to-build methods at 128K).

Writes, per workload W (a file-safe name of the workload):
  recall_vs_budget_W.png  attention-mass recall against the budget (share of
                          visible blocks), one line per method; the 0.95 target
                          at 10% is marked.
  recall_vs_bytes_W.png   attention-mass recall against the bytes moved per
                          layer-step (KV blocks fetched by top-k plus index bytes
                          read off memory, e.g. SPANN postings), one line per
                          method, with min/max (Quest) drawn thick: a method is
                          better than min/max at equal bytes where its line is
                          above min/max's at the same x.
and latency.png: CPU Select latency against context length per method, with
FAISS IndexFlatIP (the peer) dashed.
Needs matplotlib (Debian: python3-matplotlib, hence /usr/bin/python3 rather than
a pyenv interpreter); no other package.
"""
import json
import os
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def safe(name):
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")


def style(method):
    if method == "exact":
        return {"color": "black", "linestyle": ":", "linewidth": 1.5}
    if method == "minmax":
        return {"color": "tab:red", "linewidth": 3.0}
    return {"linewidth": 1.2}


def budgets(run):
    return [b for b in run["budgets"] if b["kind"] == "fraction"]


def plot_budget(workload, out_dir):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for run in workload["runs"]:
        bs = budgets(run)
        ax.plot([100 * b["value"] for b in bs], [b["mass_recall"] for b in bs], marker="o", markersize=3,
                label=run["retriever"], **style(run["retriever"]))
    ax.axhline(0.95, color="grey", linewidth=0.8, linestyle="--")
    ax.axvline(10, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xscale("log")
    ax.set_xlabel("budget (% of visible blocks, always-kept included)")
    ax.set_ylabel("attention-mass recall")
    ax.set_title(workload["name"])
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    path = os.path.join(out_dir, "recall_vs_budget_%s.png" % safe(workload["name"]))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_bytes(workload, out_dir):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for run in workload["runs"]:
        bs = budgets(run)
        moved = [(b["bytes_retrieved"] + b.get("index_bytes_read", 0.0)) / 1024.0 for b in bs]
        ax.plot(moved, [b["mass_recall"] for b in bs], marker="o", markersize=3, label=run["retriever"],
                **style(run["retriever"]))
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("KiB moved per layer-step (KV blocks fetched + index bytes read off memory)")
    ax.set_ylabel("attention-mass recall")
    ax.set_title(workload["name"] + ": recall at equal bytes (min/max thick)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    path = os.path.join(out_dir, "recall_vs_bytes_%s.png" % safe(workload["name"]))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_latency(rows, out_dir):
    by_method = {}
    for r in rows:
        if "select_us_median" not in r:
            continue
        by_method.setdefault(r["method"], []).append((r["tokens"], r["select_us_median"]))
    if not by_method:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, pts in sorted(by_method.items()):
        pts.sort()
        kw = {"color": "black", "linestyle": "--", "linewidth": 2} if method == "faiss_flat_ip" else style(method)
        ax.plot([p[0] for p in pts], [p[1] / 1000.0 for p in pts], marker="o", markersize=3, label=method, **kw)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("context tokens")
    ax.set_ylabel("Select latency per layer, ms (CPU, median)")
    ax.set_title("CPU scoring + top-k latency (FAISS IndexFlatIP dashed)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    path = os.path.join(out_dir, "latency.png")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    written, latency = [], []
    for path in sys.argv[2:]:
        with open(path) as f:
            doc = json.load(f)
        for w in doc.get("workloads", []):
            written.append(plot_budget(w, out_dir))
            written.append(plot_bytes(w, out_dir))
        latency += doc.get("latency", [])
    lat = plot_latency(latency, out_dir)
    if lat:
        written.append(lat)
    for p in written:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
