"""Renders BENCHMARKS.md from the bench report's JSON (bench/report/out/) and plots
(bench/report/img/) into the template bench/report/BENCHMARKS.md.in.

Used by scripts/bench_report.py. Every section renders something: the figures, or
a line saying why there are none (not built, failed, timed out, other JSON).
"""
import json
import os
import re

KNOWN_TARGETS = {
    "ring_p50_us": 5.0,
    "ring_p99_us": 50.0,
    "disk_read_ratio": 0.90,
    "mass_recall_at_10pct": 0.95,
    "putget_vs_redis": 5.0,
    "putget_vs_redis_4_clients": 10.0,
}


class Report:
    def __init__(self, manifest, out_dir, img_dir, root):
        self.manifest, self.out, self.img, self.root = manifest, out_dir, img_dir, root
        self.runs = {r["name"]: r for r in manifest.get("runs", [])}

    def data(self, name):
        r = self.runs.get(name)
        if not r or r.get("status") != "ok":
            return None
        try:
            with open(os.path.join(self.out, name + ".json")) as f:
                return json.load(f)
        except (OSError, json.JSONDecodeError):
            return None

    def why_not(self, *names):
        for n in names:
            r = self.runs.get(n)
            if r is None:
                return f"`{n}` was not run in this report."
            if r.get("status") != "ok":
                return f"`{n}`: {r.get('status')}: {r.get('reason', '')}".rstrip(": ")
        return "its JSON could not be read."

    def plot(self, file, alt):
        path = os.path.join(self.img, file)
        if not os.path.exists(path):
            return ""
        return f"\n\n![{alt}]({os.path.relpath(path, self.root)})\n"

    def note(self, name):
        n = (self.runs.get(name) or {}).get("note", "").strip()
        return f"\n_{n}_\n" if n else ""


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def num(v, digits=2):
    if v is None:
        return "–"
    if isinstance(v, (int, float)):
        if v != v:  # NaN
            return "–"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}f}"
    return str(v)


def verdict(value, target, higher_is_better):
    if value is None or value != value:
        return "not measured"
    ok = value >= target if higher_is_better else value <= target
    return "met" if ok else "not met"


# --- sections -----------------------------------------------------------------

def ring_results(rep):
    out = []
    for tag in ("spin50", "spin0"):
        d = rep.data("ring-" + tag)
        if not d:
            continue
        for path, r in d.get("results", {}).items():
            out.append((path, d.get("spin_us", tag), r))
    return out


def section_ring(rep):
    res = ring_results(rep)
    if not res:
        return "Not measured: " + rep.why_not("ring-spin50", "ring-spin0")
    rows = [(path, f"{spin} µs", num(r.get("p50_us")), num(r.get("p90_us")), num(r.get("p99_us"))) for path, spin, r in res]
    iters = (rep.data("ring-spin50") or rep.data("ring-spin0") or {}).get("iters", "?")
    return (table(["path", "spin", "p50 µs", "p90 µs", "p99 µs"], rows) +
            f"\n\n{iters} round trips per path after a 10% warm-up. Target: shm ring p50 ≤ 5 µs, p99 ≤ 50 µs "
            "(with spinning; without it every request pays a futex wake-up on each side)."
            + rep.plot("ring_latency.png", "ring and control-socket round-trip percentiles") + rep.note("ring-spin50"))


