"""Round trips through a real tierkvd: put then get, for every dtype and input kind."""
import numpy as np
import pytest

import tierkv
from conftest import BLOCK_SHAPE, HEAD_DIM, KV_HEADS, LAYERS, Q_HEADS, blocks, make_namespace


def test_namespace_model_and_listing(client, namespace):
    ns = client.attach(namespace)
    assert ns.name == namespace and ns.id > 0
    assert ns.model == tierkv.ModelSpec(LAYERS, Q_HEADS, KV_HEADS, HEAD_DIM, 16, "f32")
    assert ns.model.block_shape == BLOCK_SHAPE
    assert ns.model.block_bytes == 4096
    listed = {n.name: n for n in client.namespaces()}
    assert listed[namespace] == ns
    stats = client.stats()
    assert stats["namespaces"] >= 1 and stats["metrics_url"].startswith("http://127.0.0.1:")
    client.ping()


def test_create_namespace_with_budgets_and_uids(client):
    ns = client.create_namespace("py-budgets", num_layers=1, num_q_heads=2, num_kv_heads=1, head_dim=8,
                                 block_tokens=8, dtype="f16", gpu_bytes=1 << 16, host_bytes=1 << 17,
                                 disk_bytes=1 << 18, uids=[4242, 4243], gids=[77])
    again = client.create_namespace("py-budgets", num_layers=1, num_q_heads=2, num_kv_heads=1, head_dim=8,
                                    block_tokens=8, dtype="f16", gpu_bytes=1 << 16, host_bytes=1 << 17,
                                    disk_bytes=1 << 18, uids=[4242, 4243], gids=[77])
    assert again.id == ns.id  # the same spec again returns the existing namespace
    raw = [n for n in client.usage()["namespaces"] if n["name"] == "py-budgets"][0]
    assert raw["tiers"]["G"]["capacity_bytes"] <= 1 << 16
    assert raw["tiers"]["H"]["capacity_bytes"] <= 1 << 17


@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_put_get_numpy(client, dtype):
    name = make_namespace(client, dtype)
    with client.open_channel(name, staging_bytes=1 << 16) as ch:  # 16 blocks per staging round
        assert ch.numpy_dtype == np.dtype(np.float32 if dtype == "f32" else np.float16)
        data = blocks(40, seed=1, dtype=ch.numpy_dtype)
        durable = ch.put(1, 0, 0, data)  # three staging rounds
        assert isinstance(durable, bool)
        got = ch.get(1, 0, 0, 40)
        assert got.shape == (40,) + BLOCK_SHAPE and got.dtype == ch.numpy_dtype
        np.testing.assert_array_equal(got, data)
        ch.put(1, 1, 5, data[3])  # one block, shape (2, kv, bt, hd)
        np.testing.assert_array_equal(ch.get(1, 1, 5)[0], data[3])
        ch.put(1, 1, 6, data[4].tobytes())  # bytes-like
        np.testing.assert_array_equal(ch.get(1, 1, 6)[0], data[4])
        ch.put(1, 1, 7, memoryview(bytearray(data[5].tobytes())))
        np.testing.assert_array_equal(ch.get(1, 1, 7)[0], data[5])


def test_put_get_bf16_raw_bits(client):
    name = make_namespace(client, "bf16")
    with client.open_channel(name) as ch:
        assert ch.numpy_dtype == np.dtype(np.uint16)
        f = blocks(3, seed=2)
        bits = tierkv.bf16_bits(f)
        assert bits.dtype == np.uint16 and bits.shape == f.shape
        ch.put(2, 0, 0, bits)
        got = ch.get(2, 0, 0, 3)
        np.testing.assert_array_equal(got, bits)
        back = tierkv.bf16_to_float32(got)
        np.testing.assert_allclose(back, f, rtol=2 ** -8, atol=1e-6)
        with pytest.raises(tierkv.InvalidArgument, match="uint16 raw bits"):
            ch.put(2, 0, 0, f)  # float32 for a bf16 namespace


def test_put_get_torch(client):
    torch = pytest.importorskip("torch")
    name = make_namespace(client, "bf16")
    with client.open_channel(name) as ch:
        t = torch.randn((2,) + BLOCK_SHAPE).to(torch.bfloat16)
        ch.put(3, 0, 0, t)
        got = ch.get(3, 0, 0, 2)
        back = tierkv.as_torch(got)
        assert back.dtype == torch.bfloat16
        assert torch.equal(back, t)
        with pytest.raises(tierkv.InvalidArgument, match="float32 for a bf16"):
            ch.put(3, 0, 0, t.float())
    name = make_namespace(client, "f32")
    with client.open_channel(name) as ch:
        t = torch.randn(BLOCK_SHAPE)
        ch.put(4, 1, 0, t)
        assert torch.equal(torch.from_numpy(ch.get(4, 1, 0)[0]), t)
