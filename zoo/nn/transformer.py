"""The Mistral-style decoder-only transformer of Mistral-ULM and ELLA-V, with ragged batches and a KV cache.

Both originals (``nicolvisser/Mistral-ULM`` ``ulm/transformer.py``, ``nicolvisser/ELLA-V`` ``ellav/transformer/``)
are the same pre-norm block::

    h = tok_embeddings[input_ids]
    for each layer:  h = h + Attention(attention_norm(h))      # RMSNorm, RoPE, grouped-query causal attention
                     h = h + FeedForward(ffn_norm(h))          # SwiGLU: w2(silu(w1 x) * w3 x)
    logits = output(norm(h)).float()                           # ELLA-V's output layer has a bias, the ULM's not

Inputs are **packed**, as in the originals: ``input_ids`` is 1-D, the concatenation of the sequences whose lengths
``seqlens`` gives, and attention is block-diagonal causal (a token sees itself and the earlier tokens of its own
sequence; positions restart at 0 in each). The originals run this through xformers; here the embedding, the
projections and the feed-forward run on the packed tokens (no padding), and only the attention core scatters the
heads into a ``(B, heads, longest, head_dim)`` batch for ``scaled_dot_product_attention`` with the matching mask.

Incremental decoding: a :class:`KVCache` keeps every row's keys and values; ``forward(..., cache=cache)`` appends
the new tokens of each row after that row's cached ones (RoPE positions continue per row), which equals a full
causal re-run of every row's whole sequence. :class:`IncrementalDecoder` wraps this for generation loops, with
``use_cache=False`` as the re-run reference. :func:`sample_top_p` is ELLA-V's sampler.

Parameter names are the originals' (``tok_embeddings``, ``layers.L.attention.wq`` …), so checkpoints map 1:1.

Example::

    >>> import torch
    >>> config = TransformerConfig(dim=32, n_layers=2, head_dim=8, hidden_dim=64, n_heads=4, n_kv_heads=2,
    ...                            vocab_size=21)
    >>> model = Transformer(config).eval()
    >>> logits = model(torch.randint(0, 21, (9,)), seqlens=[4, 5])     # two sequences, packed
    >>> tuple(logits.shape)
    (9, 21)
    >>> decoder = IncrementalDecoder(model, batch_size=2, max_length=20)
    >>> next_logits = decoder(torch.randint(0, 21, (9,)), [4, 5])        # prefill: (B, vocab) at each last token
    >>> next_logits = decoder(sample_top_p(next_logits, temperature=0.0, top_p=1.0), [1, 1])
    >>> tuple(next_logits.shape)
    (2, 21)
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, InputError
from .linear import Linear


@dataclass(frozen=True)
class TransformerConfig:
    dim: int                     # model width
    n_layers: int
    head_dim: int                # width of one attention head (even: RoPE rotates pairs)
    hidden_dim: int              # SwiGLU inner width (given explicitly, not derived from dim)
    n_heads: int                 # query heads
    n_kv_heads: int              # key/value heads; query head h reads kv head h // (n_heads // n_kv_heads)
    vocab_size: int
    norm_eps: float = 1e-6       # RMSNorm epsilon
    rope_theta: float = 10000.0  # RoPE base
    output_bias: bool = False    # ELLA-V's output layer has a bias (added by accident, but trained)
    max_positions: int = 8000    # size of the originals' RoPE table: positions from here on raise there and here

    def __post_init__(self) -> None:
        if self.n_heads % self.n_kv_heads:
            raise ConfigError(f"n_heads={self.n_heads} is not a multiple of n_kv_heads={self.n_kv_heads}")
        if self.head_dim % 2:
            raise ConfigError(f"head_dim={self.head_dim} must be even: RoPE rotates pairs of channels")


# ------------------------------------------------------------------------------------------ layers
class RMSNorm(nn.Module):
    """``x / rms(x) * weight``, the statistic taken in float32 and cast back before the gain (as the original)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def rotary_phases(positions: torch.Tensor, head_dim: int, theta: float) -> torch.Tensor:
    """Unit complex numbers ``exp(i · position · theta^(-2j/head_dim))``, complex64 ``(N, head_dim/2)``.

    Frequencies and angles are float32 products, exactly the entries of the original's ``freqs_cis`` table
    (float64 angles drift by up to ~5e-4 rad at positions in the thousands).
    """
    exponents = torch.arange(0, head_dim, 2, device=positions.device)[: head_dim // 2].float() / head_dim
    angles = positions.float()[:, None] * (1.0 / theta ** exponents)[None, :]
    return torch.polar(torch.ones_like(angles), angles)


def apply_rotary(x: torch.Tensor, phases: torch.Tensor) -> torch.Tensor:
    """Rotate the channel pairs ``(x[2j], x[2j+1])`` of ``x`` ``(N, heads, head_dim)`` by ``phases`` ``(N, head_dim/2)``
    — Meta/Mistral's interleaved convention, not Hugging Face's half split — in float32."""
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * phases[:, None, :]).flatten(-2).type_as(x)


