"""WavLM (Chen et al. 2022, https://arxiv.org/abs/2110.13900): the self-supervised speech encoder whose layer-11
features DP-SLM quantises, as ``nicolvisser/WavLM-codebooks`` (a copy of Microsoft's ``unilm/wavlm`` code) runs it.

Architecture (eval mode): a strided conv stack turns 16 kHz audio into 50 Hz frames (each sees 400 samples, hop
320); LayerNorm + Linear project them to ``embed_dim``; a grouped positional conv is added; then ``num_layers``
transformer blocks whose self-attention adds a relative position bias — one table, owned by the encoder (block 0
in the original), shared by every block and re-gated per block and query by the block's own input.

Beyond the original: ragged batches (``lengths``), with every item's features equal to its unbatched features
in both extractor modes; attention through ``scaled_dot_product_attention``, in blocks of query rows so the
``(heads, T, T)`` bias is never held at once; a LayerNorm conv stack run in 10 s segments; and
:func:`extract_features` cuts long audio into chunks, so memory stays bounded for any length.

Example::

    >>> import torch
    >>> config = WavLMConfig(conv_layers=((32, 10, 5),) + ((32, 3, 2),) * 4 + ((32, 2, 2),) * 2,
    ...                      embed_dim=64, num_layers=2, num_heads=4, ffn_dim=128, pos_conv_kernel=16,
    ...                      pos_conv_groups=4)
    >>> model = WavLM(config).eval()
    >>> extract_features(model, torch.randn(1, 16000), 16000, layer=1).shape   # 1 s -> 50 frames
    torch.Size([50, 64])
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..audio import check_waveform, resample
from ..errors import AudioError, ConfigError, InputError
from ..modeling import PretrainedModel
from ..nn.ragged import Lengths, conv_output_length, valid_mask, zero_beyond
from ..registry import SourceFile, Weights

#: The sample rate every released WavLM reads.
SAMPLE_RATE = 16_000
#: The original helper's framing of the real conv stack: a frame sees 400 samples (25 ms) every 320 (20 ms).
RECEPTIVE_FIELD = 400
HOP_LENGTH = 320
#: Zeros the helper pads on BOTH sides, so frame t is centred on sample 320·t + 160 and T = N // 320.
EDGE_PADDING = (RECEPTIVE_FIELD - HOP_LENGTH) // 2
#: Shortest input (samples at 16 kHz) that gives one frame once padded.
MIN_SAMPLES = RECEPTIVE_FIELD - 2 * EDGE_PADDING
#: Default chunk length of :func:`extract_features` (as textlesslib's 100 s): the cost of attention grows with
#: the square of the length, so longer audio is encoded chunk by chunk.
CHUNK_SECONDS = 100.0
#: Frames the conv stack computes at once when its norms are frame-local (10 s at 50 Hz): its first block makes
#: C × N/5 values, so whole chunks would dominate the memory of long audio.
CONV_SEGMENT_FRAMES = 500
#: Every LayerNorm and GroupNorm of WavLM.
NORM_EPS = 1e-5
#: Query rows per attention block are chosen so that one block's logits hold at most this many values
#: (128 MiB in float32): memory stays linear in the length, whatever the batch and length.
ATTENTION_BLOCK_VALUES = 1 << 25
#: The original ``extractor_mode`` values: LayerNorm over channels in every conv block ("layer_norm", Large), or
#: GroupNorm over time in block 0 only ("default", Base/Base+).
EXTRACTOR_MODES = ("layer_norm", "default")


@dataclass(frozen=True)
class WavLMConfig:
    """What a WavLM is at inference. Defaults are WavLM Large. Names in the original ``cfg`` / transformers'
    ``WavLMConfig`` are given for each field; dropouts, masking and the like are training-only."""

    # (channels, kernel, stride) per conv block — cfg conv_feature_layers / HF conv_dim, conv_kernel, conv_stride
    conv_layers: tuple[tuple[int, int, int], ...] = ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2
    extractor_mode: str = "layer_norm"      # cfg extractor_mode / HF feat_extract_norm ("layer" | "group")
    conv_bias: bool = False                 # cfg conv_bias / HF conv_bias
    project_features: bool = True           # cfg: post_extract_proj exists iff conv channels != embed_dim; HF: always
    embed_dim: int = 1024                   # cfg encoder_embed_dim / HF hidden_size
    num_layers: int = 24                    # cfg encoder_layers / HF num_hidden_layers
    num_heads: int = 16                     # cfg encoder_attention_heads / HF num_attention_heads
    ffn_dim: int = 4096                     # cfg encoder_ffn_embed_dim / HF intermediate_size
    layer_norm_first: bool = True           # pre-LN blocks (Large) or post-LN (Base) / HF do_stable_layer_norm
    pos_conv_kernel: int = 128              # cfg conv_pos / HF num_conv_pos_embeddings
    pos_conv_groups: int = 16               # cfg conv_pos_groups / HF num_conv_pos_embedding_groups
    relative_position_bias: bool = True     # cfg relative_position_embedding / HF: always
    num_buckets: int = 320                  # cfg num_buckets / HF num_buckets
    max_distance: int = 800                 # cfg max_distance / HF max_bucket_distance
    gated_position_bias: bool = True        # cfg gru_rel_pos / HF: always

    def __post_init__(self) -> None:
        if self.extractor_mode not in EXTRACTOR_MODES:
            raise ConfigError(f"extractor_mode must be one of {EXTRACTOR_MODES}, got {self.extractor_mode!r}")
        if self.embed_dim % self.num_heads:
            raise ConfigError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")


# ------------------------------------------------------------------------------------------ conv feature extractor
class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of ``(B, C, T)``, computed in float32 (the original's Fp32LayerNorm). Each
    frame is normalised alone, so ``lengths`` (taken for a uniform interface with :class:`TimeGroupNorm`) is not
    needed."""

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        y = F.layer_norm(x.transpose(1, 2).float(), self.normalized_shape, self.weight.float(), self.bias.float(),
                         self.eps)
        return y.transpose(1, 2).type_as(x)


