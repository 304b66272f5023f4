"""k-means codebooks over self-supervised features (DP-SLM's WavLM-Large layer-11 codebooks).

The original (``nicolvisser/WavLM-codebooks`` ``hubconf.codebook``) returns the ``(K, D)`` centroid tensor; units
are ``torch.cdist(features, codebook).argmin(-1)`` (Euclidean, first index on ties), which :class:`Codebook` does
batched.

Example::

    >>> import torch
    >>> cb = Codebook.from_tensor(torch.eye(3))
    >>> cb(torch.tensor([[0.9, 0.1, 0.0], [0.0, 0.2, 0.7]])).tolist()
    [0, 2]
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import InputError
from ..modeling import PretrainedModel
from ..registry import SourceFile, Weights


@dataclass(frozen=True)
class CodebookConfig:
    num_codes: int                 # K
    dim: int                       # D, the feature dimension
    layer: int | None = None       # 1-based encoder layer whose features it clusters (metadata)


class Codebook(PretrainedModel):
    """A ``(K, D)`` codebook; calling it maps features ``(..., D)`` to the nearest code's index ``(...)``."""

    config_class = CodebookConfig
    model_type = "codebook"

    def __init__(self, config: CodebookConfig) -> None:
        super().__init__(config)
        self.register_buffer("codebook", torch.zeros(config.num_codes, config.dim))

    @classmethod
    def from_tensor(cls, codebook: torch.Tensor, layer: int | None = None) -> Codebook:
        if codebook.ndim != 2:
            raise InputError(f"a codebook is (K, D); got shape {tuple(codebook.shape)}")
        model = cls(CodebookConfig(num_codes=codebook.shape[0], dim=codebook.shape[1], layer=layer))
        model.codebook.copy_(codebook)
        return model

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Nearest-code units (int64, shape ``features.shape[:-1]``) of ``features`` ``(..., D)``."""
        if features.shape[-1] != self.config.dim:
            raise InputError(f"features have dimension {features.shape[-1]}, the codebook {self.config.dim}")
        flat = features.reshape(-1, self.config.dim).to(self.codebook)
        return torch.cdist(flat, self.codebook).argmin(-1).reshape(features.shape[:-1])


_RELEASE = "https://github.com/nicolvisser/WavLM-codebooks/releases/download/v0.1.0/"
#: (k, first 8 hex digits of the release file's SHA-256), all at WavLM-Large layer 11.
_RELEASED = ((100, "8b2b254e"), (200, "55b06314"), (500, "2c2dee95"), (1000, "db31d361"), (2000, "af7a6260"))

WEIGHTS = tuple(
    Weights(
        name=f"wavlm-large-layer11-kmeans{k}",
        entry_point="codebook",
        kwargs={"layer": 11, "k": k},
        converter="codebook",
        source_files=(SourceFile(f"{_RELEASE}codebook-layer-11-k-{k}-{sha}.pt", sha),),
        license="MIT",
        paper="https://arxiv.org/abs/2505.23494",
        description=f"k-means codebook (K={k}) of WavLM-Large layer-11 features, from DP-SLM",
        sample_rate=16000,
        frame_rate=50.0,
    )
    for k, sha in _RELEASED
)
