"""ELLA-V's own KV-cached generation (nicolvisser/ELLA-V @ 3a27cee), re-implemented plainly for the CPU: the baseline
that ``benchmarks/bench_generation.py`` times speechzoo against, and that ``tests/test_ellav.py`` checks against the
fixtures made by the original.

Why it is faithful — it keeps the original's algorithm and its own optimisations, step for step:

- **Model** (``ellav/transformer/inference.py``): ``nn.Linear`` projections, RMSNorm statistics in float32, the
  complex64 RoPE table of 8000 positions built once and indexed by each call's positions (``rope.py``), keys and
  values expanded with ``repeat_interleave`` before attention (``repeat_kv``, a copy even for one repeat), float32
  logits of every packed token (the prefill's are all computed, the last of each row kept).
- **Cache** (``ellav/transformer/cache.py`` ``BufferCache``): one ``(layers, B, max_seq_len, kv_heads, head_dim)``
  tensor each for keys and values, ``max_seq_len = longest prompt + max_tokens``; per-row valid lengths in a tensor;
  every call builds the original's metadata (RoPE positions as a ``cat`` of per-row ``arange``, cache slots
  ``row * max_seq_len + position``, keys stored with ``index_copy_`` into the flattened cache). The first prefill
  attends its own packed keys, a later prefill chunk each row's cached keys interleaved with its new ones
  (``interleave_kv``: split and cat), a decode step the whole ``B * max_seq_len`` cache view.
- **Masks**: the three xformers biases the original builds — ``BlockDiagonalCausalMask`` (first prefill),
  ``BlockDiagonalMask…make_local_attention_from_bottomright`` (later prefill), and
  ``BlockDiagonalCausalWithOffsetPaddedKeysMask`` (decode) — with the same lengths. xformers'
  ``memory_efficient_attention`` does not run on a CPU; its stand-in here computes exactly what the kernel
  computes, never more: each query reads only its own row's valid keys. Prefill blocks run as one causal
  ``scaled_dot_product_attention`` per row (one call for equal rows); a decode step as ONE batched call over each
  row's slots up to the longest valid length, with a ``(B, 1, 1, length)`` key-padding mask. This is kinder to the
  original than the plain-torch shim of ``/work/shared/specs/perf-anchors.md`` row 6c, which materialised the whole
  ``(B, B · max_seq_len)`` bias.
- **Loop** (``ellav/generate.py``): ``sample`` (softmax of ``logits / temperature``, sort, cumsum, top-p zeroing,
  renormalising, one ``multinomial`` for the batch; argmax at ``temperature <= 0``), the counters kept on the CPU
  (``reached_eop`` moved there each step), the stop test, one cached forward, then the forced logits written row by
  row in a Python loop and blended with ``torch.where``.

The one departure: cache slots start zeroed rather than ``torch.empty``. xformers never reads a slot beyond a
row's length; a dense CPU kernel multiplies those slots by zero weights, so they must not hold NaN.

The ULM original (nicolvisser/Mistral-ULM) has no generation code at all; :func:`generate_ulm` runs the ULM — the
same decoder without the output bias — through this same cached loop with the ULM's sampling (BOS masked), which is
what its author's cached generation for this architecture is.

Example::

    >>> import torch
    >>> from zoo.nn.transformer import Transformer, TransformerConfig
    >>> config = TransformerConfig(dim=32, n_layers=2, head_dim=8, hidden_dim=64, n_heads=4, n_kv_heads=2,
    ...                            vocab_size=40, output_bias=True)
    >>> model = ReferenceTransformer(config).eval()
    >>> model.load_state_dict(Transformer(config).state_dict())
    <All keys matched successfully>
    >>> raw, finished = generate(model, [[5, 9, 7, 1, 5]], max_tokens=20, max_codec_tokens_per_phone=3,
    ...                          temperature=0.0, top_p=0.8, eop_id=2, eos_id=3)
    >>> len(raw[0]) <= 20
    True
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from zoo.nn.transformer import TransformerConfig

#: Size of the original's RoPE table.
ROPE_POSITIONS = 8000
FORCED_LOGIT = 1e9


# ------------------------------------------------------------------------------------------ cache
@dataclass
class Metadata:
    """What the original's ``BufferCache.get_input_metadata`` returns, the xformers bias given by its kind and
    lengths."""

    positions: torch.Tensor       # (N,) RoPE positions
    cache_positions: torch.Tensor  # (N,) flat slots row * max_seq_len + position
    kind: str                      # "first" (prefill), "later" (prefill chunk) or "decode"
    seqlens: list[int]             # new tokens per row
    kv_seqlens: list[int]          # keys per row the bias lets each row read


class BufferCache:
    """``ellav/transformer/cache.py``'s ``BufferCache``: keys and values ``(layers, B, max_seq_len, kv_heads, d)``."""

    def __init__(self, n_layers: int, max_batch_size: int, max_seq_len: int, n_kv_heads: int, head_dim: int,
                 dtype: torch.dtype = torch.float32) -> None:
        self.max_seq_len = max_seq_len
        shape = (n_layers, max_batch_size, max_seq_len, n_kv_heads, head_dim)
        self.cache_k = torch.zeros(shape, dtype=dtype)  # torch.empty in the original: see the module docstring
        self.cache_v = torch.zeros(shape, dtype=dtype)
        self.kv_seqlens: torch.Tensor | None = None

    def metadata(self, seqlens: list[int]) -> Metadata:
        if self.kv_seqlens is None:
            self.kv_seqlens = torch.zeros(len(seqlens), dtype=torch.long)
        seqpos = self.kv_seqlens.tolist()
        positions = torch.cat([torch.arange(pos, pos + n) for pos, n in zip(seqpos, seqlens)]).long()
        rows = torch.tensor(sum(([row] * n for row, n in enumerate(seqlens)), []), dtype=torch.long)
        cache_positions = positions + rows * self.max_seq_len
        if seqpos[0] == 0:
            kind, kv_seqlens = "first", list(seqlens)
        elif any(n > 1 for n in seqlens):
            kind = "later"
            kv_seqlens = [n + min(int(cached), self.max_seq_len) for n, cached in zip(seqlens, self.kv_seqlens)]
        else:
            kind = "decode"
            new = torch.tensor(seqlens, dtype=torch.long)
            kv_seqlens = (self.kv_seqlens + new).clamp(max=self.max_seq_len).tolist()
        return Metadata(positions, cache_positions, kind, list(seqlens), kv_seqlens)

    def advance(self, seqlens: list[int]) -> None:
        self.kv_seqlens += torch.tensor(seqlens, dtype=torch.long)


