#!/usr/bin/env python3
"""Markdown tables of tierkv_bench_eval's seed summaries (--seeds, --granularity):
mass recall mean ±sd per (workload, retriever, budget), per-KV-head rows first,
and at 10% each retriever's ratio to the per-layer and per-head oracles.

  /usr/bin/python3 bench/report/eval_seed_tables.py bench/report/tierkv_bench_eval_heads_*.json
  --oracles-from=FILE.json: take the oracles (exact, exact/head) of the same workload
  from another run (a run of a few methods only).
"""
import json
import sys


def fmt(x, d=3):
    return "–" if x is None else f"{x:.{d}f}"


def tables(doc, oracle_doc=None):
    summary = doc.get("summary", [])
    oracles = {}
    for s in (oracle_doc or {}).get("summary", []):
        if s["retriever"] in ("exact", "exact/head"):
            oracles[(s["workload"], s["retriever"], s["budget"])] = s
    groups = []
    for s in summary:
        if s["workload"] not in groups:
            groups.append(s["workload"])
    out = []
    for g in groups:
        rows = [s for s in summary if s["workload"] == g]
        budgets, names = [], []
        for s in rows:
            if s["budget"] not in budgets:
                budgets.append(s["budget"])
            if s["retriever"] not in names:
                names.append(s["retriever"])
        cell = {(s["retriever"], s["budget"]): s for s in rows}
        seeds = max(s["seeds"] for s in rows)
        heads = [n for n in names if n.endswith("/head")]
        layers = [n for n in names if not n.endswith("/head")]
        over = f"mean ±sd over {seeds} seeds" if seeds > 1 else "one seed"
        out.append(f"**{g}**, mass recall, {over}; per KV head first, then per layer (same bytes):\n")
        out.append("| retriever | " + " | ".join(budgets) + " | 10%: / layer oracle | 10%: / head oracle |")
        out.append("|---|" + "---|" * (len(budgets) + 2))
        lo = cell.get(("exact", "10%"), oracles.get((g, "exact", "10%"), {})).get("mass_recall_mean")
        ho = cell.get(("exact/head", "10%"), oracles.get((g, "exact/head", "10%"), {})).get("mass_recall_mean")
        for n in heads + layers:
            vals = []
            for b in budgets:
                s = cell.get((n, b))
                if s is None:
                    vals.append("–")
                elif s["seeds"] > 1:
                    vals.append(f"{fmt(s['mass_recall_mean'])} ±{fmt(s['mass_recall_sd'])}")
                else:
                    vals.append(fmt(s["mass_recall_mean"]))
            m10 = cell.get((n, "10%"), {}).get("mass_recall_mean")
            r_lo = fmt(m10 / lo) if m10 is not None and lo else "–"
            r_own = fmt(m10 / ho) if m10 is not None and ho and n.endswith("/head") else "–"
            label = f"**{n}**" if n.endswith("/head") else n
            vals_str = " | ".join(vals)
            out.append(f"| {label} | {vals_str} | {r_lo} | {r_own} |")
        out.append("")
    return "\n".join(out)


def main():
    oracle_doc = None
    paths = []
    for arg in sys.argv[1:]:
        if arg.startswith("--oracles-from="):
            with open(arg.split("=", 1)[1]) as f:
                oracle_doc = json.load(f)
        else:
            paths.append(arg)
    for path in paths:
        with open(path) as f:
            doc = json.load(f)
        print(tables(doc, oracle_doc))


if __name__ == "__main__":
    main()
