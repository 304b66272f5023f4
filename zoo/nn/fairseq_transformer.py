"""fairseq's Transformer decoder blocks (``fairseq/models/transformer/transformer_decoder.py``,
``fairseq/modules/{transformer_layer,multihead_attention,sinusoidal_positional_embedding}.py``) for inference, with a
preallocated KV cache for incremental decoding.

One pre-LN decoder layer (``decoder_normalize_before=True``, which ``transformer_lm`` always forces)::

    x = x + out_proj(attention(q_proj(LN1 x), k_proj(LN1 x), v_proj(LN1 x)))     # causal, scale head_dim ** -0.5
    x = x + fc2(activation(fc1(LN2 x)))                                          # LayerNorm eps 1e-5

Parameter names are fairseq's (``self_attn.{q,k,v,out}_proj``, ``self_attn_layer_norm``, ``fc1``, ``fc2``,
``final_layer_norm``), so checkpoints map one to one. Tensors are batch-first ``(B, T, C)``.

Positions are fairseq's sinusoidal table (:func:`sinusoidal_table`): row ``p`` is ``[sin(p·f), cos(p·f)]``
*concatenated* (not interleaved), ``f_i = exp(-i·ln(10000)/(d/2 - 1))``; row ``padding_idx`` is zero and tokens
count from ``padding_idx + 1`` (:func:`make_positions`).

Incremental decoding: fairseq's ``incremental_state`` concatenates every step's keys onto the cached ones and
re-indexes the whole cache after every step (``reorder_incremental_state``). :class:`KVCache` instead writes into
buffers allocated once and reorders only when the order changes, which gives the same numbers.

Example::

    >>> import torch
    >>> layer = DecoderLayer(embed_dim=16, ffn_embed_dim=32, heads=4).eval()
    >>> x = torch.randn(2, 5, 16)
    >>> full = layer(x, is_causal=True)
    >>> cache = KVCache(layers=1, rows=2, heads=4, max_length=5, head_dim=4)
    >>> steps = [layer(x[:, :3], is_causal=True, cache=cache)]; cache.advance(3)     # prefill
    >>> for t in (3, 4):                                                             # one token at a time
    ...     steps.append(layer(x[:, t:t + 1], cache=cache)); cache.advance(1)
    >>> torch.allclose(torch.cat(steps, 1), full, atol=1e-6)
    True
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .precision import LayerNorm


def _gelu_accurate(x: torch.Tensor) -> torch.Tensor:
    """fairseq's ``gelu_accurate``: the tanh approximation, with its own formula."""
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * torch.pow(x, 3))))


#: fairseq ``activation_fn`` names and their functions (``gelu`` is the exact erf form, computed in float32;
#: ``swish`` is left out: fairseq returns the ``SiLU`` class there, which cannot run).
ACTIVATIONS = {
    "relu": F.relu,
    "gelu": lambda x: F.gelu(x.float()).type_as(x),
    "gelu_accurate": _gelu_accurate,
    "gelu_fast": _gelu_accurate,  # fairseq's deprecated name of gelu_accurate
    "relu_squared": lambda x: F.relu(x).pow(2),
    "tanh": torch.tanh,
    "linear": lambda x: x,
}


def sinusoidal_table(num_positions: int, dim: int, padding_idx: int) -> torch.Tensor:
    """fairseq's ``SinusoidalPositionalEmbedding.get_embedding``: float32 ``(num_positions, dim)``, the same
    float32 operations in the same order (so the same bits)."""
    half = dim // 2
    step = math.log(10000) / (half - 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.float) * -step)
    angles = torch.arange(num_positions, dtype=torch.float).unsqueeze(1) * freqs.unsqueeze(0)
    table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1).view(num_positions, -1)
    if dim % 2:
        table = torch.cat([table, torch.zeros(num_positions, 1)], dim=1)
    table[padding_idx] = 0
    return table


def make_positions(tokens: torch.Tensor, padding_idx: int) -> torch.Tensor:
    """fairseq's ``utils.make_positions``: non-pad tokens are numbered from ``padding_idx + 1`` (counting only
    non-pad tokens), pads get ``padding_idx``."""
    mask = tokens.ne(padding_idx).int()
    return (torch.cumsum(mask, dim=1).type_as(mask) * mask).long() + padding_idx


