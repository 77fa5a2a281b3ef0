"""Channel: a data channel (shared-memory rings and staging area) to one namespace,
and the leases its retrievals return (Selection, GpuSelection)."""
from __future__ import annotations

import ctypes
import os
from typing import TYPE_CHECKING, Any, Dict, List, NamedTuple, Optional

import numpy as np

from . import _lib
from ._arrays import (BLOCK_TABLE_DTYPE, ArenaBuffer, as_torch, check_uint, device_tensor, is_torch_tensor,
                      payload, query_f32, tokens_i32)
from .batch import BatchSelection, retrieve_batch
from .multi import PutResult, acquire_batch, put_batch
from .errors import InvalidArgument, NotSupported, from_status

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client, ModelSpec, Namespace

TIER_G, TIER_H = 0, 1


class BlockRef(NamedTuple):
    """A retrieved block: its index in the sequence (tokens block * block_tokens
    onwards), its tier (0 = G, 1 = H), its byte offset in that tier's arena, and the
    KV head it serves (a namespace of granularity "head"; 0 per layer)."""

    block: int
    tier: int
    offset: int
    head: int = 0


class _Handle:
    """Owns the C channel; freed when the Channel and every arena view are gone."""

    def __init__(self, lib: ctypes.CDLL, ptr: int) -> None:
        self.lib, self.ptr = lib, ptr

    def __del__(self) -> None:
        if self.ptr:
            self.lib.tierkv_channel_free(self.ptr)
            self.ptr = 0


