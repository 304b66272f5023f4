"""The HiFi-GAN generator (Kong et al. 2020, ``jik876/hifi-gan`` ``models.Generator``), as the unit vocoders of
fairseq, textlesslib and speech-resynthesis run it behind their conditioning (:mod:`zoo.models.hifigan`).

Frames ``(B, model_in_dim, T)`` go through ``conv_pre``, then one stage per upsampling rate — leaky ReLU, a
transposed conv, and the mean of ``K`` residual blocks that all read its output (multi-receptive-field fusion,
``ResBlock1`` for HiFi-GAN V1/V2, ``ResBlock2`` for V3) — then ``conv_post`` and ``tanh``. Weight norm is folded into
plain weights at conversion (:mod:`zoo.formats.hifigan`); the convolutions run as channels-last 2-D convolutions
(:mod:`zoo.nn.conv`), oneDNN's fast path on CPU.

Module names follow the original's (``conv_pre``, ``resblocks.<i>.convs1``..., with ``upsamples`` for its ``ups``),
so the rename table of :mod:`zoo.formats.hifigan` is short.

Batches of different lengths: with ``lengths`` (valid frames per row) the padding is zeroed before every
convolution, so each row's valid samples equal its one-by-one result (:mod:`zoo.nn.ragged`).

Example::

    >>> import torch
    >>> config = HiFiGANConfig(upsample_rates=(5, 4), upsample_kernel_sizes=(11, 8), upsample_initial_channel=16,
    ...                        resblock_kernel_sizes=(3, 7), resblock_dilation_sizes=((1, 3, 5),) * 2, model_in_dim=8)
    >>> generator = HiFiGANGenerator(config).eval()
    >>> generator(torch.randn(2, 8, 10), lengths=[10, 6]).shape       # (B, 1, T * 5 * 4)
    torch.Size([2, 1, 200])
    >>> generator.output_lengths([10, 6])
    [200, 120]
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .conv import Conv1d, ConvTranspose1d
from .ragged import Lengths, conv_output_lengths, zero_beyond

#: Slope of every leaky ReLU in the generator except the last one.
LRELU_SLOPE = 0.1
#: The last activation (before ``conv_post``) is ``F.leaky_relu`` with torch's default slope — a quirk of HiFi-GAN.
FINAL_LRELU_SLOPE = 0.01
#: Kernel of ``conv_pre`` and ``conv_post``.
PRE_POST_KERNEL = 7
RESBLOCKS = ("1", "2")


@dataclass(frozen=True)
class HiFiGANConfig:
    """The generator's hyper-parameters, under the original config's names."""

    upsample_rates: tuple[int, ...]
    upsample_kernel_sizes: tuple[int, ...]
    upsample_initial_channel: int           # channels after conv_pre; halved by every stage
    resblock_kernel_sizes: tuple[int, ...]  # one residual block per kernel size in every stage
    resblock_dilation_sizes: tuple[tuple[int, ...], ...]
    model_in_dim: int                       # channels of the input frames
    resblock: str = "1"                     # "1": ResBlock1 (V1/V2), "2": ResBlock2 (V3)

    def __post_init__(self) -> None:
        if self.resblock not in RESBLOCKS:
            raise ConfigError(f"resblock must be '1' or '2', got {self.resblock!r}")
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise ConfigError("upsample_rates and upsample_kernel_sizes must have the same length")
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise ConfigError("resblock_kernel_sizes and resblock_dilation_sizes must have the same length")

    @property
    def hop_length(self) -> int:
        """Output samples per input frame (``prod(upsample_rates)``)."""
        return math.prod(self.upsample_rates)


def _same_padding(kernel_size: int, dilation: int = 1) -> int:
    return (kernel_size * dilation - dilation) // 2


class ResBlock1(nn.Module):
    """Three ``x + conv2(lrelu(conv1_d(lrelu(x))))`` steps with dilations ``d`` (HiFi-GAN V1/V2)."""

    def __init__(self, channels: int, kernel_size: int, dilations: Sequence[int]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(Conv1d(channels, channels, kernel_size, dilation=d,
                                           padding=_same_padding(kernel_size, d)) for d in dilations)
        self.convs2 = nn.ModuleList(Conv1d(channels, channels, kernel_size, padding=_same_padding(kernel_size))
                                    for _ in dilations)

    def forward(self, x: torch.Tensor, lengths: Lengths = None) -> torch.Tensor:
        # In-place ops on fresh intermediates only: ``x`` itself is shared by the stage's other blocks.
        for conv1, conv2 in zip(self.convs1, self.convs2):
            h = zero_beyond(conv1(F.leaky_relu(x, LRELU_SLOPE)), lengths)
            x = zero_beyond(conv2(F.leaky_relu_(h, LRELU_SLOPE)), lengths).add_(x)
        return x


class ResBlock2(nn.Module):
    """Two ``x + conv_d(lrelu(x))`` steps (HiFi-GAN V3)."""

    def __init__(self, channels: int, kernel_size: int, dilations: Sequence[int]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(Conv1d(channels, channels, kernel_size, dilation=d,
                                          padding=_same_padding(kernel_size, d)) for d in dilations[:2])

    def forward(self, x: torch.Tensor, lengths: Lengths = None) -> torch.Tensor:
        for conv in self.convs:
            x = zero_beyond(conv(F.leaky_relu(x, LRELU_SLOPE)), lengths).add_(x)
        return x


class HiFiGANGenerator(nn.Module):
    """Frames ``(B, model_in_dim, T)`` -> waveform ``(B, 1, T')`` in (-1, 1), ``T'`` from the transposed-conv length
    formula (``T * prod(upsample_rates)`` when every ``kernel - rate`` is even).

    Each stage: leaky ReLU, transposed conv (``rate`` up), then the *mean* of ``K`` residual blocks that all read the
    same input (multi-receptive-field fusion).
    """

    def __init__(self, config: HiFiGANConfig) -> None:
        super().__init__()
        channels = config.upsample_initial_channel
        resblock = ResBlock1 if config.resblock == "1" else ResBlock2
        self.conv_pre = Conv1d(config.model_in_dim, channels, PRE_POST_KERNEL, padding=PRE_POST_KERNEL // 2)
        self.upsamples = nn.ModuleList()
        self.resblocks = nn.ModuleList()  # stage i uses resblocks[i * K : (i + 1) * K], as in the original
        self.kernels_per_stage = len(config.resblock_kernel_sizes)
        for i, (rate, kernel) in enumerate(zip(config.upsample_rates, config.upsample_kernel_sizes)):
            in_channels, channels = (config.upsample_initial_channel // 2 ** j for j in (i, i + 1))
            self.upsamples.append(ConvTranspose1d(in_channels, channels, kernel, rate, padding=(kernel - rate) // 2))
            self.resblocks.extend(resblock(channels, k, d) for k, d in
                                  zip(config.resblock_kernel_sizes, config.resblock_dilation_sizes))
        self.conv_post = Conv1d(channels, 1, PRE_POST_KERNEL, padding=PRE_POST_KERNEL // 2)

    def output_lengths(self, lengths: Sequence[int]) -> list[int]:
        """Samples out for ``lengths`` frames in."""
        for up in self.upsamples:
            lengths = conv_output_lengths(lengths, up)
        return list(lengths)

    def forward(self, x: torch.Tensor, lengths: Lengths = None) -> torch.Tensor:
        x = zero_beyond(self.conv_pre(x), lengths)
        per_stage = self.kernels_per_stage
        for i, up in enumerate(self.upsamples):
            blocks = self.resblocks[i * per_stage:(i + 1) * per_stage]
            x = up(F.leaky_relu_(x, LRELU_SLOPE))  # x is this function's own intermediate
            if lengths is not None:
                lengths = conv_output_lengths(lengths, up)
                x = zero_beyond(x, lengths)
            mrf = blocks[0](x, lengths)
            for block in blocks[1:]:
                mrf.add_(block(x, lengths))
            x = mrf.div_(per_stage)
        x = self.conv_post(F.leaky_relu_(x, FINAL_LRELU_SLOPE))
        return zero_beyond(torch.tanh_(x), lengths)
