"""Bad arguments are refused with clear InvalidArgument errors before any harm, and
the daemon keeps serving the same channel afterwards."""
import os
import numpy as np
import pytest

import tierkv
from conftest import BLOCK_SHAPE, QUERY_ONES, blocks


def _still_serving(client, ch):
    client.ping()
    data = blocks(2, seed=8)
    ch.put(77, 0, 0, data)
    np.testing.assert_array_equal(ch.get(77, 0, 0, 2), data)


def test_bad_put_data(client, channel):
    good = blocks(2, seed=1)
    cases = [
        (good.astype(np.float16), "float16 for a f32 namespace"),
        (good.astype(np.float64), "float64"),
        (good.reshape(2, 2, 2, 32, 8), "shape"),
        (good[:, :, :, :, :8], "shape"),
        (np.zeros((0,) + BLOCK_SHAPE, np.float32), "shape"),
        (np.asfortranarray(good[0]), "not C-contiguous"),
        (good[::2], None),  # a contiguous slice (one block): accepted
        (np.ascontiguousarray(good.transpose(0, 1, 2, 4, 3)).transpose(0, 1, 2, 4, 3), "not C-contiguous"),
        (b"\0" * 100, "not a whole number"),
        (b"", "not a whole number"),
        ([1.0, 2.0], "numpy array, a torch tensor or bytes-like"),
        (None, "numpy array"),
    ]
    for data, message in cases:
        if message is None:
            channel.put(1, 0, 0, data)
            continue
        with pytest.raises(tierkv.InvalidArgument, match=message):
            channel.put(1, 0, 0, data)
    _still_serving(client, channel)


def test_bad_indices(client, channel):
    one = blocks(1, seed=2)
    for kwargs, message in [({"seq": -1}, "seq must be in"), ({"layer": -1}, "layer must be in"),
                            ({"first_block": -3}, "first_block must be in"), ({"seq": 2 ** 64}, "seq must be in"),
                            ({"layer": 1.0}, "layer must be an integer"), ({"seq": "1"}, "seq must be an integer"),
                            ({"layer": True}, "not a bool"), ({"first_block": 2 ** 32 - 1}, "past 2\\^32")]:
        args = {"seq": 1, "layer": 0, "first_block": 0, **kwargs}
        with pytest.raises(tierkv.InvalidArgument, match=message):
            channel.put(args["seq"], args["layer"], args["first_block"], np.concatenate([one, one]))
    with pytest.raises(tierkv.InvalidArgument, match="not below num_layers"):  # the library's check
        channel.put(1, 2, 0, one)
    with pytest.raises(tierkv.InvalidArgument, match="n must be positive"):
        channel.get(1, 0, 0, n=0)
    with pytest.raises(tierkv.InvalidArgument, match="n must be in"):
        channel.get(1, 0, 0, n=-1)
    with pytest.raises(tierkv.InvalidArgument, match="not below num_layers"):
        channel.get(1, 7, 0)
    with pytest.raises(tierkv.InvalidArgument, match="cannot be allocated"):
        channel.get(1, 0, 0, n=2 ** 32 - 1)
    with pytest.raises(tierkv.InvalidArgument, match="lease must be in"):
        channel.release(-5)
    _still_serving(client, channel)


