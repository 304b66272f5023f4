"""The wav2vec 2.0 backbone that wav2vec 2.0, HuBERT and WavLM share: a strided conv stack turns 16 kHz audio
into 50 Hz frames (each sees 400 samples, hop 320 for the released stacks); LayerNorm + Linear project them to
``embed_dim``; a grouped positional conv is added; then transformer blocks, pre-LN (Large) or post-LN (Base).
WavLM adds a relative position bias — one table owned by the encoder, shared by every block and re-gated per
block and query — which the others lack (``relative_position_bias=None``).

The models (``zoo.models.wavlm``, ``zoo.models.hubert``) are :class:`Wav2Vec2Backbone` s built from these blocks,
so the parameter names and the arithmetic are the same for all three.

Beyond the originals: ragged batches (``lengths``), with every item's features equal to its unbatched features
in both extractor modes (GroupNorm statistics over each item's own frames, padded keys masked, zeros under the
positional conv past an item's end); attention through ``scaled_dot_product_attention``, in blocks of query
rows so that memory stays linear in the length; a LayerNorm conv stack run in 10 s segments.

Example::

    >>> import torch
    >>> from torch import nn
    >>> class Tiny(Wav2Vec2Backbone, nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.build_backbone(conv_layers=((32, 10, 5),) + ((32, 3, 2),) * 4 + ((32, 2, 2),) * 2,
    ...                             extractor_mode="default", conv_bias=False, project_features=True,
    ...                             embed_dim=48, num_layers=2, num_heads=4, ffn_dim=96, layer_norm_first=False,
    ...                             pos_conv_kernel=16, pos_conv_groups=4)
    >>> features, _ = Tiny().eval()(torch.randn(1, 16000), output_layer=1)   # 1 s -> 49 frames
    >>> features.shape
    torch.Size([1, 49, 48])
"""
from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..errors import ConfigError, InputError
from .precision import KeepFloat32, LayerNorm
from .ragged import conv_output_length, valid_mask

#: Frames the conv stack computes at once when its norms are frame-local (10 s at 50 Hz): its first block makes
#: C × N/5 values, so whole chunks would dominate the memory of long audio.
CONV_SEGMENT_FRAMES = 500
#: Every LayerNorm and GroupNorm of the three models.
NORM_EPS = 1e-5
#: Query rows per attention block are chosen so that one block's logits hold at most this many values
#: (128 MiB in float32): memory stays linear in the length, whatever the batch and length.
ATTENTION_BLOCK_VALUES = 1 << 25
#: The original ``extractor_mode`` values: LayerNorm over channels in every conv block ("layer_norm", Large), or
#: GroupNorm over time in block 0 only ("default", Base).
EXTRACTOR_MODES = ("layer_norm", "default")


# ------------------------------------------------------------------------------------------ conv feature extractor
class ChannelLayerNorm(KeepFloat32, nn.LayerNorm):
    """LayerNorm over the channels of ``(B, C, T)``, computed in float32 (the original's Fp32LayerNorm). Each
    frame is normalised alone, so ``lengths`` (taken for a uniform interface with :class:`TimeGroupNorm`) is not
    needed."""

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        y = F.layer_norm(x.transpose(1, 2).float(), self.normalized_shape, self.weight.float(), self.bias.float(),
                         self.eps)
        return y.transpose(1, 2).type_as(x)


class TimeGroupNorm(KeepFloat32, nn.GroupNorm):
    """GroupNorm(C, C) of ``(B, C, T)``: each channel normalised over time, per utterance, in float32.

    With ``lengths`` only each item's first ``lengths[b]`` frames count, so an item padded in a batch gets the
    statistics of the item alone (the original and transformers let the padding shift them).
    """

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        x32 = x.float()
        if lengths is None:
            return F.group_norm(x32, self.num_groups, self.weight.float(), self.bias.float(), self.eps).type_as(x)
        valid = valid_mask(lengths, x.shape[-1], x.device)[:, None, :]
        count = lengths[:, None, None].to(x32)
        centered = x32 - (x32 * valid).sum(-1, keepdim=True) / count
        var = (centered * valid).square().sum(-1, keepdim=True) / count
        y = centered * torch.rsqrt(var + self.eps)
        return (y * self.weight.float()[:, None] + self.bias.float()[:, None]).type_as(x)


