"""The F0 VQ-VAE of speech-resynthesis (``train_f0_vq.py`` ``Quantizer``): a Jukebox-style 1-D conv encoder, a
nearest-neighbour codebook and a mirror-image decoder, over speaker-normalised F0.

The speech-resynthesis vocoders (:mod:`zoo.models.hifigan`) condition on the *codes* of this model: their
checkpoints hold the encoder and codebook under ``quantizer.*``, so the vocoder runs :class:`F0Quantizer` itself.
The decoder only matters for training and for checking what the codes keep (:class:`F0VQVAE` reconstructs F0).

Shapes: F0 ``(B, 1, T)`` at 200 frames/s (voiced frames ``(f0 - mean) / std``, unvoiced 0, see :mod:`zoo.f0`);
each level ``l`` downsamples by ``strides_t[l] ** downs_t[l]`` (16 in the released configs), so codes are
``(B, T // 16)`` at 12.5 Hz.

Example::

    >>> import torch
    >>> jukebox = JukeboxConfig(output_emb_width=16, downs_t=(4,), strides_t=(2,), width=8, depth=2)
    >>> config = F0VQVAEConfig(f0_vq_params=BottleneckConfig(l_bins=8, emb_width=16),
    ...                        f0_encoder_params=jukebox, f0_decoder_params=jukebox)
    >>> recon, codes = F0VQVAE(config)(torch.randn(2, 1, 64))
    >>> tuple(recon.shape), tuple(codes.shape)
    ((2, 1, 64), (2, 4))
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, InputError
from ..modeling import PretrainedModel
from ..nn.precision import KeepFloat32
from ..nn.quantization import nearest_code
from ..nn.ragged import Lengths, conv_output_lengths, zero_beyond

#: Kernel size of the encoder's output projection and the decoder's input/output projections.
PROJECTION_KERNEL = 3

#: speech-resynthesis never released an F0 VQ-VAE (its vocoders carry their own copy of the encoder and codebook):
#: ``hubconf.f0_vqvae`` loads converted weights only.
NOT_RELEASED = {
    "f0_vqvae": "no F0 VQ-VAE was ever released: train one with speech-resynthesis' train_f0_vq.py, convert it "
                "(`python -m conversion f0_vqvae g_00400000 config.json --out DIR`) and pass weights=DIR",
}


# ------------------------------------------------------------------------------------------ configs
@dataclass(frozen=True)
class JukeboxConfig:
    """``f0_encoder_params`` / ``f0_decoder_params`` of the original JSON (Jukebox ``Encoder``/``Decoder``)."""

    output_emb_width: int
    downs_t: tuple[int, ...]           # downsampling steps per level
    strides_t: tuple[int, ...]         # stride of each step, per level (even)
    width: int
    depth: int                         # residual blocks per step
    input_emb_width: int = 1
    levels: int = 1
    m_conv: float = 1.0                # hidden width of a residual block = int(m_conv * width)
    dilation_growth_rate: int = 1
    dilation_cycle: int | None = None
    zero_out: bool = False             # init only
    res_scale: bool = False            # residual branches scaled by 1/sqrt(depth)
    reverse_decoder_dilation: bool = False

    def __post_init__(self) -> None:
        if not (self.levels == len(self.downs_t) == len(self.strides_t)):
            raise ConfigError(f"levels={self.levels} needs one downs_t and one strides_t per level, got "
                             f"{self.downs_t} and {self.strides_t}")
        if any(not isinstance(s, int) or s % 2 for s in self.strides_t):
            raise ConfigError(f"strides_t must be even integers (kernel 2s, padding s/2), got {self.strides_t}")


@dataclass(frozen=True)
class BottleneckConfig:
    """``f0_vq_params``: ``l_bins`` codes of width ``emb_width`` per level (``mu`` is the training EMA rate)."""

    l_bins: int
    emb_width: int
    mu: float = 0.99
    levels: int = 1


@dataclass(frozen=True)
class F0VQVAEConfig:
    """The F0 VQ-VAE JSON (``configs/*/f0_vqvae.json``), or the ``f0_quantizer`` group of a vocoder config."""

    f0_vq_params: BottleneckConfig
    f0_encoder_params: JukeboxConfig
    f0_decoder_params: JukeboxConfig

    def __post_init__(self) -> None:
        enc, vq = self.f0_encoder_params, self.f0_vq_params
        if enc.output_emb_width != vq.emb_width or enc.levels != vq.levels:
            raise ConfigError(f"the encoder writes {enc.levels} level(s) of width {enc.output_emb_width}, the "
                             f"codebook expects {vq.levels} of width {vq.emb_width}")

    @property
    def hop_length(self) -> int:
        """F0 frames per code at level 0."""
        return self.f0_encoder_params.strides_t[0] ** self.f0_encoder_params.downs_t[0]


# ------------------------------------------------------------------------------------------ blocks
class ResidualBlock(nn.Module):
    """``x + scale * conv_b(relu(conv_a(relu(x))))``, ``conv_a`` dilated with kernel 3 and 'same' padding."""

    def __init__(self, width: int, hidden: int, dilation: int, scale: float) -> None:
        super().__init__()
        self.conv_a = nn.Conv1d(width, hidden, 3, padding=dilation, dilation=dilation)
        self.conv_b = nn.Conv1d(hidden, width, 1)
        self.scale = scale

    def forward(self, x: torch.Tensor, lengths: Lengths = None) -> torch.Tensor:
        h = zero_beyond(self.conv_a(F.relu(x)), lengths)
        return x + self.scale * zero_beyond(self.conv_b(F.relu(h)), lengths)


class Resnet1D(nn.Sequential):
    def __init__(self, config: JukeboxConfig, reverse: bool = False) -> None:
        scale = 1.0 / math.sqrt(config.depth) if config.res_scale else 1.0
        cycle = config.dilation_cycle
        blocks = [ResidualBlock(config.width, int(config.m_conv * config.width),
                                config.dilation_growth_rate ** (d if cycle is None else d % cycle), scale)
                  for d in range(config.depth)]
        super().__init__(*(blocks[::-1] if reverse else blocks))

    def forward(self, x: torch.Tensor, lengths: Lengths = None) -> torch.Tensor:
        for block in self:
            x = block(x, lengths)
        return x


class DownBlock(nn.Module):
    """Strided conv (kernel ``2s``, padding ``s/2``: ``T -> T // s``) then a residual stack."""

    def __init__(self, in_channels: int, config: JukeboxConfig, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, config.width, 2 * stride, stride, stride // 2)
        self.resnet = Resnet1D(config)

    def forward(self, x: torch.Tensor, lengths: Lengths = None) -> tuple[torch.Tensor, Lengths]:
        lengths = conv_output_lengths(lengths, self.conv)
        return self.resnet(zero_beyond(self.conv(x), lengths), lengths), lengths


class UpBlock(nn.Module):
    """A residual stack then a transposed conv (kernel ``2s``, padding ``s/2``: ``T -> s * T``)."""

    def __init__(self, out_channels: int, config: JukeboxConfig, stride: int) -> None:
        super().__init__()
        self.resnet = Resnet1D(config, reverse=config.reverse_decoder_dilation)
        self.conv = nn.ConvTranspose1d(config.width, out_channels, 2 * stride, stride, stride // 2)

    def forward(self, x: torch.Tensor, lengths: Lengths = None) -> tuple[torch.Tensor, Lengths]:
        x = self.conv(self.resnet(x, lengths))
        lengths = conv_output_lengths(lengths, self.conv)
        return zero_beyond(x, lengths), lengths


class EncoderLevel(nn.Module):
    """``layers``: ``downs_t`` :class:`DownBlock` then a kernel-3 projection to ``output_emb_width`` (the
    original's Sequential, index for index)."""

    def __init__(self, in_channels: int, config: JukeboxConfig, level: int) -> None:
        super().__init__()
        stride = config.strides_t[level]
        blocks = [DownBlock(in_channels if i == 0 else config.width, config, stride)
                  for i in range(config.downs_t[level])]
        proj = nn.Conv1d(config.width, config.output_emb_width, PROJECTION_KERNEL, padding=PROJECTION_KERNEL // 2)
        self.layers = nn.ModuleList([*blocks, proj])

    def forward(self, x: torch.Tensor, lengths: Lengths = None) -> tuple[torch.Tensor, Lengths]:
        for block in self.layers[:-1]:
            x, lengths = block(x, lengths)
        return zero_beyond(self.layers[-1](x), lengths), lengths


class DecoderLevel(nn.Module):
    """``layers``: a kernel-3 projection to ``width`` then ``downs_t`` :class:`UpBlock`."""

    def __init__(self, config: JukeboxConfig, level: int) -> None:
        super().__init__()
        stride, steps = config.strides_t[level], config.downs_t[level]
        proj = nn.Conv1d(config.output_emb_width, config.width, PROJECTION_KERNEL, padding=PROJECTION_KERNEL // 2)
        blocks = [UpBlock(config.output_emb_width if i == steps - 1 else config.width, config, stride)
                  for i in range(steps)]
        self.layers = nn.ModuleList([proj, *blocks])

    def forward(self, x: torch.Tensor, lengths: Lengths = None) -> tuple[torch.Tensor, Lengths]:
        x = zero_beyond(self.layers[0](x), lengths)
        for block in self.layers[1:]:
            x, lengths = block(x, lengths)
        return x, lengths


class JukeboxEncoder(nn.Module):
    """``(B, input_emb_width, T)`` -> one latent per level, ``(B, output_emb_width, T_l)``; levels run in sequence."""

    def __init__(self, config: JukeboxConfig) -> None:
        super().__init__()
        self.input_channels = config.input_emb_width
        self.levels = nn.ModuleList(EncoderLevel(config.input_emb_width if level == 0 else config.output_emb_width,
                                                 config, level) for level in range(config.levels))

    def forward(self, x: torch.Tensor, lengths: Lengths = None) -> list[tuple[torch.Tensor, Lengths]]:
        if x.ndim != 3 or x.shape[1] != self.input_channels:
            raise InputError(f"F0 must be (batch, {self.input_channels}, frames), got shape {tuple(x.shape)}")
        latents = []
        for level in self.levels:
            x, lengths = level(x, lengths)
            latents.append((x, lengths))
        return latents


class JukeboxDecoder(nn.Module):
    """Inverse of :class:`JukeboxEncoder`: the coarsest latent is decoded, adding each finer level on the way."""

    def __init__(self, config: JukeboxConfig) -> None:
        super().__init__()
        self.levels = nn.ModuleList(DecoderLevel(config, level) for level in range(config.levels))
        self.out = nn.Conv1d(config.output_emb_width, config.input_emb_width, PROJECTION_KERNEL,
                             padding=PROJECTION_KERNEL // 2)

    def forward(self, latents: list[torch.Tensor], lengths: Lengths = None) -> torch.Tensor:
        x = latents[-1]
        for level in reversed(range(len(self.levels))):
            x, lengths = self.levels[level](x, lengths)
            if level > 0:
                x = x + latents[level - 1]
        return zero_beyond(self.out(x), lengths)


class VectorQuantizer(KeepFloat32, nn.Module):
    """Nearest codebook row by squared L2 in Jukebox's expanded form (:func:`~zoo.nn.quantization.nearest_code`),
    so near-ties resolve exactly as in the original; the codebook stays float32 (code vectors come out float32)."""

    def __init__(self, num_codes: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("codebook", torch.zeros(num_codes, dim))

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """``(B, dim, T)`` -> codes ``(B, T)`` int64."""
        return nearest_code(latent.transpose(1, 2), self.codebook)

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        """codes ``(B, T)`` -> ``(B, dim, T)``."""
        return F.embedding(codes, self.codebook).transpose(1, 2)


# ------------------------------------------------------------------------------------------ models
class F0Quantizer(nn.Module):
    """Encoder + codebooks: normalised F0 ``(B, 1, T)`` -> codes per level ``(B, T_l)``."""

    def __init__(self, config: F0VQVAEConfig) -> None:
        super().__init__()
        self.encoder = JukeboxEncoder(config.f0_encoder_params)
        vq = config.f0_vq_params
        self.codebooks = nn.ModuleList(VectorQuantizer(vq.l_bins, vq.emb_width) for _ in range(vq.levels))

    def encode(self, f0: torch.Tensor, lengths: Lengths = None) -> list[tuple[torch.Tensor, torch.Tensor, Lengths]]:
        """Per level: (latent ``(B, C, T_l)``, codes ``(B, T_l)``, per-item lengths or None)."""
        return [(latent, vq(latent), n) for vq, (latent, n) in zip(self.codebooks, self.encoder(f0, lengths))]

    def forward(self, f0: torch.Tensor, lengths: Lengths = None) -> tuple[torch.Tensor, Lengths]:
        """Level-0 codes ``(B, T // hop_length)`` and their per-item lengths (what the vocoders embed)."""
        _, codes, lengths = self.encode(f0, lengths)[0]
        return codes, lengths


class F0VQVAE(PretrainedModel):
    """The whole F0 VQ-VAE: ``forward(f0)`` returns ``(reconstruction (B, 1, T'), codes (B, T'/hop))`` with
    ``T' = hop * (T // hop)``, like the original ``Quantizer(f0=...)[0]`` (which also returns training losses)."""

    config_class = F0VQVAEConfig
    model_type = "f0_vqvae"

    def __init__(self, config: F0VQVAEConfig) -> None:
        super().__init__(config)
        self.quantizer = F0Quantizer(config)
        self.decoder = JukeboxDecoder(config.f0_decoder_params)

    def forward(self, f0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if f0.ndim == 2:
            f0 = f0.unsqueeze(1)
        f0 = f0.to(self.decoder.out.weight.dtype)
        levels = self.quantizer.encode(f0)
        return self.decode([codes for _, codes, _ in levels]), levels[0][1]

    def decode(self, codes: list[torch.Tensor]) -> torch.Tensor:
        """Codes of every level (finest first) -> F0 ``(B, 1, T)``."""
        dtype = self.decoder.out.weight.dtype
        return self.decoder([vq.dequantize(c).to(dtype) for vq, c in zip(self.quantizer.codebooks, codes)])
