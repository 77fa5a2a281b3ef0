"""delete_namespace: refused while another client is attached unless forced, a forced
delete fails that client's channel with a clear error, and the name can be reused."""
import numpy as np
import pytest

import tierkv

from conftest import make_namespace


def test_delete_namespace_forced_detaches_and_the_name_is_reused(daemon, client):
    name = make_namespace(client)
    with tierkv.Client.connect(daemon.socket) as engine:
        engine.attach(name)
        with engine.open_channel(name) as ch:
            block = np.ones(ch.block_shape, np.float32)
            ch.put(1, 0, 0, block)
            with pytest.raises(tierkv.Busy, match="attached client"):
                client.delete_namespace(name)
            client.delete_namespace(name, force=True)
            with pytest.raises(tierkv.NotFound, match="namespace was deleted"):
                ch.get(1, 0, 0)
        engine.ping()  # the engine's connection is still fine
    assert name not in [ns.name for ns in client.namespaces()]
    with pytest.raises(tierkv.NotFound):
        client.delete_namespace(name)
    # The same name again: a new, empty namespace.
    client.create_namespace(name, num_layers=2, num_q_heads=4, num_kv_heads=2, head_dim=16, block_tokens=16,
                            dtype="f32")
    client.attach(name)
    with client.open_channel(name) as ch:
        with pytest.raises(tierkv.NotFound):
            ch.get(1, 0, 0)
    client.delete_namespace(name)  # only this client is attached: no force needed
