"""Batched acquire and put (docs/decisions/0028-batched-acquire-and-put.md): blocks of
several sequences of one layer in one round trip."""
import numpy as np
import pytest

import tierkv
from conftest import HEAD_DIM, KV_HEADS, LAYERS, Q_HEADS, blocks, retry_busy, served_block


def test_put_batch_then_acquire_batch(channel):
    data = {s: blocks(3 + s, seed=s) for s in (1, 2, 3)}
    out = channel.put_batch(1, [1, 2, 3], 0, [data[1], data[2], data[3]])
    assert [r.stored for r in out] == [4, 5, 6] and all(r.error is None for r in out)
    for s in (1, 2, 3):
        np.testing.assert_array_equal(channel.get(s, 1, 0, 3 + s), data[s])
    with channel.acquire_batch(1, [3, 1, 9, 2], [2, 0, 0, 1], [4, 4, 1, 3]) as batch:
        assert len(batch) == 4 and batch.served == 3 and batch.lease != 0
        assert isinstance(batch.error(2), tierkv.NotFound)  # no sequence 9: fails alone
        for i, s, first, count in ((0, 3, 2, 4), (1, 1, 0, 4), (3, 2, 1, 3)):
            refs = batch.blocks(i)
            assert [b.block for b in refs] == list(range(first, first + count))
            for ref in refs:
                np.testing.assert_array_equal(served_block(channel, ref), data[s][ref.block])  # in place
            np.testing.assert_array_equal(batch.stacked(i), data[s][first:first + count])
        with pytest.raises(tierkv.Busy):
            channel.put(1, 1, 0, data[1][:1])  # pinned by the batch
    assert batch.released
    retry_busy(lambda: channel.put(1, 1, 0, data[1][:1]))


def test_acquire_batch_releases_the_previous_lease(channel):
    data = blocks(6, seed=7)
    channel.put_batch(0, [1, 2], [0, 0], [data, data])
    first = channel.acquire_batch(0, [1, 2], 0, 3)
    second = channel.acquire_batch(0, [1, 2], 3, 3, release=first)
    assert first.released and not second.released
    with pytest.raises(tierkv.NotFound):
        channel.release(first.lease)  # the daemon released it
    np.testing.assert_array_equal(second.stacked(1), data[3:6])
    with pytest.raises(tierkv.InvalidArgument, match="live Selection"):
        channel.acquire_batch(0, [1], 0, 1, release=first)
    single = channel.acquire(1, 0, 0, 1)
    third = channel.acquire_batch(0, [1], 0, 1, release=single)  # a Selection works too
    assert single.released
    third.release()
    second.release()


def test_put_batch_reports_a_failed_sequence(channel):
    data = blocks(2, seed=3)
    channel.put(5, 0, 0, data)
    with channel.acquire(5, 0, 1, 1):
        with pytest.raises(tierkv.Busy, match="put batch: item 1") as e:
            channel.put_batch(0, [6, 5, 7], [0, 1, 0], [data, data[1:], data])
        assert [r.stored for r in e.value.results] == [2, 0, 2]
        out = channel.put_batch(0, [5], 1, [data[1:]], check=False)
        assert isinstance(out[0].error, tierkv.Busy) and out[0].stored == 0
    np.testing.assert_array_equal(channel.get(7, 0, 0, 2), data)


def test_batch_arguments_are_checked(channel):
    data = blocks(1, seed=1)
    channel.put(1, 0, 0, data)
    with pytest.raises(tierkv.InvalidArgument, match="no sequences"):
        channel.acquire_batch(0, [], 0, 1)
    with pytest.raises(tierkv.InvalidArgument, match="counts"):
        channel.acquire_batch(0, [1, 1], 0, [1])
    with pytest.raises(tierkv.InvalidArgument):
        channel.acquire_batch(LAYERS, [1], 0, 1)
    with pytest.raises(tierkv.InvalidArgument, match="staging"):
        channel.acquire_batch(0, [1], 0, 1 << 16)
    with channel.acquire_batch(0, [1], 0, 0) as b:  # count 0 fails its item only
        assert isinstance(b.error(0), tierkv.InvalidArgument) and b.lease == 0
    with pytest.raises(tierkv.InvalidArgument, match="payloads"):
        channel.put_batch(0, [1, 2], 0, [data])
    with pytest.raises(tierkv.InvalidArgument):
        channel.put_batch(0, [1], 0, [b"\0" * 10])
    with pytest.raises(tierkv.InvalidArgument, match="layer"):
        channel.put_batch(LAYERS, [1], 0, [data])


def test_per_head_runs(client):
    spec = dict(num_layers=LAYERS, num_q_heads=Q_HEADS, num_kv_heads=KV_HEADS, head_dim=HEAD_DIM, block_tokens=16,
                dtype="f32")
    client.create_namespace("py-batch-head", granularity="head", **spec)
    client.attach("py-batch-head")
    with client.open_channel("py-batch-head") as ch:
        data = {1: blocks(4, seed=11), 2: blocks(4, seed=12)}
        ch.put_batch(0, [1, 2], 0, [data[1], data[2]])
        np.testing.assert_array_equal(ch.get(2, 0, 0, 4), data[2])
        with ch.acquire_batch(0, [2, 1], [1, 0], 2) as batch:
            for i, (s, first) in enumerate(((2, 1), (1, 0))):
                refs = batch.blocks(i)
                assert len(refs) == 2 * KV_HEADS
                assert [(b.head, b.block) for b in refs] == [(h, first + k) for h in range(KV_HEADS) for k in (0, 1)]
                for b in refs:
                    np.testing.assert_array_equal(ch.block_copy(b)[:, 0], data[s][b.block][:, b.head])
