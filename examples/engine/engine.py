"""A paged, batched decode engine with its KV cache in a KVBackend.

The partial-block contract (docs/engine.md): a sequence's tokens are cut into
blocks of block_tokens. Prefill puts every whole block of the prompt at once; the
tokens after the last whole block (the partial block) stay in the engine. Each
decode step appends the step's K/V to the partial block; when it fills, the engine
puts it (block index = blocks put so far) after the step and starts a new one. A
decode step attends, per layer and sequence, over the blocks the backend returns
for the step's query and budget plus the whole partial block (the step's own token
included), so the most recent < block_tokens tokens are always attended.

All sequences of a batch have the same length (prompts of equal length), so the
partial fill and the block count are shared by the batch.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import time
from typing import Callable

import torch

from kv_backend import KVBackend
from tinyllama import Model

_seq_ids = itertools.count(1)


@dataclasses.dataclass
class StepTimes:
    steps: int = 0
    total_s: float = 0.0
    retrieve_s: float = 0.0  # backend.retrieve calls, their copy to the device included
    put_s: float = 0.0
    retrieve_s_per_layer: list[float] = dataclasses.field(default_factory=list)

    @property
    def compute_s(self) -> float:
        return self.total_s - self.retrieve_s - self.put_s


def budget_fn(mode: str | float) -> Callable[[int], int]:
    """'full' -> every block; a fraction f -> ceil(f * blocks), at least 1."""
    if mode == "full":
        return lambda n: n
    frac = float(mode)
    return lambda n: min(n, max(1, math.ceil(frac * n)))


class PagedEngine:
    def __init__(self, model: Model, backend: KVBackend, block_tokens: int, recorder=None):
        """recorder: a trace_export.TraceRecorder that records the prompt's and every
        decode step's pre/post-RoPE keys and queries and values (None: nothing)."""
        c = model.config
        self.model, self.backend, self.bt = model, backend, block_tokens
        self.recorder = recorder
        self.dev = model.device
        self.times = StepTimes(retrieve_s_per_layer=[0.0] * c.n_layers)
        self.seqs: list[int] = []

    def _sync(self):
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)

    @torch.no_grad()
    def prefill(self, prompts: torch.Tensor, precomputed=None) -> torch.Tensor:
        """prompts [B, P] -> logits [B, V] of the last prompt token. Puts whole blocks.
        precomputed: (last logits [B, V], keys, values per layer [B, Hkv, P, hd][, pre-RoPE
        keys or None]) of these prompts (Sampled.prefill) instead of the dense forward."""
        c, bt = self.model.config, self.bt
        B, P = prompts.shape
        self.seqs = [next(_seq_ids) for _ in range(prompts.shape[0])]
        if precomputed is None:
            keys_pre = [] if self.recorder is not None else None
            logits, keys, values = self.model.dense_forward(prompts.to(self.dev), keys_pre=keys_pre)
            logits = logits[:, -1]
        else:
            logits, keys, values = precomputed[:3]
            keys_pre = precomputed[3] if len(precomputed) > 3 else None
        if self.recorder is not None:
            if keys_pre is None:
                raise ValueError("trace recording needs the prompt's pre-RoPE keys "
                                 "(sample_sequences(..., keep_pre_rope=True))")
            self.recorder.prefill(prompts, keys_pre, keys, values)
        self.n_blocks, self.fill, self.pos = P // bt, P % bt, P
        whole = self.n_blocks * bt
        self.partial = torch.zeros(c.n_layers, B, 2, c.n_kv_heads, bt, c.head_dim, device=self.dev)
        for layer in range(c.n_layers):
            k, v = keys[layer], values[layer]  # [B, Hkv, P, hd]
            self.partial[layer, :, 0, :, :self.fill] = k[:, :, whole:]
            self.partial[layer, :, 1, :, :self.fill] = v[:, :, whole:]
            if self.n_blocks == 0:
                continue
            # [B, 2, Hkv, nb, bt, hd] -> [B, nb, 2, Hkv, bt, hd]
            kv = torch.stack((k[:, :, :whole], v[:, :, :whole]), 1).unflatten(3, (self.n_blocks, bt))
            kv = kv.permute(0, 3, 1, 2, 4, 5).contiguous()
            t0 = time.perf_counter()
            self.backend.put_batch(self.seqs, layer, 0, list(kv))  # one call per layer for the batch
            self.times.put_s += time.perf_counter() - t0
        return logits

    @torch.no_grad()
    def step(self, tokens: torch.Tensor, budget: Callable[[int], int]) -> torch.Tensor:
        """tokens [B] at position self.pos -> logits [B, V]."""
        self._sync()
        t_step = time.perf_counter()
        c, bt = self.model.config, self.bt
        m = self.model
        x = m.embed(tokens.to(self.dev))[:, None, :]
        pos = torch.tensor([self.pos], device=self.dev)
        k_budget = budget(self.n_blocks)
        g = c.n_heads // c.n_kv_heads
        for layer in range(c.n_layers):
            if self.recorder is None:
                q, k, v = m.qkv(layer, x, pos)  # q [B, 1, Hq, hd]; k, v [B, 1, Hkv, hd]
            else:
                q, k, v, q_pre, k_pre = m.qkv_with_pre(layer, x, pos)
                self.recorder.step_layer(layer, q_pre[:, 0], q[:, 0], k_pre[:, 0], k[:, 0], v[:, 0])
            part = self.partial[layer]
            part[:, 0, :, self.fill] = k[:, 0]
            part[:, 1, :, self.fill] = v[:, 0]
            keys, vals = [], []
            t0 = time.perf_counter()
            # One batched retrieve per layer for every sequence of the batch.
            got = (self.backend.retrieve_batch(self.seqs, layer, q[:, 0].reshape(len(self.seqs), -1), k_budget,
                                               self.n_blocks) if self.n_blocks else None)
            for b, seq in enumerate(self.seqs):
                if got is not None:
                    blk = got[b]
                else:
                    blk = part.new_zeros((0, 2, c.n_kv_heads, bt, c.head_dim))
                # [n, 2, Hkv, bt, hd] -> [2, Hkv, n*bt, hd], then the partial block's filled tokens
                kvb = blk.permute(1, 2, 0, 3, 4).reshape(2, c.n_kv_heads, -1, c.head_dim)
                kvb = torch.cat((kvb, part[b, :, :, :self.fill + 1]), 2)
                keys.append(kvb[0])
                vals.append(kvb[1])
            self._sync()
            dt = time.perf_counter() - t0
            self.times.retrieve_s += dt
            self.times.retrieve_s_per_layer[layer] += dt
            attn = self._attend(q[:, 0], keys, vals, g)  # [B, Hq*hd]
            x = m.attn_out_ffn(layer, x, attn[:, None, :])
        logits = m.logits(x)[:, 0]
        if self.recorder is not None:
            self.recorder.step_done(tokens, self.pos)
        self.fill += 1
        self.pos += 1
        if self.fill == bt:  # the partial block is full: put it, start a new one
            t0 = time.perf_counter()
            for layer in range(c.n_layers):  # one call per layer for the batch's new blocks
                self.backend.put_batch(self.seqs, layer, self.n_blocks, list(self.partial[layer, :, None]))
            self.times.put_s += time.perf_counter() - t0
            self.partial.zero_()
            self.n_blocks += 1
            self.fill = 0
        self._sync()
        self.times.total_s += time.perf_counter() - t_step
        self.times.steps += 1
        return logits

    def _attend(self, q: torch.Tensor, keys: list[torch.Tensor], vals: list[torch.Tensor], g: int) -> torch.Tensor:
        """q [B, Hq, hd]; keys/vals per sequence [Hkv, T_b, hd] -> [B, Hq*hd]; padded, masked."""
        B, Hq, hd = q.shape
        T = max(kk.shape[1] for kk in keys)
        K = q.new_zeros(B, keys[0].shape[0], T, hd)
        V = torch.zeros_like(K)
        mask = torch.ones(B, T, dtype=torch.bool, device=q.device)
        for b, (kk, vv) in enumerate(zip(keys, vals)):
            K[b, :, :kk.shape[1]] = kk
            V[b, :, :vv.shape[1]] = vv
            mask[b, :kk.shape[1]] = False
        qg = q.view(B, K.shape[1], g, hd)  # query head h reads KV head h // g
        s = (qg @ K.transpose(2, 3)) / hd ** 0.5  # [B, Hkv, g, T]
        p = s.masked_fill(mask[:, None, None, :], float("-inf")).softmax(-1)
        return (p @ V).reshape(B, Hq * hd)

    def close(self):
        for seq in self.seqs:
            self.backend.close_sequence(seq)
        self.seqs = []


