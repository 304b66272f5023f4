"""The WavLM-codebooks / dpdp container: ``torch.save({'codebook': (K, D) float32})``, file name
``codebook-layer-<L>-k-<K>-<sha8>.pt`` (the layer is read from the name when it has that form)."""
from __future__ import annotations

import re
from pathlib import Path

import torch

from ..errors import ConversionError
from ..models.codebook import Codebook
from . import expect_keys, load_original

_NAME = re.compile(r"codebook-layer-(\d+)-k-(\d+)")


def convert(paths: list[Path], **options) -> Codebook:
    if len(paths) != 1 or options:
        raise ConversionError("codebook conversion takes one file, e.g. codebook-layer-11-k-500-2c2dee95.pt")
    path = Path(paths[0])
    container = load_original(path)
    expect_keys(container, ["codebook"], what="a k-means codebook {'codebook': (K, D)}", path=path)
    extra = sorted(set(container) - {"codebook"})
    if extra:
        raise ConversionError(f"{path} holds {extra} besides 'codebook': not a WavLM-codebooks file")
    codebook = container["codebook"]
    if not isinstance(codebook, torch.Tensor) or codebook.ndim != 2:
        raise ConversionError(f"{path}: 'codebook' must be a (K, D) tensor")
    named = _NAME.search(path.name)
    return Codebook.from_tensor(codebook.float(), layer=int(named[1]) if named else None)
