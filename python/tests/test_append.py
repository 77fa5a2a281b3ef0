"""Token-granular append (Channel.append, issue 17) through a real tierkvd: tokens
appended in pieces read back equal to the whole-block put of the same bytes; gaps
and overlaps are refused naming the token expected; argument checks."""
import numpy as np
import pytest

import tierkv
from conftest import BLOCK_TOKENS, KV_HEADS, HEAD_DIM, blocks


def _tokens(block_data, lo, hi):
    """K then V of tokens [lo, hi) of whole blocks (n, 2, kv, bt, hd): (2, kv, hi-lo, hd)."""
    flat = np.concatenate(list(block_data), axis=2)  # (2, kv, n*bt, hd)
    return np.ascontiguousarray(flat[:, :, lo:hi, :])


def test_appends_equal_the_whole_block_put(channel):
    data = blocks(3, seed=5)
    channel.put(101, 0, 0, data)
    total = 3 * BLOCK_TOKENS
    pos, nxt = 0, 0
    for step in (1, 3, BLOCK_TOKENS - 4, 2, BLOCK_TOKENS, total):  # pieces that cross block borders
        hi = min(total, pos + step)
        if hi == pos:
            break
        nxt = channel.append(102, 0, pos, _tokens(data, pos, hi))
        assert nxt == hi
        pos = hi
    assert pos == total
    np.testing.assert_array_equal(channel.get(102, 0, 0, 3), channel.get(101, 0, 0, 3))


def test_a_partial_block_reads_zero_padded(channel):
    data = blocks(1, seed=6)
    channel.append(103, 0, 0, _tokens(data, 0, 3))
    got = channel.get(103, 0, 0, 1)[0]
    np.testing.assert_array_equal(got[:, :, :3, :], data[0][:, :, :3, :])
    assert not got[:, :, 3:, :].any()


def test_gaps_and_overlaps_are_refused(channel):
    data = blocks(1, seed=7)
    assert channel.append(104, 0, 0, _tokens(data, 0, 2)) == 2
    with pytest.raises(tierkv.InvalidArgument, match="token 2"):
        channel.append(104, 0, 5, _tokens(data, 5, 6))  # gap
    with pytest.raises(tierkv.InvalidArgument, match="token 2"):
        channel.append(104, 0, 1, _tokens(data, 1, 2))  # overlap


def test_bad_arguments(channel):
    with pytest.raises(tierkv.InvalidArgument):
        channel.append(105, 0, 0, np.zeros((2, KV_HEADS, 2, HEAD_DIM + 1), dtype=np.float32))
    with pytest.raises(tierkv.InvalidArgument):
        channel.append(105, 0, 0, b"\0" * 10, tokens=1)
    with pytest.raises(tierkv.InvalidArgument):
        channel.append(105, 0, 0, b"\0" * 10)  # bytes without tokens=