class ConvBlock(nn.Module):
    """Conv1d (no padding) → optional norm → exact GELU."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, *, bias: bool,
                 norm: nn.Module | None) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel, stride=stride, bias=bias)
        self.norm = norm

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return conv_output_length(lengths, self.conv.kernel_size[0], self.conv.stride[0])

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x, lengths)
        return F.gelu(x)


class ConvFeatureExtractor(nn.Module):
    """Waveforms ``(B, N)`` → frames ``(B, C, T)``; frame t only sees samples ``[t·hop, t·hop + receptive_field)``,
    so frames inside an item never see its padding."""

    def __init__(self, conv_layers: Sequence[tuple[int, int, int]], extractor_mode: str, conv_bias: bool) -> None:
        super().__init__()
        if extractor_mode not in EXTRACTOR_MODES:
            raise ConfigError(f"extractor_mode must be one of {EXTRACTOR_MODES}, got {extractor_mode!r}")
        blocks = []
        in_channels = 1
        for i, (channels, kernel, stride) in enumerate(conv_layers):
            if extractor_mode == "layer_norm":
                norm = ChannelLayerNorm(channels, eps=NORM_EPS)
            else:
                norm = TimeGroupNorm(channels, channels, eps=NORM_EPS) if i == 0 else None
            blocks.append(ConvBlock(in_channels, channels, kernel, stride, bias=conv_bias, norm=norm))
            in_channels = channels
        self.blocks = nn.ModuleList(blocks)
        # GroupNorm ("default") normalises over the whole utterance; LayerNorm over each frame's channels alone.
        self.frame_local = extractor_mode == "layer_norm"
        self.hop_length = math.prod(stride for _, _, stride in conv_layers)
        self.receptive_field = 1 + sum((kernel - 1) * math.prod(s for _, _, s in conv_layers[:i])
                                       for i, (_, kernel, _) in enumerate(conv_layers))

    def num_frames(self, num_samples: int) -> int:
        """Frames made of ``num_samples`` samples (0 if fewer than the receptive field)."""
        return max(0, conv_output_length(num_samples, self.receptive_field, self.hop_length))

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Frames ``(B, C, T)`` and, with ``lengths``, each item's frame count.

        With frame-local norms, long inputs run in segments of :data:`CONV_SEGMENT_FRAMES` frames, each from its
        own samples — the same computation per frame, but block 0 (C × N/5 values: 650 MB for 100 s of Large)
        never holds a whole input at once.
        """
        frames = self.num_frames(waveforms.shape[-1])
        frame_lengths = (None if lengths is None
                         else conv_output_length(lengths, self.receptive_field, self.hop_length))
        if not self.frame_local or frames <= CONV_SEGMENT_FRAMES:
            return self._run(waveforms, lengths), frame_lengths
        segments = [waveforms[:, first * self.hop_length: (last - 1) * self.hop_length + self.receptive_field]
                    for first, last in itertools.pairwise([*range(0, frames, CONV_SEGMENT_FRAMES), frames])]
        return torch.cat([self._run(segment, None) for segment in segments], dim=-1), frame_lengths

    def _run(self, waveforms: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        x = waveforms[:, None, :]
        for block in self.blocks:
            lengths = None if lengths is None else block.output_lengths(lengths)
            x = block(x, lengths)
        return x


# ------------------------------------------------------------------------------------------ transformer encoder
class PositionalConv(nn.Module):
    """The convolutional position embedding ``GELU(conv(x))`` of ``(B, T, D)``: a grouped conv with padding
    ``kernel // 2``, its weight norm (over dim 2) folded at conversion. An even kernel yields T + 1 outputs; like
    the original's SamePad we keep the first T."""

    def __init__(self, dim: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x.transpose(1, 2))[..., : x.shape[1]]
        return F.gelu(y).transpose(1, 2)


class RelativePositionBias(nn.Module):
    """The learned bias ``E[bucket(key − query), head]`` with T5's bidirectional log-spaced buckets: half of them
    for positive offsets; within a half, offsets below a quarter of the buckets are exact and larger ones share
    log-spaced buckets up to ``max_distance``."""

    def __init__(self, num_buckets: int, max_distance: int, num_heads: int) -> None:
        super().__init__()
        self.max_distance = max_distance
        self.embedding = nn.Embedding(num_buckets, num_heads)

    def bucket(self, offsets: torch.Tensor) -> torch.Tensor:
        """Bucket index of each key − query offset (same float32 arithmetic and truncation as the original)."""
        half = self.embedding.num_embeddings // 2
        exact = half // 2
        distance = offsets.abs()
        log_ratio = torch.log(distance.clamp(min=exact).float() / exact) / math.log(self.max_distance / exact)
        far = (exact + (log_ratio * (half - exact)).long()).clamp(max=half - 1)
        return (offsets > 0).long() * half + torch.where(distance < exact, distance, far)

    def forward(self, num_frames: int) -> torch.Tensor:
        """The bias of every offset ``−(T−1) … T−1`` per head, ``(H, 2T − 1)``: offset o in column o + T − 1."""
        offsets = torch.arange(1 - num_frames, num_frames, device=self.embedding.weight.device)
        return self.embedding(self.bucket(offsets)).T


def bias_rows(table: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Rows ``start:stop`` (queries) of the ``(H, T, T)`` bias that a :class:`RelativePositionBias` table
    ``(H, 2T − 1)`` stands for: ``bias[h, i, j] = table[h, j − i + T − 1]``.

    ``table.unfold`` views row k as ``table[:, k : k + T]``, the bias row of query ``T − 1 − k``; flipping the
    selected rows puts the queries in order (one strided copy, no index tensor).
    """
    num_frames = (table.shape[1] + 1) // 2
    return table.unfold(1, num_frames, 1)[:, num_frames - stop: num_frames - start].flip(1)


class SelfAttention(nn.Module):
    """Multi-head self-attention, ``softmax(q·k/√d)·v``; with WavLM's relative position bias the logits are
    ``q·k/√d + gate[b, h, i] · bias[h, i, j]`` (``gate`` = 1 when not ``gated``).

    WavLM's gate (the original's gru_rel_pos) comes from this block's input split into heads — not from q:
    ``a, b = sigmoid(sums of 4 of gate_proj's 8 outputs)``, ``gate = a · (b · gate_scale[h] − 1) + 2``.
    """

    def __init__(self, dim: int, num_heads: int, *, gated: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        if gated:
            self.gate_proj = nn.Linear(dim // num_heads, 8)
            self.gate_scale = nn.Parameter(torch.ones(1, num_heads, 1, 1))
        self.gated = gated

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, frames, _ = x.shape
        return x.view(batch, frames, self.num_heads, -1).transpose(1, 2)  # (B, H, T, d)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The per-query bias gate ``(B, H, T, 1)`` of this block's input ``x`` ``(B, T, D)``."""
        proj = self.gate_proj(self._heads(x))
        a, b = torch.sigmoid(proj.unflatten(-1, (2, 4)).sum(-1)).chunk(2, dim=-1)
        return a * (b * self.gate_scale - 1.0) + 2.0

    def forward(self, x: torch.Tensor, bias_table: torch.Tensor | None, key_mask: torch.Tensor | None
                ) -> torch.Tensor:
        """``x`` ``(B, T, D)``; ``bias_table`` ``(H, 2T − 1)`` or None; ``key_mask`` ``(B, 1, 1, T)`` additive
        (−inf at padded keys) or None."""
        batch, frames, dim = x.shape
        q, k, v = self._heads(self.q_proj(x)), self._heads(self.k_proj(x)), self._heads(self.v_proj(x))
        gate = self.gate(x) if self.gated and bias_table is not None else None
        rows = max(1, ATTENTION_BLOCK_VALUES // (batch * self.num_heads * frames))
        outputs = []
        for start in range(0, frames, rows):
            stop = min(start + rows, frames)
            mask = None
            if bias_table is not None:
                mask = bias_rows(bias_table, start, stop).to(x.dtype)[None]
                if gate is not None:
                    mask = gate[:, :, start:stop] * mask
            if key_mask is not None:
                mask = key_mask if mask is None else mask + key_mask
            # SDPA's default scale 1/√d applies to q·k only; the mask is added unscaled, as in the original.
            outputs.append(F.scaled_dot_product_attention(q[:, :, start:stop], k, v, attn_mask=mask))
        out = torch.cat(outputs, dim=2).transpose(1, 2).reshape(batch, frames, dim)
        return self.out_proj(out)


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x).float()).type_as(x))  # exact GELU in float32, as the original


