"""The GPU path of retrieve from Python. Without a GPU the daemon emulates it (DESIGN
§2, docs/decisions/0003): the same calls with host pointers, streams ignored."""
import numpy as np
import pytest

import tierkv
from conftest import QUERY_ONES, put_needle_sequence, served_block


def test_device_path_with_torch_tensors(client, namespace):
    """On a GPU machine: the query is a CUDA tensor, the table and the blocks on G are
    device memory, read through torch without a copy of the arena."""
    torch = pytest.importorskip("torch")
    if "no GPU device" in client.stats()["gpu"] or not torch.cuda.is_available():
        pytest.skip("no GPU: the emulated path is tested below")
    with client.open_channel(namespace, gpu=True, gpu_exchange_bytes=8192) as ch:
        assert ch.gpu_path == "device" and ch.gpu_arena_device is not None
        data = put_needle_sequence(ch, 5, 1)
        with ch.retrieve(5, 1, QUERY_ONES, 6) as host:
            want = [b.block for b in host.blocks]
        query = torch.from_numpy(np.ascontiguousarray(QUERY_ONES, dtype=np.float32)).cuda()
        for _ in range(2):  # the second reuses the exchange
            ch.start_retrieve_on_gpu(5, 1, query.data_ptr(), query.numel(), 6, 0)
            with ch.finish_retrieve_on_gpu(0) as g:
                assert not g.emulated and g.count == 6
                assert [b.block for b in g.blocks] == want
                assert {b.tier for b in g.blocks} == {0}, "wait mode brings every selected block to G"
                for ref in g.blocks:
                    np.testing.assert_array_equal(served_block(ch, ref), data[ref.block])


@pytest.fixture
def gpu_channel(client, namespace):
    if "no GPU device" not in client.stats()["gpu"]:
        pytest.skip("a GPU is present: test_device_path_with_torch_tensors covers the device path")
    with client.open_channel(namespace, gpu=True, gpu_exchange_bytes=8192) as ch:
        yield ch


def test_gpu_retrieve_emulated_matches_the_host_path(gpu_channel):
    ch = gpu_channel
    assert ch.gpu_path == "emulated" and ch.gpu_arena_device is None
    data = put_needle_sequence(ch, 5, 1)
    with ch.retrieve(5, 1, QUERY_ONES, 6) as host:
        want = list(host.blocks)
    query = np.ascontiguousarray(QUERY_ONES)
    for _ in range(2):  # the second reuses the exchange
        ch.start_retrieve_on_gpu(5, 1, query.ctypes.data, query.size, 6, 0)
        with ch.finish_retrieve_on_gpu(0) as g:
            assert g.emulated and g.count == 6 and g.missing == 0
            assert g.table_ptr % 16 == 0
            entries = g.entries()
            assert entries.dtype == tierkv.BLOCK_TABLE_DTYPE
            assert g.blocks == want
            for ref in g.blocks:
                np.testing.assert_array_equal(ch.block_view(ref), data[ref.block])
            with pytest.raises(tierkv.Busy):  # pinned like a host selection
                ch.put(5, 1, 17, data[0])
        assert g.released
        with pytest.raises(tierkv.NotFound):
            ch.release(g.lease)


def test_gpu_path_misuse(client, namespace, gpu_channel):
    ch = gpu_channel
    put_needle_sequence(ch, 6, 0)
    q = np.ascontiguousarray(QUERY_ONES)
    with pytest.raises(tierkv.InvalidArgument, match="nothing in flight"):
        ch.finish_retrieve_on_gpu()
    with pytest.raises(tierkv.InvalidArgument, match="exchange buffer"):
        ch.start_retrieve_on_gpu(6, 0, q, q.size, 1000)  # a numpy array as the pointer works too
    with pytest.raises(tierkv.InvalidArgument, match="63 floats"):
        ch.start_retrieve_on_gpu(6, 0, q, 63, 6)
    with pytest.raises(tierkv.InvalidArgument, match="NULL"):
        ch.start_retrieve_on_gpu(6, 0, 0, q.size, 6)
    ch.start_retrieve_on_gpu(6, 0, q, q.size, 6)
    with pytest.raises(tierkv.InvalidArgument, match="finish the previous"):
        ch.start_retrieve_on_gpu(6, 0, q, q.size, 6)
    ch.finish_retrieve_on_gpu().release()
    ch.start_retrieve_on_gpu(99, 0, q, q.size, 6)  # no such sequence: the error comes with finish
    with pytest.raises(tierkv.NotFound):
        ch.finish_retrieve_on_gpu()
    with client.open_channel(namespace) as host:
        with pytest.raises(tierkv.InvalidArgument, match="without options.gpu"):
            host.start_retrieve_on_gpu(6, 0, q, q.size, 6)
        assert host.gpu_path == "none"
    ch.start_retrieve_on_gpu(6, 0, q, q.size, 6)
    g = ch.finish_retrieve_on_gpu()
    assert g.count == 6
    ch.close()  # releases the lease still held
    assert g.released
