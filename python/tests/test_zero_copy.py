"""Retrieved blocks are read-only views of the shared arenas: no copy, same addresses."""
import numpy as np
import pytest

import tierkv
from conftest import QUERY_ONES, put_needle_sequence, retry_busy, served_block


def _address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def test_views_are_read_only_arena_memory(channel):
    data = put_needle_sequence(channel, 5, 1)
    with channel.retrieve(5, 1, QUERY_ONES, 6) as sel:
        assert [b.block for b in sel.blocks] == [0, 17, 36, 37, 38, 39]
        np.testing.assert_array_equal(sel.block_indices, [0, 17, 36, 37, 38, 39])
        host = [ref for ref in sel.blocks if not channel.on_device(ref)]  # all of them without a GPU
        for ref in sel.blocks:
            np.testing.assert_array_equal(served_block(channel, ref), data[ref.block])
        views = [channel.block_view(ref) for ref in host]
        for ref, v in zip(host, views):
            assert v.shape == channel.block_shape and v.dtype == np.float32
            assert not v.flags.writeable
            assert not v.flags.owndata
            base = channel.arena_address(ref.tier)
            assert base is not None
            assert _address(v) == base + ref.offset  # the view IS the arena's bytes
            np.testing.assert_array_equal(v, data[ref.block])
            again = channel.block_view(ref)
            assert _address(again) == _address(v) and np.shares_memory(again, v)
            with pytest.raises(ValueError):
                v[0, 0, 0, 0] = 1.0  # read-only: numpy refuses before the page would
            with pytest.raises(ValueError):
                v.flags.writeable = True
        if host:
            arena = channel.arena(host[0].tier)
            assert arena.readonly and len(arena) >= channel.block_bytes
        else:
            with pytest.raises(tierkv.NotSupported, match="block_tensor"):
                sel.views()
        stacked = sel.stacked()  # a copy, from either memory
        assert stacked.shape == (6,) + channel.block_shape and stacked.flags.writeable
        assert not any(np.shares_memory(stacked, v) for v in views)
        np.testing.assert_array_equal(stacked, data[[0, 17, 36, 37, 38, 39]])


def test_views_see_the_same_bytes_the_table_points_at(channel):
    # The view and the C library's block pointer agree (tierkv_block_ref.data).
    import ctypes
    from tierkv import _lib
    put_needle_sequence(channel, 6, 0)
    lib = _lib.lib()
    table = (_lib.BlockRefC * 6)()
    count, lease, missing = ctypes.c_uint32(), ctypes.c_uint64(), ctypes.c_uint32()
    q = np.ascontiguousarray(QUERY_ONES.reshape(-1))
    assert lib.tierkv_retrieve_ex(channel._ptr(), 6, 0, q.ctypes.data, q.size, 6, table, 6, ctypes.byref(count),
                                  ctypes.byref(lease), ctypes.byref(missing)) == 0
    for i in range(count.value):
        ref = tierkv.BlockRef(table[i].block, table[i].tier, table[i].offset)
        if channel.on_device(ref):
            assert not table[i].data  # GPU memory: no host pointer
        else:
            assert _address(channel.block_view(ref)) == table[i].data
    channel.release(lease.value)


def test_as_torch_shares_the_view_and_block_tensors_share_the_arenas(channel):
    torch = pytest.importorskip("torch")
    data = put_needle_sequence(channel, 7, 0)
    with channel.retrieve(7, 0, QUERY_ONES, 6) as sel:
        for ref, t in zip(sel.blocks, sel.tensors()):
            assert t.dtype == torch.float32 and tuple(t.shape) == channel.block_shape
            assert torch.equal(t.cpu(), torch.from_numpy(data[ref.block]))
            flat = channel.arena_tensor(ref.tier)  # the whole arena, same memory
            first, per = ref.offset // flat.element_size(), channel.block_bytes // flat.element_size()
            assert flat.data_ptr() + ref.offset == t.data_ptr() and flat.device == t.device
            assert torch.equal(flat[first:first + per].view(channel.block_shape).cpu(), t.cpu())
            if channel.on_device(ref):
                assert t.is_cuda and t.data_ptr() == channel.gpu_arena_device + ref.offset
                continue
            v = channel.block_view(ref)
            assert t.data_ptr() == _address(v)
            assert tierkv.as_torch(v).data_ptr() == _address(v)


def test_a_view_outlives_its_channel_without_crashing(client, namespace):
    ch = client.open_channel(namespace)
    data = put_needle_sequence(ch, 8, 0)
    sel = ch.retrieve(8, 0, QUERY_ONES, 6)
    ref = sel.blocks[0]
    v = ch.block_tensor(ref) if ch.on_device(ref) else ch.block_view(ref)
    ch.close()  # releases the lease; the mapping lives while the view does
    assert sel.released
    with pytest.raises(tierkv.InvalidArgument, match="released"):
        sel.views()
    assert tuple(v.shape) == ch.block_shape
    float(v.sum())  # still mapped (host arena or CUDA IPC mapping): reading does not fault
    with pytest.raises(tierkv.InvalidArgument, match="closed"):
        ch.get(8, 0, 0)
    del data