class Channel:
    """A data channel to one namespace (open with :meth:`Client.open_channel`); a
    context manager. Not thread-safe: one channel per thread. Closing it releases
    the leases of its selections still held."""

    def __init__(self, client: Client, ptr: int, namespace: Namespace) -> None:
        self._client = client
        self._lib = client._lib
        self._handle: Optional[_Handle] = _Handle(self._lib, ptr)
        self.namespace = namespace
        self._leases: Dict[int, "_Lease"] = {}  # held leases -> their Selection
        self._arenas: Dict[int, Optional[ArenaBuffer]] = {}
        self._gpu_in_flight = False
        self.block_bytes: int = int(self._lib.tierkv_block_bytes(ptr))
        """Bytes of one block."""
        self.staging_bytes: int = int(self._lib.tierkv_staging_bytes(ptr))
        """Bytes of the staging area (puts and gets go through it in rounds)."""
        self.table_heads: int = int(self._lib.tierkv_table_heads(ptr))
        """Retrieve table entries per budgeted block: 1 (granularity "layer") or
        num_kv_heads (granularity "head": each KV head gets its own `budget` blocks)."""
        self.entry_bytes: int = int(self._lib.tierkv_entry_bytes(ptr))
        """Bytes one retrieved entry points at (block_bytes / table_heads)."""

    # --- plumbing ---
    def _ptr(self) -> int:
        if self._handle is None:
            raise InvalidArgument("the channel is closed")
        if self._client.closed:
            raise InvalidArgument("the channel's client is closed")
        return self._handle.ptr

    def _check(self, status: int) -> None:
        if status != 0:
            msg = self._lib.tierkv_channel_last_error(self._handle.ptr) or b""
            raise from_status(status, msg.decode(errors="replace"))

    # --- properties ---
    @property
    def model(self) -> ModelSpec:
        """The namespace's model."""
        return self.namespace.model

    @property
    def numpy_dtype(self) -> np.dtype:
        """float16, float32, or uint16 holding bf16 raw bits."""
        return self.model.numpy_dtype

    @property
    def block_shape(self):
        """(2, num_kv_heads, block_tokens, head_dim)."""
        return self.model.block_shape

    @property
    def entry_shape(self):
        """The shape of one retrieved entry: block_shape per layer; (2, 1,
        block_tokens, head_dim) per KV head (that head's K then V)."""
        two, kv, bt, d = self.block_shape
        return (two, kv // self.table_heads, bt, d)

    @property
    def granularity(self) -> str:
        """"layer" or "head" (the namespace's selection granularity)."""
        return "head" if self.table_heads > 1 else "layer"

    @property
    def gpu_path(self) -> str:
        """"none", "device" (CUDA IPC) or "emulated" (the daemon has no GPU: host pointers)."""
        return ("none", "device", "emulated")[self._lib.tierkv_gpu_path(self._ptr())]

    @property
    def closed(self) -> bool:
        return self._handle is None

    # --- lifetime ---
    def close(self) -> None:
        """Releases the leases still held and closes the channel. Arena views made
        from it stay readable (the mapping lives while they do)."""
        if self._handle is None:
            return
        if not self._client.closed:
            for lease in sorted(self._leases):
                self._lib.tierkv_release(self._handle.ptr, lease)
        for sel in self._leases.values():
            sel._released = True
        self._leases.clear()
        self._handle = None
        self._arenas.clear()

    def __enter__(self) -> Channel:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- blocks ---
    def put(self, seq: int, layer: int, first_block: int, data: Any, prefix_hash: int = 0) -> bool:
        """Stores blocks [first_block, first_block + n) of (seq, layer).

        data: a numpy array or torch tensor of the namespace's dtype (uint16 raw bits
        or torch.bfloat16 for bf16), C-contiguous, shaped (n, 2, kv_heads,
        block_tokens, head_dim) or (2, kv_heads, block_tokens, head_dim); or bytes-like
        of n * block_bytes. A CUDA tensor is copied to host memory first.
        prefix_hash != 0 (one block) marks a full prefix block shared by content.
        Returns whether the write policy made every block durable on disk before
        acknowledging. Raises Busy over a block a lease pins.
        """
        ch = self._ptr()
        seq, layer, first = check_uint(seq, "seq", 64), check_uint(layer, "layer", 32), check_uint(
            first_block, "first_block", 32)
        prefix_hash = check_uint(prefix_hash, "prefix_hash", 64)
        addr, nbytes, keep = payload(data, self.model.dtype, self.block_shape, self.block_bytes)
        durable = ctypes.c_int(0)
        self._check(self._lib.tierkv_put_ex(ch, seq, layer, first, addr, nbytes, prefix_hash, ctypes.byref(durable)))
        del keep
        return bool(durable.value)

    def append(self, seq: int, layer: int, first_token: int, kv: Any, tokens: Optional[int] = None) -> int:
        """Appends tokens of (seq, layer) at token `first_token` to the layer's open last
        block (stored as it fills, summarized for retrieval when full).

        kv: K then V of the new tokens, a numpy array or torch tensor of the namespace's
        dtype shaped (2, kv_heads, tokens, head_dim), C-contiguous; or bytes-like, then
        `tokens` says how many. An append must start where the layer ends (after the
        last whole block put or appended token): anything else raises InvalidArgument
        naming the token expected. Returns the token the next append starts at.
        """
        ch = self._ptr()
        if not hasattr(self._lib, "tierkv_append"):
            raise NotSupported("append: this libtierkv predates the token append")
        seq, layer, first = check_uint(seq, "seq", 64), check_uint(layer, "layer", 32), check_uint(
            first_token, "first_token", 64)
        if tokens is None:
            shape = tuple(getattr(kv, "shape", ()))
            if len(shape) != 4:
                raise InvalidArgument("append: kv must be shaped (2, kv_heads, tokens, head_dim), or pass tokens=")
            tokens = int(shape[2])
        tokens = check_uint(tokens, "tokens", 32)
        if tokens == 0:
            raise InvalidArgument("append: tokens must be positive")
        m = self.model
        shape = (2, m.num_kv_heads, tokens, m.head_dim)
        span = 2 * m.num_kv_heads * tokens * m.head_dim * self.numpy_dtype.itemsize
        addr, nbytes, keep = payload(kv, m.dtype, shape, span)
        nxt = ctypes.c_uint64(0)
        self._check(self._lib.tierkv_append(ch, seq, layer, first, tokens, addr, nbytes, ctypes.byref(nxt)))
        del keep
        return int(nxt.value)

    def get(self, seq: int, layer: int, first_block: int, n: int = 1) -> np.ndarray:
        """Copies blocks [first_block, first_block + n) into a new array (n, 2, kv, bt, hd)."""
        ch = self._ptr()
        seq, layer, first = check_uint(seq, "seq", 64), check_uint(layer, "layer", 32), check_uint(
            first_block, "first_block", 32)
        n = check_uint(n, "n", 32)
        if n == 0:
            raise InvalidArgument("get: n must be positive")
        try:  # refused before allocating: with overcommit a huge array "succeeds" until it is written
            if n * self.block_bytes > os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"):
                raise MemoryError
            out = np.empty((n,) + self.block_shape, dtype=self.numpy_dtype)
        except (MemoryError, ValueError):
            raise InvalidArgument(f"get: {n} blocks of {self.block_bytes} bytes cannot be allocated") from None
        self._check(self._lib.tierkv_get(ch, seq, layer, first, out.ctypes.data, out.nbytes))
        return out

    def retrieve(self, seq: int, layer: int, query: Any, budget: int) -> Selection:
        """Selects up to `budget` blocks of (seq, layer) for `query` (num_q_heads *
        head_dim floats, any shape; converted to float32), sinks and the recent window
        included, and pins them until the Selection is released (use it as a context
        manager)."""
        ch = self._ptr()
        seq, layer, budget = check_uint(seq, "seq", 64), check_uint(layer, "layer", 32), check_uint(
            budget, "budget", 32)
        if budget == 0:
            raise InvalidArgument("retrieve: budget must be positive")
        q = query_f32(query, self.model.query_floats)
        entries = budget * self.table_heads
        fits = (self.staging_bytes - q.nbytes) // ctypes.sizeof(_lib.BlockTableEntryC)
        if entries > fits:
            raise InvalidArgument(f"retrieve: a table of {entries} entries and the query do not fit the staging area "
                                  f"({self.staging_bytes} bytes: at most {max(fits, 0)} entries)")
        return self._pinned(entries, lambda table, count, lease, missing: self._lib.tierkv_retrieve_ex(
            ch, seq, layer, q.ctypes.data, q.size, budget, table, entries, count, lease, missing))

    def acquire(self, seq: int, layer: int, first: int, count: int, release: Optional[Selection] = None) -> Selection:
        """A zero-copy get: pins blocks [first, first + count) of (seq, layer) where
        they are and returns their refs (per KV head namespace: a run of count per
        head) in a Selection, read in place with views() / tensors() / stacked()
        until it is released (use it as a context manager). NotFound when a block
        does not exist (nothing stays pinned). release: the reader's previous
        Selection, released in the same round trip."""
        ch = self._ptr()
        old = 0
        if release is not None:
            if release.released or release.channel is not self:
                raise InvalidArgument("acquire: release must be a live Selection of this channel")
            old = release.lease
        seq, layer = check_uint(seq, "seq", 64), check_uint(layer, "layer", 32)
        first, count = check_uint(first, "first", 32), check_uint(count, "count", 32)
        if count == 0:
            raise InvalidArgument("acquire: count must be positive")
        entries = count * self.table_heads
        fits = self.staging_bytes // ctypes.sizeof(_lib.BlockTableEntryC)
        if entries > fits:
            raise InvalidArgument(f"acquire: a table of {entries} entries does not fit the staging area "
                                  f"({self.staging_bytes} bytes: at most {fits} entries)")
        try:
            return self._pinned(entries, lambda table, n, lease, missing: self._lib.tierkv_acquire(
                ch, seq, layer, first, count, old, table, entries, n, lease, missing))
        finally:
            if release is not None:  # the daemon released it first, even when the acquire then failed
                self._leases.pop(old, None)
                release._released = True

    def _pinned(self, entries: int, call) -> Selection:
        """Runs a C call that fills a table of refs under a lease; the Selection holding them."""
        table = (_lib.BlockRefC * entries)()
        count, lease, missing = ctypes.c_uint32(), ctypes.c_uint64(), ctypes.c_uint32()
        self._check(call(table, ctypes.byref(count), ctypes.byref(lease), ctypes.byref(missing)))
        refs = refs_of(_lib.ref_rows(table, 0, count.value))
        sel = Selection(self, lease.value, refs, missing.value)
        self._leases[lease.value] = sel
        return sel

    def retrieve_batch(self, layer: int, seqs: Any, queries: Any, budgets: Any, windows: Any = 0) -> BatchSelection:
        """Retrieves for len(seqs) sequences of one layer in one round trip (the daemon
        scores them in parallel) and pins every selection under one lease until the
        BatchSelection is released (use it as a context manager).

        queries: len(seqs) x (num_q_heads * head_dim) floats, e.g. an array shaped
        (B, q_heads, head_dim); a C-contiguous float32 numpy array is passed without a
        copy. budgets, windows: one int for all or one per sequence (a window of 0 =
        the namespace policy's recent window). Raises for the whole call (bad layer,
        more sequences than the daemon's limit, what does not fit the staging area);
        a bad sequence (no blocks, budget 0) fails alone: see BatchSelection.error(i).
        """
        return retrieve_batch(self, layer, seqs, queries, budgets, windows)

    def acquire_batch(self, layer: int, seqs: Any, firsts: Any, counts: Any, release: Any = None) -> BatchSelection:
        """A zero-copy get for len(seqs) sequences of one layer in one round trip: pins
        blocks [firsts[i], firsts[i] + counts[i]) of each (firsts, counts: one int for
        all or one per sequence) where they are, under one lease until the
        BatchSelection is released (use it as a context manager); blocks(i) are
        sequence i's refs (per KV head namespace: a run of counts[i] per head).
        Raises for the whole call (bad layer, more sequences than the daemon's limit,
        a table that does not fit the staging area, a release not held: then nothing
        is pinned or released); a sequence whose blocks do not all exist fails alone
        (BatchSelection.error(i): NotFound) and pins nothing. release: the reader's
        previous Selection or BatchSelection, released in the same round trip."""
        return acquire_batch(self, layer, seqs, firsts, counts, release)

    def put_batch(self, layer: int, seqs: Any, first_blocks: Any, data: Any, check: bool = True) -> List[PutResult]:
        """Stores blocks of len(seqs) sequences of one layer in one round trip (several
        when they do not fit the staging area together): data[i] (as put's data) goes
        to blocks [first_blocks[i], +n) of seqs[i] (first_blocks: one int for all or
        one per sequence). Each sequence is one put on the daemon (one disk commit
        under write-through). Returns a PutResult per sequence (stored, durable,
        error). A sequence that fails (Busy over a pinned block, ...) does not stop the
        others; check=True then raises the first failure's error after all were
        tried (its .results holds every PutResult)."""
        return put_batch(self, layer, seqs, first_blocks, data, check)

    def release(self, lease: int) -> None:
        """Releases a lease (Selection.release does it for you). NotFound if not held."""
        ch = self._ptr()
        lease = check_uint(lease, "lease", 64)
        self._check(self._lib.tierkv_release(ch, lease))
        held = self._leases.pop(lease, None)
        if held is not None:
            held._released = True

    def close_sequence(self, seq: int) -> None:
        """Drops the sequence's blocks (shared prefix blocks stay while others use them)."""
        self._check(self._lib.tierkv_close_sequence(self._ptr(), check_uint(seq, "seq", 64)))

    def prefix_block_hashes(self, tokens: Any) -> List[int]:
        """The content hashes of the full blocks of tokens (block_tokens each, chained):
        put block i of a shared prompt with prefix_hash=hashes[i] so that
        lookup_prefix / load_prefix find it."""
        ch = self._ptr()
        t = tokens_i32(tokens)
        cap = t.size // self.model.block_tokens
        out = (ctypes.c_uint64 * max(cap, 1))()
        count = ctypes.c_size_t()
        self._check(self._lib.tierkv_prefix_block_hashes(ch, t.ctypes.data if t.size else None, t.size, out, cap,
                                                         ctypes.byref(count)))
        return [int(out[i]) for i in range(count.value)]

    def lookup_prefix(self, tokens: Any) -> int:
        """How many leading tokens are cached as full prefix blocks."""
        ch = self._ptr()
        t = tokens_i32(tokens)
        cached = ctypes.c_uint32()
        self._check(self._lib.tierkv_lookup_prefix(ch, t.ctypes.data if t.size else None, t.size,
                                                   ctypes.byref(cached)))
        return cached.value

    def load_prefix(self, seq: int, tokens: Any) -> int:
        """Makes the cached prefix of tokens the first blocks of seq; returns its tokens."""
        ch = self._ptr()
        seq = check_uint(seq, "seq", 64)
        t = tokens_i32(tokens)
        loaded = ctypes.c_uint32()
        self._check(self._lib.tierkv_load_prefix(ch, seq, t.ctypes.data if t.size else None, t.size,
                                                 ctypes.byref(loaded)))
        return loaded.value

    # --- zero-copy views of the shared arenas ---
    def _arena(self, tier: int) -> Optional[ArenaBuffer]:
        if tier not in self._arenas:
            data, size = ctypes.c_void_p(), ctypes.c_uint64()
            fn = self._lib.tierkv_gpu_arena if tier == TIER_G else self._lib.tierkv_host_arena
            self._check(fn(self._ptr(), ctypes.byref(data), ctypes.byref(size)))
            self._arenas[tier] = ArenaBuffer(data.value, size.value, self._handle) if data.value else None
        return self._arenas[tier]

    def arena(self, tier: int) -> Optional[memoryview]:
        """The whole arena of a tier (0 = G when emulated in host memory, 1 = H) as a
        read-only memoryview, or None when it is not mapped in this process."""
        self._ptr()
        a = self._arena(check_uint(tier, "tier", 1))
        return a.memory if a else None

    def arena_address(self, tier: int) -> Optional[int]:
        """The address of a tier's mapped arena in this process, or None."""
        self._ptr()
        a = self._arena(check_uint(tier, "tier", 1))
        return a.address if a else None

    @property
    def gpu_arena_device(self) -> Optional[int]:
        """Device address of the real G arena (CUDA IPC) in this process, or None (emulated G)."""
        return self._lib.tierkv_gpu_arena_device(self._ptr()) or None

    def arena_tensor(self, tier: int):
        """The whole arena of a tier as a 1-D torch tensor of the namespace's dtype
        (bf16: torch.bfloat16), without a copy: a CUDA tensor over a real G, else a CPU
        tensor over the host mapping. None when the arena is not mapped. Block bytes
        follow the lease rules; never write to it. Needs PyTorch."""
        tier = check_uint(tier, "tier", 1)
        item = self.numpy_dtype.itemsize
        device = self.gpu_arena_device if tier == TIER_G else None
        if device is not None:
            n = self._lib.tierkv_gpu_arena_device_bytes(self._ptr()) // item
            return device_tensor(device, n * item, 0, n * item, self.numpy_dtype, (n,), self._handle)
        arena = self._arena(tier)
        if arena is None:
            return None
        return as_torch(np.frombuffer(arena.memory, dtype=self.numpy_dtype, count=arena.size // item))

    def on_device(self, ref: BlockRef) -> bool:
        """Whether ref's bytes are GPU memory (a tier-0 block of a real G arena):
        block_tensor serves it, block_view cannot."""
        return self._ref(ref, "on_device")[0] == TIER_G and self.gpu_arena_device is not None

    def _ref(self, ref: Any, what: str):
        self._ptr()
        if not isinstance(ref, tuple) or len(ref) not in (3, 4):
            raise InvalidArgument(f"{what}: ref must be a BlockRef(block, tier, offset, head)")
        return check_uint(ref[1], "ref.tier", 1), check_uint(ref[2], "ref.offset", 64)

    def block_view(self, ref: BlockRef) -> np.ndarray:
        """A zero-copy, read-only view (entry_shape: (2, kv_heads, block_tokens,
        head_dim), or (2, 1, block_tokens, head_dim) per KV head) of one block in the
        shared arena. Its bytes are valid while the lease that returned
        ref is held. A tier-0 block on a real GPU is device memory: NotSupported (use
        block_tensor, or Selection.stacked for a host copy)."""
        tier, offset = self._ref(ref, "block_view")
        arena = self._arena(tier)
        if arena is None:
            raise NotSupported(f"block_view: the tier-{tier} arena is not mapped in this process"
                               + (" (G is GPU memory: use block_tensor(ref) or tensors())" if tier == TIER_G else ""))
        return arena.view(offset, self.entry_bytes, self.numpy_dtype, self.entry_shape)

    def block_tensor(self, ref: BlockRef):
        """One block as a torch tensor (2, kv_heads, block_tokens, head_dim) without a
        copy: a CUDA tensor over the G arena for a tier-0 block on a real GPU, else a
        CPU tensor over the shared arena (as_torch of block_view). bf16 namespaces give
        torch.bfloat16. Valid while the lease that returned ref is held; never write
        to it (the daemon's memory). Needs PyTorch."""
        tier, offset = self._ref(ref, "block_tensor")
        device = self.gpu_arena_device if tier == TIER_G else None
        if device is None:
            return as_torch(self.block_view(ref))
        return device_tensor(device, self._lib.tierkv_gpu_arena_device_bytes(self._ptr()), offset, self.entry_bytes,
                             self.numpy_dtype, self.entry_shape, self._handle)

    def block_copy(self, ref: BlockRef) -> np.ndarray:
        """A host copy (entry_shape) of one retrieved block, wherever it is: a host
        arena, or a real G on the GPU (libtierkv copies it device to host; no PyTorch
        needed)."""
        tier, offset = self._ref(ref, "block_copy")
        c = _lib.BlockRefC(block=check_uint(ref[0], "ref.block", 32), tier=tier,
                           head=check_uint(ref[3], "ref.head", 16) if len(ref) == 4 else 0, offset=offset)
        out = np.empty(self.entry_shape, dtype=self.numpy_dtype)
        self._check(self._lib.tierkv_copy_block(self._ptr(), ctypes.byref(c), out.ctypes.data, out.nbytes))
        return out

    # --- the GPU path ---
    def start_retrieve_on_gpu(self, seq: int, layer: int, device_query_ptr: Any, query_floats: int, budget: int,
                              stream_ptr: Any = 0) -> None:
        """Step 1 of a GPU retrieval: queues the copy of the query (query_floats f32 at
        device_query_ptr, e.g. tensor.data_ptr(); host memory on the emulated path) on
        the CUDA stream stream_ptr (an int such as torch.cuda.current_stream().cuda_stream,
        a torch.cuda.Stream, or 0 = the default stream) and posts the request. Returns
        at once; one in flight per channel."""
        ch = self._ptr()
        seq, layer = check_uint(seq, "seq", 64), check_uint(layer, "layer", 32)
        budget, query_floats = check_uint(budget, "budget", 32), check_uint(query_floats, "query_floats", 64)
        ptr = _pointer(device_query_ptr, "device_query_ptr")
        if ptr == 0:
            raise InvalidArgument("device_query_ptr is NULL")
        self._check(self._lib.tierkv_start_retrieve_on_gpu(ch, seq, layer, ptr, query_floats, budget,
                                                           _stream(stream_ptr) or None))
        self._gpu_in_flight = True

    def finish_retrieve_on_gpu(self, stream_ptr: Any = 0) -> GpuSelection:
        """Step 3: waits for the daemon's block table and orders stream_ptr after it.
        Returns a GpuSelection (a context manager releasing its lease)."""
        ch = self._ptr()
        out = _lib.GpuRetrievalC()
        st = self._lib.tierkv_finish_retrieve_on_gpu(ch, _stream(stream_ptr) or None, ctypes.byref(out))
        if st != 5:  # Busy (no completion in time) leaves it in flight: a later call may collect it
            self._gpu_in_flight = False
        self._check(st)
        sel = GpuSelection(self, out.lease, out.count, out.missing, out.table or 0, self.gpu_path == "emulated")
        self._leases[out.lease] = sel
        return sel


def _pointer(value: Any, name: str) -> int:
    """An address: an int, a numpy array (its data), or a torch tensor (data_ptr())."""
    if is_torch_tensor(value):
        return int(value.data_ptr())
    if isinstance(value, np.ndarray):
        return int(value.ctypes.data)
    return check_uint(value, name, 64)


def _stream(value: Any) -> int:
    if hasattr(value, "cuda_stream"):
        value = value.cuda_stream
    return check_uint(value if value is not None else 0, "stream_ptr", 64)


class _Lease:
    """A lease held on a channel: released once, by release() or leaving a with-block."""

    def __init__(self, channel: Channel, lease: int, missing: int) -> None:
        self.channel = channel
        self.lease = lease
        """The lease id (pins the selected blocks until released)."""
        self.missing = missing
        """Defer mode: blocks selected but still on disk (not in the table)."""
        self._released = False

    @property
    def released(self) -> bool:
        return self._released

    def _mark_released(self) -> None:
        """The daemon released the lease already (an acquire's `release`)."""
        self._released = True

    def release(self) -> None:
        """Releases the lease (once; later calls do nothing)."""
        if self._released:
            return
        self._released = True
        if not self.channel.closed:
            self.channel.release(self.lease)

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


class Selection(_Lease):
    """The blocks a retrieval selected, pinned until release() (or the end of a
    with-block, also on an exception)."""

    def __init__(self, channel: Channel, lease: int, blocks: List[BlockRef], missing: int) -> None:
        super().__init__(channel, lease, missing)
        self.blocks: List[BlockRef] = blocks
        """The selected blocks, ascending by block index (per KV head namespace:
        head 0's run first, then head 1's, ...; BlockRef.head says which)."""

    @property
    def block_indices(self) -> np.ndarray:
        """The selected block indices, ascending (int64)."""
        return np.array([b.block for b in self.blocks], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.blocks)

    def _live(self) -> None:
        if self._released:
            raise InvalidArgument("the selection was released: its blocks may have moved")

    def views(self) -> List[np.ndarray]:
        """Zero-copy read-only views (2, kv_heads, block_tokens, head_dim) of the blocks
        in the shared arenas, valid while the lease is held. With a real GPU, blocks on
        G are device memory: use tensors() (zero copy) or stacked() (a host copy)."""
        self._live()
        return [self.channel.block_view(b) for b in self.blocks]

    def tensors(self) -> List[Any]:
        """Zero-copy torch tensors of the blocks (Channel.block_tensor): CUDA tensors
        for blocks on a real G, CPU tensors over the host arena otherwise."""
        self._live()
        return [self.channel.block_tensor(b) for b in self.blocks]

    def stacked(self) -> np.ndarray:
        """A host copy of the blocks as one array (count, 2, kv_heads, block_tokens,
        head_dim), wherever they are."""
        self._live()
        return stack_copies(self.channel, self.blocks)


def refs_of(rows: np.ndarray) -> List[BlockRef]:
    """BlockRefs of a table's rows (_lib.ref_rows)."""
    return list(map(BlockRef, rows["block"].tolist(), rows["tier"].tolist(), rows["offset"].tolist(),
                    rows["head"].tolist()))


def stack_copies(channel: Channel, blocks: List[BlockRef]) -> np.ndarray:
    out = np.empty((len(blocks),) + channel.entry_shape, dtype=channel.numpy_dtype)
    for i, b in enumerate(blocks):
        out[i] = channel.block_copy(b)
    return out


class GpuSelection(_Lease):
    """The result of finish_retrieve_on_gpu: `count` entries of the block table at
    `table_ptr` (device memory; host memory on the emulated path), laid out as
    tierkv.BLOCK_TABLE_DTYPE, valid for work queued on the stream until the next
    retrieval on the channel. A tier-0 entry's offset is into the G arena
    (gpu_arena_device), a tier-1 entry's into the H arena."""

    def __init__(self, channel: Channel, lease: int, count: int, missing: int, table_ptr: int,
                 emulated: bool) -> None:
        super().__init__(channel, lease, missing)
        self.count = count
        """Entries in the table."""
        self.table_ptr = table_ptr
        """Address of the table."""
        self.emulated = emulated
        """Whether the table is in host memory (the daemon emulates the GPU path)."""

    def entries(self) -> np.ndarray:
        """A host copy of the table (a device table is copied with PyTorch, on the
        current stream: the one given to finish_retrieve_on_gpu, or synchronize first).
        Kernels read the table where it is, at table_ptr."""
        if self._released:
            raise InvalidArgument("the selection was released")
        nbytes = self.count * BLOCK_TABLE_DTYPE.itemsize
        if self.emulated or nbytes == 0:
            raw = bytes((ctypes.c_ubyte * nbytes).from_address(self.table_ptr)) if nbytes else b""
        else:
            table = device_tensor(self.table_ptr, nbytes, 0, nbytes, np.dtype(np.uint8), (nbytes,),
                                  self.channel._handle)
            raw = table.cpu().numpy().tobytes()
        return np.frombuffer(raw, dtype=BLOCK_TABLE_DTYPE).copy()

    @property
    def blocks(self) -> List[BlockRef]:
        """The table as BlockRefs (a host copy: see entries)."""
        return [BlockRef(int(e["block"]), int(e["tier"]), int(e["offset"]), int(e["head"])) for e in self.entries()]
