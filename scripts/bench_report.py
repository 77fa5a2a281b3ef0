#!/usr/bin/env python3
"""The bench report: runs the benchmark programs at a size that fits a 2-core
machine in under 40 minutes, collects their JSON in bench/report/out/, draws the
plots (bench/plots/plot_report.py) into bench/report/img/, and regenerates
BENCHMARKS.md from bench/report/BENCHMARKS.md.in.

  scripts/bench_report.py [--build build/release] [--budget-s 840] [--only ring,disk]
  scripts/bench_report.py --render-only      # plots + BENCHMARKS.md from the JSON already in out/

A benchmark that is not built (a missing dependency: tierkv_bench_putget needs
hiredis) fails the report -- it still renders, and the exit status is 1 -- unless
it is skipped on purpose with --skip KEY; one that refuses the report's size
arguments (exit 2, usage) runs once more with only --json, under what is left of
the time budget; one that fails or runs out of time is reported as such. Prints
one line per benchmark with its time.

The retrieval evaluation runs EVAL_STEPS scored steps at each length over the
seeds EVAL_SEEDS (figures are means over the seeds) for its tables of every
method; the headline (best mass recall at a 10% budget) comes from a second run
of the cheap methods at 10% over more seeds (6 at 4K and 16K tokens, 20 at 64K): enough that a rerun with
other seeds moves it by less than 0.01 (the report prints that bound from the
seeds' own spread; BENCHMARKS.md "Sampling"). A tierkv_bench_eval without --seeds
runs the first seed only, and the report says so.
"""
import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPORT = os.path.join(ROOT, "bench", "report")
OUT = os.path.join(REPORT, "out")
IMG = os.path.join(REPORT, "img")
sys.path.insert(0, REPORT)
import render_report  # noqa: E402  (bench/report/render_report.py)


class Run:
    """One invocation of a benchmark program: `args` besides the JSON output."""

    def __init__(self, tag, args, cap_s, note=""):
        self.tag, self.args, self.cap_s, self.note = tag, args, cap_s, note


# key: the report's name for it; programs: names to look for under the build's bench/
# folder (first found wins); json_style: "space" (--json PATH), "equals" (--json=PATH)
# or "auto:DEFAULT" (what --help shows, DEFAULT when it shows neither).
# The retrieval evaluation's sampling: scored decode steps per length and seeds.
EVAL_STEPS = 16
EVAL_SEEDS = [1, 2]
# The headline's runs: the methods that lead at 10% without a FAISS build (minmax per
# KV head leads on synthetic v2 within 0.001 of vq:rope=post/head), both
# granularities, over as many seeds as keep a rerun with other seeds within 0.01 at
# 95% (n >= 2 (1.96 sd / 0.01)^2 with the seeds' sd of minmax/head measured over 8
# seeds: 0.0067 at 4K and 0.0069 at 16K -> 4; 0.0155 at 64K -> 19). BENCHMARKS.md "Sampling".
HEADLINE_ARGS = ["--layers=1", "--steps=@EVAL_STEPS@", "--budgets=0.1", "--granularity=layer,head",
                 "--methods=exact;minmax;mean:r=4", "--model=", "--triggers=", "--latency-tokens="]

