"""Loading libtierkv.so and the ctypes prototypes of its C ABI (tierkv/tierkv.h).

The library is looked up, in this order:

1. ``$TIERKV_LIBRARY`` (the path of the file);
2. next to the package (``tierkv/libtierkv.so*``, how an installed wheel ships it);
3. the build tree of the repository holding this package
   (``build/release/client/libtierkv.so``, then ``build/debug/...``);
4. the system's library path (``ctypes.util.find_library("tierkv")``, e.g. after
   ``cmake --install``).

It is loaded on first use, so ``import tierkv`` and ``help(tierkv)`` work without it.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import threading
from ctypes import (POINTER, Structure, c_char_p, c_int, c_size_t, c_uint8, c_uint16, c_uint32, c_uint64,
                    c_void_p)
from pathlib import Path
from typing import Any, List, Optional

ABI_VERSION = 2  # the TIERKV_ABI_VERSION this package was written against


class LibraryNotFound(ImportError):
    """libtierkv.so could not be found or is too old (the message lists where it looked)."""


class ModelSpecC(Structure):
    _fields_ = [("num_layers", c_uint32), ("num_q_heads", c_uint32), ("num_kv_heads", c_uint32),
                ("head_dim", c_uint32), ("block_tokens", c_uint32), ("dtype", c_int)]


class BlockRefC(Structure):
    _fields_ = [("block", c_uint32), ("tier", c_uint16), ("head", c_uint16), ("offset", c_uint64),
                ("data", c_void_p)]


def ref_rows(table: Any, first: int, count: int):
    """table[first, first + count) (a ctypes array of BlockRefC) as a numpy structured
    array (block, tier, head, offset), copied: no Python object per entry, which the
    cyclic GC would walk (2048 BlockRefs built at once cost ~2 ms, mostly collections)."""
    import numpy as np  # noqa: PLC0415 - numpy is the package's dependency anyway
    dtype = np.dtype({"names": ["block", "tier", "head", "offset"], "formats": ["<u4", "<u2", "<u2", "<u8"],
                      "offsets": [BlockRefC.block.offset, BlockRefC.tier.offset, BlockRefC.head.offset,
                                  BlockRefC.offset.offset], "itemsize": ctypes.sizeof(BlockRefC)})
    if count == 0:
        return np.zeros(0, dtype=dtype)
    raw = (ctypes.c_ubyte * ctypes.sizeof(table)).from_buffer(table)  # the same memory, untyped
    return np.frombuffer(raw, dtype=dtype)[first:first + count].copy()


# The option structs: struct_size is set to ctypes.sizeof (the library reads a shorter,
# older version zero-extended); never through the _init functions, which write the
# library's sizeof (a newer library's struct may be longer than these).
class NamespaceOptionsC(Structure):
    _fields_ = [("struct_size", c_uint32), ("gpu_bytes", c_uint64), ("host_bytes", c_uint64),
                ("disk_bytes", c_uint64), ("uids", POINTER(c_uint32)), ("num_uids", c_size_t),
                ("gids", POINTER(c_uint32)), ("num_gids", c_size_t), ("model_id", c_char_p),
                ("granularity", c_uint32)]


class ChannelOptionsC(Structure):
    _fields_ = [("struct_size", c_uint32), ("request_entries", c_uint32), ("completion_entries", c_uint32),
                ("staging_bytes", c_uint64), ("gpu", c_int), ("gpu_exchange_bytes", c_uint64)]


class BlockTableEntryC(Structure):
    _fields_ = [("block", c_uint32), ("tier", c_uint8), ("reserved", c_uint8), ("head", c_uint16),
                ("offset", c_uint64)]


class GpuRetrievalC(Structure):
    _fields_ = [("lease", c_uint64), ("count", c_uint32), ("missing", c_uint32), ("table", c_void_p)]


class BatchItemC(Structure):
    _fields_ = [("seq", c_uint64), ("query", c_void_p), ("budget", c_uint32), ("window", c_uint32)]


class BatchResultC(Structure):
    _fields_ = [("status", c_int), ("first", c_uint32), ("count", c_uint32), ("missing", c_uint32)]


class RetrieveBatchArgsC(Structure):
    _fields_ = [("struct_size", c_uint32), ("layer", c_uint32), ("items", POINTER(BatchItemC)),
                ("num_items", c_size_t), ("query_floats", c_size_t), ("table", POINTER(BlockRefC)),
                ("table_capacity", c_size_t), ("results", POINTER(BatchResultC))]


class AcquireItemC(Structure):
    _fields_ = [("seq", c_uint64), ("first", c_uint32), ("count", c_uint32)]


class AcquireBatchArgsC(Structure):
    _fields_ = [("struct_size", c_uint32), ("layer", c_uint32), ("items", POINTER(AcquireItemC)),
                ("num_items", c_size_t), ("release", c_uint64), ("table", POINTER(BlockRefC)),
                ("table_capacity", c_size_t), ("results", POINTER(BatchResultC))]


class PutItemC(Structure):
    _fields_ = [("seq", c_uint64), ("first_block", c_uint32), ("reserved", c_uint32), ("data", c_void_p),
                ("bytes", c_size_t)]


class PutResultC(Structure):
    _fields_ = [("status", c_int), ("stored", c_uint32), ("durable", c_uint32), ("reserved", c_uint32)]


_P = c_void_p  # opaque handles
# Appended to ABI 2 after its first release (daemon liveness): optional in the library.
# Appended later (batched retrieve, decision 0011): likewise optional.
_APPENDED = {"tierkv_reconnect", "tierkv_is_connected", "tierkv_retrieve_batch", "tierkv_batch_item_error",
             "tierkv_append", "tierkv_acquire_batch", "tierkv_put_batch"}
# Appended with the batched acquire and put (decision 0028): optional likewise.
_S = c_int  # tierkv_status
_PROTOTYPES = {
    "tierkv_abi_version": (c_uint32, []),
    "tierkv_status_name": (c_char_p, [_S]),
    "tierkv_client_new": (_P, []),
    "tierkv_client_free": (None, [_P]),
    "tierkv_connect_ex": (_S, [_P, c_char_p, c_char_p, c_uint32]),
    "tierkv_is_admin": (c_int, [_P]),
    "tierkv_ping": (_S, [_P]),
    "tierkv_reconnect": (_S, [_P]),
    "tierkv_is_connected": (c_int, [_P]),
    "tierkv_last_error": (c_char_p, [_P]),
    "tierkv_create_namespace_ex": (_S, [_P, c_char_p, POINTER(ModelSpecC), POINTER(NamespaceOptionsC),
                                        POINTER(c_uint32), POINTER(c_int)]),
    "tierkv_attach": (_S, [_P, c_char_p, POINTER(c_uint32), POINTER(ModelSpecC)]),
    "tierkv_delete_namespace": (_S, [_P, c_char_p, c_int]),
    "tierkv_stats_json": (c_char_p, [_P]),
    "tierkv_list_namespaces_json": (c_char_p, [_P]),
    "tierkv_get_policy_json": (c_char_p, [_P, c_char_p]),
    "tierkv_set_policy_json": (c_char_p, [_P, c_char_p, c_char_p]),
    "tierkv_usage_json": (c_char_p, [_P, c_char_p]),
    "tierkv_clients_json": (c_char_p, [_P]),
    "tierkv_open_channel_ex": (_S, [_P, c_char_p, POINTER(ChannelOptionsC), POINTER(_P)]),
    "tierkv_channel_free": (None, [_P]),
    "tierkv_channel_last_error": (c_char_p, [_P]),
    "tierkv_channel_model": (_S, [_P, POINTER(ModelSpecC)]),
    "tierkv_block_bytes": (c_uint64, [_P]),
    "tierkv_table_heads": (c_uint32, [_P]),
    "tierkv_entry_bytes": (c_uint64, [_P]),
    "tierkv_copy_block": (_S, [_P, POINTER(BlockRefC), c_void_p, c_size_t]),
    "tierkv_staging_bytes": (c_uint64, [_P]),
    "tierkv_put_ex": (_S, [_P, c_uint64, c_uint32, c_uint32, c_void_p, c_size_t, c_uint64, POINTER(c_int)]),
    "tierkv_append": (_S, [_P, c_uint64, c_uint32, c_uint64, c_uint32, c_void_p, c_size_t, POINTER(c_uint64)]),
    "tierkv_get": (_S, [_P, c_uint64, c_uint32, c_uint32, c_void_p, c_size_t]),
    "tierkv_retrieve_ex": (_S, [_P, c_uint64, c_uint32, c_void_p, c_size_t, c_uint32, POINTER(BlockRefC),
                                c_uint32, POINTER(c_uint32), POINTER(c_uint64), POINTER(c_uint32)]),
    "tierkv_acquire": (_S, [_P, c_uint64, c_uint32, c_uint32, c_uint32, c_uint64, POINTER(BlockRefC), c_uint32,
                            POINTER(c_uint32), POINTER(c_uint64), POINTER(c_uint32)]),
    "tierkv_release": (_S, [_P, c_uint64]),
    "tierkv_retrieve_batch": (_S, [_P, POINTER(RetrieveBatchArgsC), POINTER(c_uint64), POINTER(c_uint32)]),
    "tierkv_batch_item_error": (c_char_p, [_P, c_size_t]),
    "tierkv_acquire_batch": (_S, [_P, POINTER(AcquireBatchArgsC), POINTER(c_uint64), POINTER(c_uint32)]),
    "tierkv_put_batch": (_S, [_P, c_uint32, POINTER(PutItemC), c_size_t, POINTER(PutResultC), POINTER(c_uint32)]),
    "tierkv_close_sequence": (_S, [_P, c_uint64]),
    "tierkv_lookup_prefix": (_S, [_P, c_void_p, c_size_t, POINTER(c_uint32)]),
    "tierkv_load_prefix": (_S, [_P, c_uint64, c_void_p, c_size_t, POINTER(c_uint32)]),
    "tierkv_prefix_block_hashes": (_S, [_P, c_void_p, c_size_t, POINTER(c_uint64), c_size_t, POINTER(c_size_t)]),
    "tierkv_host_arena": (_S, [_P, POINTER(c_void_p), POINTER(c_uint64)]),
    "tierkv_gpu_arena": (_S, [_P, POINTER(c_void_p), POINTER(c_uint64)]),
    "tierkv_gpu_arena_device": (c_void_p, [_P]),
    "tierkv_gpu_arena_device_bytes": (c_uint64, [_P]),
    "tierkv_gpu_path": (c_int, [_P]),
    "tierkv_start_retrieve_on_gpu": (_S, [_P, c_uint64, c_uint32, c_void_p, c_size_t, c_uint32, c_void_p]),
    "tierkv_finish_retrieve_on_gpu": (_S, [_P, c_void_p, POINTER(GpuRetrievalC)]),
}

_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None
_path: Optional[str] = None


def candidates() -> List[str]:
    """The paths tried, in order (only existing files; $TIERKV_LIBRARY always listed)."""
    out: List[str] = []
    env = os.environ.get("TIERKV_LIBRARY")
    if env:
        out.append(env)
    here = Path(__file__).resolve().parent
    out += sorted(glob.glob(str(here / "libtierkv.so*")))
    repo = here.parent.parent
    for preset in ("release", "debug"):
        p = repo / "build" / preset / "client" / "libtierkv.so"
        if p.exists():
            out.append(str(p))
    system = ctypes.util.find_library("tierkv")
    if system:
        out.append(system)
    return out


def _load() -> ctypes.CDLL:
    tried = candidates()
    if not tried:
        raise LibraryNotFound("libtierkv.so not found: set TIERKV_LIBRARY to its path, put it next to the "
                              "tierkv package, or build it (cmake --build build/release --target tierkv_shared)")
    path = tried[0]
    try:
        lib = ctypes.CDLL(path)
    except OSError as e:
        raise LibraryNotFound(f"cannot load libtierkv from {path}: {e}") from e
    if not hasattr(lib, "tierkv_abi_version"):
        raise LibraryNotFound(f"{path} is libtierkv ABI version 1; this package needs {ABI_VERSION}")
    lib.tierkv_abi_version.restype = c_uint32
    version = lib.tierkv_abi_version()
    if version < ABI_VERSION:
        raise LibraryNotFound(f"{path} is libtierkv ABI version {version}; this package needs {ABI_VERSION}")
    for name, (restype, argtypes) in _PROTOTYPES.items():
        if name in _APPENDED and not hasattr(lib, name):
            continue  # an older ABI 2 library: the method that needs it raises NotSupported
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    global _path
    _path = path
    return lib


def lib() -> ctypes.CDLL:
    """The loaded library (loads it on first call; raises LibraryNotFound)."""
    global _lib
    if _lib is None:
        with _lock:
            if _lib is None:
                _lib = _load()
    return _lib


def library_path() -> str:
    """Where libtierkv.so was loaded from (loads it if needed)."""
    lib()
    assert _path is not None
    return _path