class PositionalEmbedding(nn.Module):
    """fairseq's ``PositionalEmbedding`` of positions from :func:`make_positions` → ``(..., dim)``. Sinusoidal: no
    parameters, any position (the table grows on demand, as fairseq's); learned: ``weight`` of ``max_positions +
    padding_idx + 1`` rows (initialised as fairseq's: N(0, 1/dim), a zero padding row), a larger position is an
    :class:`InputError`."""

    def __init__(self, max_positions: int, dim: int, padding_idx: int, learned: bool) -> None:
        super().__init__()
        self.dim, self.padding_idx, self.learned = dim, padding_idx, learned
        if learned:
            weight = torch.empty(max_positions + padding_idx + 1, dim).normal_(std=dim ** -0.5)
            weight[padding_idx] = 0
            self.weight = nn.Parameter(weight)
        else:
            self.register_buffer("table", sinusoidal_table(max_positions + padding_idx + 1, dim, padding_idx),
                                 persistent=False)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        needed = int(positions.max()) + 1 if positions.numel() else 0
        if self.learned:
            if needed > self.weight.shape[0]:
                raise InputError(f"position {needed - 1 - self.padding_idx} exceeds the "
                                 f"{self.weight.shape[0] - self.padding_idx - 1} learned positions of this model")
            return F.embedding(positions, self.weight)
        if needed > self.table.shape[0]:
            self.table = sinusoidal_table(needed, self.dim, self.padding_idx).to(self.table.device)
        return self.table[positions]