class CacheView:
    """One layer of a :class:`BufferCache` for one call (the original's ``CacheView``)."""

    def __init__(self, cache: BufferCache, layer: int, meta: Metadata) -> None:
        self.cache_k, self.cache_v = cache.cache_k[layer], cache.cache_v[layer]
        self.kv_seqlens = cache.kv_seqlens
        self.meta = meta

    def store(self, k: torch.Tensor, v: torch.Tensor) -> None:
        heads, d = self.cache_k.shape[-2:]
        self.cache_k.view(-1, heads, d).index_copy_(0, self.meta.cache_positions, k)
        self.cache_v.view(-1, heads, d).index_copy_(0, self.meta.cache_positions, v)

    def interleave(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A later prefill's keys: each row's cached keys, then its new ones, rows one after the other."""
        if self.meta.kind == "first":
            return k, v
        cached = self.kv_seqlens.tolist()
        keys, values = [], []
        for row, (new_k, new_v) in enumerate(zip(k.split(self.meta.seqlens), v.split(self.meta.seqlens))):
            keys += [self.cache_k[row, : cached[row]], new_k]
            values += [self.cache_v[row, : cached[row]], new_v]
        return torch.cat(keys), torch.cat(values)


def memory_efficient_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, meta: Metadata,
                               max_seq_len: int) -> torch.Tensor:
    """The CPU stand-in for xformers' kernel under the original's bias: ``q`` ``(N, H, d)``, ``k``/``v`` packed keys
    (prefill) or the flat ``(B · max_seq_len, H, d)`` cache (decode) → ``(N, H, d)``."""
    if meta.kind == "decode":  # one query per row, reading its row's first kv_seqlens[b] slots
        rows, length = len(meta.seqlens), max(meta.kv_seqlens)
        keys = k.view(rows, max_seq_len, *k.shape[1:])[:, :length].transpose(1, 2)
        values = v.view(rows, max_seq_len, *v.shape[1:])[:, :length].transpose(1, 2)
        valid = torch.arange(length) < torch.tensor(meta.kv_seqlens)[:, None]
        out = F.scaled_dot_product_attention(q[:, :, None], keys, values, attn_mask=valid[:, None, None])
        return out[:, :, 0]
    if len(set(meta.seqlens)) == 1 and meta.kind == "first":  # equal blocks: one causal call
        rows, n = len(meta.seqlens), meta.seqlens[0]
        out = F.scaled_dot_product_attention(*(x.view(rows, n, *x.shape[1:]).transpose(1, 2) for x in (q, k, v)),
                                             is_causal=True)
        return out.transpose(1, 2).reshape(q.shape)
    outs = []
    for q_row, k_row, v_row in zip(q.split(meta.seqlens), k.split(meta.kv_seqlens), v.split(meta.kv_seqlens)):
        # causal from the bottom right: new token i of a row sees its cached keys and its new keys up to itself
        n, m = len(q_row), len(k_row)
        mask = torch.ones(n, m, dtype=torch.bool).tril(m - n)
        outs.append(F.scaled_dot_product_attention(q_row.transpose(0, 1), k_row.transpose(0, 1),
                                                   v_row.transpose(0, 1), attn_mask=mask).transpose(0, 1))
    return torch.cat(outs)


# ------------------------------------------------------------------------------------------ model
def precompute_freqs_cis(head_dim: int, end: int, theta: float) -> torch.Tensor:
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2)[: head_dim // 2].float() / head_dim))
    angles = torch.outer(torch.arange(end), freqs).float()
    return torch.polar(torch.ones_like(angles), angles)


def apply_rotary_emb(xq: torch.Tensor, xk: torch.Tensor, freqs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    q = torch.view_as_complex(xq.float().reshape(*xq.shape[:-1], -1, 2))
    k = torch.view_as_complex(xk.float().reshape(*xk.shape[:-1], -1, 2))
    freqs = freqs[:, None, :]
    return (torch.view_as_real(q * freqs).flatten(2).type_as(xq),
            torch.view_as_real(k * freqs).flatten(2).type_as(xk))


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


class ReferenceAttention(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.wq = nn.Linear(cfg.dim, cfg.n_heads * cfg.head_dim, bias=False)
        self.wk = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.wv = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor, freqs: torch.Tensor, view: CacheView) -> torch.Tensor:
        n = x.shape[0]
        xq = self.wq(x).view(n, self.n_heads, self.head_dim)
        xk = self.wk(x).view(n, self.n_kv_heads, self.head_dim)
        xv = self.wv(x).view(n, self.n_kv_heads, self.head_dim)
        xq, xk = apply_rotary_emb(xq, xk, freqs)
        if view.meta.kind == "decode":
            view.store(xk, xv)
            keys = view.cache_k[: len(view.meta.seqlens)].reshape(-1, self.n_kv_heads, self.head_dim)
            values = view.cache_v[: len(view.meta.seqlens)].reshape(-1, self.n_kv_heads, self.head_dim)
        else:
            keys, values = view.interleave(xk, xv)
            view.store(xk, xv)
        repeats = self.n_heads // self.n_kv_heads
        keys = torch.repeat_interleave(keys, repeats=repeats, dim=1)
        values = torch.repeat_interleave(values, repeats=repeats, dim=1)
        out = memory_efficient_attention(xq, keys, values, view.meta, view.cache_k.shape[1])
        return self.wo(out.reshape(n, self.n_heads * self.head_dim))


class ReferenceFeedForward(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.w1 = nn.Linear(cfg.dim, cfg.hidden_dim, bias=False)
        self.w2 = nn.Linear(cfg.hidden_dim, cfg.dim, bias=False)
        self.w3 = nn.Linear(cfg.dim, cfg.hidden_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class ReferenceBlock(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.attention = ReferenceAttention(cfg)
        self.feed_forward = ReferenceFeedForward(cfg)
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)

    def forward(self, x: torch.Tensor, freqs: torch.Tensor, view: CacheView) -> torch.Tensor:
        h = x + self.attention(self.attention_norm(x), freqs, view)
        return h + self.feed_forward(self.ffn_norm(h))


class ReferenceTransformer(nn.Module):
    """The original's inference ``TransformerModel``; parameter names as speechzoo's (and the original's)."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.config = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(ReferenceBlock(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=cfg.output_bias)
        self._freqs_cis: torch.Tensor | None = None

    @property
    def freqs_cis(self) -> torch.Tensor:
        if self._freqs_cis is None:  # built lazily once, as the original
            self._freqs_cis = precompute_freqs_cis(self.config.head_dim, ROPE_POSITIONS, self.config.rope_theta)
        return self._freqs_cis

    def forward(self, input_ids: torch.Tensor, seqlens: list[int], cache: BufferCache) -> torch.Tensor:
        meta = cache.metadata(seqlens)
        h = self.tok_embeddings(input_ids)
        freqs = self.freqs_cis[meta.positions]
        for layer_id, layer in enumerate(self.layers):
            h = layer(h, freqs, CacheView(cache, layer_id, meta))
        cache.advance(seqlens)
        return self.output(self.norm(h)).float()


# ------------------------------------------------------------------------------------------ generation
def sample(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """``ellav/generate.py``'s ``sample`` + ``sample_top_p``."""
    if temperature <= 0:
        return torch.argmax(logits, dim=-1).unsqueeze(0).reshape(-1)
    probs = torch.softmax(logits / temperature, dim=-1)
    probs_sort, probs_idx = torch.sort(probs, dim=-1, descending=True)
    probs_sort[torch.cumsum(probs_sort, dim=-1) - probs_sort > top_p] = 0.0
    probs_sort.div_(probs_sort.sum(dim=-1, keepdim=True))
    return torch.gather(probs_idx, -1, torch.multinomial(probs_sort, num_samples=1)).reshape(-1)


def _prefill(model: ReferenceTransformer, prompts: Sequence[Sequence[int]], cache: BufferCache,
             chunk_size: int | None) -> torch.Tensor:
    longest = max(len(p) for p in prompts)
    chunk_size = chunk_size or longest
    for start in range(0, longest, chunk_size):
        chunks = [list(p[start:start + chunk_size]) for p in prompts]
        assert all(chunks), "every prompt must be non-empty in every chunk"
        logits = model(torch.tensor(sum(chunks, []), dtype=torch.long), [len(c) for c in chunks], cache)
        last = logits.index_select(0, torch.tensor([len(c) for c in chunks]).cumsum(0) - 1)
    return last


@torch.inference_mode()
def generate(model: ReferenceTransformer, encoded_prompts: Sequence[Sequence[int]], max_tokens: int,
             max_codec_tokens_per_phone: int, temperature: float, top_p: float, eop_id: int, eos_id: int,
             chunk_size: int | None = None) -> tuple[list[list[int]], list[bool]]:
    """``ellav.generate.generate``: every kept id per row, and which rows finished."""
    cfg, batch = model.config, len(encoded_prompts)
    cache = BufferCache(cfg.n_layers, batch, max(len(p) for p in encoded_prompts) + max_tokens, cfg.n_kv_heads,
                        cfg.head_dim, dtype=model.tok_embeddings.weight.dtype)
    logits = _prefill(model, encoded_prompts, cache, chunk_size)
    generated = []
    num_phones = torch.tensor([len(p) - 2 for p in encoded_prompts])
    since_eop = torch.tensor([0] * batch)
    phone_index = torch.tensor([0] * batch)
    force_eos = torch.zeros(batch, dtype=torch.bool)
    for _ in range(max_tokens):
        next_ids = sample(logits, temperature, top_p)
        reached_eop = (next_ids == eop_id).cpu()
        since_eop += 1
        since_eop[reached_eop] = 0
        force_eop = since_eop > max_codec_tokens_per_phone + 1
        phone_index[reached_eop] += 1
        force_eos = phone_index >= num_phones
        force_phone = reached_eop & ~force_eos
        if force_eos.all():
            break
        generated.append(next_ids[:, None])
        logits = model(next_ids, [1] * batch, cache)
        force = force_phone | force_eop | force_eos
        if force.any():
            forced_logits = torch.zeros_like(logits)
            for row in range(batch):
                if force_phone[row]:
                    forced_logits[row, encoded_prompts[row][phone_index[row]]] = FORCED_LOGIT
                if force_eop[row]:
                    forced_logits[row, eop_id] = FORCED_LOGIT
                if force_eos[row]:
                    forced_logits[row, eos_id] = FORCED_LOGIT
            logits = torch.where(force[:, None].expand_as(logits), forced_logits, logits)
    if not generated:
        return [], []
    return torch.cat(generated, 1).tolist(), force_eos.tolist()


@torch.inference_mode()
def generate_ulm(model: ReferenceTransformer, encoded_prompts: Sequence[Sequence[int]], max_new_tokens: int,
                 temperature: float, top_p: float, bos_id: int = 0) -> torch.Tensor:
    """The ULM through the same cached loop: ``(B, max_new_tokens)`` ids (BOS never drawn)."""
    cfg, batch = model.config, len(encoded_prompts)
    cache = BufferCache(cfg.n_layers, batch, max(len(p) for p in encoded_prompts) + max_new_tokens, cfg.n_kv_heads,
                        cfg.head_dim, dtype=model.tok_embeddings.weight.dtype)
    logits = _prefill(model, encoded_prompts, cache, None)
    generated = []
    for step in range(max_new_tokens):
        logits[:, bos_id] = -torch.inf
        generated.append(sample(logits, temperature, top_p))
        if step + 1 < max_new_tokens:
            logits = model(generated[-1], [1] * batch, cache)
    return torch.stack(generated, 1)
