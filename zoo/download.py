"""Where weights come from: a local directory, a Hub repo, or the original release converted on the fly.

Resolution order for a registered weight set (:func:`load`, then :func:`load_release`):

1. ``weights=`` given: a local directory holding config.json + model.safetensors, or a Hub repo id
   (``"org/name"`` or ``"org/name@revision"``);
2. the registry's Hub repo at its pinned revision, through ``huggingface_hub`` (so ``HF_ENDPOINT``, ``HF_HOME``,
   ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE`` and the shared cache all apply);
3. the ORIGINAL release: downloaded, SHA-256-verified, read with ``torch.load(weights_only=True)`` and an allowlist,
   converted in memory by ``zoo.formats.<converter>`` and cached as safetensors under ``$HF_HOME/speechzoo``.

The Hub client (:mod:`zoo.hub`) checks every Hub file against the SHA-256 that the Hub's LFS storage names it by,
so a truncated or tampered file in the cache is reported (and removed) instead of used; this module adds the
original releases, their conversion cache and the one loader that every entry point, pipeline and CLI calls.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import warnings
from pathlib import Path
from typing import TypeVar

import torch

from .errors import WeightsError
from .hub import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    HubUnavailable,
    env_flag,
    hf_home,
    sha256_of,
    snapshot,
    verify_md5,
    verify_sha256,
)
from .modeling import PretrainedModel
from .registry import Weights, find

M = TypeVar("M", bound=PretrainedModel)

_CHECKSUMS = "checksums.json"


def speechzoo_cache() -> Path:
    """Where converted original releases are cached (``$HF_HOME/speechzoo``)."""
    return hf_home() / "speechzoo"


# ------------------------------------------------------------------------------------------ originals
def original_files(weights: Weights, *, progress: bool = True) -> list[Path]:
    """Download the original release files (cached, SHA-256-verified) and return their local paths."""
    paths = []
    for source in weights.source_files:
        # releases share file names (g_00500000, config.json): one folder per URL keeps them apart
        folder = speechzoo_cache() / "originals" / hashlib.sha256(source.url.encode()).hexdigest()[:16]
        folder.mkdir(parents=True, exist_ok=True)
        dst = folder / Path(source.url).name
        if not dst.exists():
            if env_flag("HF_HUB_OFFLINE"):
                raise WeightsError(f"{source.url} is not cached and HF_HUB_OFFLINE is set")
            try:
                torch.hub.download_url_to_file(source.url, str(dst), hash_prefix=None, progress=progress)
            except Exception as e:  # urllib raises many kinds; all mean "not downloaded"
                raise WeightsError(f"could not download {source.url}: {e}") from e
        if source.sha256 is None and source.md5 is None:
            warnings.warn(f"{source.url} has no published checksum: its integrity is not verified", stacklevel=3)
        else:
            try:
                if source.sha256 is not None:
                    verify_sha256(dst, source.sha256)
                else:
                    verify_md5(dst, source.md5)
            except WeightsError:
                dst.unlink(missing_ok=True)
                raise
        paths.append(dst)
    return paths


def converted_original(weights: Weights, *, progress: bool = True) -> Path:
    """Convert the original release of ``weights`` once and cache it as config.json + model.safetensors."""
    directory = speechzoo_cache() / "converted" / weights.name
    sums = directory / _CHECKSUMS
    if sums.is_file():
        expected = json.loads(sums.read_text())
        for filename, digest in expected.items():
            verify_sha256(directory / filename, digest)
        return directory
    converter = importlib.import_module(f"zoo.formats.{weights.converter}")
    model = converter.convert(original_files(weights, progress=progress), **weights.converter_options)
    model.save_pretrained(directory)
    sums.write_text(json.dumps({f: sha256_of(directory / f) for f in (CONFIG_NAME, WEIGHTS_NAME)}, indent=2))
    return directory


# ------------------------------------------------------------------------------------------ entry points
def load(cls: type[M], entry_point: str, weights: str | os.PathLike | None = None, *,
         map_location: str | torch.device = "cpu", progress: bool = True, **selection) -> M:
    """The model at ``weights`` if given; otherwise the release that ``entry_point(**selection)`` selects in the
    registry (an unreleased selection raises, listing the released ones), through :func:`load_release`."""
    if weights is not None:
        return cls.from_pretrained(weights, map_location=map_location, progress=progress)
    return load_release(cls, find(entry_point, **selection), map_location=map_location, progress=progress)


def load_release(cls: type[M], weights_entry: Weights, *, map_location: str | torch.device = "cpu",
                 progress: bool = True) -> M:
    """A registered release: the Hub mirror, else the converted original release."""
    # Only an unavailable mirror falls back; a corrupt or truncated download raises and is never papered over.
    try:
        directory = snapshot(weights_entry.repo_id, revision=weights_entry.revision, progress=progress)
    except HubUnavailable as hub_error:  # not mirrored, offline, unreachable: fall back to the original release
        try:
            directory = converted_original(weights_entry, progress=progress)
        except WeightsError as e:
            raise WeightsError(f"could not load {weights_entry.name}: {hub_error}; and the original release "
                               f"failed: {e}") from e
    return cls.from_directory(directory, map_location=map_location)
