"""Smoke tests of the reference engine (a few decode steps, tiny config, < 60 s).

Run by ctest (label "python") with TIERKV_LIBRARY and TIERKVD set to the built
libtierkv.so and tierkvd, and TIERKV_ENGINE_REQUIRE_TIERKV=1 so that a missing
`tierkv` package fails instead of skipping.
"""
import json
import math
import os
import pathlib
import sys

import pytest
import torch

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from engine import PagedEngine, budget_fn, generate, sample_sequences, teacher_forced  # noqa: E402
from kv_backend import LocalBackend  # noqa: E402
from tinyllama import Model  # noqa: E402

MODEL = os.environ.get("TIERKV_STORIES260K", str(HERE.parents[3] / "shared" / "data" / "stories260K.bin"))
BT = 4  # small blocks: a few decode steps cross block boundaries


@pytest.fixture(scope="module")
def model():
    if not os.path.exists(MODEL):
        pytest.skip(f"model checkpoint {MODEL} not found (set TIERKV_STORIES260K)")
    torch.set_num_threads(1)
    return Model(MODEL)


@pytest.fixture(scope="module")
def seqs(model):
    return sample_sequences(model, 8, 41, seed=5).tokens


def shape(model):
    c = model.config
    return (2, c.n_kv_heads, BT, c.head_dim)


def tierkv_backend_class():
    """TierkvBackend, or a skip when the tierkv package cannot be imported (a failure
    under TIERKV_ENGINE_REQUIRE_TIERKV=1)."""
    try:
        from kv_backend import TierkvBackend, import_tierkv
        import_tierkv()
    except ImportError as e:
        if os.environ.get("TIERKV_ENGINE_REQUIRE_TIERKV") == "1":
            raise
        pytest.skip(f"tierkv package not importable: {e}")
    return TierkvBackend


@pytest.fixture(scope="module")
def tierkv_backend(model):
    c = model.config
    with tierkv_backend_class()(shape(model), model.device, num_layers=c.n_layers, num_q_heads=c.n_heads,
                                policy={"retriever": "minmax", "trigger": "every", "sink_blocks": 1,
                                        "recent_window": 1}) as b:
        yield b


def test_checkpoint_shape(model):
    c = model.config
    assert (c.dim, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.vocab_size, c.seq_len) == \
        (64, 5, 8, 4, 8, 512, 512)


def test_sampled_text_is_the_models_own(model, seqs):
    """The model predicts its own samples far better than uniform guessing (log 512 = 6.24)."""
    logits, _, _ = model.dense_forward(seqs)
    nll = -logits[:, :-1].log_softmax(-1).gather(2, seqs[:, 1:, None]).mean().item()
    assert nll < 4.0
    noise = torch.randint(0, 512, seqs.shape, generator=torch.Generator().manual_seed(0))
    noise_logits, _, _ = model.dense_forward(noise)
    noise_nll = -noise_logits[:, :-1].log_softmax(-1).gather(2, noise[:, 1:, None]).mean().item()
    assert noise_nll > nll + 2.0


def test_sampler_prefill_matches_dense_forward(model):
    """The sampler's incremental K/V and last logits (the shared prefill) = the dense forward."""
    s = sample_sequences(model, 3, 30, seed=2, prompt_len=21)
    logits, keys, values = model.dense_forward(s.tokens[:, :21])
    torch.testing.assert_close(s.last_logits, logits[:, -1], atol=1e-4, rtol=1e-4)
    for a, b in zip(s.keys + s.values, keys + values):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert torch.equal(s.tokens, sample_sequences(model, 3, 30, seed=2).tokens)  # seeded


def test_local_paged_matches_dense_forward(model, seqs):
    """Prefill + paged decode steps over blocks and the partial block = the dense forward."""
    dense, _, _ = model.dense_forward(seqs)
    eng = PagedEngine(model, LocalBackend(shape(model), model.device), BT)
    P = 29  # 7 whole blocks + a partial block of 1
    last = eng.prefill(seqs[:, :P])
    torch.testing.assert_close(last, dense[:, P - 1], atol=1e-4, rtol=1e-4)
    for t in range(P, seqs.shape[1]):
        logits = eng.step(seqs[:, t], budget_fn("full"))
        torch.testing.assert_close(logits, dense[:, t], atol=1e-4, rtol=1e-4)
    assert eng.n_blocks == seqs.shape[1] // BT and eng.fill == seqs.shape[1] % BT
    eng.close()


def test_tierkv_full_reproduces_local_exactly(model, seqs, tierkv_backend):
    P, steps = 27, 12
    ref = generate(PagedEngine(model, LocalBackend(shape(model), model.device), BT), seqs[:, :P], steps,
                   budget_fn("full"))
    got = generate(PagedEngine(model, tierkv_backend, BT), seqs[:, :P], steps, budget_fn("full"))
    assert torch.equal(got, ref)
    nll_ref, top_ref = teacher_forced(PagedEngine(model, LocalBackend(shape(model), model.device), BT), seqs, P,
                                      budget_fn("full"))
    calls0, seq0 = tierkv_backend.stats.retrieve_calls, tierkv_backend.stats.sequence_retrieves
    puts0 = tierkv_backend.stats.put_calls
    nll, top = teacher_forced(PagedEngine(model, tierkv_backend, BT), seqs, P, budget_fn("full"))
    assert torch.equal(nll, nll_ref) and torch.equal(top, top_ref)
    c = model.config
    # Full mode selects nothing: the batch's blocks are acquired (Channel.acquire_batch,
    # a zero-copy get), one call per layer at every step, for the 8 sequences.
    steps = seqs.shape[1] - 1 - P
    assert tierkv_backend.stats.retrieve_calls - calls0 == steps * c.n_layers
    assert tierkv_backend.stats.sequence_retrieves - seq0 == steps * 8 * c.n_layers
    # Puts: one Channel.put_batch per layer for the prompt, then per layer for each block filled.
    filled = (seqs.shape[1] - 1) // BT - P // BT
    assert tierkv_backend.stats.put_calls - puts0 == c.n_layers * (1 + filled)