class KVCache:
    """Keys and values of every layer for ``rows`` sequences of up to ``max_length`` tokens, all rows of equal
    length (``length`` cached tokens each), as in fairseq's generators where every hypothesis advances one token
    per step. Slots past ``length`` are never read."""

    def __init__(self, layers: int, rows: int, heads: int, max_length: int, head_dim: int, *,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        shape = (layers, rows, heads, max_length, head_dim)
        self.keys = torch.empty(shape, device=device, dtype=dtype)
        self.values = torch.empty(shape, device=device, dtype=dtype)
        self.length = 0

    @property
    def rows(self) -> int:
        return self.keys.shape[1]

    @property
    def max_length(self) -> int:
        return self.keys.shape[3]

    def write(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``(rows, heads, n, head_dim)`` new keys/values after the cached ones; return the layer's keys and
        values so far, ``(rows, heads, length + n, head_dim)``. Call :meth:`advance` once all layers are done."""
        end = self.length + keys.shape[2]
        if end > self.max_length:
            raise InputError(f"the KV cache holds {self.max_length} positions; {end} were asked for")
        self.keys[layer, :, :, self.length:end] = keys
        self.values[layer, :, :, self.length:end] = values
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]

    def advance(self, n: int) -> None:
        self.length += n

    def reorder(self, order: torch.Tensor) -> None:
        """Keep rows ``order`` (1-D; rows may repeat or be dropped): fairseq's ``reorder_incremental_state``.
        Only the cached positions of the rows that change are copied (beams mostly continue themselves)."""
        order = order.to(self.keys.device)
        if order.numel() != self.rows:  # rows leave or are duplicated: new buffers
            shape = (self.keys.shape[0], order.numel(), *self.keys.shape[2:])
            keys, values = self.keys.new_empty(shape), self.values.new_empty(shape)
            keys[:, :, :, :self.length] = self.keys[:, order, :, :self.length]
            values[:, :, :, :self.length] = self.values[:, order, :, :self.length]
            self.keys, self.values = keys, values
            return
        changed = order.ne(torch.arange(self.rows, device=order.device)).nonzero().squeeze(1)
        if changed.numel():
            source = order[changed]
            self.keys[:, changed, :, :self.length] = self.keys[:, source, :, :self.length]
            self.values[:, changed, :, :self.length] = self.values[:, source, :, :self.length]


class MultiheadAttention(nn.Module):
    """fairseq's self-attention: ``q/k/v/out`` projections with biases, ``heads`` heads, scale ``head_dim ** -0.5``."""

    def __init__(self, embed_dim: int, heads: int) -> None:
        super().__init__()
        if embed_dim % heads:
            raise InputError(f"embed_dim {embed_dim} is not a multiple of the {heads} attention heads")
        self.heads = heads
        self.head_dim = embed_dim // heads
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], self.heads, self.head_dim).transpose(1, 2)

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected keys and values of ``x`` ``(B, S, C)``, each ``(B, heads, S, head_dim)``."""
        return self._heads(self.k_proj(x)), self._heads(self.v_proj(x))

    def attend(self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
               attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        """``query`` ``(B, T, C)`` (before ``q_proj``) against projected ``keys``/``values`` ``(B, heads, S, d)``
        from any source (cross-attention, a cache)."""
        out = F.scaled_dot_product_attention(self._heads(self.q_proj(query)), keys, values, attn_mask=attn_mask,
                                             is_causal=is_causal)
        return self.out_proj(out.transpose(1, 2).reshape(query.shape))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False,
                cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        """``x`` ``(B, T, C)``. ``attn_mask``: bool ``(B, 1, T, S)``, True where a query may attend; or
        ``is_causal``. With ``cache``, the ``T`` new tokens follow the cached ones (``S = cached + T``) and
        attend causally to all of them."""
        k, v = self.keys_values(x)
        if cache is not None:
            past = cache.length
            k, v = cache.write(layer, k, v)
            if past and x.shape[1] > 1:  # new tokens after cached ones: causal with an offset
                query_pos = past + torch.arange(x.shape[1], device=x.device)
                attn_mask = torch.arange(k.shape[2], device=x.device) <= query_pos[:, None]
                is_causal = False
            elif past:  # one new token sees everything cached
                is_causal = False
        return self.attend(x, k, v, attn_mask, is_causal)


class DecoderLayer(nn.Module):
    """fairseq's ``TransformerDecoderLayer`` without encoder attention: pre-LN (see the module docstring), or with
    ``normalize_before=False`` post-LN, ``x = LN1(x + attn(x)); x = LN2(x + fc2(activation(fc1(x))))`` (what
    ``--arch transformer_lm`` builds in hydra-era fairseq, whose dataclass default is post-LN)."""

    def __init__(self, embed_dim: int, ffn_embed_dim: int, heads: int, activation_fn: str = "relu",
                 normalize_before: bool = True) -> None:
        super().__init__()
        if activation_fn not in ACTIVATIONS:
            raise InputError(f"activation_fn {activation_fn!r} is not one of {sorted(ACTIVATIONS)}")
        self.activation = ACTIVATIONS[activation_fn]
        self.normalize_before = normalize_before
        self.self_attn = MultiheadAttention(embed_dim, heads)
        self.self_attn_layer_norm = LayerNorm(embed_dim)
        self.fc1 = nn.Linear(embed_dim, ffn_embed_dim)
        self.fc2 = nn.Linear(ffn_embed_dim, embed_dim)
        self.final_layer_norm = LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False,
                cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        if not self.normalize_before:
            return self.feed_forward(self.self_attn_layer_norm(x + self.self_attn(x, attn_mask, is_causal, cache,
                                                                                  layer)))
        return self.feed_forward(x + self.self_attn(self.self_attn_layer_norm(x), attn_mask, is_causal, cache, layer))

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x + fc2(activation(fc1(final_layer_norm(x))))`` (post-LN: ``final_layer_norm(x + fc2(...(x)))``)."""
        if not self.normalize_before:
            return self.final_layer_norm(x + self.fc2(self.activation(self.fc1(x))))
        return x + self.fc2(self.activation(self.fc1(self.final_layer_norm(x))))


# ------------------------------------------------------------------------------------------ fairseq's training graph
def fairseq_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """fairseq's ``FairseqDropout``: ``F.dropout`` in training when ``p > 0``; otherwise no op (no random draw)."""
    return F.dropout(x, p=p, training=True) if training and p > 0 else x


def future_mask(length: int, like: torch.Tensor) -> torch.Tensor:
    """fairseq's ``buffered_future_mask``: float ``(T, T)``, ``-inf`` above the diagonal, 0 elsewhere."""
    return torch.triu(torch.zeros(length, length).fill_(float("-inf")), 1).to(like)