def test_views_of_both_arenas_and_blocks_back_from_disk(client):
    from conftest import make_namespace
    # G holds 4 blocks, H 32: a selection of 8 spans both arenas; the rest of 60 is on D.
    name = make_namespace(client, gpu_bytes=4 * 4096, host_bytes=32 * 4096, disk_bytes=256 * 8192)
    with client.open_channel(name) as ch:
        data = put_needle_sequence(ch, 5, 1, n=60)
        tiers = client.usage(name)["namespaces"][0]["tiers"]
        assert tiers["D"]["used_slots"] > 0
        with ch.retrieve(5, 1, QUERY_ONES, 8) as sel:
            assert {b.tier for b in sel.blocks} == {0, 1}
            for ref in sel.blocks:
                np.testing.assert_array_equal(served_block(ch, ref), data[ref.block])
        np.testing.assert_array_equal(ch.get(5, 1, 0, 60), data)


def test_threads_each_with_a_channel(client, namespace):
    import threading
    channels = [client.open_channel(namespace, staging_bytes=1 << 16) for _ in range(4)]
    errors = []

    def work(i, ch):
        try:
            for round_ in range(5):
                data = np.full((3,) + ch.block_shape, i * 10 + round_, np.float32)
                retry_busy(lambda: ch.put(100 + i, 0, 0, data))
                np.testing.assert_array_equal(ch.get(100 + i, 0, 0, 3), data)
                with ch.retrieve(100 + i, 0, QUERY_ONES, 3) as sel:  # all 3 (sinks + window would be 5)
                    assert all(float(v[0, 0, 0, 0]) == i * 10 + round_ for v in sel.stacked())
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i, ch)) for i, ch in enumerate(channels)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for ch in channels:
        ch.close()
    assert not errors, errors


def test_bf16_views_are_raw_bits_and_as_torch_reinterprets_them(client):
    from conftest import blocks, make_namespace
    name = make_namespace(client, "bf16")
    with client.open_channel(name) as ch:
        bits = tierkv.bf16_bits(blocks(16, seed=12, needle=3))
        ch.put(1, 0, 0, bits)
        with ch.retrieve(1, 0, QUERY_ONES, 6) as sel:  # sink, needle, 4 recent
            assert 3 in sel.block_indices
            for ref in sel.blocks:
                v = served_block(ch, ref)
                assert v.dtype == np.uint16
                np.testing.assert_array_equal(v, bits[ref.block])
            torch = pytest.importorskip("torch")
            ref = sel.blocks[0]
            t = ch.block_tensor(ref)
            assert t.dtype == torch.bfloat16 and tuple(t.shape) == ch.block_shape
            np.testing.assert_array_equal(t.float().cpu().numpy(), tierkv.bf16_to_float32(bits[ref.block]))
            if not ch.on_device(ref):
                v = ch.block_view(ref)
                assert tierkv.as_torch(v).data_ptr() == _address(v) == t.data_ptr()


def test_acquire_is_a_zero_copy_get(channel):
    """acquire(seq, layer, first, count): the blocks where they are, pinned until released."""
    data = put_needle_sequence(channel, 5, 1)
    with channel.acquire(5, 1, 10, 4) as sel:
        assert [b.block for b in sel.blocks] == [10, 11, 12, 13]
        for ref in sel.blocks:
            np.testing.assert_array_equal(served_block(channel, ref), data[ref.block])  # in place, no copy
        np.testing.assert_array_equal(sel.stacked(), data[10:14])
        with pytest.raises(tierkv.Busy):
            channel.put(5, 1, 11, data[11:12])  # pinned
    retry_busy(lambda: channel.put(5, 1, 11, data[11:12]))  # released
    with pytest.raises(tierkv.NotFound):
        channel.acquire(5, 1, 38, 4)  # past the end: nothing pinned
    retry_busy(lambda: channel.put(5, 1, 38, data[38:39]))
    with pytest.raises(tierkv.InvalidArgument, match="count"):
        channel.acquire(5, 1, 0, 0)
    with pytest.raises(tierkv.InvalidArgument):
        channel.acquire(5, 9, 0, 1)


def test_acquire_gives_the_previous_lease_back_in_the_same_call(channel):
    data = put_needle_sequence(channel, 5, 1)
    first = channel.acquire(5, 1, 0, 2)
    second = channel.acquire(5, 1, 2, 2, release=first)
    assert first.released and not second.released
    with pytest.raises(tierkv.NotFound):
        channel.release(first.lease)  # the daemon released it
    np.testing.assert_array_equal(second.stacked(), data[2:4])
    with pytest.raises(tierkv.InvalidArgument, match="live Selection"):
        channel.acquire(5, 1, 4, 1, release=first)
    second.release()


def test_a_failed_acquire_still_gives_the_previous_lease_back(channel):
    put_needle_sequence(channel, 5, 1)
    first = channel.acquire(5, 1, 0, 2)
    with pytest.raises(tierkv.NotFound):
        channel.acquire(5, 1, 39, 4, release=first)  # past the end, after the release
    assert first.released
    with pytest.raises(tierkv.NotFound):
        channel.release(first.lease)