class TimeGroupNorm(nn.GroupNorm):
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

    def __init__(self, config: WavLMConfig) -> None:
        super().__init__()
        blocks = []
        in_channels = 1
        for i, (channels, kernel, stride) in enumerate(config.conv_layers):
            if config.extractor_mode == "layer_norm":
                norm = ChannelLayerNorm(channels, eps=NORM_EPS)
            else:
                norm = TimeGroupNorm(channels, channels, eps=NORM_EPS) if i == 0 else None
            blocks.append(ConvBlock(in_channels, channels, kernel, stride, bias=config.conv_bias, norm=norm))
            in_channels = channels
        self.blocks = nn.ModuleList(blocks)
        # GroupNorm ("default") normalises over the whole utterance; LayerNorm over each frame's channels alone.
        self.frame_local = config.extractor_mode == "layer_norm"
        self.hop_length = math.prod(stride for _, _, stride in config.conv_layers)
        self.receptive_field = 1 + sum((kernel - 1) * math.prod(s for _, _, s in config.conv_layers[:i])
                                       for i, (_, kernel, _) in enumerate(config.conv_layers))

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


class GatedRelativeAttention(nn.Module):
    """Multi-head self-attention whose logits are ``q·k/√d + gate[b, h, i] · bias[h, i, j]``.

    The gate (the original's gru_rel_pos) comes from this block's input split into heads — not from q:
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

    def __init__(self, config: WavLMConfig) -> None:
        super().__init__()
        self.attention = GatedRelativeAttention(config.embed_dim, config.num_heads,
                                                gated=config.gated_position_bias)
        self.attention_norm = nn.LayerNorm(config.embed_dim, eps=NORM_EPS)
        self.feed_forward = FeedForward(config.embed_dim, config.ffn_dim)
        self.feed_forward_norm = nn.LayerNorm(config.embed_dim, eps=NORM_EPS)
        self.norm_first = config.layer_norm_first

    def forward(self, x: torch.Tensor, bias_table: torch.Tensor | None, key_mask: torch.Tensor | None
                ) -> torch.Tensor:
        if self.norm_first:
            x = x + self.attention(self.attention_norm(x), bias_table, key_mask)
            return x + self.feed_forward(self.feed_forward_norm(x))
        x = self.attention_norm(x + self.attention(x, bias_table, key_mask))
        return self.feed_forward_norm(x + self.feed_forward(x))


class Encoder(nn.Module):
    def __init__(self, config: WavLMConfig) -> None:
        super().__init__()
        self.pos_conv = PositionalConv(config.embed_dim, config.pos_conv_kernel, config.pos_conv_groups)
        self.relative_position_bias = (
            RelativePositionBias(config.num_buckets, config.max_distance, config.num_heads)
            if config.relative_position_bias else None)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_layers))
        self.layer_norm = nn.LayerNorm(config.embed_dim, eps=NORM_EPS)
        self.norm_first = config.layer_norm_first

    def num_blocks(self, output_layer: int | None) -> int:
        """Blocks to run for the original's ``output_layer``: L in 1..N stops after block L; None, 0, negative
        values and values above N all run every block (the original's quirk)."""
        n = len(self.layers)
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


# ------------------------------------------------------------------------------------------ model
class WavLM(PretrainedModel):
    """WavLM: waveforms ``(B, N)`` at 16 kHz → features ``(B, T, embed_dim)`` at 50 Hz (for the real conv stack,
    ``T = (N − 400) // 320 + 1``)."""

    config_class = WavLMConfig
    model_type = "wavlm"

    def __init__(self, config: WavLMConfig) -> None:
        super().__init__(config)
        conv_channels = config.conv_layers[-1][0]
        self.feature_extractor = ConvFeatureExtractor(config)
        self.feature_norm = nn.LayerNorm(conv_channels, eps=NORM_EPS)
        self.feature_projection = (nn.Linear(conv_channels, config.embed_dim) if config.project_features
                                   else nn.Identity())
        self.encoder = Encoder(config)

    @property
    def sample_rate(self) -> int:
        """Hz of the audio the model reads (``extract_features`` resamples other rates to it)."""
        return SAMPLE_RATE

    @property
    def hop_length(self) -> int:
        """Samples between frames (the product of the conv strides)."""
        return self.feature_extractor.hop_length

    @property
    def receptive_field(self) -> int:
        """Samples one frame sees."""
        return self.feature_extractor.receptive_field

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
        """Features of ``waveforms`` ``(B, N)`` (no edge padding added here; see :func:`extract_features`).

        ``lengths`` ``(B,)``: samples of each item; frames past an item's end are masked out of attention and
        returned as zeros, so each item's features equal its unbatched features. ``output_layer`` is 1-based as
        in the original: L returns block L's output (no final LayerNorm, even for L = N); None runs every block
        and, for pre-LN models, applies the encoder's final LayerNorm; 0, negatives and values above N run every
        block without it. Returns ``(features (B, T, D), frame_lengths (B,) or None)``.
        """
        x, frame_lengths = self.conv_features(waveforms, lengths)
        return self.encoder(x, frame_lengths, output_layer), frame_lengths


# ------------------------------------------------------------------------------------------ the original's helper
@dataclass(frozen=True)
class _Chunk:
    item: int          # row of the batch
    first_frame: int   # its frames are [first_frame, last_frame) of the item
    last_frame: int
    start: int         # its samples are [start, stop) of the edge-padded item
    stop: int


def _plan_chunks(model: WavLM, lengths: Sequence[int], max_frames: int | None) -> list[_Chunk]:
    """Cut each edge-padded item into the fewest chunks of at most ``max_frames`` frames, of equal length (±1
    frame) and on frame boundaries: chunk frames are the item's frames, each computed from the same samples, and
    an item that fits in one chunk is passed whole."""
    hop, field = model.hop_length, model.receptive_field
    chunks = []
    for item, length in enumerate(lengths):
        frames = model.num_frames(length)
        parts = 1 if max_frames is None else -(-frames // max_frames)
        bounds = [frames * i // parts for i in range(parts + 1)]
        for first, last in itertools.pairwise(bounds):
            stop = length if last == frames else (last - 1) * hop + field
            chunks.append(_Chunk(item, first, last, first * hop, stop))
    return chunks


def _check_lengths(lengths: torch.Tensor | Sequence[int], wav: torch.Tensor, min_samples: int) -> list[int]:
    values = torch.as_tensor(lengths).tolist()
    if not isinstance(values, list) or len(values) != wav.shape[0]:
        raise InputError(f"lengths must hold one sample count per row of wav ({wav.shape[0]}), got {lengths!r}")
    if any(not isinstance(n, int) or not min_samples <= n <= wav.shape[1] for n in values):
        raise InputError(f"lengths must be whole numbers between {min_samples} (one frame) and the padded length "
                         f"{wav.shape[1]}; got {values}")
    return values


@torch.inference_mode()
def extract_features(model: WavLM, wav: torch.Tensor, sr: int, layer: int | None = None, *,
                     lengths: Lengths | torch.Tensor = None,
                     chunk_seconds: float | None = CHUNK_SECONDS, progress: bool = False,
                     ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The original ``extract_features(model, wav, sr, layer=None)`` of ``hubconf.wavlm_large``, batched.

    ``wav`` ``(1, N)`` or ``(B, N)`` at ``sr`` Hz is resampled to 16 kHz (torchaudio's resampler), padded with
    40 zeros on both sides and encoded; ``layer`` is 1-based (see :meth:`WavLM.forward`; DP-SLM uses 11).
    Returns ``features.squeeze(0)``: ``(T, D)`` for one row, ``(B, T, D)`` for more, with ``T = N // 320`` at
    16 kHz.

    ``lengths`` ``(B,)`` (samples at ``sr``) marks a ragged batch; then the call returns ``(features,
    frame_lengths)``, frames past an item's end are zeros, and each item's frames equal its unbatched ones.

    Audio longer than ``chunk_seconds`` (default :data:`CHUNK_SECONDS`; None: never chunk) is encoded in equal
    chunks cut at frame boundaries, at most ``chunk_seconds`` long, whose frames are concatenated; up to B chunks
    run as one batch. Each frame is computed from the same samples, so a LayerNorm conv stack (Large) gives the
    same conv features (a GroupNorm one, Base, normalises each chunk over itself); the transformer sees only its
    chunk, so frames near a cut differ from a single pass (self-attention is global). Audio up to one chunk
    gives exactly the unchunked result.

    Example: ``features = extract_features(model, wav, 16000, layer=11)`` (see the module docstring).
    """
    if chunk_seconds is not None and chunk_seconds * SAMPLE_RATE < model.receptive_field:
        raise InputError(f"chunk_seconds={chunk_seconds} is shorter than one frame "
                         f"({model.receptive_field / SAMPLE_RATE} s); pass a longer chunk or None")
    wav, padded_lengths = _model_input(model, wav, sr, lengths)
    max_frames = None if chunk_seconds is None else int(chunk_seconds * SAMPLE_RATE) // model.hop_length
    features = _encode_in_chunks(model, wav, padded_lengths, layer, max_frames, progress).squeeze(0)
    if lengths is None:
        return features
    return features, torch.tensor([model.num_frames(n) for n in padded_lengths], device=features.device)


def _model_input(model: WavLM, wav: torch.Tensor, sr: int, lengths: Lengths | torch.Tensor
                 ) -> tuple[torch.Tensor, list[int]]:
    """Validate ``wav``, resample it to 16 kHz, zero what follows each item (as unbatched, before and after
    resampling), pad 40 zeros on both sides and move it to the model: the waveforms and their padded lengths."""
    if isinstance(wav, torch.Tensor) and wav.ndim != 2:
        raise AudioError(f"wav must be 2-D (1, samples) or (batch, samples); got shape {tuple(wav.shape)}. "
                         "Add a batch axis with wav[None] or mix channels down with zoo.audio.to_mono")
    min_samples = (MIN_SAMPLES - 1) * sr // SAMPLE_RATE + 1  # resampled to at least MIN_SAMPLES
    check_waveform(wav, min_samples=min_samples, sample_rate=sr, name="wav")
    if lengths is None:
        wav = resample(wav, sr, SAMPLE_RATE)
        sample_lengths = [wav.shape[1]] * wav.shape[0]
    else:
        sample_lengths = _check_lengths(lengths, wav, min_samples)
        wav = resample(zero_beyond(wav, sample_lengths), sr, SAMPLE_RATE)
        gcd = math.gcd(sr, SAMPLE_RATE)
        sample_lengths = [math.ceil(SAMPLE_RATE // gcd * n / (sr // gcd)) for n in sample_lengths]  # as resample
        wav = zero_beyond(wav, sample_lengths)
    parameter = next(model.parameters())
    wav = F.pad(wav, (EDGE_PADDING, EDGE_PADDING)).to(device=parameter.device, dtype=parameter.dtype)
    return wav, [n + 2 * EDGE_PADDING for n in sample_lengths]


def _encode_in_chunks(model: WavLM, wav: torch.Tensor, lengths: list[int], layer: int | None,
                      max_frames: int | None, progress: bool) -> torch.Tensor:
    """Features ``(B, T, D)`` of the edge-padded items ``wav`` ``(B, N)``, chunk by chunk, B chunks at a time;
    zeros past each item's frames."""
    batch = len(lengths)
    chunks = _plan_chunks(model, lengths, max_frames)
    features = wav.new_zeros(batch, max(model.num_frames(n) for n in lengths), model.config.embed_dim)
    groups = [chunks[i: i + batch] for i in range(0, len(chunks), batch)]
    for group in tqdm(groups, desc="WavLM chunks", disable=not progress or len(groups) < 2):
        sizes = [chunk.stop - chunk.start for chunk in group]
        inputs = wav.new_zeros(len(group), max(sizes))
        for row, chunk in enumerate(group):
            inputs[row, : sizes[row]] = wav[chunk.item, chunk.start: chunk.stop]
        ragged = None if len(set(sizes)) == 1 else torch.tensor(sizes, device=wav.device)
        out, _ = model(inputs, ragged, output_layer=layer)
        for row, chunk in enumerate(group):
            num_frames = chunk.last_frame - chunk.first_frame
            features[chunk.item, chunk.first_frame: chunk.last_frame] = out[row, :num_frames]
    return features


# ------------------------------------------------------------------------------------------ released weights
_RELEASE = "https://github.com/nicolvisser/WavLM-codebooks/releases/download/v0.1.0/"

WEIGHTS = (
    Weights(
        name="wavlm-large",
        entry_point="wavlm_large",
        kwargs={},
        converter="wavlm",
        source_files=(SourceFile(f"{_RELEASE}wavlm-large-6fb4b3c3.pt", "6fb4b3c3"),),
        license="MIT",
        paper="https://arxiv.org/abs/2110.13900",
        description="WavLM Large (Microsoft, 94k h), 24 blocks, 1024-dim features; DP-SLM reads layer 11",
        sample_rate=SAMPLE_RATE,
        frame_rate=SAMPLE_RATE / HOP_LENGTH,
    ),
)
