"""The stories260K Llama-2 model (llama2.c checkpoint format) in PyTorch.

Weights load from the legacy llama2.c binary (see ../shared/data/README.md); the
math follows eval/tiny_llama.cc exactly: RMSNorm (eps 1e-5), interleaved RoPE
(pairs (2i, 2i+1), theta 10000, angles computed in float64), grouped-query
attention, SwiGLU, shared classifier. Every function works on any torch device.

`Model.dense_forward` is the plain reference (whole sequences, causal attention);
the paged decode engine in engine.py uses `Model.qkv`, `Model.attn_out_ffn` and
`Model.logits` around its own attention over retrieved KV blocks.
"""
from __future__ import annotations

import dataclasses
import struct

import numpy as np
import torch

ROPE_THETA = 10000.0
RMS_EPS = 1e-5


@dataclasses.dataclass(frozen=True)
class Config:
    dim: int
    hidden_dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    seq_len: int  # trained context: positions past it are out of the trained range

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim


def load_checkpoint(path: str) -> tuple[Config, dict[str, torch.Tensor]]:
    """Reads a llama2.c checkpoint; raises ValueError when its size or header is wrong."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 28:
        raise ValueError(f"{path}: shorter than the 28-byte header")
    h = struct.unpack("<7i", raw[:28])
    shared = h[5] > 0
    c = Config(h[0], h[1], h[2], h[3], h[4], abs(h[5]), h[6])
    if min(dataclasses.astuple(c)) < 1 or c.dim % c.n_heads or c.n_heads % c.n_kv_heads or c.head_dim % 2:
        raise ValueError(f"{path}: bad header {h}")
    d, kv, hid, L, V = c.dim, c.kv_dim, c.hidden_dim, c.n_layers, c.vocab_size
    shapes = [("embedding", (V, d)), ("rms_att", (L, d)), ("wq", (L, d, d)), ("wk", (L, kv, d)),
              ("wv", (L, kv, d)), ("wo", (L, d, d)), ("rms_ffn", (L, d)), ("w1", (L, hid, d)),
              ("w2", (L, d, hid)), ("w3", (L, hid, d)), ("rms_final", (d,)), ("rope_tables", (c.seq_len * c.head_dim,))]
    if not shared:
        shapes.append(("classifier", (V, d)))
    floats = sum(int(np.prod(s)) for _, s in shapes)
    if len(raw) != 28 + 4 * floats:
        raise ValueError(f"{path}: {len(raw)} bytes, its header implies {28 + 4 * floats}")
    data = np.frombuffer(raw, dtype="<f4", offset=28)
    w, at = {}, 0
    for name, shape in shapes:
        n = int(np.prod(shape))
        w[name] = torch.from_numpy(data[at:at + n].reshape(shape).copy())
        at += n
    del w["rope_tables"]  # legacy tables: RoPE is computed
    if shared:
        w["classifier"] = w["embedding"]
    if not all(torch.isfinite(t).all() for t in w.values()):
        raise ValueError(f"{path}: non-finite weight")
    return c, w


def rms_norm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return weight * (x * torch.rsqrt((x * x).mean(-1, keepdim=True) + RMS_EPS))


class Rope:
    """cos/sin per (position, pair), float64 angles rounded to float32 like the C++ code."""

    def __init__(self, head_dim: int, device: torch.device):
        pairs = torch.arange(head_dim // 2, dtype=torch.float64)
        self.freq = ROPE_THETA ** (-2.0 * pairs / head_dim)
        self.device = device

    def tables(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ang = positions.to(torch.float64).cpu()[:, None] * self.freq[None, :]
        return ang.cos().float().to(self.device), ang.sin().float().to(self.device)

    @staticmethod
    def apply(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """x [..., T, heads, head_dim]; cos/sin [T, head_dim/2]. Interleaved pairs."""
        a, b = x[..., 0::2], x[..., 1::2]
        c, s = cos[:, None, :], sin[:, None, :]
        return torch.stack((a * c - b * s, a * s + b * c), dim=-1).flatten(-2)


class Model:
    def __init__(self, path: str, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.config, w = load_checkpoint(path)
        self.w = {k: v.to(self.device) for k, v in w.items()}
        self.rope = Rope(self.config.head_dim, self.device)

    # -- pieces used by the paged engine --------------------------------------------
    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.w["embedding"][tokens]

    def qkv(self, layer: int, x: torch.Tensor, positions: torch.Tensor):
        """x [B, T, dim] -> post-RoPE q [B, T, Hq, hd], k [B, T, Hkv, hd], v [B, T, Hkv, hd]."""
        return self.qkv_with_pre(layer, x, positions)[:3]

    def qkv_with_pre(self, layer: int, x: torch.Tensor, positions: torch.Tensor):
        """As qkv, plus the pre-RoPE q and k: (q, k, v, q_pre, k_pre). Trace export
        (trace_export.py) records both, as the trace format asks."""
        c, w = self.config, self.w
        xb = rms_norm(x, w["rms_att"][layer])
        q = (xb @ w["wq"][layer].T).unflatten(-1, (c.n_heads, c.head_dim))
        k = (xb @ w["wk"][layer].T).unflatten(-1, (c.n_kv_heads, c.head_dim))
        v = (xb @ w["wv"][layer].T).unflatten(-1, (c.n_kv_heads, c.head_dim))
        cos, sin = self.rope.tables(positions)
        return Rope.apply(q, cos, sin), Rope.apply(k, cos, sin), v, q, k

    def attn_out_ffn(self, layer: int, x: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        """Residual stream after the attention output projection and the SwiGLU FFN."""
        w = self.w
        x = x + attn @ w["wo"][layer].T
        xb = rms_norm(x, w["rms_ffn"][layer])
        h = torch.nn.functional.silu(xb @ w["w1"][layer].T) * (xb @ w["w3"][layer].T)
        return x + h @ w["w2"][layer].T

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.w["rms_final"]) @ self.w["classifier"].T

    # -- the plain reference ----------------------------------------------------------
    @torch.no_grad()
    def dense_forward(self, tokens: torch.Tensor, start: int = 0, keys_pre: list | None = None):
        """tokens [B, T] at positions start.. -> (logits [B, T, V], keys, values) with
        keys/values per layer [B, Hkv, T, hd] (post-RoPE keys). Causal attention.
        keys_pre: if a list, each layer's pre-RoPE keys [B, Hkv, T, hd] are appended."""
        c = self.config
        B, T = tokens.shape
        x = self.embed(tokens)
        pos = torch.arange(start, start + T, device=self.device)
        causal = torch.ones(T, T, dtype=torch.bool, device=self.device).tril()
        keys, values = [], []
        for layer in range(c.n_layers):
            q, k, v, _, k_pre = self.qkv_with_pre(layer, x, pos)
            if keys_pre is not None:
                keys_pre.append(k_pre.transpose(1, 2).contiguous())
            keys.append(k.transpose(1, 2).contiguous())
            values.append(v.transpose(1, 2).contiguous())
            attn = torch.empty(B, T, c.n_heads, c.head_dim, device=self.device)
            g = c.n_heads // c.n_kv_heads
            kvh = c.n_kv_heads
            for b in range(B):  # one sequence at a time: [Hq, T, T] scores fit at T = 2048
                qb = q[b].view(T, kvh, g, c.head_dim).permute(1, 2, 0, 3)  # [Hkv, g, T, hd]: head h -> KV h // g
                s = (qb @ keys[-1][b][:, None].transpose(2, 3)) / c.head_dim ** 0.5  # [Hkv, g, T, T]
                s = s.masked_fill(~causal, float("-inf")).softmax(-1)
                attn[b] = (s @ values[-1][b][:, None]).permute(2, 0, 1, 3).reshape(T, c.n_heads, c.head_dim)
            x = self.attn_out_ffn(layer, x, attn.flatten(-2))
        return self.logits(x), keys, values