class FeedForward(nn.Module):
    """SwiGLU: ``w2(silu(w1 x) * w3 x)``, no biases."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.w1 = Linear(dim, hidden_dim, bias=False)
        self.w2 = Linear(hidden_dim, dim, bias=False)
        self.w3 = Linear(dim, hidden_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


# ------------------------------------------------------------------------------------------ ragged batches
class KVCache:
    """Keys and values of every layer for ``batch_size`` rows of up to ``max_length`` slots each.

    Row ``b`` holds its ``lengths[b]`` tokens in slots ``starts[b] … ends[b] - 1``. The first call into an empty
    cache **right-aligns** its rows: among new rows of up to ``longest`` tokens, a row of ``n`` starts at slot
    ``longest - n``. After a ragged prompt every row then writes its next token into the same slot, so that a decode
    step stores each layer's keys with one slice copy and attends with no mask but :attr:`key_mask`, the fixed
    ``(B, 1, 1, max_length)`` mask of the slots at or after each row's start (None while every row starts at slot
    0). Slots are zero-initialised so that masked slots are finite.
    """

    def __init__(self, config: TransformerConfig, batch_size: int, max_length: int, *,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        shape = (config.n_layers, batch_size, config.n_kv_heads, max_length, config.head_dim)
        self.keys = torch.zeros(shape, device=device, dtype=dtype)
        self.values = torch.zeros(shape, device=device, dtype=dtype)
        self.starts = [0] * batch_size
        self.ends = [0] * batch_size
        self.key_mask: torch.Tensor | None = None

    @property
    def max_length(self) -> int:
        return self.keys.shape[3]

    @property
    def lengths(self) -> list[int]:
        """Tokens cached per row."""
        return [end - start for start, end in zip(self.starts, self.ends)]

    def update(self, layer: int, keys: torch.Tensor, values: torch.Tensor,
               layout: RaggedLayout) -> tuple[torch.Tensor, torch.Tensor]:
        """Store packed ``(N, kv_heads, head_dim)`` keys/values in their rows' slots; return the layer's
        ``(B, kv_heads, key_length, head_dim)`` keys and values, old and new."""
        if layout.first_slot is not None:  # every row writes the same slots
            slots = slice(layout.first_slot, layout.first_slot + layout.longest)
            self.keys[layer, :, :, slots] = layout.pad(keys)
            self.values[layer, :, :, slots] = layout.pad(values)
        else:
            self.keys[layer][layout.row, :, layout.slots] = keys
            self.values[layer][layout.row, :, layout.slots] = values
        return self.keys[layer, :, :, : layout.key_length], self.values[layer, :, :, : layout.key_length]

    def commit(self, layout: RaggedLayout) -> None:
        """Record the tokens of ``layout`` as cached (after every layer has stored them)."""
        if layout.prefill:
            self.starts = layout.starts
            if any(self.starts):
                slots = torch.arange(self.max_length, device=self.keys.device)
                starts = torch.tensor(self.starts, device=self.keys.device)
                self.key_mask = (slots >= starts[:, None])[:, None, None]
        self.ends = layout.ends


class RaggedLayout:
    """Where each packed token sits in a ``(B, longest)`` batch and in the cache, and whom it attends to.

    ``seqlens[b]`` new tokens of row ``b`` continue the ``cache.lengths[b]`` cached ones (none without a cache):
    new token ``i`` has RoPE position ``lengths[b] + i`` and attends to its own row's tokens up to itself.

    - No cache, or an empty one (``prefill``): attention runs over the new tokens alone, right-padded, with plain
      causal masking (exact for ragged rows: a valid query never reaches the padded keys), and the cache stores
      them right-aligned (:class:`KVCache`).
    - Into a filled cache where every row continues from the same slot with the same number of tokens (always so
      when decoding after one prefill): one slice per layer, and for one token per row no mask but the cache's
      fixed ``key_mask``; several tokens per row add causality among them.
    - Otherwise (ragged chunks): each token goes to its own slot and a ``(B, 1, longest, key_length)`` mask gives
      every query its row's slots ``starts[b] … ends[b] + i``; padded query slots see finite keys, never NaN.
    """

    def __init__(self, seqlens: Sequence[int], device: torch.device, cache: KVCache | None = None) -> None:
        self.batch_size = len(seqlens)
        self.longest = max(seqlens)
        self.uniform = len(set(seqlens)) == 1  # packed order is then a (B, longest) row-major view
        lengths = torch.tensor(seqlens)
        rows = torch.repeat_interleave(torch.arange(self.batch_size), lengths)
        self.row = rows.to(device)
        self.column = (torch.arange(len(rows)) - (lengths.cumsum(0) - lengths)[rows]).to(device)
        self.prefill = cache is None or not any(cache.ends)
        self.mask: torch.Tensor | None = None
        self.is_causal = False
        if self.prefill:
            self.positions = self.column
            self.is_causal = self.longest > 1
            self.starts = [self.longest - n for n in seqlens]
            self.ends = [self.longest] * self.batch_size
            self.first_slot = 0 if self.uniform else None
            self.key_length = self.longest
            if not self.uniform:
                self.slots = self.column + torch.tensor(self.starts, device=device)[self.row]
            return

        starts, past = cache.starts, cache.ends
        self.ends = [end + n for end, n in zip(past, seqlens)]
        self.key_length = max(self.ends)
        self.positions = self.column + torch.tensor(cache.lengths, device=device)[self.row]
        aligned = self.uniform and len(set(past)) == 1
        self.first_slot = past[0] if aligned else None
        if not aligned:
            self.slots = self.column + torch.tensor(past, device=device)[self.row]
        if aligned and self.longest == 1:
            if cache.key_mask is not None:
                self.mask = cache.key_mask[..., : self.key_length]
            return
        slots = torch.arange(self.key_length, device=device)
        last = torch.tensor(past, device=device)[:, None] + torch.arange(self.longest, device=device)
        first = torch.tensor(starts, device=device)[:, None, None]
        self.mask = ((slots >= first) & (slots <= last[..., None]))[:, None]

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Packed ``(N, heads, d)`` → ``(B, heads, longest, d)``."""
        if self.uniform:
            return x.view(self.batch_size, self.longest, *x.shape[1:]).transpose(1, 2)
        out = x.new_zeros(self.batch_size, self.longest, *x.shape[1:])
        out[self.row, self.column] = x
        return out.transpose(1, 2)

    def unpad(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, heads, longest, d)`` → packed ``(N, heads, d)``."""
        x = x.transpose(1, 2)
        return x.reshape(-1, *x.shape[2:]) if self.uniform else x[self.row, self.column]


class Attention(nn.Module):
    """Grouped-query causal self-attention with RoPE, scale ``head_dim ** -0.5``, no biases."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.n_kv_heads, config.head_dim
        self.wq = Linear(config.dim, config.n_heads * config.head_dim, bias=False)
        self.wk = Linear(config.dim, config.n_kv_heads * config.head_dim, bias=False)
        self.wv = Linear(config.dim, config.n_kv_heads * config.head_dim, bias=False)
        self.wo = Linear(config.n_heads * config.head_dim, config.dim, bias=False)

    def forward(self, x: torch.Tensor, phases: torch.Tensor, layout: RaggedLayout,
                cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        n = x.shape[0]
        q = apply_rotary(self.wq(x).view(n, self.n_heads, self.head_dim), phases)
        k = apply_rotary(self.wk(x).view(n, self.n_kv_heads, self.head_dim), phases)
        v = self.wv(x).view(n, self.n_kv_heads, self.head_dim)
        if cache is not None:
            cached_k, cached_v = cache.update(layer, k, v, layout)
        if layout.prefill:
            k, v = layout.pad(k), layout.pad(v)
        else:
            k, v = cached_k, cached_v
        # enable_gqa: query head h reads kv head h // (n_heads // n_kv_heads), the original's repeat_interleave
        # without copying the cache
        out = F.scaled_dot_product_attention(layout.pad(q), k, v, attn_mask=layout.mask, is_causal=layout.is_causal,
                                             enable_gqa=self.n_kv_heads != self.n_heads)
        return self.wo(layout.unpad(out).reshape(n, -1))


class TransformerBlock(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.attention = Attention(config)
        self.feed_forward = FeedForward(config.dim, config.hidden_dim)
        self.attention_norm = RMSNorm(config.dim, config.norm_eps)
        self.ffn_norm = RMSNorm(config.dim, config.norm_eps)

    def forward(self, x: torch.Tensor, phases: torch.Tensor, layout: RaggedLayout,
                cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        h = x + self.attention(self.attention_norm(x), phases, layout, cache, layer)
        return h + self.feed_forward(self.ffn_norm(h))


# ------------------------------------------------------------------------------------------ model
class Transformer(nn.Module):
    """Decoder-only transformer over packed sequences; see the module docstring."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(TransformerBlock(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.output = Linear(config.dim, config.vocab_size, bias=config.output_bias)

    def new_cache(self, batch_size: int, max_length: int) -> KVCache:
        """An empty :class:`KVCache` on this model's device and dtype."""
        weight = self.tok_embeddings.weight
        return KVCache(self.config, batch_size, min(max_length, self.config.max_positions),
                       device=weight.device, dtype=weight.dtype)

    def forward(self, input_ids: torch.Tensor, seqlens: Sequence[int],
                cache: KVCache | None = None) -> torch.Tensor:
        """Float32 logits ``(N, vocab_size)`` for packed ``input_ids`` ``(N,)`` made of sequences of ``seqlens``
        tokens; with ``cache``, each sequence continues that row of the cache (one per row, ``len(seqlens)`` = the
        cache's batch size) and is appended to it."""
        seqlens = [int(n) for n in seqlens]
        if input_ids.ndim != 1 or sum(seqlens) != input_ids.shape[0]:
            raise InputError(f"input_ids must be 1-D and packed: shape {tuple(input_ids.shape)} does not hold "
                             f"sum(seqlens) = {sum(seqlens)} tokens")
        if not seqlens or min(seqlens) < 1:
            raise InputError(f"seqlens must be a non-empty list of lengths >= 1, got {seqlens}")
        if input_ids.is_floating_point() or input_ids.is_complex():
            raise InputError(f"input_ids must be integer token ids, got dtype {input_ids.dtype}")
        if ((input_ids < 0) | (input_ids >= self.config.vocab_size)).any():
            bad = input_ids[(input_ids < 0) | (input_ids >= self.config.vocab_size)].unique().tolist()
            raise InputError(f"token ids {bad[:10]} lie outside this model's vocabulary [0, {self.config.vocab_size})")
        past = [0] * len(seqlens) if cache is None else cache.lengths
        if cache is not None and len(seqlens) != len(past):
            raise InputError(f"the cache holds {len(past)} rows but {len(seqlens)} seqlens were given")
        totals = [p + n for p, n in zip(past, seqlens)]
        if max(totals) > self.config.max_positions:
            raise InputError(f"a sequence would reach {max(totals)} tokens; this model handles at most "
                             f"{self.config.max_positions} positions")

        layout = RaggedLayout(seqlens, input_ids.device, cache)
        if cache is not None and max(layout.ends) > cache.max_length:
            raise InputError(f"the cache holds {cache.max_length} slots per row and these tokens would need "
                             f"{max(layout.ends)} (rows are right-aligned at the first call: make the cache longer)")
        phases = rotary_phases(layout.positions, self.config.head_dim, self.config.rope_theta)
        h = self.tok_embeddings(input_ids)
        for i, layer in enumerate(self.layers):
            h = layer(h, phases, layout, cache, i)
        if cache is not None:
            cache.commit(layout)
        return self.output(self.norm(h)).float()


# ------------------------------------------------------------------------------------------ decoding
class IncrementalDecoder:
    """Feeds rows to a :class:`Transformer` piece by piece; each call returns every row's next-token logits.

    With ``use_cache=True`` new tokens go through a :class:`KVCache` (cost ∝ new tokens); with ``False`` every call
    re-runs each row's whole sequence so far — the plain reference that the cache must equal.

    ``decoder(input_ids, seqlens)``: packed new tokens, ``seqlens[b] >= 1`` of them for row ``b`` → ``(B, vocab)``
    float32 logits after each row's last token.
    """

    def __init__(self, model: Transformer, batch_size: int, max_length: int, use_cache: bool = True) -> None:
        self.model = model
        self.cache = model.new_cache(batch_size, max_length) if use_cache else None
        self.rows: list[torch.Tensor] = [torch.zeros(0, dtype=torch.long)] * batch_size

    def __call__(self, input_ids: torch.Tensor, seqlens: Sequence[int]) -> torch.Tensor:
        seqlens = [int(n) for n in seqlens]
        if self.cache is None:
            pieces = input_ids.split(seqlens)
            self.rows = [torch.cat([row.to(input_ids.device), piece]) for row, piece in zip(self.rows, pieces)]
            input_ids, seqlens = torch.cat(self.rows), [len(row) for row in self.rows]
        logits = self.model(input_ids, seqlens, self.cache)
        last = torch.tensor(seqlens).cumsum(0) - 1
        return logits[last.to(logits.device)]


def sample_top_p(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """Next token ids ``(B,)`` from logits ``(B, vocab)``: argmax if ``temperature <= 0``; otherwise nucleus
    sampling exactly as ELLA-V's (Mistral's reference) sampler, so seeded runs draw the same tokens:
    ``softmax(logits / temperature)`` in float32, sorted descending, entries whose preceding mass already exceeds
    ``top_p`` zeroed, renormalised, then ONE ``torch.multinomial`` call for the whole batch. ``top_p=0`` keeps only
    the most likely token (but still draws from the RNG)."""
    if not 0.0 <= top_p <= 1.0:
        raise InputError(f"top_p must lie in [0, 1], got {top_p}")
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    probs_sorted, order = torch.sort(probs, dim=-1, descending=True)
    probs_sorted[probs_sorted.cumsum(-1) - probs_sorted > top_p] = 0.0
    probs_sorted.div_(probs_sorted.sum(-1, keepdim=True))
    return order.gather(-1, torch.multinomial(probs_sorted, num_samples=1)).squeeze(-1)