def section_disk(rep):
    d = rep.data("disk")
    if not d:
        return "Not measured: " + rep.why_not("disk")
    rows = []
    for c in d.get("disk", []):
        if c.get("error") and not c.get("tier_gbps"):
            rows.append((c.get("pattern"), c.get("op"), c.get("block_kib"), c.get("qd"), "error: " + c["error"],
                         "", "", "", "", "", "", ""))
            continue
        rows.append((c.get("pattern"), c.get("op"), c.get("block_kib"), c.get("qd"), num(c.get("raw_gbps"), 3),
                     num(c.get("tier_gbps"), 3), num(c.get("raw_iops"), 0), num(c.get("tier_iops"), 0), num(c.get("ratio"), 3),
                     num(c.get("raw_cpu_s_per_gb"), 4), num(c.get("tier_cpu_s_per_gb"), 4), num(c.get("cpu_ratio"), 2)))
    cfg = d.get("config", {})
    text = table(["pattern", "op", "KiB", "QD", "raw GB/s", "tier GB/s", "raw IOPS", "tier IOPS", "tier/raw",
                  "raw CPU s/GB", "tier CPU s/GB", "CPU tier/raw"], rows)
    fmt = (f", slab format v{cfg['format_version']} ({cfg.get('header_bytes')}-byte slot headers)"
           if cfg.get("format_version") else "")
    text += (f"\n\nEngine {cfg.get('engine', '?')}{fmt}, {cfg.get('file_mib', '?')} MiB per case, medians of "
             f"{cfg.get('rounds', '?')} alternations of {cfg.get('seconds', '?')} s, raw baseline "
             f"{cfg.get('raw_baseline', '?')}; CPU: {cfg.get('cpu_clock', 'thread CPU time')} per GB of payload. "
             "Targets: tier/raw ≥ 0.90 for 1 MiB sequential reads and writes, random reads ≥ 64 KiB and 16 KiB; "
             "CPU per GB ≤ 1.5x the raw loop's.")
    h = d.get("host_tier") or {}
    if h and not h.get("error"):
        text += "\n\n" + table(["H tier", "GB/s", "memcpy GB/s", "ratio"], [
            ("put", num(h.get("put_gbps")), num(h.get("memcpy_put_gbps")),
             num(h.get("put_gbps", 0) / h["memcpy_put_gbps"], 3) if h.get("memcpy_put_gbps") else "–"),
            ("get", num(h.get("get_gbps")), num(h.get("memcpy_get_gbps")),
             num(h.get("get_gbps", 0) / h["memcpy_get_gbps"], 3) if h.get("memcpy_get_gbps") else "–")])
        text += f"\n\nH tier: {h.get('slots')} slots of {h.get('block_kib')} KiB{', pinned' if h.get('pinned') else ''}."
    return text + rep.plot("disk_ratio.png", "D tier throughput as a share of the raw device, per block size") + rep.note("disk")


def section_kernels(rep):
    d = rep.data("kernels")
    if not d:
        return "Not measured: " + rep.why_not("kernels")
    rows = d.get("rows", [])
    contexts = sorted({r["context_tokens"] for r in rows if r.get("context_tokens")})
    kernels = []
    for r in rows:
        key = (r.get("kernel"), r.get("backend"))
        if r.get("context_tokens") and key not in kernels:
            kernels.append(key)
    by = {(r.get("kernel"), r.get("backend"), r.get("context_tokens")): r for r in rows}
    body = [[f"{k} ({b})"] + [num(by.get((k, b, c), {}).get("median_us"), 1) for c in contexts] for k, b in kernels]
    def tokens(c):
        return f"{c >> 20}M" if c >= 1 << 20 and c % (1 << 20) == 0 else f"{c // 1024}K"

    text = "Median µs per call:\n\n" + table(["kernel"] + [f"{tokens(c)} tokens" for c in contexts], body)
    per_block = [r for r in rows if not r.get("context_tokens")]
    if per_block:
        text += "\n\nPer block: " + "; ".join(
            f"{r['kernel']} ({r['backend']}) {num(r.get('median_us'), 1)} µs" for r in per_block) + "."
    gpu = any(r.get("backend") == "cuda" for r in rows)
    text += f"\n\nDevice: {d.get('device', '?')}."
    if not gpu:
        text += (" No GPU on this machine: the GPU targets (scoring + top-k ≤ 15 µs at 128K tokens on an H100) "
                 "are measured on the lent GPU machine, not here.")
    return text + rep.plot("kernels_cpu.png", "CPU kernel latency against context length") + rep.note("kernels")


