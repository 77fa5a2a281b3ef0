"""Attention traces of the reference engine, written in tierkv's trace format.

A trace (docs/trace-format.md, version 1) holds one sequence: every token's pre- and
post-RoPE keys and its values, and the pre- and post-RoPE queries of the decode
steps, for every layer. tierkv_bench_eval --trace=FILE (any number of them) scores
every retriever on it against exact attention, as it does the synthetic workloads.

TraceRecorder is attached to a PagedEngine (PagedEngine(..., recorder=r)): the
prefill records the prompt's K/V, each decode step its queries and its own K/V.
write() then writes one file per sequence of the batch. write_trace() is the
format's writer on its own, for any engine: it matches eval/trace.cc byte for byte
(little-endian fields, xxh3-64 checksums through libxxhash, f32 tensors).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import os
import struct

import numpy as np
import torch

MAGIC = b"TKVTRACE"
VERSION = 1
HEADER_BYTES = 96
FLAG_TOKEN_IDS = 1 << 1
ROPE_INTERLEAVED, ROPE_HALF_SPLIT = 1, 2
MAX_DESCRIPTION_BYTES = 64 << 10
TENSORS = ("keys_pre", "keys", "values", "queries_pre", "queries")  # the order of a layer record

_xxh = None


def xxh3_64(data, seed: int = 0) -> int:
    """xxh3-64 of a bytes-like object or a C-contiguous numpy array (libxxhash, as common/checksum.h)."""
    global _xxh
    if _xxh is None:
        lib = ctypes.CDLL(ctypes.util.find_library("xxhash") or "libxxhash.so.0")
        lib.XXH3_64bits_withSeed.restype = ctypes.c_uint64
        lib.XXH3_64bits_withSeed.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint64]
        _xxh = lib.XXH3_64bits_withSeed
    if isinstance(data, np.ndarray):
        assert data.flags.c_contiguous
        return _xxh(data.ctypes.data, data.nbytes, seed)
    buf = bytes(data)
    return _xxh(buf, len(buf), seed)


@dataclasses.dataclass
class TraceInfo:
    num_q_heads: int
    num_kv_heads: int
    head_dim: int
    num_tokens: int
    step_positions: list[int]
    rope_style: int = ROPE_INTERLEAVED
    rope_theta: float = 10000.0
    token_ids: list[int] | None = None  # None or num_tokens ids >= 0
    sentence_starts: list[int] = dataclasses.field(default_factory=list)
    description: str = ""


def write_trace(path: str, info: TraceInfo, layers: list[dict[str, np.ndarray]]) -> None:
    """Writes a version-1 f32 trace. layers[l] maps each name of TENSORS to an array of
    shape [num_kv_heads, num_tokens, head_dim] (keys_pre, keys, values) or
    [num_steps, num_q_heads, head_dim] (queries_pre, queries). Written to path + ".tmp",
    synced and renamed, as TraceWriter does. Raises ValueError on a shape, range or
    non-finite value the reader would refuse."""
    S, T, d = len(info.step_positions), info.num_tokens, info.head_dim
    desc = info.description.encode()
    if not layers or len(layers) > 1024 or not 1 <= info.num_q_heads <= 1024 or info.num_kv_heads < 1 or \
            info.num_q_heads % info.num_kv_heads or not 2 <= d <= 1024 or d % 2 or not 1 <= T <= 1 << 30 or \
            S > 1 << 24 or len(desc) > MAX_DESCRIPTION_BYTES or not info.rope_theta > 0:
        raise ValueError(f"trace shape out of range: {len(layers)} layers, {info}")
    if any(not 0 <= p < T for p in info.step_positions):
        raise ValueError("a step position is not below num_tokens")
    starts = list(info.sentence_starts)
    if any(not 0 <= s < T for s in starts) or any(b <= a for a, b in zip(starts, starts[1:])):
        raise ValueError("sentence starts must be strictly increasing and below num_tokens")
    meta = bytearray(desc)
    meta += struct.pack(f"<{S}Q", *info.step_positions)
    flags = 0
    if info.token_ids is not None:
        if len(info.token_ids) != T or min(info.token_ids) < 0:
            raise ValueError("token_ids must hold num_tokens ids >= 0")
        meta += struct.pack(f"<{T}i", *info.token_ids)
        flags |= FLAG_TOKEN_IDS
    meta += struct.pack(f"<{len(starts)}Q", *starts)
    header = struct.pack("<8s8Id4QQ", MAGIC, VERSION, HEADER_BYTES, flags, len(layers), info.num_q_heads,
                         info.num_kv_heads, d, info.rope_style, info.rope_theta, T, S, len(starts), len(desc),
                         xxh3_64(meta))
    header += struct.pack("<Q", xxh3_64(header))
    assert len(header) == HEADER_BYTES
    shapes = {"keys_pre": (info.num_kv_heads, T, d), "queries_pre": (S, info.num_q_heads, d)}
    shapes.update(keys=shapes["keys_pre"], values=shapes["keys_pre"], queries=shapes["queries_pre"])
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(header)
            f.write(meta)
            for index, layer in enumerate(layers):
                checksum = index  # chained over the five tensors, seeded with the layer index
                for name in TENSORS:
                    a = np.ascontiguousarray(layer[name], dtype="<f4")
                    if a.shape != shapes[name]:
                        raise ValueError(f"layer {index} {name}: shape {a.shape}, expected {shapes[name]}")
                    if not np.isfinite(a).all():
                        raise ValueError(f"layer {index} {name}: a value is not finite")
                    checksum = xxh3_64(a, checksum)
                    f.write(a.tobytes())
                f.write(struct.pack("<Q", checksum))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_trace(path: str) -> tuple[TraceInfo, list[dict[str, np.ndarray]]]:
    """Reads a whole version-1 trace (f32 or f16, returned as float32) and checks its
    checksums and length; raises ValueError naming what is wrong. For tests and
    inspection: tierkv's own reader (eval/trace.h) streams layers and checks more."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < HEADER_BYTES or raw[:8] != MAGIC:
        raise ValueError(f"{path}: not a trace file")
    (_, version, hbytes, flags, L, hq, hkv, d, rope_style, theta, T, S, N, D, meta_sum) = \
        struct.unpack_from("<8s8Id4QQ", raw)
    if version != VERSION or hbytes != HEADER_BYTES or flags & ~3:
        raise ValueError(f"{path}: version {version}, header {hbytes}, flags {flags:#x} not supported")
    if struct.unpack_from("<Q", raw, 88)[0] != xxh3_64(raw[:88]):
        raise ValueError(f"{path}: header checksum mismatch")
    meta_len = D + 8 * S + (4 * T if flags & FLAG_TOKEN_IDS else 0) + 8 * N
    meta = raw[HEADER_BYTES:HEADER_BYTES + meta_len]
    if len(meta) != meta_len or xxh3_64(meta) != meta_sum:
        raise ValueError(f"{path}: metadata checksum mismatch")
    at = D
    steps = list(struct.unpack_from(f"<{S}Q", meta, at))
    at += 8 * S
    tokens = None
    if flags & FLAG_TOKEN_IDS:
        tokens = list(struct.unpack_from(f"<{T}i", meta, at))
        at += 4 * T
    starts = list(struct.unpack_from(f"<{N}Q", meta, at))
    info = TraceInfo(hq, hkv, d, T, steps, rope_style, theta, tokens, starts, meta[:D].decode())
    dt = np.dtype("<f2") if flags & 1 else np.dtype("<f4")
    shapes = {"keys_pre": (hkv, T, d), "keys": (hkv, T, d), "values": (hkv, T, d),
              "queries_pre": (S, hq, d), "queries": (S, hq, d)}
    at, layers = HEADER_BYTES + meta_len, []
    for index in range(L):
        layer, checksum = {}, index
        for name in TENSORS:
            n = int(np.prod(shapes[name])) * dt.itemsize
            a = np.frombuffer(raw, dt, n // dt.itemsize, at).reshape(shapes[name]) if n else \
                np.zeros(shapes[name], dt)
            checksum = xxh3_64(raw[at:at + n], checksum)
            layer[name] = a.astype(np.float32)
            at += n
        if struct.unpack_from("<Q", raw, at)[0] != checksum:
            raise ValueError(f"{path}: layer {index} checksum mismatch")
        at += 8
        layers.append(layer)
    if at != len(raw):
        raise ValueError(f"{path}: {len(raw)} bytes, the header implies {at}")
    return info, layers


class TraceRecorder:
    """Records what one PagedEngine run computes, for every sequence of its batch."""

    def __init__(self, num_layers: int, num_q_heads: int):
        self.num_layers, self.num_q_heads = num_layers, num_q_heads
        self.prompt = None  # [B, P] token ids
        self.prefill_kv = None  # per layer (keys_pre, keys, values), each [B, Hkv, P, hd]
        self.steps: list[list] = []  # per step, per layer (q_pre, q, k_pre, k, v)
        self.step_tokens: list[torch.Tensor] = []  # per step [B]
        self.step_positions: list[int] = []
        self._layers: list = [None] * num_layers

    @staticmethod
    def _cpu(t: torch.Tensor) -> torch.Tensor:
        return t.detach().to("cpu", torch.float32)

    def prefill(self, prompts: torch.Tensor, keys_pre, keys, values) -> None:
        self.prompt = prompts.detach().cpu()
        self.prefill_kv = [tuple(self._cpu(t[layer]) for t in (keys_pre, keys, values))
                           for layer in range(self.num_layers)]
        self.steps, self.step_tokens, self.step_positions = [], [], []

    def step_layer(self, layer: int, q_pre, q, k_pre, k, v) -> None:
        """q_pre, q [B, Hq, hd]; k_pre, k, v [B, Hkv, hd] of the current step."""
        self._layers[layer] = tuple(self._cpu(t) for t in (q_pre, q, k_pre, k, v))

    def step_done(self, tokens: torch.Tensor, position: int) -> None:
        if any(x is None for x in self._layers):
            raise RuntimeError("a decode step finished without recording every layer")
        self.steps.append(self._layers)
        self.step_tokens.append(tokens.detach().cpu())
        self.step_positions.append(position)
        self._layers = [None] * self.num_layers

    def write(self, out_dir: str, stem: str, description: str, rope_theta: float = 10000.0) -> list[str]:
        """One trace per sequence: <out_dir>/<stem>-seq<b>.trace. Returns the paths."""
        if self.prompt is None:
            raise RuntimeError("nothing recorded")
        B, P = self.prompt.shape
        S = len(self.steps)
        if self.step_positions != list(range(P, P + S)):
            raise RuntimeError(f"steps at positions {self.step_positions[:4]}...: expected {P}, {P + 1}, ...")
        os.makedirs(out_dir, exist_ok=True)
        tokens = torch.cat([self.prompt] + [t[:, None] for t in self.step_tokens], 1)  # [B, P + S]
        paths = []
        for b in range(B):
            layers = []
            for layer in range(self.num_layers):
                kp, k, v = (t[b] for t in self.prefill_kv[layer])  # [Hkv, P, hd]
                per_step = [s[layer] for s in self.steps]
                hd = k.shape[-1]
                # K/V: the prompt's, then each step's own token; queries: [S, Hq, hd]
                cat_kv = lambda i, pre: torch.cat([pre] + [s[i][b][:, None] for s in per_step], 1)  # noqa: E731
                stack_q = lambda i: (torch.stack([s[i][b] for s in per_step]) if per_step  # noqa: E731
                                     else torch.zeros(0, self.num_q_heads, hd))
                layers.append({"keys_pre": cat_kv(2, kp).numpy(), "keys": cat_kv(3, k).numpy(),
                               "values": cat_kv(4, v).numpy(), "queries_pre": stack_q(0).numpy(),
                               "queries": stack_q(1).numpy()})
            hkv, _, hd = layers[0]["keys"].shape
            info = TraceInfo(num_q_heads=self.num_q_heads, num_kv_heads=hkv, head_dim=hd, num_tokens=P + S,
                             step_positions=list(self.step_positions), rope_theta=rope_theta,
                             token_ids=tokens[b].tolist(), description=f"{description} sequence {b}")
            path = os.path.join(out_dir, f"{stem}-seq{b}.trace")
            write_trace(path, info, layers)
            paths.append(path)
        return paths