def test_bad_queries(client, channel):
    channel.put(3, 0, 0, blocks(8, seed=3))
    for query, budget, message in [
        (np.ones(63, np.float32), 4, "63 values; the namespace needs 64"),
        (np.ones((4, 17), np.float32), 4, "68 values"),
        (np.ones(64, np.int32), 4, "expected floats"),
        ("query", 4, "query"),
        (QUERY_ONES, 0, "budget must be positive"),
        (QUERY_ONES, -1, "budget must be in"),
        (QUERY_ONES, 2 ** 31, "do not fit the staging area"),
    ]:
        with pytest.raises(tierkv.InvalidArgument, match=message):
            channel.retrieve(3, 0, query, budget)
    with pytest.raises(tierkv.InvalidArgument, match="not below num_layers"):
        channel.retrieve(3, 9, QUERY_ONES, 4)
    # A float64 or non-contiguous query of the right size is converted, not refused.
    q = np.ones((64, 2), np.float64)[:, 0]
    with channel.retrieve(3, 0, q, 5) as sel:
        assert len(sel) == 5
    # A budget below the sinks + recent window the policy always keeps (1 + 4) is refused.
    with pytest.raises(tierkv.InvalidArgument, match="budget is below the sink and recent-window"):
        channel.retrieve(3, 0, QUERY_ONES, 4)
    with pytest.raises(tierkv.InvalidArgument, match="BlockRef"):
        channel.block_view((1, 2))
    with pytest.raises(tierkv.InvalidArgument, match="outside the arena"):
        channel.block_view(tierkv.BlockRef(0, 1, 2 ** 40))
    _still_serving(client, channel)


def test_bad_torch_inputs(client, channel):
    torch = pytest.importorskip("torch")
    t = torch.randn((2,) + BLOCK_SHAPE)
    with pytest.raises(tierkv.InvalidArgument, match="not contiguous"):
        channel.put(1, 0, 0, t.transpose(3, 4))
    with pytest.raises(tierkv.InvalidArgument, match="torch.float16 for a f32"):
        channel.put(1, 0, 0, t.half())
    with pytest.raises(tierkv.InvalidArgument, match="shape"):
        channel.put(1, 0, 0, t.reshape(4, 2, 16, 16))
    with pytest.raises(tierkv.InvalidArgument, match="expected floats"):
        channel.retrieve(1, 0, torch.ones(64, dtype=torch.int32), 4)
    _still_serving(client, channel)


def test_bad_client_arguments(client, namespace):
    with pytest.raises(tierkv.InvalidArgument, match="dtype"):
        client.create_namespace("x", num_layers=1, num_q_heads=1, num_kv_heads=1, head_dim=8, block_tokens=8,
                                dtype="f64")
    with pytest.raises(tierkv.InvalidArgument, match="num_layers must be in"):
        client.create_namespace("x", num_layers=-1, num_q_heads=1, num_kv_heads=1, head_dim=8, block_tokens=8)
    with pytest.raises(tierkv.InvalidArgument, match="uids must be in"):
        client.create_namespace("x", num_layers=1, num_q_heads=1, num_kv_heads=1, head_dim=8, block_tokens=8,
                                uids=[-1])
    with pytest.raises(tierkv.InvalidArgument, match="name"):
        client.attach("")
    with pytest.raises(tierkv.InvalidArgument, match="NUL"):
        client.attach(namespace + "\0suffix")
    with pytest.raises(tierkv.InvalidArgument, match="NUL"):
        tierkv.Client.connect("/tmp/x\0.sock")
    with pytest.raises(tierkv.InvalidArgument, match="power of two"):
        client.open_channel(namespace, request_entries=3)
    with pytest.raises(tierkv.InvalidArgument, match="timeout"):
        tierkv.Client.connect("/tmp/x.sock", timeout=-1)
    client.ping()


def test_model_id(client):
    """The model identity (remote tier R) travels through the C ABI and is validated by the daemon."""
    dims = dict(num_layers=1, num_q_heads=1, num_kv_heads=1, head_dim=8, block_tokens=8, uids=[os.getuid()])
    with pytest.raises(tierkv.InvalidArgument, match="model_id may use only"):
        client.create_namespace("py-model-id", model_id="bad id!", **dims)
    with pytest.raises(tierkv.InvalidArgument, match="model_id must be a str"):
        client.create_namespace("py-model-id", model_id=7, **dims)
    client.create_namespace("py-model-id", model_id="org/model@rev1", **dims)
    client.create_namespace("py-model-id", model_id="org/model@rev1", **dims)  # the same spec again: fine
    with pytest.raises(tierkv.AlreadyExists):
        client.create_namespace("py-model-id", model_id="org/model@rev2", **dims)