def eval_runs(d):
    """(label, run) of every run: tierkv_bench_eval groups them by workload (trace)."""
    out = []
    groups = d.get("workloads") or [{"name": None, "runs": d.get("runs", [])}]
    for w in groups:
        for run in w.get("runs", []):
            retriever = run.get("retriever", "?")
            if retriever == "exact":
                retriever = "exact (oracle)"
            elif retriever == "exact/head":
                retriever = "exact/head (per-head oracle)"
            where = w.get("name") or f"{run.get('source', '?')} {run.get('trace', {}).get('num_tokens', '?')} tokens"
            out.append((f"{retriever} · {where}", run))
    return out


def section_eval(rep):
    d = rep.data("eval")
    if not d:
        return "Not measured: " + rep.why_not("eval")
    runs = eval_runs(d)
    if not runs:
        return "The evaluation wrote no runs."
    budgets = []
    for _, run in runs:
        for b in run.get("budgets", []):
            if b.get("budget") not in budgets:
                budgets.append(b.get("budget"))
    rows = []
    for label, run in runs:
        by = {b.get("budget"): b for b in run.get("budgets", [])}
        rows.append([label] + [f"{num(by[b].get('mass_recall'), 3)} / {num(by[b].get('topk_recall'), 3)}"
                               if b in by else "–" for b in budgets])
    text = "Mass recall / top-k recall per budget:\n\n" + table(["retriever · trace"] + budgets, rows)
    text += eval_seed_summary(d)
    text += ("\n\nTarget: attention-mass recall ≥ 0.95 at a 10% budget on the synthetic generator and on "
             "real-model traces. The exact retriever is the oracle: its figures bound every other retriever's.")
    return text + rep.plot("eval_recall.png", "retrieval recall against budget") + rep.note("eval")


def eval_seed_summary(d):
    """Mean ±sd of the mass recall over seeds (tierkv_bench_eval --seeds), when it ran several."""
    summary = [s for s in d.get("summary", []) if s.get("seeds", 0) > 1]
    if not summary:
        return ""
    budgets, keys, cells = [], [], {}
    for s in summary:
        key = (s.get("workload", "?"), s.get("retriever", "?"))
        if key not in keys:
            keys.append(key)
        if s.get("budget") not in budgets:
            budgets.append(s.get("budget"))
        cells[key + (s.get("budget"),)] = f"{num(s.get('mass_recall_mean'), 3)} ±{num(s.get('mass_recall_sd'), 3)}"
    rows = [[f"{r} · {w}"] + [cells.get((w, r, b), "–") for b in budgets] for w, r in keys]
    return ("\n\nMass recall, mean ±sd over seeds (`/head`: one selection per KV head at the same bytes):\n\n"
            + table(["retriever · workload"] + budgets, rows))


def section_log(rep, key):
    """The program's own printed table (its stdout tail), for benchmarks without a custom section."""
    r = rep.runs.get(key)
    if not r or r.get("status") != "ok":
        return "Not measured: " + rep.why_not(key)
    log = ""
    try:
        with open(os.path.join(rep.out, key + ".log")) as f:
            log = f.read().strip()
    except OSError:
        pass
    lines = [ln for ln in log.splitlines() if not re.match(r"^\d+:[A-Z] ", ln)][-40:]
    return "The program's report:\n\n```\n" + "\n".join(lines) + "\n```" + rep.note(key)


def section_store(rep):
    return section_log(rep, "store") + rep.plot("store.png", "store")


def summary_ring(rep):
    rows = []
    ring = (rep.data("ring-spin50") or {}).get("results", {}).get("shm ring no-op", {})
    for p, key in (("p50", "ring_p50_us"), ("p99", "ring_p99_us")):
        v = ring.get(f"{p}_us")
        rows.append((f"shm ring round trip {p} (spin 50 µs)", f"{num(v)} µs" if v is not None else "–",
                     f"≤ {KNOWN_TARGETS[key]:g} µs", verdict(v, KNOWN_TARGETS[key], False)))
    return rows


