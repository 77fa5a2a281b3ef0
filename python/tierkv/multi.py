"""Batched acquire and put (docs/decisions/0028-batched-acquire-and-put.md): one call
acquires (a zero-copy get) or puts blocks of B sequences of one layer in one round
trip. Use Channel.acquire_batch and Channel.put_batch."""
from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Any, List, NamedTuple, Optional, Sequence

from . import _lib
from ._arrays import check_uint, payload
from .batch import BatchSelection, _outcomes, _per_item
from .errors import Error, InvalidArgument, NotSupported, from_status

if TYPE_CHECKING:  # pragma: no cover
    from .channel import Channel


class PutResult(NamedTuple):
    """One sequence's outcome in a put_batch."""
    stored: int               # its blocks stored (all of them unless error is set)
    durable: bool             # durable on disk before the answer (the namespace's write policy)
    error: Optional[Error]    # why it failed (after `stored` blocks), or None


def _need(lib: Any, name: str, what: str) -> None:
    if not hasattr(lib, name):
        raise NotSupported(f"{what}: this libtierkv predates the batched acquire and put")


def _release_lease(release: Any, channel: "Channel") -> int:
    """The lease id of `release` (a live Selection or BatchSelection of this channel), or 0."""
    if release is None:
        return 0
    if release.released or release.channel is not channel or not release.lease:
        raise InvalidArgument("acquire_batch: release must be a live Selection or BatchSelection of this channel")
    return release.lease


def _batch_args(channel: "Channel", layer: int, seqs: Sequence[int], what: str):
    """(handle, library, layer, sequence ids) of a batched call, checked; at least one sequence."""
    ch = channel._ptr()
    lib = channel._lib
    _need(lib, f"tierkv_{what}", what)
    layer = check_uint(layer, "layer", 32)
    seq_list = [check_uint(s, f"seqs[{i}]", 64) for i, s in enumerate(seqs)]
    if not seq_list:
        raise InvalidArgument(f"{what}: no sequences")
    return ch, lib, layer, seq_list


def acquire_batch(channel: "Channel", layer: int, seqs: Sequence[int], firsts: Any, counts: Any,
                  release: Any = None) -> BatchSelection:
    """See Channel.acquire_batch."""
    ch, lib, layer, seq_list = _batch_args(channel, layer, seqs, "acquire_batch")
    n = len(seq_list)
    first_list, count_list = _per_item(firsts, n, "firsts"), _per_item(counts, n, "counts")
    old = _release_lease(release, channel)
    total = sum(count_list) * channel.table_heads  # granularity head: a run per KV head
    need = 64 * n + 16 * total
    if need > channel.staging_bytes:
        raise InvalidArgument(f"acquire_batch: {n} sequences with {total} table entries need {need} staging bytes; "
                              f"the channel has {channel.staging_bytes}")
    items = (_lib.AcquireItemC * n)()
    for i in range(n):
        items[i].seq, items[i].first, items[i].count = seq_list[i], first_list[i], count_list[i]
    table = (_lib.BlockRefC * max(total, 1))()
    results = (_lib.BatchResultC * n)()
    args = _lib.AcquireBatchArgsC(ctypes.sizeof(_lib.AcquireBatchArgsC), layer, items, n, old, table, total, results)
    lease, served = ctypes.c_uint64(), ctypes.c_uint32()
    channel._check(lib.tierkv_acquire_batch(ch, ctypes.byref(args), ctypes.byref(lease), ctypes.byref(served)))
    if release is not None:  # released by the daemon before the new pins (a failed call released nothing)
        channel._leases.pop(old, None)
        release._mark_released()
    return BatchSelection(channel, lease.value, _outcomes(channel, table, results, n), served.value)


def put_batch(channel: "Channel", layer: int, seqs: Sequence[int], first_blocks: Any, data: Sequence[Any],
              check: bool = True) -> List[PutResult]:
    """See Channel.put_batch."""
    ch, lib, layer, seq_list = _batch_args(channel, layer, seqs, "put_batch")
    n = len(seq_list)
    if len(data) != n:
        raise InvalidArgument(f"put_batch: {len(data)} payloads for {n} sequences")
    first_list = _per_item(first_blocks, n, "first_blocks")
    items = (_lib.PutItemC * n)()
    keep = []
    for i in range(n):
        addr, nbytes, k = payload(data[i], channel.model.dtype, channel.block_shape, channel.block_bytes)
        keep.append(k)
        items[i].seq, items[i].first_block, items[i].data, items[i].bytes = seq_list[i], first_list[i], addr, nbytes
    results = (_lib.PutResultC * n)()
    stored = ctypes.c_uint32()
    channel._check(lib.tierkv_put_batch(ch, layer, items, n, results, ctypes.byref(stored)))
    del keep
    out = []
    for i in range(n):
        r = results[i]
        err = None
        if r.status != 0:
            err = from_status(r.status, (lib.tierkv_batch_item_error(ch, i) or b"").decode(errors="replace"))
        out.append(PutResult(int(r.stored), bool(r.durable), err))
    if check:
        failed = next((r.error for r in out if r.error is not None), None)
        if failed is not None:
            failed.results = out  # every item was tried: what each stored
            raise failed
    return out