class EncoderLayer(nn.Module):
    """One transformer block, pre-LN (Large) or post-LN (Base)."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, *, norm_first: bool, gated: bool) -> None:
        super().__init__()
        self.attention = SelfAttention(dim, num_heads, gated=gated)
        self.attention_norm = LayerNorm(dim, eps=NORM_EPS)
        self.feed_forward = FeedForward(dim, ffn_dim)
        self.feed_forward_norm = LayerNorm(dim, eps=NORM_EPS)
        self.norm_first = norm_first

    def forward(self, x: torch.Tensor, bias_table: torch.Tensor | None, key_mask: torch.Tensor | None
                ) -> torch.Tensor:
        if self.norm_first:
            x = x + self.attention(self.attention_norm(x), bias_table, key_mask)
            return x + self.feed_forward(self.feed_forward_norm(x))
        x = self.attention_norm(x + self.attention(x, bias_table, key_mask))
        return self.feed_forward_norm(x + self.feed_forward(x))


class Encoder(nn.Module):
    """Positional conv, then ``num_layers`` blocks; the final LayerNorm comes first in post-LN models and last
    (only when every block runs and no layer was asked for) in pre-LN ones, as in the originals.

    ``relative_position_bias`` ``(num_buckets, max_distance)`` adds WavLM's bias table (None: plain attention).
    """

    def __init__(self, dim: int, num_layers: int, num_heads: int, ffn_dim: int, *, norm_first: bool,
                 pos_conv_kernel: int, pos_conv_groups: int, relative_position_bias: tuple[int, int] | None = None,
                 gated: bool = False) -> None:
        super().__init__()
        self.pos_conv = PositionalConv(dim, pos_conv_kernel, pos_conv_groups)
        self.relative_position_bias = (None if relative_position_bias is None
                                       else RelativePositionBias(*relative_position_bias, num_heads))
        self.layers = nn.ModuleList(EncoderLayer(dim, num_heads, ffn_dim, norm_first=norm_first, gated=gated)
                                    for _ in range(num_layers))
        self.layer_norm = LayerNorm(dim, eps=NORM_EPS)
        self.norm_first = norm_first

    def num_blocks(self, output_layer: int | None) -> int:
        """Blocks to run for the original's ``output_layer``: L in 1..N stops after block L; None, 0, negative
        values and values above N all run every block (the original's quirk; above N, with a warning, since that
        is most likely a mistake such as layer 24 of a 12-block model)."""
        n = len(self.layers)
        if output_layer is not None and output_layer > n:
            warnings.warn(f"output layer {output_layer} of a {n}-block encoder: every block runs and the last "
                          f"one's output is returned (as the original does); pass a layer in 1..{n}", stacklevel=3)
        return output_layer if output_layer is not None and 1 <= output_layer <= n else n

    def forward(self, x: torch.Tensor, frame_lengths: torch.Tensor | None, output_layer: int | None
                ) -> torch.Tensor:
        batch, frames, _ = x.shape
        padded = key_mask = None
        if frame_lengths is not None:
            padded = ~valid_mask(frame_lengths, frames, x.device)  # (B, T)
            x = x.masked_fill(padded[..., None], 0.0)  # the positional conv sees zeros there, as past an item's end
            key_mask = torch.zeros(batch, 1, 1, frames, dtype=x.dtype, device=x.device)
            key_mask = key_mask.masked_fill(padded[:, None, None, :], float("-inf"))
        x = x + self.pos_conv(x)
        if not self.norm_first:
            x = self.layer_norm(x)
        bias_table = None if self.relative_position_bias is None else self.relative_position_bias(frames)
        for layer in self.layers[: self.num_blocks(output_layer)]:
            x = layer(x, bias_table, key_mask)
        if self.norm_first and output_layer is None:
            x = self.layer_norm(x)
        return x if padded is None else x.masked_fill(padded[..., None], 0.0)




# ------------------------------------------------------------------------------------------ the model body
class Wav2Vec2Backbone:
    """The model body, mixed into an ``nn.Module`` that calls :meth:`build_backbone` in its ``__init__``:
    waveforms ``(B, N)`` → features ``(B, T, embed_dim)`` (for the released conv stack,
    ``T = (N − 400) // 320 + 1``). The modules keep the names WavLM's converted weights use."""

    feature_extractor: ConvFeatureExtractor
    feature_norm: LayerNorm
    feature_projection: nn.Module
    encoder: Encoder

    def build_backbone(self, *, conv_layers: Sequence[tuple[int, int, int]], extractor_mode: str, conv_bias: bool,
                       project_features: bool, embed_dim: int, num_layers: int, num_heads: int, ffn_dim: int,
                       layer_norm_first: bool, pos_conv_kernel: int, pos_conv_groups: int,
                       relative_position_bias: tuple[int, int] | None = None, gated: bool = False) -> None:
        """Create the submodules. ``project_features``: the Linear from the conv channels to ``embed_dim``
        exists (the originals add it only when the two differ)."""
        conv_channels = conv_layers[-1][0]
        self.feature_extractor = ConvFeatureExtractor(conv_layers, extractor_mode, conv_bias)
        self.feature_norm = LayerNorm(conv_channels, eps=NORM_EPS)
        self.feature_projection = nn.Linear(conv_channels, embed_dim) if project_features else nn.Identity()
        self.encoder = Encoder(embed_dim, num_layers, num_heads, ffn_dim, norm_first=layer_norm_first,
                               pos_conv_kernel=pos_conv_kernel, pos_conv_groups=pos_conv_groups,
                               relative_position_bias=relative_position_bias, gated=gated)

    @property
    def hop_length(self) -> int:
        """Samples between frames (the product of the conv strides)."""
        return self.feature_extractor.hop_length

    @property
    def receptive_field(self) -> int:
        """Samples one frame sees."""
        return self.feature_extractor.receptive_field

    @property
    def num_layers(self) -> int:
        """Transformer blocks."""
        return len(self.encoder.layers)

    def num_frames(self, num_samples: int) -> int:
        """Frames the model makes of ``num_samples`` samples (0 if fewer than the receptive field)."""
        return self.feature_extractor.num_frames(num_samples)

    def conv_features(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The encoder input before the positional conv (the original's ``ret_conv=True``): ``(B, T, D)`` and
        the frame count of each item (None without ``lengths``)."""
        shortest = waveforms.shape[-1] if lengths is None else int(lengths.min())
        if self.num_frames(shortest) < 1:
            raise InputError(f"every item needs at least {self.receptive_field} samples for one frame; the "
                             f"shortest has {shortest}")
        frames, frame_lengths = self.feature_extractor(waveforms, lengths)
        return self.feature_projection(self.feature_norm(frames.transpose(1, 2))), frame_lengths

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None, *,
                output_layer: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Features of ``waveforms`` ``(B, N)``.

        ``lengths`` ``(B,)``: samples of each item; frames past an item's end are masked out of attention and
        returned as zeros, so each item's features equal its unbatched features. ``output_layer`` is 1-based as
        in the originals' ``extract_features``: L returns block L's output (no final LayerNorm, even for L = N);
        None runs every block and, for pre-LN models, applies the encoder's final LayerNorm; 0, negatives and
        values above N run every block without it. Returns ``(features (B, T, D), frame_lengths (B,) or None)``.
        """
        x, frame_lengths = self.conv_features(waveforms, lengths)
        return self.encoder(x, frame_lengths, output_layer), frame_lengths


# ------------------------------------------------------------------------------------------ long audio
@dataclass(frozen=True)
class Chunk:
    """A piece of one item that the model encodes on its own."""

    item: int          # row of the batch
    first_frame: int   # its frames are [first_frame, last_frame) of the item
    last_frame: int
    start: int         # its samples are [start, stop) of the item
    stop: int


def encode_chunks(model: Wav2Vec2Backbone, wav: torch.Tensor, chunks: Sequence[Chunk], layer: int | None, *,
                  num_frames: Sequence[int], progress: bool = False, desc: str = "chunks") -> torch.Tensor:
    """Features ``(B, T, D)`` of the items ``wav`` ``(B, N)`` from their ``chunks``, each encoded on its own (up to
    B chunks run as one ragged batch); ``num_frames`` gives each item's frame count, zeros fill the rest."""
    batch = wav.shape[0]
    features = wav.new_zeros(batch, max(num_frames), model.encoder.layer_norm.normalized_shape[0])
    groups = [chunks[i: i + batch] for i in range(0, len(chunks), batch)]
    for group in tqdm(groups, desc=desc, disable=not progress or len(groups) < 2):
        sizes = [chunk.stop - chunk.start for chunk in group]
        inputs = wav.new_zeros(len(group), max(sizes))
        for row, chunk in enumerate(group):
            inputs[row, : sizes[row]] = wav[chunk.item, chunk.start: chunk.stop]
        ragged = None if len(set(sizes)) == 1 else torch.tensor(sizes, device=wav.device)
        out, _ = model(inputs, ragged, output_layer=layer)
        for row, chunk in enumerate(group):
            features[chunk.item, chunk.first_frame: chunk.last_frame] = out[row, : chunk.last_frame - chunk.first_frame]
    return features