def summary_disk(rep):
    rows = []
    for c in (rep.data("disk") or {}).get("disk", []):
        if c.get("op") == "read" and (c.get("pattern") != "rand" or c.get("block_kib") == 128):
            v = c.get("ratio")
            rows.append((f"D tier {c.get('pattern')} reads, {c.get('block_kib')} KiB, QD {c.get('qd')}: tier / raw io_uring",
                         num(v, 3), "≥ 0.90", verdict(v, KNOWN_TARGETS["disk_read_ratio"], True)))
    return rows


def rerun_bound(sd, n):
    """How far a rerun with n other seeds moves an n-seed mean, at 95%: 1.96 sd sqrt(2/n)."""
    return 1.96 * sd * (2.0 / n) ** 0.5


def summary_headline(rep):
    """Per workload of the headline run (eval-headline: cheap methods at 10% over several
    seeds): the best retriever's mean ±sd, the oracle's, and how far a rerun with other
    seeds would move it (target < 0.01)."""
    at10 = [s for run in ("eval-headline", "eval-headline65k") for s in (rep.data(run) or {}).get("summary", [])
            if s.get("budget") == "10%" and s.get("seeds", 0) > 1]
    rows = []
    for w in dict.fromkeys(s.get("workload", "?") for s in at10):
        here = {s["retriever"]: s for s in at10 if s.get("workload") == w}
        best = max((r for r in here if not r.startswith("exact")), key=lambda r: here[r]["mass_recall_mean"],
                   default=None)
        if best is None:
            continue
        b, n = here[best], here[best]["seeds"]
        oracles = ", ".join(f"{r} {num(here[r]['mass_recall_mean'], 3)}" for r in here if r.startswith("exact"))
        oracles = f"; oracle {oracles}" if oracles else ""
        rows.append((f"mass recall at 10% budget, {w}: best retriever, mean over {n} seeds",
                     f"{num(b['mass_recall_mean'], 3)} ±{num(b['mass_recall_sd'], 3)} ({best}{oracles})",
                     "≥ 0.95", verdict(b["mass_recall_mean"], KNOWN_TARGETS["mass_recall_at_10pct"], True)))
        bound = rerun_bound(b["mass_recall_sd"], n)
        rows.append((f"… a rerun with {n} other seeds moves it by at most (95%: 1.96·sd·√(2/{n}))", num(bound, 4),
                     "< 0.01", verdict(bound, 0.01, False)))
    return rows


def summary_eval(rep):
    """Per trace: the best retriever's mass recall at a 10% budget, and the oracle's (the bound).
    The headline run's figures (summary_headline) replace the synthetic ones when it ran."""
    headline = summary_headline(rep)
    d = rep.data("eval") or {}
    groups = d.get("workloads") or [{"name": "all traces", "runs": d.get("runs", [])}]
    rows = []
    for w in groups:
        at10 = {}
        for run in w.get("runs", []):
            for b in run.get("budgets", []):
                if abs(float(b.get("value", -1)) - 0.1) < 1e-9 and b.get("mass_recall") is not None:
                    at10[run.get("retriever", "?")] = b["mass_recall"]
        best = max((r for r in at10 if not r.startswith("exact")), key=lambda r: at10[r], default=None)
        if best is None or (headline and w.get("name", "").startswith("synthetic")):
            continue
        v = at10[best]
        oracle = f", oracle {num(at10['exact'], 3)}" if "exact" in at10 else ""
        rows.append((f"mass recall at 10% budget, {w.get('name', '?')}: best retriever", f"{num(v, 3)} ({best}{oracle})",
                     "≥ 0.95", verdict(v, KNOWN_TARGETS["mass_recall_at_10pct"], True)))
    return headline + rows


GPU_RESULTS = "bench/report/gpu-h200"  # the lent GPU machine's last results (scripts/device_run.sh)
GPU_WHERE = "H200, lent machine, 2026-12-04"