def fairseq_attention(attn: MultiheadAttention, query: torch.Tensor, key: torch.Tensor,
                      attn_mask: torch.Tensor | None, key_padding_mask: torch.Tensor | None, dropout: float = 0.0,
                      training: bool = False) -> torch.Tensor:
    """fairseq's ``MultiheadAttention.forward`` without incremental state — what it runs in training and
    validation: ``F.multi_head_attention_forward`` on time-first ``query`` ``(T, B, C)`` and ``key`` (= value)
    ``(S, B, C)``, with the q/k/v biases concatenated, separate projection weights, ``need_weights=False``;
    ``attn_mask`` additive ``(T, S)``, ``key_padding_mask`` bool ``(B, S)`` (True at pads; passed as the additive
    mask torch makes of it). The same torch function with the same arguments gives fairseq's forward and backward
    bit for bit (e.g. the key bias's gradient, 0 in exact arithmetic, is float rounding that only the same op graph
    reproduces)."""
    if key_padding_mask is not None:
        key_padding_mask = torch.zeros(key_padding_mask.shape, dtype=query.dtype,
                                       device=query.device).masked_fill_(key_padding_mask, float("-inf"))
    return F.multi_head_attention_forward(
        query, key, key, attn.heads * attn.head_dim, attn.heads, torch.empty([0]),
        torch.cat((attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias)), None, None, False, dropout,
        attn.out_proj.weight, attn.out_proj.bias, training, key_padding_mask, False, attn_mask,
        use_separate_proj_weight=True, q_proj_weight=attn.q_proj.weight, k_proj_weight=attn.k_proj.weight,
        v_proj_weight=attn.v_proj.weight)[0]


def fairseq_attention_block(attn: MultiheadAttention, norm: nn.LayerNorm, normalize_before: bool, x: torch.Tensor,
                            key: torch.Tensor | None, attn_mask: torch.Tensor | None,
                            key_padding_mask: torch.Tensor | None, dropout: float, attention_dropout: float,
                            training: bool) -> torch.Tensor:
    """``residual + dropout(attention(x → key))`` with fairseq's layer norm placement (``key`` None:
    self-attention on the (normalised) ``x``)."""
    residual = x
    if normalize_before:
        x = norm(x)
    x = fairseq_attention(attn, x, x if key is None else key, attn_mask, key_padding_mask, attention_dropout,
                          training)
    x = residual + fairseq_dropout(x, dropout, training)
    return x if normalize_before else norm(x)


def fairseq_feed_forward(layer: DecoderLayer, x: torch.Tensor, dropout: float, activation_dropout: float,
                         training: bool) -> torch.Tensor:
    """``residual + dropout(fc2(activation_dropout(activation(fc1(x)))))`` with fairseq's layer norm placement."""
    residual = x
    if layer.normalize_before:
        x = layer.final_layer_norm(x)
    x = fairseq_dropout(layer.activation(layer.fc1(x)), activation_dropout, training)
    x = residual + fairseq_dropout(layer.fc2(x), dropout, training)
    return x if layer.normalize_before else layer.final_layer_norm(x)


def fairseq_decoder_layer(layer: DecoderLayer, x: torch.Tensor, attn_mask: torch.Tensor | None,
                          key_padding_mask: torch.Tensor | None, dropout: float = 0.0, attention_dropout: float = 0.0,
                          activation_dropout: float = 0.0, training: bool = False) -> torch.Tensor:
    """fairseq's ``TransformerDecoderLayerBase.forward`` (no encoder) on time-first ``x`` ``(T, B, C)``, op for op
    and in its order of random draws: attention (attention dropout inside), dropout, residual, feed-forward
    (activation dropout after the activation), dropout, residual; layer norms before (pre-LN) or after."""
    x = fairseq_attention_block(layer.self_attn, layer.self_attn_layer_norm, layer.normalize_before, x, None,
                                attn_mask, key_padding_mask, dropout, attention_dropout, training)
    return fairseq_feed_forward(layer, x, dropout, activation_dropout, training)
