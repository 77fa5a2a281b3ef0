"""Leases: a selection pins its blocks until released, by its with-block (also on an
exception), explicitly, or by closing the channel; checked through the daemon."""
import numpy as np
import pytest

import tierkv
from conftest import QUERY_ONES, blocks, put_needle_sequence, retry_busy

NEEDLE = 17


def test_the_with_block_releases_the_lease(channel):
    put_needle_sequence(channel, 5, 1)
    other = blocks(1, seed=99)[0]
    with channel.retrieve(5, 1, QUERY_ONES, 6) as sel:
        assert NEEDLE in sel.block_indices
        with pytest.raises(tierkv.Busy):  # the daemon refuses to overwrite a pinned block
            channel.put(5, 1, NEEDLE, other)
        assert not sel.released
    assert sel.released
    retry_busy(lambda: channel.put(5, 1, NEEDLE, other))  # free again once released
    np.testing.assert_array_equal(channel.get(5, 1, NEEDLE)[0], other)
    with pytest.raises(tierkv.NotFound):
        channel.release(sel.lease)  # the daemon no longer knows it
    sel.release()  # a second release is a no-op


def test_an_exception_in_the_with_block_releases_the_lease(channel):
    put_needle_sequence(channel, 6, 0)
    with pytest.raises(RuntimeError, match="engine failed"):
        with channel.retrieve(6, 0, QUERY_ONES, 6) as sel:
            raise RuntimeError("engine failed")
    assert sel.released
    with pytest.raises(tierkv.NotFound):
        channel.release(sel.lease)
    retry_busy(lambda: channel.put(6, 0, NEEDLE, blocks(1, seed=5)))


def test_explicit_release_and_closing_the_channel(client, namespace):
    ch = client.open_channel(namespace)
    put_needle_sequence(ch, 7, 0)
    sel = ch.retrieve(7, 0, QUERY_ONES, 6)
    sel.release()
    assert sel.released
    with pytest.raises(tierkv.InvalidArgument, match="released"):
        sel.views()
    pinned = ch.retrieve(7, 0, QUERY_ONES, 6)
    ch.close()  # releases what is still held
    assert pinned.released
    with client.open_channel(namespace) as other:
        retry_busy(lambda: other.put(7, 0, NEEDLE, blocks(1, seed=6)))
    with pytest.raises(tierkv.NotFound):
        with client.open_channel(namespace) as other:
            other.release(pinned.lease)


def test_release_of_an_unknown_lease_is_not_found(channel):
    with pytest.raises(tierkv.NotFound):
        channel.release(123456789)


def test_close_sequence(channel):
    put_needle_sequence(channel, 9, 0)
    channel.close_sequence(9)
    with pytest.raises(tierkv.NotFound):
        channel.get(9, 0, 0)
    with pytest.raises(tierkv.NotFound):
        channel.close_sequence(9)


def test_defer_mode_reports_missing_blocks_until_they_arrive(client):
    import time
    from conftest import make_namespace
    name = make_namespace(client, gpu_bytes=4 * 4096, host_bytes=8 * 4096, disk_bytes=256 * 8192)
    client.set_policy(name, {"miss_mode": "defer"})
    with client.open_channel(name) as ch:
        put_needle_sequence(ch, 5, 1, n=60)  # most blocks, the needle too, end up on D
        with ch.retrieve(5, 1, QUERY_ONES, 8) as sel:
            assert sel.missing > 0 and len(sel) + sel.missing == 8
            assert NEEDLE not in sel.block_indices
        deadline = time.monotonic() + 10
        while True:  # the missing blocks are being promoted: a later step sees them
            with ch.retrieve(5, 1, QUERY_ONES, 8) as sel:
                if sel.missing == 0 or time.monotonic() > deadline:
                    break
            time.sleep(0.05)
        assert sel.missing == 0 and NEEDLE in sel.block_indices and len(sel) == 8
