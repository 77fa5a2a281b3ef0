"""Where the paged engine keeps its full KV blocks: a small interface, two backends.

A block is [2][kv_heads][block_tokens][head_dim] (K then V, keys after RoPE), one
per (sequence, layer, block index). The engine puts a block once, when it is full,
and retrieves per (sequence, layer) at every decode step with the step's post-RoPE
query and a budget (how many blocks it wants); a backend returns the chosen blocks
in ascending block order, as one float32 tensor [n][2][kv][bt][hd] on the engine's
device.

- LocalBackend: the blocks in engine memory, always every block (full attention).
  It is the baseline the tierkv backend is compared with.
- TierkvBackend: the blocks in a tierkvd namespace; the namespace policy's
  retriever (exact, minmax, mean or an index/ factory string) and trigger choose
  the blocks when the budget is below the block count.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

REPO = pathlib.Path(__file__).resolve().parents[2]


@dataclasses.dataclass
class BackendStats:
    retrieve_calls: int = 0   # round trips to the store (a batched retrieve is one)
    sequence_retrieves: int = 0  # (sequence, layer) selections they served
    blocks_retrieved: int = 0
    bytes_retrieved: int = 0  # block payload bytes that reached the engine
    bytes_query: int = 0      # query bytes sent with retrieves
    put_calls: int = 0
    bytes_put: int = 0


class KVBackend:
    """Interface. Subclasses implement put, retrieve and close_sequence."""

    name = "abstract"

    def __init__(self, block_shape: tuple[int, int, int, int], device: torch.device):
        self.block_shape = tuple(block_shape)  # (2, kv_heads, block_tokens, head_dim)
        self.device = device
        self.stats = BackendStats()

    def put(self, seq: int, layer: int, first_block: int, blocks: torch.Tensor) -> None:
        """blocks [n, 2, kv, bt, hd] float32: block indices first_block .. first_block + n - 1."""
        raise NotImplementedError

    def put_batch(self, seqs: list[int], layer: int, first_block: int, blocks: list[torch.Tensor]) -> None:
        """blocks[b] [n, 2, kv, bt, hd] for seqs[b]: what put does for each. This default
        calls put per sequence; TierkvBackend makes one call."""
        for seq, blk in zip(seqs, blocks):
            self.put(seq, layer, first_block, blk)

    def retrieve(self, seq: int, layer: int, query: torch.Tensor, budget: int, num_blocks: int) -> torch.Tensor:
        """query [Hq * hd] float32 (post-RoPE); budget <= num_blocks (the blocks put so far).
        Returns [n, 2, kv, bt, hd] float32 on self.device, ascending block order."""
        raise NotImplementedError

    def retrieve_batch(self, seqs: list[int], layer: int, queries: torch.Tensor, budget: int,
                       num_blocks: int) -> list[torch.Tensor]:
        """queries [B, Hq * hd] float32, one per sequence of seqs: what retrieve returns
        for each. This default calls retrieve per sequence; TierkvBackend makes one call."""
        return [self.retrieve(seq, layer, queries[b], budget, num_blocks) for b, seq in enumerate(seqs)]

    def close_sequence(self, seq: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class LocalBackend(KVBackend):
    """Full attention: every block, kept in engine memory (no copy on retrieve)."""

    name = "local"

    def __init__(self, block_shape, device):
        super().__init__(block_shape, device)
        self._store: dict[tuple[int, int], torch.Tensor] = {}

    def put(self, seq, layer, first_block, blocks):
        key = (seq, layer)
        have = self._store.get(key)
        n = 0 if have is None else have.shape[0]
        if first_block != n:
            raise ValueError(f"local backend: blocks must arrive in order (got {first_block}, have {n})")
        blocks = blocks.to(self.device, torch.float32)
        self._store[key] = blocks.clone() if have is None else torch.cat((have, blocks))
        self.stats.put_calls += 1
        self.stats.bytes_put += blocks.numel() * 4

    def retrieve(self, seq, layer, query, budget, num_blocks):
        if budget < num_blocks:
            raise ValueError("the local backend is full attention: budget must cover every block")
        blocks = self._store[(seq, layer)][:num_blocks]
        self.stats.retrieve_calls += 1
        self.stats.sequence_retrieves += 1
        self.stats.blocks_retrieved += blocks.shape[0]
        return blocks

    def close_sequence(self, seq):
        for key in [k for k in self._store if k[0] == seq]:
            del self._store[key]


def import_tierkv():
    """The `tierkv` package: PYTHONPATH first, then <repo>/python (its place in the tree)."""
    try:
        import tierkv  # noqa: F401
    except ImportError:
        sys.path.append(str(REPO / "python"))
        import tierkv  # noqa: F401
    return tierkv


def default_daemon() -> str:
    return os.environ.get("TIERKVD") or str(REPO / "build" / "release" / "daemon" / "tierkvd")


def _die_with_parent() -> None:
    """In the forked child: SIGTERM when the engine process dies (Linux prctl)."""
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Daemon:
    """A tierkvd of our own with a temporary config, data dir and socket."""

    def __init__(self, binary: str, gpu_bytes: int = 64 << 20, host_bytes: int = 256 << 20, timeout: float = 20.0):
        if not os.access(binary, os.X_OK):
            raise FileNotFoundError(f"tierkvd not found at {binary} (build it: cmake --build build/release "
                                    "--target tierkvd, or pass --daemon PATH / --socket PATH)")
        self.dir = tempfile.mkdtemp(prefix="tierkv-engine-")
        self.socket = os.path.join(self.dir, "tierkvd.sock")
        config = os.path.join(self.dir, "tierkvd.toml")
        with open(config, "w") as f:
            f.write(f'[daemon]\ndata_dir = "{self.dir}/data"\nsocket_path = "{self.socket}"\nlog_level = "warning"\n'
                    f'[metrics]\nlisten = "127.0.0.1:0"\n'
                    f"[storage]\ngpu_bytes = {gpu_bytes}\nhost_bytes = {host_bytes}\ndisk_bytes = 0\n"
                    "prefault = false\n")
        self.log = open(os.path.join(self.dir, "tierkvd.log"), "wb")
        self.proc = subprocess.Popen([binary, "--config", config], stdout=self.log, stderr=subprocess.STDOUT,
                                     preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"tierkvd did not start; log: {self.read_log()}")
            time.sleep(0.05)

    def _answers(self) -> bool:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self.socket)
            return True
        except OSError:
            return False
        finally:
            s.close()

    def read_log(self) -> str:
        try:
            with open(os.path.join(self.dir, "tierkvd.log"), "rb") as f:
                return f.read()[-4000:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class TierkvBackend(KVBackend):
    """Blocks in a tierkvd namespace; retrieval by the namespace's policy.

    dtype "f32" (default) stores exactly what the model computes, so full mode
    reproduces the local baseline bit for bit; "f16" halves the bytes stored and
    moved and rounds keys/values (the retrieved blocks are widened back to f32).
    batch_retrieve (default): retrieve_batch is one batched retrieve per layer
    (Channel.retrieve_batch); False: one retrieve per sequence, as before.
    batch_acquire_put (default, when the package has them): full mode is one
    Channel.acquire_batch per layer-batch and put_batch one Channel.put_batch;
    False: one acquire and one put per sequence (decision 0028's A/B).
    """

    name = "tierkv"

    def __init__(self, block_shape, device, *, num_layers: int, num_q_heads: int, dtype: str = "f32",
                 policy: dict | None = None, socket_path: str | None = None, daemon: str | None = None,
                 namespace: str | None = None, batch_retrieve: bool = True, granularity: str = "layer",
                 batch_acquire_put: bool = True):
        super().__init__(block_shape, device)
        self.batch_retrieve = batch_retrieve
        self.granularity = granularity
        self.tierkv = import_tierkv()
        self._daemon = None
        if socket_path is None:
            self._daemon = Daemon(daemon or default_daemon())
            socket_path = self._daemon.socket
        _, kv, bt, hd = self.block_shape
        self.np_dtype = {"f32": np.float32, "f16": np.float16}[dtype]
        self._arena_blocks: dict[int, torch.Tensor] = {}  # tier -> its arena as blocks (zero copy)
        self._block_bytes = int(np.prod(self.block_shape)) * np.dtype(self.np_dtype).itemsize
        try:
            self.client = self.tierkv.Client.connect(socket_path, timeout=10.0)
            self.namespace = namespace or f"engine-{os.getpid()}-{time.monotonic_ns() % 10**9}"
            self.client.create_namespace(self.namespace, num_layers=num_layers, num_q_heads=num_q_heads,
                                         num_kv_heads=kv, head_dim=hd, block_tokens=bt, dtype=dtype,
                                         granularity=granularity)
            self.policy = self.client.set_policy(self.namespace, policy or {})
            self.channel = self.client.open_channel(self.namespace)
            self.batch_acquire_put = batch_acquire_put and hasattr(self.channel, "acquire_batch")
        except BaseException:
            self.close()
            raise

    def _host(self, blocks):
        return np.ascontiguousarray(blocks.detach().to("cpu", torch.float32).numpy().astype(self.np_dtype, copy=False))

    def put(self, seq, layer, first_block, blocks):
        data = self._host(blocks)
        self.channel.put(seq, layer, first_block, data)
        self.stats.put_calls += 1
        self.stats.bytes_put += data.nbytes

    def put_batch(self, seqs, layer, first_block, blocks):
        data = [self._host(b) for b in blocks]
        if not self.batch_acquire_put or max(d.nbytes for d in data) + 64 > self.channel.staging_bytes:
            return super().put_batch(seqs, layer, first_block, blocks)  # put splits what staging cannot hold
        self.channel.put_batch(layer, seqs, first_block, data)  # raises the first sequence's failure
        self.stats.put_calls += 1
        self.stats.bytes_put += sum(d.nbytes for d in data)

    def retrieve(self, seq, layer, query, budget, num_blocks):
        if budget >= num_blocks:  # full attention: every block, pinned where it is (no query, no scoring)
            return self._acquire_all(seq, layer, num_blocks)
        q = query.detach().to("cpu", torch.float32).contiguous().numpy()
        with self.channel.retrieve(seq, layer, q, budget) as sel:
            got = self._fetch(sel.blocks)
        self.stats.retrieve_calls += 1
        self.stats.sequence_retrieves += 1
        self.stats.bytes_query += q.nbytes
        return got

    def _acquire_all(self, seq, layer, num_blocks):
        """Blocks 0 .. num_blocks - 1 of (seq, layer) with Channel.acquire (a zero-copy get)."""
        with self.channel.acquire(seq, layer, 0, num_blocks) as sel:
            got = self._fetch(sel.blocks)
        self.stats.retrieve_calls += 1
        self.stats.sequence_retrieves += 1
        return got

    def retrieve_batch(self, seqs, layer, queries, budget, num_blocks):
        if not self.batch_retrieve:
            return super().retrieve_batch(seqs, layer, queries, budget, num_blocks)
        table = 64 * len(seqs) + 16 * len(seqs) * num_blocks * self.channel.table_heads
        if budget >= num_blocks and self.batch_acquire_put and table <= self.channel.staging_bytes:
            # full attention: every sequence's blocks in one call
            with self.channel.acquire_batch(layer, seqs, 0, num_blocks) as batch:
                got = [self._fetch(batch.entries(i)) for i in range(len(seqs))]  # entries(i) raises its error
            self.stats.retrieve_calls += 1
            self.stats.sequence_retrieves += len(seqs)
            return got
        if budget >= num_blocks:  # full attention: nothing to select, each sequence's blocks acquired
            return [self._acquire_all(seq, layer, num_blocks) for seq in seqs]
        q = queries.detach().to("cpu", torch.float32).contiguous().numpy()
        out = []
        with self.channel.retrieve_batch(layer, seqs, q, budget) as batch:
            for i in range(len(seqs)):
                out.append(self._fetch(batch.blocks(i)))  # blocks(i) raises the sequence's own error
        self.stats.retrieve_calls += 1
        self.stats.sequence_retrieves += len(seqs)
        self.stats.bytes_query += q.nbytes
        return out

    def _fetch(self, refs) -> torch.Tensor:
        """The selected blocks as one float32 tensor [n, 2, kv, bt, hd] on the engine's
        device, copied while the lease holds them: one gather per tier out of zero-copy
        tensors over the whole arenas (blocks on a real GPU G never pass through the
        host), else (an offset off the entry grid) one zero-copy tensor per entry.

        Per KV head (granularity "head") every head has its own run of n entries, each
        one head's K and V; slot i of head h is then head h's i-th selected block.
        Attention does not depend on the order of the keys (their positions are in the
        rotated keys), so the engine attends over [n, 2, kv, bt, hd] exactly as per
        layer, each KV head over its own blocks.

        refs: BlockRefs, or a table's rows (BatchSelection.entries). A batch's sequences
        are fetched one by one: one gather over the whole batch's entries measured
        slower on the CPU (decision 0028)."""
        heads = self.channel.table_heads
        entry = self._block_bytes // heads
        self.stats.blocks_retrieved += len(refs) // heads
        self.stats.bytes_retrieved += len(refs) * entry
        if len(refs) == 0:
            return torch.empty((0,) + self.block_shape, device=self.device)
        if len(refs) % heads:
            raise RuntimeError(f"tierkv returned {len(refs)} entries for {heads} KV heads")
        got = self._gather(refs, entry)
        if got is None:
            if isinstance(refs, np.ndarray):  # a table's rows: BlockRefs for block_tensor
                refs = [self.tierkv.BlockRef(int(e["block"]), int(e["tier"]), int(e["offset"]), int(e["head"]))
                        for e in refs]
            got = torch.stack([self.channel.block_tensor(r).to(self.device, torch.float32) for r in refs])
        if heads > 1:  # [kv * n, 2, 1, bt, hd], head-major -> [n, 2, kv, bt, hd]
            _, kv, bt, hd = self.block_shape
            got = got.view(kv, -1, 2, bt, hd).permute(1, 2, 0, 3, 4).contiguous()
        if got.is_cuda:
            torch.cuda.current_stream(got.device).synchronize()  # copied before the lease is released
        return got

    def _gather(self, refs, entry: int) -> torch.Tensor | None:
        """All selected entries (of `entry` bytes, channel.entry_shape) with one indexed
        copy per tier from the arena viewed as an array of entries
        (Channel.arena_tensor), when every offset sits on that grid; None otherwise.
        refs: BlockRefs, or a table's rows (BatchSelection.entries: no Python object
        per entry)."""
        shape = tuple(self.channel.entry_shape)
        if isinstance(refs, np.ndarray):
            tiers, offsets = refs["tier"], refs["offset"].astype(np.int64)
        else:
            tiers = np.fromiter((r.tier for r in refs), dtype=np.int64, count=len(refs))
            offsets = np.fromiter((r.offset for r in refs), dtype=np.int64, count=len(refs))
        if (offsets % entry).any():
            return None
        slots = offsets // entry
        out = torch.empty((len(refs),) + shape, dtype=torch.float32, device=self.device)
        for tier in np.unique(tiers).tolist():
            arena = self._arena_blocks.get(tier)
            if arena is None:
                flat = self.channel.arena_tensor(tier)
                if flat is None:
                    return None
                per_entry = entry // flat.element_size()
                arena = flat[: (flat.numel() // per_entry) * per_entry].view((-1,) + shape)
                self._arena_blocks[tier] = arena
            pos = np.flatnonzero(tiers == tier)
            if int(slots[pos].max()) >= arena.shape[0]:
                return None
            idx = torch.from_numpy(slots[pos])
            out[torch.from_numpy(pos).to(self.device)] = arena[idx.to(arena.device)].to(self.device, torch.float32)
        return out

    def close_sequence(self, seq):
        self.channel.close_sequence(seq)

    def close(self):
        for name in ("channel", "client"):
            obj = getattr(self, name, None)
            if obj is not None:
                try:
                    obj.close()
                except Exception:  # noqa: BLE001 - best effort on teardown
                    pass
                setattr(self, name, None)
        if self._daemon is not None:
            self._daemon.stop()
            self._daemon = None
