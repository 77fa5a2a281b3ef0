"""Prefix blocks: put with their content hashes, found by lookup, loaded into a new sequence."""
import numpy as np
import pytest

import tierkv
from conftest import BLOCK_TOKENS, blocks


def test_prefix_lookup_and_load(channel):
    tokens = np.arange(3 * BLOCK_TOKENS + 5, dtype=np.int32)  # 3 full blocks + a partial one
    hashes = channel.prefix_block_hashes(tokens)
    assert len(hashes) == 3 and all(h != 0 for h in hashes) and len(set(hashes)) == 3
    assert channel.prefix_block_hashes(tokens[:BLOCK_TOKENS]) == hashes[:1]  # chained from the first
    assert channel.lookup_prefix(tokens) == 0
    data = blocks(3, seed=4)
    for layer in range(2):
        for b, h in enumerate(hashes):
            channel.put(20, layer, b, data[b], prefix_hash=h)
    assert channel.lookup_prefix(tokens) == 3 * BLOCK_TOKENS
    assert channel.lookup_prefix(list(tokens[:2 * BLOCK_TOKENS + 1])) == 2 * BLOCK_TOKENS
    assert channel.lookup_prefix([]) == 0
    assert channel.load_prefix(21, tokens) == 3 * BLOCK_TOKENS
    np.testing.assert_array_equal(channel.get(21, 1, 0, 3), data)
    with pytest.raises(tierkv.InvalidArgument, match="integers"):
        channel.lookup_prefix(np.ones(4, dtype=np.float32))
    with pytest.raises(tierkv.InvalidArgument, match="one block"):
        channel.put(22, 0, 0, data[:2], prefix_hash=hashes[0])
