"""A namespace of granularity "head" (docs/decisions/0023-per-head-namespaces.md):
whole layer blocks in and out, each KV head selects its own blocks, an entry is
one head's K and V."""
import numpy as np
import pytest

import tierkv
from conftest import HEAD_DIM, KV_HEADS, LAYERS, Q_HEADS, blocks

SPEC = dict(num_layers=LAYERS, num_q_heads=Q_HEADS, num_kv_heads=KV_HEADS, head_dim=HEAD_DIM, block_tokens=16,
            dtype="f32")


def test_per_head_put_get_retrieve_and_batch(client):
    client.create_namespace("py-per-head", granularity="head", **SPEC)
    client.set_policy("py-per-head", {"sink_blocks": 1, "recent_window": 1})
    client.attach("py-per-head")
    with client.open_channel("py-per-head") as ch:
        assert ch.granularity == "head" and ch.table_heads == KV_HEADS
        assert ch.entry_bytes * KV_HEADS == ch.block_bytes
        assert ch.entry_shape == (2, 1, 16, HEAD_DIM)
        data = blocks(10, seed=4)
        ch.put(1, 0, 0, data)
        ch.put(2, 0, 0, data[::-1].copy())
        np.testing.assert_array_equal(ch.get(1, 0, 0, 10), data)  # joined back per layer
        q = np.random.default_rng(1).normal(size=(Q_HEADS, HEAD_DIM)).astype(np.float32)
        with ch.retrieve(1, 0, q, budget=3) as sel:
            assert len(sel) == 3 * KV_HEADS
            assert [b.head for b in sel.blocks] == sorted(b.head for b in sel.blocks)
            stacked = sel.stacked()  # a host copy, from G on a real GPU as from the host arena
            assert stacked.shape == (3 * KV_HEADS, 2, 1, 16, HEAD_DIM)
            for b, entry in zip(sel.blocks, stacked):
                np.testing.assert_array_equal(entry[:, 0], data[b.block][:, b.head])  # that head's K and V
        batch = ch.retrieve_batch(0, [1, 2], np.stack([q, q]), budgets=3)
        with batch:
            for i, src in ((0, data), (1, data[::-1])):
                refs = batch.blocks(i)
                assert len(refs) == 3 * KV_HEADS and {b.head for b in refs} == set(range(KV_HEADS))
                for b in refs:
                    np.testing.assert_array_equal(ch.block_copy(b)[:, 0], src[b.block][:, b.head])


def test_granularity_is_checked(client):
    with pytest.raises(tierkv.InvalidArgument, match="granularity"):
        client.create_namespace("py-gran-bad", granularity="token", **SPEC)
    client.create_namespace("py-gran", **SPEC)
    with pytest.raises(tierkv.AlreadyExists, match="granularity"):
        client.create_namespace("py-gran", granularity="head", **SPEC)