def test_tierkv_sparse_runs(model, seqs, tierkv_backend):
    P, steps = 33, 6  # 8 blocks at the start: budget 25% = 2 blocks per retrieve
    s0 = vars(tierkv_backend.stats).copy()
    eng = PagedEngine(model, tierkv_backend, BT)
    toks = generate(eng, seqs[:, :P], steps, budget_fn(0.25))
    assert toks.shape == (8, steps) and toks.min() >= 0 and toks.max() < model.config.vocab_size
    calls = tierkv_backend.stats.retrieve_calls - s0["retrieve_calls"]
    blocks = tierkv_backend.stats.blocks_retrieved - s0["blocks_retrieved"]
    assert calls == steps * model.config.n_layers  # one batched retrieve per layer
    assert tierkv_backend.stats.sequence_retrieves - s0["sequence_retrieves"] == steps * 8 * model.config.n_layers
    # ceil(0.25 * blocks put so far) per call; 8 blocks at the start, 9 from step 3
    assert blocks == sum(math.ceil(0.25 * ((P + i) // BT)) for i in range(steps)) * 8 * model.config.n_layers


def test_batched_and_per_sequence_retrieves_agree(model, seqs, tierkv_backend):
    """The batched retrieve selects what 8 separate retrieves select: same tokens."""
    P, steps = 33, 6
    batched = generate(PagedEngine(model, tierkv_backend, BT), seqs[:, :P], steps, budget_fn(0.25))
    tierkv_backend.batch_retrieve = False
    try:
        calls0 = tierkv_backend.stats.retrieve_calls
        single = generate(PagedEngine(model, tierkv_backend, BT), seqs[:, :P], steps, budget_fn(0.25))
        assert tierkv_backend.stats.retrieve_calls - calls0 == steps * 8 * model.config.n_layers
    finally:
        tierkv_backend.batch_retrieve = True
    assert torch.equal(batched, single)


def test_cli_writes_json_and_plot(tmp_path, tierkv_backend):
    import run
    rc = run.main(["--model", MODEL, "--out", str(tmp_path), "--contexts", "40", "--steps", "8", "--batch", "2",
                   "--seeds", "1", "--block-tokens", str(BT), "--budgets", "0.5", "--retrievers", "minmax"])
    assert rc == 0
    res = json.loads((tmp_path / "results.json").read_text())
    full = [s for s in res["summary"] if s["backend"] == "tierkv" and s["retriever"] is None]
    assert full[0]["greedy_agreement"] == 1.0 and full[0]["nll_delta"] == 0.0
    assert (tmp_path / "quality_vs_budget.png").stat().st_size > 1000


def test_tierkv_f16_namespace_full_mode_is_close(model, seqs, tierkv_backend):
    """An f16 namespace rounds K/V: full mode stays close to the f32 baseline, not equal."""
    from kv_backend import TierkvBackend
    c, P = model.config, 27
    nll_ref, top_ref = teacher_forced(PagedEngine(model, LocalBackend(shape(model), model.device), BT), seqs, P,
                                      budget_fn("full"))
    with TierkvBackend(shape(model), model.device, num_layers=c.n_layers, num_q_heads=c.n_heads,
                       dtype="f16") as b16:
        nll, top = teacher_forced(PagedEngine(model, b16, BT), seqs, P, budget_fn("full"))
        assert b16.stats.bytes_retrieved == b16.stats.blocks_retrieved * (2 * c.n_kv_heads * BT * c.head_dim * 2)
    assert abs(nll.mean().item() - nll_ref.mean().item()) < 0.01
    assert (top == top_ref).float().mean().item() >= 0.95


def test_tierkv_per_head_namespace_full_reproduces_local_and_sparse_runs(model, seqs):
    """A namespace of granularity "head": each KV head selects its own blocks. With a
    budget covering every block, every head's run is every block, so decoding equals
    the local full-attention engine token for token; a sparse budget moves budget
    blocks' bytes per step (kv entries of one head each)."""
    TierkvBackend = tierkv_backend_class()
    c = model.config
    P, steps = 27, 8
    ref = generate(PagedEngine(model, LocalBackend(shape(model), model.device), BT), seqs[:, :P], steps,
                   budget_fn("full"))
    with TierkvBackend(shape(model), model.device, num_layers=c.n_layers, num_q_heads=c.n_heads,
                       policy={"retriever": "minmax", "trigger": "every", "sink_blocks": 1, "recent_window": 1},
                       granularity="head") as b:
        assert b.channel.table_heads == c.n_kv_heads
        assert torch.equal(generate(PagedEngine(model, b, BT), seqs[:, :P], steps, budget_fn("full")), ref)
        s0 = vars(b.stats).copy()
        toks = generate(PagedEngine(model, b, BT), seqs[:, :33], 6, budget_fn(0.25))
        assert toks.shape == (8, 6) and toks.min() >= 0 and toks.max() < c.vocab_size
        blocks = b.stats.blocks_retrieved - s0["blocks_retrieved"]
        assert blocks == sum(math.ceil(0.25 * ((33 + i) // BT)) for i in range(6)) * 8 * c.n_layers
        assert b.stats.bytes_retrieved - s0["bytes_retrieved"] == blocks * b._block_bytes  # equal bytes
