"""tierkv: attach an inference engine to tierkvd, the KV-cache storage daemon.

Pure Python over libtierkv.so's C ABI (ctypes); numpy required, torch optional.

    import tierkv
    with tierkv.Client.connect("./var/tierkvd.sock") as client:
        ns = client.attach("llama-70b")                 # its ACL must admit us
        with client.open_channel("llama-70b") as ch:    # one per thread
            ch.put(seq, layer, 0, kv)                    # (n, 2, kv_heads, block_tokens, head_dim)
            with ch.retrieve(seq, layer, query, budget=8) as sel:
                for ref, kv in zip(sel.blocks, sel.views()):   # zero-copy, read-only
                    ...                                   # attention over block ref.block
            # leaving the with-block released the lease

Main types: Client (control connection), Channel (data plane), Selection and
GpuSelection (leases), BlockRef, ModelSpec, Namespace. Errors: Error and one
subclass per status code (NotFound, InvalidArgument, Busy, ...), carrying the
daemon's message. When the daemon dies, calls raise Unavailable at once;
Client.reconnect() dials again (then open the channels again).

Block payloads are numpy arrays of the namespace's dtype: float16, float32, or for
bf16 uint16 arrays holding the raw bits (numpy has no bfloat16): as_torch() views
them as torch.bfloat16 without a copy; bf16_bits() / bf16_to_float32() convert.

libtierkv.so is found through $TIERKV_LIBRARY, next to this package, in the
repository's build tree (build/release/client), or on the system library path;
library_path() says which.
"""
from ._arrays import BLOCK_TABLE_DTYPE, as_torch, bf16_bits, bf16_to_float32
from ._lib import ABI_VERSION, LibraryNotFound, library_path
from .batch import BatchSelection
from .channel import BlockRef, Channel, GpuSelection, Selection
from .client import Client, ModelSpec, Namespace
from .multi import PutResult
from .errors import (AlreadyExists, Busy, Corruption, DeviceError, Error, Internal, InvalidArgument, IOError,
                     NotFound, NotSupported, PermissionDenied, ResourceExhausted, Shutdown, Unavailable)

__version__ = "0.1.0"

__all__ = [
    "Client", "Channel", "Selection", "GpuSelection", "BatchSelection", "PutResult", "BlockRef", "ModelSpec",
    "Namespace",
    "as_torch", "bf16_bits", "bf16_to_float32", "BLOCK_TABLE_DTYPE", "library_path", "ABI_VERSION",
    "LibraryNotFound", "Error", "NotFound", "InvalidArgument", "AlreadyExists", "ResourceExhausted", "Busy",
    "IOError", "DeviceError", "Corruption", "NotSupported", "PermissionDenied", "Shutdown", "Internal",
    "Unavailable",
]