BENCHMARKS = [
    {"key": "ring", "programs": ["tierkv_bench_ring"], "json_style": "space",
     "runs": [Run("spin50", ["--iters", "50000", "--spin-us", "50"], 150),
              Run("spin0", ["--iters", "50000", "--spin-us", "0"], 150)]},
    {"key": "disk", "programs": ["tierkv_bench_disk"], "json_style": "space",
     "runs": [Run("", ["--file-mib", "256", "--seconds", "0.3", "--rounds", "5", "--rand-kib", "4,16,64,128,256",
                       "--dir", "@TMP@"], 300)]},
    {"key": "kernels", "programs": ["tierkv_bench_kernels"], "json_style": "space",
     "runs": [Run("", ["--contexts", "8192,32768,131072,1048576", "--min-ms", "100"], 240)]},
    {"key": "eval", "programs": ["tierkv_bench_eval"], "json_style": "auto:equals",
     "runs": [Run("", ["--tokens=4096,16384,65536", "--layers=1", "--steps=@EVAL_STEPS@", "--seeds=@EVAL_SEEDS@",
                       "--budgets=0.02,0.05,0.1,0.2,0.3", "--granularity=layer,head",
                       "--latency-tokens=32768"], 1800),
              Run("headline", ["--tokens=4096,16384", "--seeds=" + ",".join(map(str, range(1, 7)))] + HEADLINE_ARGS,
                  300),
              Run("headline65k", ["--tokens=65536", "--seeds=" + ",".join(map(str, range(1, 21)))] + HEADLINE_ARGS,
                  1200)]},
    {"key": "putget", "programs": ["tierkv_bench_putget"], "json_style": "space",
     "runs": [Run("", ["--blocks", "1024", "--rounds", "3"], 180)]},
    {"key": "retrieve", "programs": ["tierkv_bench_retrieve"], "json_style": "space",
     "runs": [Run("", ["--contexts", "32768,131072", "--steps", "200"], 240)]},
    {"key": "store", "programs": ["tierkv_bench_store"], "json_style": "auto:space",
     "runs": [Run("", [], 180)]},
]


def find_program(build, names):
    bench = os.path.join(build, "bench")
    for name in names:
        for sub in ("", "eval", "bench_eval", "store"):
            path = os.path.join(bench, sub, name)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
        for dirpath, _, files in os.walk(bench):
            if name in files and os.access(os.path.join(dirpath, name), os.X_OK):
                return os.path.join(dirpath, name)
    return None


def json_style(program, declared):
    if not declared.startswith("auto"):
        return declared
    try:  # a program without --help may run its benchmark: 10 s at most
        p = subprocess.run([program, "--help"], capture_output=True, text=True, timeout=10, cwd=ROOT)
        text = p.stdout + p.stderr
    except subprocess.TimeoutExpired:
        text = ""
    if "--json=" in text:
        return "equals"
    if "--json " in text:
        return "space"
    return declared.partition(":")[2] or "space"


def json_args(style, path):
    return [f"--json={path}"] if style == "equals" else ["--json", path]


def rel(path):
    """Paths inside the repository relative to its root (the commands run there); others as they are."""
    if not os.path.isabs(path):
        return path
    r = os.path.relpath(path, ROOT)
    return path if r.startswith("..") else r


