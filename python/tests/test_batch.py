"""Batched retrieve (Channel.retrieve_batch, decision 0011) through a real tierkvd:
equal to separate retrieves, per-sequence errors, one lease for the batch,
zero-copy queries and views, argument checks."""
import numpy as np
import pytest

import tierkv
from conftest import HEAD_DIM, Q_HEADS, QUERY_ONES, blocks, put_needle_sequence, retry_busy, served_block


def _queries(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(0.5, 0.5, size=(n, Q_HEADS, HEAD_DIM)).astype(np.float32)


def test_a_batch_equals_separate_retrieves(channel):
    for seq in (1, 2, 3, 4):
        put_needle_sequence(channel, seq, 1, needle=5 + 4 * seq)
    seqs, budgets = [1, 2, 3, 4], [5, 6, 7, 8]  # at least the sinks + recent window (1 + 4)
    q = _queries(4)
    with channel.retrieve_batch(1, seqs, q, budgets) as batch:
        assert len(batch) == 4 and batch.served == 4 and batch.lease != 0
        got = [batch.blocks(i) for i in range(4)]
    for i, seq in enumerate(seqs):
        with channel.retrieve(seq, 1, q[i], budgets[i]) as sel:
            assert sel.blocks == got[i]  # same blocks, tiers and offsets


def test_each_sequence_finds_its_needle_and_views_are_zero_copy(channel):
    data = {seq: put_needle_sequence(channel, seq, 0, needle=3 + seq) for seq in (11, 12)}
    q = np.stack([QUERY_ONES, QUERY_ONES])
    with channel.retrieve_batch(0, [11, 12], q, 6) as batch:
        for i, seq in enumerate((11, 12)):
            assert 3 + seq in batch.block_indices(i)
            k = list(batch.block_indices(i)).index(3 + seq)
            np.testing.assert_array_equal(served_block(channel, batch.blocks(i)[k]), data[seq][3 + seq])
            np.testing.assert_array_equal(batch.stacked(i)[k], data[seq][3 + seq])


def test_a_bad_sequence_fails_alone(channel):
    put_needle_sequence(channel, 21, 0)
    with channel.retrieve_batch(0, [21, 999, 21], _queries(3), [6, 6, 0]) as batch:
        assert batch.served == 1
        assert batch.error(0) is None and len(batch.blocks(0)) == 6
        assert isinstance(batch.error(1), tierkv.NotFound)
        assert "no blocks" in str(batch.error(1))
        with pytest.raises(tierkv.NotFound):
            batch.blocks(1)
        assert isinstance(batch.error(2), tierkv.InvalidArgument)


def test_one_release_frees_every_sequence(channel):
    for seq in (31, 32):
        put_needle_sequence(channel, seq, 0)
    other = blocks(1, seed=7)[0]
    batch = channel.retrieve_batch(0, [31, 32], np.stack([QUERY_ONES, QUERY_ONES]), 6)
    for seq in (31, 32):
        with pytest.raises(tierkv.Busy):
            channel.put(seq, 0, 17, other)
    batch.release()
    assert batch.released
    for seq in (31, 32):
        retry_busy(lambda: channel.put(seq, 0, 17, other))
    with pytest.raises(tierkv.NotFound):
        channel.release(batch.lease)
    batch.release()  # a second release is a no-op


def test_closing_the_channel_releases_a_batch(client, namespace):
    ch = client.open_channel(namespace)
    put_needle_sequence(ch, 41, 0)
    batch = ch.retrieve_batch(0, [41], QUERY_ONES[None], 6)
    ch.close()
    assert batch.released
    with client.open_channel(namespace) as other:
        retry_busy(lambda: other.put(41, 0, 17, blocks(1, seed=8)))


def test_arguments_are_checked(channel):
    put_needle_sequence(channel, 51, 0)
    with pytest.raises(tierkv.InvalidArgument, match="no sequences"):
        channel.retrieve_batch(0, [], np.zeros((0, Q_HEADS * HEAD_DIM), np.float32), 4)
    with pytest.raises(tierkv.InvalidArgument, match="2 sequences need"):
        channel.retrieve_batch(0, [51, 51], _queries(1), 4)
    with pytest.raises(tierkv.InvalidArgument, match="budgets"):
        channel.retrieve_batch(0, [51, 51], _queries(2), [4])
    with pytest.raises(tierkv.InvalidArgument, match="layer"):
        channel.retrieve_batch(2, [51], _queries(1), 4)
    with pytest.raises(tierkv.InvalidArgument, match="staging"):
        channel.retrieve_batch(0, [51], _queries(1), 1 << 20)
    with pytest.raises(tierkv.InvalidArgument, match="staging"):  # refused before any table is allocated
        channel.retrieve_batch(0, [51] * 4, _queries(4), 2**32 - 1)
    with pytest.raises(tierkv.InvalidArgument, match="expected floats"):
        channel.retrieve_batch(0, [51], np.ones((1, Q_HEADS * HEAD_DIM), np.int32), 4)
    with channel.retrieve_batch(0, [51], _queries(1).astype(np.float64), 5) as batch:  # converted
        assert batch.served == 1
