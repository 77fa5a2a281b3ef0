"""Trace export of the reference engine (trace_export.py, run.py --export-traces) and
tierkv_bench_eval --trace reading what it wrote (docs/trace-format.md).

TIERKV_BENCH_EVAL names the built tierkv_bench_eval (set by ctest); without it the
tests that need it skip, unless TIERKV_ENGINE_REQUIRE_TIERKV=1 (ctest) makes them fail.
"""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from engine import PagedEngine, budget_fn, generate, sample_sequences, teacher_forced  # noqa: E402
from kv_backend import LocalBackend  # noqa: E402
from tinyllama import Model, Rope  # noqa: E402
import trace_export  # noqa: E402

MODEL = os.environ.get("TIERKV_STORIES260K", str(HERE.parents[3] / "shared" / "data" / "stories260K.bin"))
BT = 4


@pytest.fixture(scope="module")
def model():
    if not os.path.exists(MODEL):
        pytest.skip(f"model checkpoint {MODEL} not found (set TIERKV_STORIES260K)")
    torch.set_num_threads(1)
    return Model(MODEL)


def bench_eval() -> str:
    path = os.environ.get("TIERKV_BENCH_EVAL")
    if not path:
        if os.environ.get("TIERKV_ENGINE_REQUIRE_TIERKV") == "1":
            pytest.fail("TIERKV_BENCH_EVAL is not set")
        pytest.skip("TIERKV_BENCH_EVAL (the built tierkv_bench_eval) is not set")
    return path


