"""Attach an engine from Python: store a prompt's KV blocks, then retrieve per layer."""
import sys

import numpy as np
import tierkv

socket = sys.argv[1] if len(sys.argv) > 1 else "./var/tierkvd.sock"
with tierkv.Client.connect(socket) as client:
    # Admins create namespaces (the same spec again returns the existing one).
    client.create_namespace("py-quickstart", num_layers=4, num_q_heads=8, num_kv_heads=2, head_dim=64,
                            block_tokens=16, dtype="f16")
    model = client.attach("py-quickstart").model  # its ACL must admit us
    with client.open_channel("py-quickstart") as ch:  # one per thread
        seq, num_blocks = 42, 32
        rng = np.random.default_rng(0)
        for layer in range(model.num_layers):  # prefill: whole blocks, K then V
            kv = rng.standard_normal((num_blocks,) + model.block_shape).astype(ch.numpy_dtype)
            ch.put(seq, layer, 0, kv)
        query = rng.standard_normal((model.num_q_heads, model.head_dim)).astype(np.float32)
        for layer in range(model.num_layers):  # a decoding step
            with ch.retrieve(seq, layer, query, budget=8) as sel:  # pinned until the block ends
                # A host copy; zero copy: sel.views() (numpy over the host-mapped arenas) or
                # sel.tensors() (torch; CUDA tensors for blocks on a real GPU tier).
                for ref, kv in zip(sel.blocks, sel.stacked()):
                    keys, values = kv[0], kv[1]  # [kv_heads][block_tokens][head_dim] each
                    # ... attention over tokens ref.block * block_tokens onwards ...
                print(f"layer {layer}: blocks {sel.block_indices.tolist()}")
        ch.close_sequence(seq)