def machine_info():
    def read(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    gpus = read(["nvidia-smi", "-L"]) if read(["sh", "-c", "command -v nvidia-smi"]) else ""
    commit = read(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    dirty = read(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"])
    return {
        "host": platform.node(),
        "cores": os.cpu_count(),
        "cpu": cpu or platform.processor() or "unknown",
        "memory_gib": round(mem_kib / (1 << 20), 1),
        "kernel": platform.release(),
        "os": read(["sh", "-c", ". /etc/os-release && echo \"$PRETTY_NAME\""]),
        "gpus": gpus or "none",
        "compiler": read(["sh", "-c", "c++ --version | head -1"]),
        "commit": commit + (" (with local changes)" if dirty else ""),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load_at_start": load_average(),
    }


def load_average():
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def run_one(cmd, cap_s, log_path):
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        try:
            p = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=cap_s, cwd=ROOT)
            rc = p.returncode
        except subprocess.TimeoutExpired:
            rc = None
    return rc, time.monotonic() - t0


def adapt_args(key, program, args):
    """Arguments the program's --help does not know are adapted: (args, note)."""
    if key != "eval" or not any(a.startswith("--seeds=") for a in args):
        return args, ""
    try:
        p = subprocess.run([program, "--help"], capture_output=True, text=True, timeout=10, cwd=ROOT)
        text = p.stdout + p.stderr
    except (OSError, subprocess.TimeoutExpired):
        text = ""
    if "--seeds" in text:
        return args, ""
    first = next(a for a in args if a.startswith("--seeds=")).split("=", 1)[1].split(",")[0]
    n = len(next(a for a in args if a.startswith("--seeds=")).split("=", 1)[1].split(","))
    return ([f"--seed={first}" if a.startswith("--seeds=") else a for a in args],
            f"This tierkv_bench_eval has no --seeds: one seed ({first}) instead of {n}.")


def run_benchmarks(build, budget_s, only, skip=frozenset(), eval_steps=EVAL_STEPS, eval_seeds=EVAL_SEEDS):
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):  # a fresh run: nothing of an older one is plotted or reported
        if f.endswith((".json", ".log")):
            os.remove(os.path.join(OUT, f))
    runs = []
    deadline = time.monotonic() + budget_s
    todo = [(b, r) for b in BENCHMARKS if not only or b["key"] in only for r in b["runs"]]
    tmp = tempfile.mkdtemp(prefix="tierkv-bench-report-", dir=os.environ.get("TMPDIR") or "/var/tmp")
    started = time.monotonic()
    machine = machine_info()
    for i, (b, r) in enumerate(todo, 1):
        name = b["key"] + (f"-{r.tag}" if r.tag else "")
        record = {"key": b["key"], "tag": r.tag, "name": name, "note": r.note}
        program = find_program(build, b["programs"])
        prefix = f"[{i}/{len(todo)}] {name:<12}"
        if b["key"] in skip:
            record.update(status="skipped", reason="skipped on request (--skip)")
            print(f"{prefix} skipped: {record['reason']}", flush=True)
            runs.append(record)
            continue
        if program is None:
            record.update(status="skipped", missing=True,
                          reason=f"not built ({' or '.join(b['programs'])} not in {rel(build)}/bench)")
            print(f"{prefix} NOT BUILT: {record['reason']}", flush=True)
            runs.append(record)
            continue
        json_path = os.path.join(OUT, name + ".json")
        log_path = os.path.join(OUT, name + ".log")
        if os.path.exists(json_path):
            os.remove(json_path)
        style = json_style(program, b["json_style"])
        subst = {"@TMP@": tmp, "@EVAL_STEPS@": str(eval_steps), "@EVAL_SEEDS@": ",".join(str(x) for x in eval_seeds)}
        args = []
        for a in r.args:
            for k, v in subst.items():
                a = a.replace(k, v)
            args.append(a)
        args, adapted = adapt_args(b["key"], program, args)
        if adapted:
            record["note"] = ((record.get("note") or "") + " " + adapted).strip()
        attempts = [args, []] if args else [[]]
        for attempt, extra in enumerate(attempts):
            left = deadline - time.monotonic()
            if left < 5:
                record.update(status="skipped", reason="the report's time budget was spent")
                break
            cmd = [program] + extra + json_args(style, rel(json_path))
            print(f"{prefix} running: {' '.join(shlex.quote(rel(c)) for c in cmd)}", flush=True)
            rc, secs = run_one(cmd, min(r.cap_s, left), log_path)
            record.update(command=" ".join(shlex.quote(rel(c)) for c in cmd), seconds=round(secs, 1), rc=rc)
            if rc == 2 and attempt == 0 and len(attempts) > 1 and secs < 10:
                record["note"] = (record.get("note") or "") + " Refused the report's size arguments; ran with its defaults."
                continue
            if rc is None:
                record.update(status="timed out", reason=f"stopped after {min(r.cap_s, left):.0f} s")
            elif rc != 0:
                record.update(status="failed", reason=f"exit status {rc} (see {rel(log_path)})")
            elif not os.path.exists(json_path):
                record.update(status="failed", reason=f"no JSON written (see {rel(log_path)})")
            else:
                record.update(status="ok", json=rel(json_path), log=rel(log_path))
            break
        status = record["status"] if record.get("status") == "ok" else f"{record['status']}: {record.get('reason', '')}"
        print(f"{prefix} {status} in {record.get('seconds', 0):.1f} s (total {time.monotonic() - started:.0f} s)",
              flush=True)
        runs.append(record)
    shutil.rmtree(tmp, ignore_errors=True)
    machine["load_at_end"] = load_average()
    manifest = {"machine": machine, "build": rel(build), "budget_s": budget_s,
                "total_seconds": round(time.monotonic() - started, 1), "runs": runs}
    with open(os.path.join(OUT, "runs.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    return manifest


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "release"))
    ap.add_argument("--budget-s", type=float, default=2400, help="time for all benchmarks (default 2400 s: the "
                    "retrieval evaluation over 2 seeds x 16 steps at both granularities takes up to 30 minutes of it on 2 cores)")
    ap.add_argument("--only", default="", help="comma-separated keys: " + ",".join(b["key"] for b in BENCHMARKS))
    ap.add_argument("--skip", default="", help="comma-separated keys not to run; without it a benchmark that is "
                    "not built (a missing dependency) fails the report")
    ap.add_argument("--render-only", action="store_true", help="plots and BENCHMARKS.md from out/ as it is")
    ap.add_argument("--eval-steps", type=int, default=EVAL_STEPS,
                    help=f"scored decode steps per length of the retrieval evaluation (default {EVAL_STEPS})")
    ap.add_argument("--eval-seeds", type=int, default=len(EVAL_SEEDS),
                    help=f"seeds 1..N of the retrieval evaluation, figures are means (default {len(EVAL_SEEDS)}; "
                    "BENCHMARKS.md says how many a rerun-stable headline needs)")
    ap.add_argument("--out", default=OUT, help=argparse.SUPPRESS)  # tests render elsewhere
    ap.add_argument("--img", default=IMG, help=argparse.SUPPRESS)
    ap.add_argument("--target", default=os.path.join(ROOT, "BENCHMARKS.md"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.render_only:
        try:
            manifest = json.load(open(os.path.join(a.out, "runs.json")))
        except (OSError, json.JSONDecodeError) as e:
            sys.exit(f"bench_report: no {rel(a.out)}/runs.json to render ({e}); run without --render-only")
    else:
        known = {b["key"] for b in BENCHMARKS}
        skip = set(filter(None, a.skip.split(",")))
        if skip - known:
            sys.exit(f"bench_report: --skip {','.join(sorted(skip - known))}: no such benchmark ({','.join(sorted(known))})")
        if a.eval_steps < 1 or a.eval_seeds < 1:
            sys.exit("bench_report: --eval-steps and --eval-seeds must be >= 1")
        manifest = run_benchmarks(os.path.abspath(a.build), a.budget_s, set(filter(None, a.only.split(","))), skip,
                                  a.eval_steps, list(range(1, a.eval_seeds + 1)))
    os.makedirs(a.img, exist_ok=True)
    plot = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "plots", "plot_report.py"), a.out, a.img],
                          capture_output=True, text=True)
    sys.stdout.write(plot.stdout)
    if plot.returncode != 0:
        print(f"bench_report: plotting failed (the report shows no plots):\n{plot.stderr}", file=sys.stderr)
    render_report.write(manifest, a.out, a.img, os.path.join(REPORT, "BENCHMARKS.md.in"), a.target, ROOT)
    print(f"bench_report: wrote {rel(a.target)} and {len(os.listdir(a.img))} plots in {rel(a.img)}")
    missing = [r["key"] for r in manifest.get("runs", []) if r.get("missing")]
    if missing and not a.render_only:
        print(f"bench_report: FAILED: not built: {', '.join(missing)}. Install its packages "
              "(TIERKV_DEPS_EXTRA=1 deploy/install-deps.sh), configure and build again (make bench-report does), "
              f"or skip it on purpose: --skip {','.join(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