def generate(engine: PagedEngine, prompts: torch.Tensor, steps: int, budget: Callable[[int], int],
             progress: Callable[[int], None] | None = None, precomputed=None) -> torch.Tensor:
    """Greedy decode: the first token from the prefill, then `steps` decode steps.
    Returns the tokens the decode steps produced [B, steps]."""
    tok = engine.prefill(prompts, precomputed).argmax(-1)
    out = []
    for i in range(steps):
        tok = engine.step(tok, budget).argmax(-1)
        out.append(tok.cpu())
        if progress:
            progress(i)
    engine.close()
    return torch.stack(out, 1)


def teacher_forced(engine: PagedEngine, seqs: torch.Tensor, prompt_len: int, budget: Callable[[int], int],
                   progress: Callable[[int], None] | None = None,
                   precomputed=None) -> tuple[torch.Tensor, torch.Tensor]:
    """seqs [B, T+1]: prefill seqs[:, :prompt_len], then feed seqs[:, prompt_len:T] one per step.
    Returns (NLL of each next token [B, T - prompt_len], argmax tokens [B, T - prompt_len])."""
    engine.prefill(seqs[:, :prompt_len], precomputed)
    nll, top = [], []
    for i, t in enumerate(range(prompt_len, seqs.shape[1] - 1)):
        logits = engine.step(seqs[:, t], budget).float().cpu()
        nll.append(-logits.log_softmax(-1).gather(1, seqs[:, t + 1, None])[:, 0])
        top.append(logits.argmax(-1))
        if progress:
            progress(i)
    engine.close()
    return torch.stack(nll, 1), torch.stack(top, 1)