def stored_gpu(rep, name):
    """A JSON result of the last run on the lent GPU machine, or None."""
    try:
        with open(os.path.join(rep.root, GPU_RESULTS, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def summary_gpu_kernels(rows_in, where):
    by = {(r.get("kernel"), r.get("context_tokens")): r for r in rows_in
          if isinstance(r, dict) and r.get("backend") == "cuda"}
    out = []
    for kernel, target in (("score_minmax+topk", 15.0), ("score_mean+topk", 8.0)):
        v = (by.get((kernel, 131072)) or {}).get("median_us")
        out.append((f"{kernel} per layer at 128K tokens ({where})", f"{num(v, 1)} µs", f"≤ {target:g} µs (H100)",
                    verdict(v, target, False)))
    return out


def summary_gpu_retrieve(d, where):
    res = [r for r in d.get("results", []) if r.get("scenario") == "resident" and r.get("tokens") == 32768]
    if not res:
        return []
    v = min(r.get("p50_us", float("nan")) for r in res)
    return [(f"Retrieve round trip per layer, 32K tokens resident, GPU path ({where})", f"{num(v, 1)} µs p50",
             "≤ 30 µs p50", verdict(v, 30.0, False))]


GPU_MACHINE_RUN = "session7"  # the ring and put/get on the GPU machine's 16 cores (scripts/device_run.sh)
GPU_MACHINE_WHERE = "16-core H200 host, 2026-12-04"


def summary_gpu_machine(rep):
    """The ring and put/get measured on the lent GPU machine (a quiet 16-core box, G on the GPU)."""
    rows = []
    ring = (stored_gpu(rep, f"{GPU_MACHINE_RUN}/bench_ring.json") or {}).get("results", {}).get("shm ring no-op")
    if ring:
        p50, p99 = ring.get("p50_us"), ring.get("p99_us")
        ok = verdict(p50, KNOWN_TARGETS["ring_p50_us"], False) == "met" and \
            verdict(p99, KNOWN_TARGETS["ring_p99_us"], False) == "met"
        rows.append((f"shm ring round trip p50 / p99 ({GPU_MACHINE_WHERE})", f"{num(p50)} / {num(p99)} µs",
                     f"≤ {KNOWN_TARGETS['ring_p50_us']:g} / ≤ {KNOWN_TARGETS['ring_p99_us']:g} µs",
                     "met" if ok else "not met"))
    putget = stored_gpu(rep, f"{GPU_MACHINE_RUN}/bench_putget_pinned.json") or {}
    return rows + putget_rows(putget.get("results", []), f"({GPU_MACHINE_WHERE}, G on the GPU)")


def summary_missing(rep):
    rows = summary_gpu_machine(rep)
    kern = rep.data("kernels") or {}
    if any(isinstance(r, dict) and r.get("backend") == "cuda" for r in kern.get("rows", [])):
        rows += summary_gpu_kernels(kern.get("rows", []), "this machine")
    elif stored_gpu(rep, "bench_kernels.json"):
        rows += summary_gpu_kernels(stored_gpu(rep, "bench_kernels.json").get("rows", []), GPU_WHERE)
    else:
        rows.append(("scoring + top-k per layer at 128K tokens, H100", "not measured here (no GPU)",
                     "≤ 15 µs min/max, ≤ 8 µs mean", "–"))
    if (rep.data("retrieve") or {}).get("path") == "gpu":
        rows += summary_gpu_retrieve(rep.data("retrieve"), "this machine")
    elif stored_gpu(rep, "bench_retrieve_gpu.json"):
        rows += summary_gpu_retrieve(stored_gpu(rep, "bench_retrieve_gpu.json"), GPU_WHERE)
    else:
        rows.append(("Retrieve round trip per layer, blocks resident, GPU path (IPC events)",
                     "not measured here (no GPU): the CPU path's figures are below", "≤ 30 µs p50", "–"))
    if not rep.data("putget"):
        rows.append(("put/get of 128 KiB blocks, one client, vs Redis on loopback", "not measured (" +
                     rep.why_not("putget").rstrip(".") + ")", "≥ 5x", "–"))
    return rows


def putget_rows(results, where):
    """Headline rows of tierkv_bench_putget's results (1 and 4 clients) against the targets."""
    rows = []
    targets = {1: ("one client", KNOWN_TARGETS["putget_vs_redis"]),
               4: ("4 clients", KNOWN_TARGETS["putget_vs_redis_4_clients"])}
    for r in results:
        if r.get("clients") in targets:
            who, target = targets[r.get("clients")]
            v = r.get("ratio")
            rows.append((f"{r.get('op')} of 128 KiB blocks, {who}: tierkv / Redis {where}",
                         f"{num(v, 2)}x ({num(r.get('tierkv_gbs'), 2)} vs {num(r.get('redis_gbs'), 2)} GB/s)",
                         f"≥ {target:g}x", verdict(v, target, True)))
    return rows


def summary_putget(rep):
    return putget_rows((rep.data("putget") or {}).get("results", []), "on loopback")


def section_summary(rep):
    rows = []
    for part in (summary_ring, summary_disk, summary_putget, summary_eval, summary_missing):
        try:
            rows += part(rep)
        except Exception as e:  # noqa: BLE001  one source of another shape: the others still show
            rows.append((part.__name__.replace("summary_", ""), f"unexpected JSON ({type(e).__name__})", "", ""))
    return table(["figure", "measured", "target", ""], rows)


def section_machine(m):
    rows = [("CPU", f"{m.get('cpu')}, {m.get('cores')} cores"), ("memory", f"{m.get('memory_gib')} GiB"),
            ("kernel", m.get("kernel")), ("OS", m.get("os")), ("GPU", m.get("gpus")), ("compiler", m.get("compiler")),
            ("host", m.get("host")),
            ("load average (1, 5, 15 min)", f"{m.get('load_at_start', '?')} at the start, {m.get('load_at_end', '?')} at the end")]
    return table(["", ""], rows)


def section_commands(manifest):
    rows = []
    for r in manifest.get("runs", []):
        cmd = f"`{r['command']}`" if r.get("command") else "–"
        status = r.get("status", "?") + (f" ({r['reason']})" if r.get("status") != "ok" and r.get("reason") else "")
        rows.append((r["name"], cmd, f"{r['seconds']:.1f} s" if "seconds" in r else "–", status))
    return table(["run", "command", "time", "status"], rows)


def guarded(fn, *args):
    """A section from JSON of another shape says so instead of stopping the report."""
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001
        return f"Not rendered: the JSON has an unexpected shape ({type(e).__name__}: {e})."


def write(manifest, out_dir, img_dir, template_path, target_path, root):
    rep = Report(manifest, out_dir, img_dir, root)
    m = manifest.get("machine", {})
    total = manifest.get("total_seconds")
    values = {
        "@@DATE@@": m.get("date", "?"),
        "@@COMMIT@@": f"`{m.get('commit', '?')}`",
        "@@TOTAL@@": f"{total / 60:.1f} minutes" if isinstance(total, (int, float)) else "?",
        "@@MACHINE@@": section_machine(m),
        "@@SUMMARY@@": guarded(section_summary, rep),
        "@@RING@@": guarded(section_ring, rep),
        "@@DISK@@": guarded(section_disk, rep),
        "@@KERNELS@@": guarded(section_kernels, rep),
        "@@EVAL@@": guarded(section_eval, rep),
        "@@STORE@@": guarded(section_store, rep),
        "@@PUTGET@@": guarded(section_log, rep, "putget"),
        "@@RETRIEVE@@": guarded(section_log, rep, "retrieve"),
        "@@COMMANDS@@": section_commands(manifest),
    }
    with open(template_path) as f:
        text = f.read()
    for k, v in values.items():
        text = text.replace(k, v)
    with open(target_path, "w") as f:
        f.write(text)
