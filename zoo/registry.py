"""The registry of released weight sets, in the spirit of torchvision's ``Weights`` enums.

Each model family declares its releases next to its code as a tuple ``WEIGHTS`` of :class:`Weights` in
``zoo/models/<family>.py`` (and, for an entry point that loads user-converted weights only, a ``NOT_RELEASED``
dict from entry point to what to do instead); this module finds those modules and gathers them. A
:class:`Weights` says which hubconf entry point and arguments select it, where its converted safetensors live on
the Hub (repo id + pinned revision), and where the ORIGINAL release lives (URL + SHA-256 + which ``zoo.formats``
converter reads it), so the one-liners work before a maintainer mirrors the weights.

Example::

    >>> from zoo.registry import find
    >>> find("codebook", layer=11, k=500).source_files[0].url.endswith("codebook-layer-11-k-500-2c2dee95.pt")
    True
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import pkgutil
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from .errors import InputError

#: The package whose modules are the model families.
MODELS_PACKAGE = "zoo.models"

#: Hub organisation that hosts the converted weights, and the tag every mirrored repo carries.
HUB_ORG = "speechzoo"
HUB_REVISION = "v0.1.0"
#: The ``license`` of a release whose authors published none (no LICENSE file, no statement in the README or the
#: release): using it beyond what the law allows needs the authors' permission.
NO_LICENCE = "no licence stated by the authors"


@dataclass(frozen=True)
class SourceFile:
    """One file of an original release. ``sha256`` may be a prefix (torch.hub file names carry 8 hex digits), or
    None where the release published none: the download is then verified against ``md5`` if the release published
    that (as GSLM's README does), else not verified, and a warning says so."""

    url: str
    sha256: str | None
    md5: str | None = None


@dataclass(frozen=True)
class Weights:
    """One released weight set."""

    name: str                      # unique, e.g. "codebook-layer11-k500"
    entry_point: str               # hubconf function that loads it
    kwargs: dict[str, Any]         # the entry point's arguments that select it
    converter: str                 # zoo.formats module that reads the original release
    source_files: tuple[SourceFile, ...]  # the original release, in the converter's argument order
    license: str
    paper: str
    description: str
    sample_rate: int | None = None     # Hz of the audio the model reads or writes
    frame_rate: float | None = None    # Hz of its units / codes / features
    datasets: tuple[str, ...] = ()     # what it was trained on (model-card metadata)
    converter_options: dict[str, Any] = field(default_factory=dict)
    repo_id: str = ""              # converted safetensors on the Hub; default HUB_ORG/name
    revision: str = HUB_REVISION
    mirrored: bool = False         # uploaded to repo_id@revision: until then the public Hub is not asked for it

    def __post_init__(self) -> None:
        if not self.repo_id:
            object.__setattr__(self, "repo_id", f"{HUB_ORG}/{self.name}")

    @property
    def source_url(self) -> str:
        return self.source_files[0].url

    @property
    def verified(self) -> bool:
        """Whether every original file has a published checksum (SHA-256 or MD5) that its download is checked
        against; an unverified release's download is recorded by its own SHA-256 in the cache manifest."""
        return all(s.sha256 is not None or s.md5 is not None for s in self.source_files)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready description, as ``speechzoo list --json`` prints it."""
        d = dataclasses.asdict(self)
        d["source_url"] = self.source_url
        d["verified"] = self.verified
        return d


@functools.cache
def families() -> tuple[ModuleType, ...]:
    """The modules of ``zoo.models`` that declare ``WEIGHTS`` or ``NOT_RELEASED``, in name order.

    Imported here, when first asked for, rather than at import time: the model modules import this one."""
    package = importlib.import_module(MODELS_PACKAGE)
    modules = [importlib.import_module(f"{MODELS_PACKAGE}.{info.name}")
               for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda info: info.name)]
    return tuple(m for m in modules if hasattr(m, "WEIGHTS") or hasattr(m, "NOT_RELEASED"))


def all_weights() -> tuple[Weights, ...]:
    """Every registered weight set, family by family."""
    return tuple(w for module in families() for w in getattr(module, "WEIGHTS", ()))


def not_released() -> dict[str, str]:
    """Entry point -> what to do instead, for entry points whose weights were never released."""
    return {k: v for module in families() for k, v in getattr(module, "NOT_RELEASED", {}).items()}


def find(entry_point: str, **kwargs: Any) -> Weights:
    """The weight set that ``entry_point(**kwargs)`` selects; an unknown choice lists the released ones."""
    candidates = [w for w in all_weights() if w.entry_point == entry_point]
    if not candidates and entry_point in not_released():
        raise InputError(not_released()[entry_point])
    for w in candidates:
        if all(w.kwargs.get(k) == v for k, v in kwargs.items()) and set(w.kwargs) <= set(kwargs):
            return w
    choices = ", ".join("(" + ", ".join(f"{k}={v!r}" for k, v in w.kwargs.items()) + ")" for w in candidates)
    given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    raise InputError(f"{entry_point}({given}) was never released; available: {choices or 'none'}")
