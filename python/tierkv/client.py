"""Client: one control connection to tierkvd (namespaces, policies, stats, channels)."""
from __future__ import annotations

import ctypes
import json
import weakref
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import _lib
from ._arrays import DTYPE_CODES, DTYPE_NAMES, NUMPY_DTYPES, check_uint
from .errors import Error, InvalidArgument, NotSupported, from_message, from_status


@dataclass(frozen=True)
class ModelSpec:
    """The model shape of a namespace. A block holds K then V of ``block_tokens``
    tokens of one layer, all KV heads: ``block_shape`` elements of ``dtype``."""

    num_layers: int
    num_q_heads: int
    num_kv_heads: int
    head_dim: int
    block_tokens: int
    dtype: str  # "f16" | "bf16" | "f32"

    @property
    def block_shape(self) -> Tuple[int, int, int, int]:
        """(2, num_kv_heads, block_tokens, head_dim): K then V."""
        return (2, self.num_kv_heads, self.block_tokens, self.head_dim)

    @property
    def numpy_dtype(self) -> np.dtype:
        """float16, float32, or uint16 for bf16 (raw bits: numpy has no bfloat16)."""
        return NUMPY_DTYPES[self.dtype]

    @property
    def block_bytes(self) -> int:
        """Bytes of one block."""
        return int(np.prod(self.block_shape)) * self.numpy_dtype.itemsize

    @property
    def query_floats(self) -> int:
        """Floats of a retrieval query: num_q_heads * head_dim."""
        return self.num_q_heads * self.head_dim

    @classmethod
    def _from_c(cls, m: _lib.ModelSpecC) -> ModelSpec:
        return cls(m.num_layers, m.num_q_heads, m.num_kv_heads, m.head_dim, m.block_tokens,
                   DTYPE_NAMES.get(m.dtype, f"dtype{m.dtype}"))

    @classmethod
    def _from_json(cls, j: Dict[str, Any]) -> ModelSpec:
        return cls(j["num_layers"], j["num_q_heads"], j["num_kv_heads"], j["head_dim"], j["block_tokens"], j["dtype"])


@dataclass(frozen=True)
class Namespace:
    """A namespace: its id, name and model."""

    id: int
    name: str
    model: ModelSpec


def _name_bytes(name: Any, what: str = "namespace") -> bytes:
    if not isinstance(name, str) or not name or "\0" in name:
        raise InvalidArgument(f"{what} name must be a non-empty str without NUL characters")
    return name.encode()


