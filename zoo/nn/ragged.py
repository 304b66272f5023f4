"""Ragged batches: sequences of different lengths right-padded into one tensor, with time on the last axis.

Every model that takes such a batch carries each row's number of valid steps (:data:`Lengths`) beside it and
computes each row as if it ran alone: padding is zeroed (:func:`zero_beyond`) or masked (:func:`valid_mask`)
wherever a convolution, a normalisation or attention would otherwise read it, and the valid lengths are carried
through each layer with :func:`conv_output_lengths`. Unit and code sequences mark their padding with
:data:`PAD_UNIT` instead.

Example::

    >>> import torch
    >>> zero_beyond(torch.ones(2, 1, 4), [4, 2])
    tensor([[[1., 1., 1., 1.]],
    <BLANKLINE>
            [[1., 1., 0., 0.]]])
    >>> conv_output_lengths([16000, 9000], torch.nn.Conv1d(1, 1, kernel_size=10, stride=5))
    [3199, 1799]
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import torch
from torch import nn

#: Valid steps of each row of a right-padded batch along its last axis; None: every row is full length.
Lengths = Sequence[int] | None

#: The id that pads a batch of unit or code sequences (fairseq's padding value; never a real unit).
PAD_UNIT = -1

#: A length or a tensor of them: the conv-length formula works on both.
L = TypeVar("L", int, torch.Tensor)


def valid_mask(lengths: Sequence[int] | torch.Tensor, steps: int, device: torch.device | str | None = None
               ) -> torch.Tensor:
    """``(B, steps)`` bool: True at each row's first ``lengths[b]`` steps, False over its padding."""
    return torch.arange(steps, device=device) < torch.as_tensor(lengths, device=device)[:, None]


def zero_beyond(x: torch.Tensor, lengths: Lengths | torch.Tensor, batch_dim: int = 0) -> torch.Tensor:
    """``x`` ``(B, ..., T)`` with every row's steps at and after its length set to zero (a new tensor; ``x``
    itself when ``lengths`` is None). The rows run along ``batch_dim`` (e.g. 1 for codes ``(n_q, B, T)``).
    The dtype and the memory layout are kept (``torch.where``, unlike ``masked_fill``, keeps the channels-last
    strides of :mod:`zoo.nn.conv`'s outputs), so integer codes stay integers."""
    if lengths is None:
        return x
    valid = valid_mask(lengths, x.shape[-1], x.device)
    shape = [1] * x.ndim
    shape[batch_dim], shape[-1] = valid.shape
    return torch.where(valid.view(shape), x, 0)


def conv_output_length(length: L, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1, *,
                       transposed: bool = False) -> L:
    """Output steps of a 1-D convolution (``nn.Conv1d``'s formula) or, ``transposed``, of a transposed one
    (``nn.ConvTranspose1d``'s, without output padding) on ``length`` input steps (an int or an integer tensor).

    A stack of unpadded convolutions follows the same formula with its receptive field as the kernel and the
    product of its strides as the stride.
    """
    span = dilation * (kernel_size - 1) + 1
    if transposed:
        return (length - 1) * stride - 2 * padding + span
    return (length + 2 * padding - span) // stride + 1


def conv_output_lengths(lengths: Lengths, conv: nn.Conv1d | nn.ConvTranspose1d) -> Lengths:
    """Valid output steps of ``conv`` for each row's ``lengths`` valid input steps (None stays None)."""
    if lengths is None:
        return None
    (kernel,), (stride,), (padding,), (dilation,) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    transposed = isinstance(conv, nn.ConvTranspose1d)
    return [conv_output_length(n, kernel, stride, padding, dilation, transposed=transposed) for n in lengths]


def length_buckets(lengths: Sequence[int], max_padding: float) -> list[list[int]]:
    """The indices of ``lengths`` grouped by similar length, shortest first: sorted by length, a bucket takes the
    next item while the bucket's longest stays within ``1 + max_padding`` times its shortest, so running each
    bucket as its own batch (cut to its longest item) computes at most that fraction of padding per item.

    >>> length_buckets([900, 100, 1000, 120, 500], max_padding=0.25)
    [[1, 3], [4], [0, 2]]
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    buckets: list[list[int]] = []
    for i in order:
        if buckets and lengths[i] <= (1 + max_padding) * lengths[buckets[-1][0]]:
            buckets[-1].append(i)
        else:
            buckets.append([i])
    return buckets
