"""Vector quantisation: the nearest code of a Euclidean codebook, as the originals' codecs compute it.

EnCodec's ``EuclideanCodebook`` (SpeechTokenizer, WavTokenizer) and Jukebox's ``BottleneckBlock`` (the F0
VQ-VAE of speech-resynthesis) both pick the code with the smallest squared distance written out as
``‖x‖² − 2 x·E + ‖E‖²``. Mathematically that is ``torch.cdist(x, E) ** 2``, but its float32 rounding differs, and
two codes a few ulps apart are decided by the rounding: :func:`nearest_code` keeps the originals' operations in
their order and layout so that near-ties fall on the same code. (EnCodec negates the sum and takes the first
maximum, Jukebox takes the first minimum: the same index, as negation is exact.)

Example::

    >>> import torch
    >>> codebook = torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    >>> nearest_code(torch.tensor([[[0.9, 1.2], [0.2, -0.1]]]), codebook)   # first index on exact ties
    tensor([[1, 0]])
"""
from __future__ import annotations

import torch

from .precision import at_least_float32


def nearest_code(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index (int64, shape ``x.shape[:-1]``) of the row of ``codebook`` ``(K, D)`` nearest to each vector of
    ``x`` ``(..., D)`` by squared Euclidean distance; the first index on ties. Computed in float32 at least: in
    half precision the difference of large squared norms would decide near-ties by rounding."""
    dtype = at_least_float32(x, codebook)
    flat = x.reshape(-1, x.shape[-1]).to(dtype)
    embed = codebook.to(dtype).t()  # (D, K): the originals keep the codebook transposed, and so sum its squares over dim 0
    distance = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ embed + embed.pow(2).sum(0, keepdim=True)
    return distance.argmin(-1).view(x.shape[:-1])