@dataclasses.dataclass
class Sampled:
    """Sampled texts and, for a prompt length, the prefill the engine needs: the
    logits of the last prompt token and every prompt token's post-RoPE K and V."""
    tokens: torch.Tensor  # [B, length]
    prompt_len: int
    last_logits: torch.Tensor  # [B, V]
    keys: list  # per layer [B, Hkv, prompt_len, hd]
    values: list
    keys_pre: list | None = None  # pre-RoPE keys, as keys (keep_pre_rope=True only)

    @property
    def prefill(self):
        return self.last_logits, self.keys, self.values, self.keys_pre


def sample_sequences(model: Model, batch: int, length: int, seed: int, prompt_len: int | None = None,
                     keep_pre_rope: bool = False) -> Sampled:
    """Token ids sampled from the model itself (temperature 1, the first token BOS = 1),
    seeded: no tokenizer ships with stories260K, these are the evaluation texts.
    Incremental decoding over a plain dense KV cache; the K/V of the first prompt_len
    tokens are kept so that every mode shares one prefill (a dense prefill of 2048
    tokens costs minutes on a loaded CPU). keep_pre_rope: also keep the prompt's pre-RoPE
    keys (Sampled.keys_pre), which trace export needs."""
    c, dev = model.config, model.device
    P = length if prompt_len is None else prompt_len
    gen = torch.Generator().manual_seed(seed)
    K = torch.zeros(c.n_layers, batch, c.n_kv_heads, length, c.head_dim, device=dev)
    V = torch.zeros_like(K)
    K_pre = torch.zeros_like(K) if keep_pre_rope else None
    g = c.n_heads // c.n_kv_heads
    toks = torch.ones(batch, length, dtype=torch.long)
    last = None
    with torch.no_grad():
        for t in range(length):
            x = model.embed(toks[:, t].to(dev))[:, None, :]
            pos = torch.tensor([t], device=dev)
            for layer in range(c.n_layers):
                q, k, v, _, k_pre = model.qkv_with_pre(layer, x, pos)
                K[layer, :, :, t], V[layer, :, :, t] = k[:, 0], v[:, 0]
                if K_pre is not None:
                    K_pre[layer, :, :, t] = k_pre[:, 0]
                qg = q[:, 0].view(batch, c.n_kv_heads, g, c.head_dim)
                p = ((qg @ K[layer, :, :, :t + 1].transpose(2, 3)) / c.head_dim ** 0.5).softmax(-1)
                x = model.attn_out_ffn(layer, x, (p @ V[layer, :, :, :t + 1]).reshape(batch, 1, -1))
            logits = model.logits(x)[:, 0]
            if t == P - 1:
                last = logits.clone()
            if t + 1 < length:
                toks[:, t + 1] = torch.multinomial(logits.float().cpu().softmax(-1), 1, generator=gen)[:, 0]
    per_layer = lambda T: [T[layer, :, :, :P].contiguous() for layer in range(c.n_layers)]  # noqa: E731
    return Sampled(toks, P, last, per_layer(K), per_layer(V), per_layer(K_pre) if K_pre is not None else None)
