#!/usr/bin/env python3
"""Mass recall of two tierkv_bench_eval JSON files, method by method.

  compare_eval_runs.py NEW.json OLD.json

For every (workload, method, granularity, budget) present in both: the largest
and the mean difference NEW - OLD over seeds and budgets, and each run's index
bytes (as decision 0029's f16 summaries were checked against the published runs).
"""
import json
import sys


def runs(path):
    out = {}
    for w in json.load(open(path))["workloads"]:
        for r in w["runs"]:
            for b in r["budgets"]:
                key = (w["name"], r["spec"], r["granularity"], b["budget"])
                out[key] = (b["mass_recall"], r["index_bytes"])
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    new, old = runs(sys.argv[1]), runs(sys.argv[2])
    by_method = {}
    for key in sorted(k for k in new if k in old):
        method = key[1] + ("" if key[2] == "layer" else "/head")
        by_method.setdefault(method, []).append((new[key][0] - old[key][0], new[key][1], old[key][1]))
    print(f"{'method':16s} {'n':>3s} {'max |d|':>8s} {'mean d':>8s}  index MiB new / old")
    for method, rows in sorted(by_method.items()):
        worst = max(abs(d) for d, _, _ in rows)
        mean = sum(d for d, _, _ in rows) / len(rows)
        print(f"{method:16s} {len(rows):3d} {worst:8.5f} {mean:+8.5f}  {rows[0][1] / 2**20:.1f} / {rows[0][2] / 2**20:.1f}")


if __name__ == "__main__":
    main()