def run_bench_eval(tmp_path, *args):
    out = tmp_path / "eval.json"
    cmd = [bench_eval(), "--synthetic-tokens=", "--model=", "--triggers=", "--latency-tokens=",
           f"--json={out}", *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    return p, (json.loads(out.read_text()) if p.returncode == 0 else None)


def record(model, batch, prompt_len, steps, seed, greedy=False):
    c = model.config
    s = sample_sequences(model, batch, prompt_len + steps + 1, seed, prompt_len=prompt_len, keep_pre_rope=True)
    rec = trace_export.TraceRecorder(c.n_layers, c.n_heads)
    eng = PagedEngine(model, LocalBackend((2, c.n_kv_heads, BT, c.head_dim), model.device), BT, rec)
    if greedy:
        generate(eng, s.tokens[:, :prompt_len], steps, budget_fn("full"), precomputed=s.prefill)
    else:
        teacher_forced(eng, s.tokens[:, :prompt_len + steps + 1], prompt_len, budget_fn("full"),
                       precomputed=s.prefill)
    return s, rec


def test_recorded_trace_holds_what_the_model_computes(model, tmp_path):
    """Keys/values = the dense forward over the same tokens; post-RoPE = RoPE(pre-RoPE)
    for keys and queries; the step queries attend as the engine did; exact file length."""
    c, P, S = model.config, 30, 9
    s, rec = record(model, 2, P, S, seed=4)
    paths = rec.write(str(tmp_path), "t", "unit test")
    assert [pathlib.Path(p).name for p in paths] == ["t-seq0.trace", "t-seq1.trace"]
    T = P + S
    _, dense_k, dense_v = model.dense_forward(s.tokens[:, :T])
    rope = Rope(c.head_dim, model.device)
    cos, sin = rope.tables(torch.arange(T))
    for b, path in enumerate(paths):
        info, layers = trace_export.read_trace(path)
        assert (info.num_q_heads, info.num_kv_heads, info.head_dim, info.num_tokens) == \
            (c.n_heads, c.n_kv_heads, c.head_dim, T)
        assert info.step_positions == list(range(P, T)) and info.token_ids == s.tokens[b, :T].tolist()
        assert info.rope_style == trace_export.ROPE_INTERLEAVED and info.rope_theta == 10000.0
        assert info.description == f"unit test sequence {b}"
        e = 4 * (3 * c.n_kv_heads * T * c.head_dim + 2 * S * c.n_heads * c.head_dim) + 8
        meta = len(info.description) + 8 * S + 4 * T
        assert os.path.getsize(path) == 96 + meta + c.n_layers * e
        for layer, t in enumerate(layers):
            k = torch.from_numpy(t["keys"])
            torch.testing.assert_close(k, dense_k[layer][b], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(torch.from_numpy(t["values"]), dense_v[layer][b], atol=1e-5, rtol=1e-5)
            k_rot = Rope.apply(torch.from_numpy(t["keys_pre"]).transpose(0, 1), cos, sin).transpose(0, 1)
            assert torch.equal(k_rot, k)  # the same float32 math as the model
            q_rot = Rope.apply(torch.from_numpy(t["queries_pre"]), cos[P:], sin[P:])
            assert torch.equal(q_rot, torch.from_numpy(t["queries"]))
            assert np.abs(t["queries"]).max() > 0


def test_writer_refuses_what_the_reader_would(tmp_path):
    info = trace_export.TraceInfo(num_q_heads=2, num_kv_heads=1, head_dim=4, num_tokens=3, step_positions=[2])
    kv = np.ones((1, 3, 4), np.float32)
    q = np.ones((1, 2, 4), np.float32)
    good = {"keys_pre": kv, "keys": kv, "values": kv, "queries_pre": q, "queries": q}
    trace_export.write_trace(str(tmp_path / "ok.trace"), info, [good])
    assert trace_export.read_trace(str(tmp_path / "ok.trace"))[0].step_positions == [2]
    bad_value = dict(good, values=np.full((1, 3, 4), np.inf, np.float32))
    with pytest.raises(ValueError, match="not finite"):
        trace_export.write_trace(str(tmp_path / "bad.trace"), info, [bad_value])
    with pytest.raises(ValueError, match="shape"):
        trace_export.write_trace(str(tmp_path / "bad.trace"), info, [dict(good, queries=kv)])
    info.step_positions = [3]
    with pytest.raises(ValueError, match="step position"):
        trace_export.write_trace(str(tmp_path / "bad.trace"), info, [good])
    assert sorted(os.listdir(tmp_path)) == ["ok.trace"]  # no file, no .tmp left behind


def test_python_writer_matches_the_cpp_writer_byte_for_byte(tmp_path):
    """A trace written by tierkv's TraceWriter (bench_eval --save-traces), read and
    rewritten by trace_export, is the same file; the Python reader checks it."""
    saved = tmp_path / "saved"
    p, _ = run_bench_eval(tmp_path, "--synthetic-tokens=512", "--layers=2", "--q-heads=4", "--kv-heads=2",
                          "--head-dim=32", "--steps=3", "--calibration-steps=0", "--methods=exact",
                          "--budgets=0.5", "--granularity=layer", f"--save-traces={saved}")
    assert p.returncode == 0, p.stderr
    [cpp] = saved.glob("*.trace")
    info, layers = trace_export.read_trace(str(cpp))
    assert info.sentence_starts and info.token_ids is None and len(layers) == 2
    trace_export.write_trace(str(tmp_path / "py.trace"), info, layers)
    assert (tmp_path / "py.trace").read_bytes() == cpp.read_bytes()


def test_cli_exports_traces_that_bench_eval_scores(model, tmp_path):
    """run.py --export-traces on a short run; tierkv_bench_eval reads both files in one
    run (--trace twice), scores them, and refuses a corrupted copy."""
    from kv_backend import import_tierkv
    try:
        import_tierkv()
    except ImportError as e:
        if os.environ.get("TIERKV_ENGINE_REQUIRE_TIERKV") == "1":
            raise
        pytest.skip(f"tierkv package not importable: {e}")
    import run
    traces = tmp_path / "traces"
    rc = run.main(["--model", MODEL, "--out", str(tmp_path / "out"), "--contexts", "48", "--steps", "16",
                   "--batch", "2", "--seeds", "7", "--block-tokens", str(BT), "--budgets", "0.5",
                   "--retrievers", "minmax", "--tasks", "nll", "--no-plot", "--export-traces", str(traces)])
    assert rc == 0
    files = sorted(traces.glob("*.trace"))
    assert [f.name for f in files] == ["C48-seed7-seq0.trace", "C48-seed7-seq1.trace"]
    info, _ = trace_export.read_trace(str(files[0]))
    assert info.num_tokens == 48 and info.step_positions == list(range(32, 48))
    assert "teacher-forced" in info.description and "context 48" in info.description

    p, doc = run_bench_eval(tmp_path, *[f"--trace={f}" for f in files], "--methods=exact;minmax",
                            "--budgets=0.25,0.5", "--granularity=layer", f"--block-tokens={BT}",
                            "--recent-tokens=4", "--sink-tokens=4", "--calibration-steps=4")
    assert p.returncode == 0, p.stderr
    ws = doc["workloads"]
    assert [w["name"] for w in ws] == [f"trace {f.name}" for f in files]
    for w in ws:
        assert w["source"] == "trace" and "reference engine" in w["note"]
        runs = {r["spec"]: r for r in w["runs"]}
        assert set(runs) == {"exact", "minmax"}
        for b in range(2):
            exact, minmax = (runs[m]["budgets"][b]["mass_recall"] for m in ("exact", "minmax"))
            assert 0 < minmax <= exact + 1e-9 and exact <= 1 + 1e-9
        assert runs["exact"]["budgets"][1]["mass_recall"] > runs["exact"]["budgets"][0]["mass_recall"]

    bad = tmp_path / "bad.trace"
    raw = bytearray(files[0].read_bytes())
    raw[-100] ^= 0x40  # a value in the last layer's queries
    bad.write_bytes(bytes(raw))
    p, _ = run_bench_eval(tmp_path, f"--trace={bad}", "--methods=exact", "--budgets=0.5", "--calibration-steps=4")
    assert p.returncode != 0 and "checksum" in p.stderr
