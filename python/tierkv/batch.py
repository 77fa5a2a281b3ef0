"""Batched retrieve (docs/decisions/0011-batched-retrieve.md): one call retrieves
for B sequences of one layer — one round trip, the daemon scores them in parallel,
one table back, one lease for the whole batch. Use Channel.retrieve_batch."""
from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Any, List, Optional, Sequence

import numpy as np

from . import _lib
from ._arrays import check_uint, is_torch_tensor
from .errors import Error, InvalidArgument, NotSupported, from_status

if TYPE_CHECKING:  # pragma: no cover
    from .channel import BlockRef, Channel


def _queries(queries: Any, n: int, floats: int) -> np.ndarray:
    """The queries as one C-contiguous float32 array (n, floats): no copy when they
    already are one (any shape with n * floats values, e.g. (n, q_heads, head_dim))."""
    if is_torch_tensor(queries):
        if not queries.dtype.is_floating_point:
            raise InvalidArgument(f"queries: a tensor of {queries.dtype}; expected floats")
        queries = queries.detach().to("cpu").float().contiguous().numpy()
    elif not isinstance(queries, np.ndarray):
        try:
            queries = np.asarray(queries, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise InvalidArgument(f"queries: not an array of floats: {e}") from None
    if queries.dtype.kind != "f":
        raise InvalidArgument(f"queries: an array of {queries.dtype}; expected floats (float32)")
    if queries.size != n * floats:
        raise InvalidArgument(f"queries: {queries.size} values; {n} sequences need {n} x {floats} "
                              "(num_q_heads * head_dim each)")
    return np.ascontiguousarray(queries, dtype=np.float32).reshape(n, floats)


def _per_item(value: Any, n: int, name: str) -> List[int]:
    """An int for every item, or one int for all of them."""
    if isinstance(value, (int, np.integer)):
        return [check_uint(value, name, 32)] * n
    values = list(value)
    if len(values) != n:
        raise InvalidArgument(f"{name}: {len(values)} values for {n} sequences")
    return [check_uint(v, f"{name}[{i}]", 32) for i, v in enumerate(values)]


def retrieve_batch(channel: "Channel", layer: int, seqs: Sequence[int], queries: Any, budgets: Any,
                   windows: Any = 0) -> "BatchSelection":
    """See Channel.retrieve_batch."""
    ch = channel._ptr()
    lib = channel._lib
    if not hasattr(lib, "tierkv_retrieve_batch"):
        raise NotSupported("retrieve_batch: this libtierkv predates the batched retrieve")
    layer = check_uint(layer, "layer", 32)
    seq_list = [check_uint(s, f"seqs[{i}]", 64) for i, s in enumerate(seqs)]
    n = len(seq_list)
    if n == 0:
        raise InvalidArgument("retrieve_batch: no sequences")
    floats = channel.model.query_floats
    q = _queries(queries, n, floats)
    budget_list, window_list = _per_item(budgets, n, "budgets"), _per_item(windows, n, "windows")
    items = (_lib.BatchItemC * n)()
    base, row = q.ctypes.data, floats * 4
    for i in range(n):
        items[i].seq, items[i].query = seq_list[i], base + i * row
        items[i].budget, items[i].window = budget_list[i], window_list[i]
    total = sum(budget_list) * channel.table_heads  # granularity head: a run per KV head
    need = 64 * n + n * floats * 4 + 16 * total  # DataChannel::BatchStagingBytes
    if need > channel.staging_bytes:
        raise InvalidArgument(f"retrieve_batch: {n} sequences with {total} table entries need {need} staging bytes; "
                              f"the channel has {channel.staging_bytes}")
    table = (_lib.BlockRefC * max(total, 1))()
    results = (_lib.BatchResultC * n)()
    args = _lib.RetrieveBatchArgsC(ctypes.sizeof(_lib.RetrieveBatchArgsC), layer, items, n, floats, table, total,
                                   results)
    lease, served = ctypes.c_uint64(), ctypes.c_uint32()
    channel._check(lib.tierkv_retrieve_batch(ch, ctypes.byref(args), ctypes.byref(lease), ctypes.byref(served)))
    del q  # kept alive through the call
    return BatchSelection(channel, lease.value, _outcomes(channel, table, results, n), served.value)


def _outcomes(channel: "Channel", table: Any, results: Any, n: int) -> List[Any]:
    """Per item: its table rows (_lib.ref_rows) and missing count, or its exception."""
    lib, ch = channel._lib, channel._handle.ptr
    out: List[Any] = []
    for i in range(n):
        r = results[i]
        if r.status != 0:
            msg = (lib.tierkv_batch_item_error(ch, i) or b"").decode(errors="replace")
            out.append(from_status(r.status, msg))
            continue
        out.append((_lib.ref_rows(table, r.first, r.count), r.missing))
    return out


class BatchSelection:
    """The blocks a batched retrieve selected for each of its sequences, pinned by one
    lease until release() (or the end of a with-block). Item i failed alone when
    error(i) is not None; blocks(i) then raises that error."""

    def __init__(self, channel: "Channel", lease: int, outcomes: List[Any], served: int) -> None:
        from .channel import _Lease
        self._lease = _Lease(channel, lease, 0) if lease else None
        if self._lease is not None:
            channel._leases[lease] = self._lease
        self._outcomes = outcomes
        self._refs: dict = {}  # item -> its BlockRefs, built on first use
        self.channel = channel
        self.lease = lease
        """The batch's lease (0 when no sequence was served)."""
        self.served = served
        """Sequences served (error(i) is None)."""

    def __len__(self) -> int:
        return len(self._outcomes)

    def error(self, i: int) -> Optional[Error]:
        """Item i's exception (NotFound for a sequence without blocks, ...), or None."""
        o = self._outcomes[i]
        return o if isinstance(o, Error) else None

    def blocks(self, i: int) -> List["BlockRef"]:
        """Item i's selected blocks, ascending by block index (raises its error)."""
        refs = self._refs.get(i)
        if refs is None:
            from .channel import refs_of  # noqa: PLC0415 - channel imports this module
            refs = self._refs[i] = refs_of(self.entries(i))
        return refs

    def entries(self, i: int) -> np.ndarray:
        """Item i's table as a numpy structured array (fields block, tier, head,
        offset; raises its error): blocks(i) without a Python object per block, for
        engines that gather many blocks at once (vectorized offsets)."""
        o = self._outcomes[i]
        if isinstance(o, Error):
            raise o
        return o[0]

    def missing(self, i: int) -> int:
        """Defer mode: item i's blocks selected but still on disk."""
        return 0 if self.error(i) else self._outcomes[i][1]

    def block_indices(self, i: int) -> np.ndarray:
        """Item i's selected block indices, ascending (int64)."""
        return self.entries(i)["block"].astype(np.int64)

    def views(self, i: int) -> List[np.ndarray]:
        """Zero-copy read-only views of item i's blocks, valid while the lease is held
        (host memory only: see Selection.views)."""
        self._live()
        return [self.channel.block_view(b) for b in self.blocks(i)]

    def tensors(self, i: int) -> List[Any]:
        """Zero-copy torch tensors of item i's blocks (CUDA tensors for blocks on a real G)."""
        self._live()
        return [self.channel.block_tensor(b) for b in self.blocks(i)]

    def stacked(self, i: int) -> np.ndarray:
        """A host copy of item i's blocks (count, 2, kv_heads, block_tokens, head_dim)."""
        self._live()
        from .channel import stack_copies  # noqa: PLC0415 - channel imports this module
        return stack_copies(self.channel, self.blocks(i))

    def _live(self) -> None:
        if self.released:
            raise InvalidArgument("the batch was released: its blocks may have moved")

    @property
    def released(self) -> bool:
        return self._lease is None or self._lease.released

    def _mark_released(self) -> None:
        """The daemon released the lease already (an acquire_batch's `release`)."""
        if self._lease is not None:
            self._lease._mark_released()

    def release(self) -> None:
        """Releases every sequence's blocks (once; later calls do nothing)."""
        if self._lease is not None:
            self._lease.release()

    def __enter__(self) -> "BatchSelection":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
