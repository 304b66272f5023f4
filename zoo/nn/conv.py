"""1-D convolutions computed as channels-last 2-D convolutions.

On CPU, oneDNN's channels-last 2-D kernels are much faster than PyTorch's ``conv1d`` on the long, narrow signals of
vocoders and codecs (2-3x for 16-64 channels over 10 s of audio, measured on 2 cores; see
``benchmarks/bench_hifigan.py``). These modules keep ``nn.Conv1d``'s parameters, state dict and ``(B, C, T)``
interface; only the memory layout of their output differs: ``(B, C, T)`` with channels-last strides, which
elementwise ops preserve, so a chain of these convolutions converts the layout once. Results agree with
``nn.Conv1d`` to float32 rounding (a different summation order).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _as_channels_last(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, T)`` → ``(B, C, 1, T)`` in channels-last layout (a view when ``x`` already has that layout)."""
    return x.unsqueeze(2).contiguous(memory_format=torch.channels_last)


class Conv1d(nn.Conv1d):
    """``nn.Conv1d`` (zero padding only) run as a channels-last ``conv2d``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding_mode != "zeros" or isinstance(self.padding, str):
            raise ValueError("zoo.nn.conv.Conv1d supports integer zero padding only")
        y = F.conv2d(_as_channels_last(x), self.weight.unsqueeze(2), self.bias, (1, self.stride[0]),
                     (0, self.padding[0]), (1, self.dilation[0]), self.groups)
        return y.squeeze(2)


class ConvTranspose1d(nn.ConvTranspose1d):
    """``nn.ConvTranspose1d`` (no ``output_size``) run as a channels-last ``conv_transpose2d``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv_transpose2d(_as_channels_last(x), self.weight.unsqueeze(2), self.bias, (1, self.stride[0]),
                               (0, self.padding[0]), (0, self.output_padding[0]), self.groups,
                               (1, self.dilation[0]))
        return y.squeeze(2)