class Client:
    """One control connection to tierkvd; a context manager (closing it closes its
    channels). Not thread-safe: use one per thread, or serialize calls.

    >>> with tierkv.Client.connect("./var/tierkvd.sock") as client:
    ...     ns = client.attach("llama-70b")
    """

    def __init__(self, socket_path: str, timeout: float = 10.0, name: str = "tierkv-python") -> None:
        """Connects and says hello (prefer :meth:`connect`). timeout: seconds a reply may take."""
        if not isinstance(socket_path, str) or not socket_path or "\0" in socket_path:
            raise InvalidArgument("socket_path must be a non-empty str without NUL characters")
        if not isinstance(name, str) or "\0" in name:
            raise InvalidArgument("name must be a str without NUL characters")
        if not isinstance(timeout, (int, float)) or not 0 < timeout <= 86400:
            raise InvalidArgument("timeout must be a number of seconds in (0, 86400]")
        self._lib = _lib.lib()
        self._h: Optional[int] = self._lib.tierkv_client_new()
        if not self._h:
            raise MemoryError("tierkv_client_new")
        self._channels: weakref.WeakSet = weakref.WeakSet()
        self._attached: Dict[str, Namespace] = {}
        st = self._lib.tierkv_connect_ex(self._h, socket_path.encode(), name.encode(), max(1, int(timeout * 1000)))
        if st != 0:
            err = self._error(st)
            self.close()
            raise err

    @classmethod
    def connect(cls, socket_path: str, timeout: float = 10.0, name: str = "tierkv-python") -> Client:
        """Connects to the daemon's control socket. Raises NotFound/IOError when no daemon answers."""
        return cls(socket_path, timeout=timeout, name=name)

    # --- plumbing ---
    def _handle(self) -> int:
        if not self._h:
            raise InvalidArgument("the client is closed")
        return self._h

    def _error(self, status: int) -> Error:
        msg = self._lib.tierkv_last_error(self._h) or b""
        return from_status(status, msg.decode(errors="replace"))

    def _check(self, status: int) -> None:
        if status != 0:
            raise self._error(status)

    def _json(self, text: Optional[bytes]) -> Any:
        if text is None:
            raise from_message((self._lib.tierkv_last_error(self._h) or b"").decode(errors="replace"))
        return json.loads(text.decode())

    # --- lifetime ---
    def close(self) -> None:
        """Closes the channels, then the connection (the daemon releases what it held for us)."""
        for ch in list(self._channels):
            ch.close()
        if self._h:
            self._lib.tierkv_client_free(self._h)
            self._h = None

    @property
    def closed(self) -> bool:
        return not self._h

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    # --- control plane ---
    def ping(self) -> None:
        """Round trip to the daemon."""
        self._check(self._lib.tierkv_ping(self._handle()))

    def reconnect(self) -> None:
        """Dials the same socket again after the daemon died or restarted (calls raised
        :class:`tierkv.Unavailable`), says hello and re-attaches the namespaces this
        client attached. Then open the channels again: the old ones keep raising
        Unavailable (close them). Raises NotFound/IOError while no daemon answers (the
        client stays as it was: try again later)."""
        h = self._handle()
        if not hasattr(self._lib, "tierkv_reconnect"):
            raise NotSupported(f"{_lib.library_path()} predates tierkv_reconnect")
        self._check(self._lib.tierkv_reconnect(h))

    @property
    def connected(self) -> bool:
        """False once the daemon is known dead or gone (a call raised Unavailable), or when closed."""
        if not self._h or not hasattr(self._lib, "tierkv_is_connected"):
            return bool(self._h)
        return bool(self._lib.tierkv_is_connected(self._h))

    @property
    def is_admin(self) -> bool:
        """Whether the daemon counts this connection as an admin (may create namespaces, set policies)."""
        return bool(self._lib.tierkv_is_admin(self._handle()))

    def create_namespace(self, name: str, *, num_layers: int, num_q_heads: int, num_kv_heads: int, head_dim: int,
                         block_tokens: int, dtype: str = "f16", gpu_bytes: int = 0, host_bytes: int = 0,
                         disk_bytes: int = 0, uids: Optional[Sequence[int]] = None,
                         gids: Optional[Sequence[int]] = None, model_id: Optional[str] = None,
                         granularity: str = "layer") -> Namespace:
        """Creates a namespace (admins only); the same name and spec again returns it.

        model_id: the model's identity (e.g. "meta-llama/Llama-3.1-8B@5206a32"), needed
        to share prefix blocks with other machines through the remote tier R.

        granularity: "layer" (one block set per layer) or "head" (each KV head selects
        its own blocks at the same bytes; a retrieved entry is one head's K and V, see
        Channel.table_heads and BlockRef.head). Fixed at creation.

        Budgets in bytes per tier (0: no budget of its own). uids/gids: who may attach
        (both None: only the creating uid; a list replaces that, so list os.getuid() too
        to attach from this process). Raises AlreadyExists for the name with another spec.
        """
        if dtype not in DTYPE_CODES:
            raise InvalidArgument(f"dtype must be f16, bf16 or f32, not {dtype!r}")
        dims = [check_uint(v, k, 32) for k, v in (("num_layers", num_layers), ("num_q_heads", num_q_heads),
                                                  ("num_kv_heads", num_kv_heads), ("head_dim", head_dim),
                                                  ("block_tokens", block_tokens))]
        model = _lib.ModelSpecC(*dims, DTYPE_CODES[dtype])
        opts = _lib.NamespaceOptionsC(struct_size=ctypes.sizeof(_lib.NamespaceOptionsC))
        opts.gpu_bytes, opts.host_bytes, opts.disk_bytes = (check_uint(b, k, 64) for k, b in (
            ("gpu_bytes", gpu_bytes), ("host_bytes", host_bytes), ("disk_bytes", disk_bytes)))
        keep = []
        for field, ids in (("uids", uids), ("gids", gids)):
            if ids is None:
                continue
            arr = (ctypes.c_uint32 * len(ids))(*(check_uint(i, field, 32) for i in ids))
            keep.append(arr)
            setattr(opts, field, ctypes.cast(arr, ctypes.POINTER(ctypes.c_uint32)))
            setattr(opts, "num_" + field, len(ids))
        if model_id is not None:
            if not isinstance(model_id, str):
                raise InvalidArgument("model_id must be a str")
            keep.append(model_id.encode())
            opts.model_id = keep[-1]
        if granularity not in ("layer", "head"):
            raise InvalidArgument(f"granularity must be 'layer' or 'head', not {granularity!r}")
        opts.granularity = 1 if granularity == "head" else 0
        ns_id = ctypes.c_uint32()
        self._check(self._lib.tierkv_create_namespace_ex(self._handle(), _name_bytes(name), ctypes.byref(model),
                                                         ctypes.byref(opts), ctypes.byref(ns_id), None))
        return Namespace(ns_id.value, name, ModelSpec._from_c(model))

    def attach(self, name: str) -> Namespace:
        """Attaches to a namespace (its ACL must admit this process's uid or gid)."""
        ns_id = ctypes.c_uint32()
        model = _lib.ModelSpecC()
        self._check(self._lib.tierkv_attach(self._handle(), _name_bytes(name), ctypes.byref(ns_id),
                                            ctypes.byref(model)))
        ns = Namespace(ns_id.value, name, ModelSpec._from_c(model))
        self._attached[name] = ns
        return ns

    def delete_namespace(self, name: str, force: bool = False) -> None:
        """Deletes a namespace (admins only): its blocks, memory, files and metrics.

        Refused (tierkv.Busy) while other clients are attached unless force=True; their
        channels then fail with tierkv.NotFound (the namespace was deleted)."""
        self._check(self._lib.tierkv_delete_namespace(self._handle(), _name_bytes(name), 1 if force else 0))
        self._attached.pop(name, None)

    def namespaces(self) -> List[Namespace]:
        """The namespaces visible to this client."""
        out = self._json(self._lib.tierkv_list_namespaces_json(self._handle()))
        return [Namespace(j["namespace_id"], j["name"], ModelSpec._from_json(j["model"])) for j in out]

    def stats(self) -> Dict[str, Any]:
        """The daemon's statistics (version, uptime_s, connections, namespaces, metrics_url, gpu, ...)."""
        out = self._json(self._lib.tierkv_stats_json(self._handle()))
        out.pop("ok", None)
        return out

    def usage(self, name: Optional[str] = None) -> Dict[str, Any]:
        """Usage per namespace: {"namespaces": [{name, blocks, sequences, tiers: {G, H, D}, ...}]}."""
        return self._json(self._lib.tierkv_usage_json(self._handle(), None if name is None else _name_bytes(name)))

    def clients(self) -> Dict[str, Any]:
        """The connected clients (admins only): {"clients": [{session, pid, uid, ...}]}."""
        return self._json(self._lib.tierkv_clients_json(self._handle()))

    def get_policy(self, name: str) -> Dict[str, Any]:
        """The namespace's policy (storage and retrieval fields)."""
        return self._json(self._lib.tierkv_get_policy_json(self._handle(), _name_bytes(name)))

    def set_policy(self, name: str, changes: Dict[str, Any]) -> Dict[str, Any]:
        """Applies policy changes (admins only; all or nothing) and returns the new policy.
        A bad value raises InvalidArgument and the old policy stays."""
        if not isinstance(changes, dict):
            raise InvalidArgument("changes must be a dict of policy fields")
        text = json.dumps(changes).encode()
        return self._json(self._lib.tierkv_set_policy_json(self._handle(), _name_bytes(name), text))

    def open_channel(self, name: str, *, staging_bytes: int = 0, gpu: bool = False, request_entries: int = 256,
                     completion_entries: int = 256, gpu_exchange_bytes: int = 0) -> Channel:
        """Opens a data channel (one per thread) to a namespace, attaching first if this
        client has not. staging_bytes 0: the daemon's default. gpu: the GPU path of
        retrieve (emulated with host pointers when the daemon has no GPU)."""
        from .channel import Channel  # noqa: PLC0415 - circular

        if name not in self._attached:
            self.attach(name)
        opts = _lib.ChannelOptionsC(struct_size=ctypes.sizeof(_lib.ChannelOptionsC))
        opts.request_entries = check_uint(request_entries, "request_entries", 32)
        opts.completion_entries = check_uint(completion_entries, "completion_entries", 32)
        opts.staging_bytes = check_uint(staging_bytes, "staging_bytes", 64)
        opts.gpu = 1 if gpu else 0
        opts.gpu_exchange_bytes = check_uint(gpu_exchange_bytes, "gpu_exchange_bytes", 64)
        out = ctypes.c_void_p()
        self._check(self._lib.tierkv_open_channel_ex(self._handle(), _name_bytes(name), ctypes.byref(opts),
                                                     ctypes.byref(out)))
        ch = Channel(self, out.value, self._attached[name])
        self._channels.add(ch)
        return ch
