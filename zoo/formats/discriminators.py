"""The originals' checkpoint layout of the GAN discriminators (:mod:`zoo.nn.discriminators`), as HiFi-GAN,
speech-resynthesis (``do_XXXXXXXX['mpd'|'msd']``) and SpeechTokenizer (``SpeechTokenizerTrainer_X['discriminators']``)
save them.

The originals use torch's old weight-norm hook (``<conv>.weight_g`` / ``<conv>.weight_v``) where the modules here
use its parametrisation (``<conv>.parametrizations.weight.original0/1``, the same numbers); spectral norm is the
same hook on both sides (``weight_orig`` parameter, ``weight_u`` / ``weight_v`` power-iteration buffers). EnCodec's
STFT discriminator wraps each conv in a ``NormConv2d`` (``convs.<i>.conv.*``). :data:`TO_ORIGINAL` and
:data:`FROM_ORIGINAL` are those renamings as data; :func:`widths` reads the channel widths off a state dict, so a
checkpoint with narrower discriminators than the released ones rebuilds exactly.

Example::

    >>> from zoo.nn.discriminators import MultiScaleSTFTDiscriminator
    >>> state = to_original(MultiScaleSTFTDiscriminator(filters=4).state_dict())
    >>> [k for k in state if k.startswith("discriminators.0.convs.1.")]
    ['discriminators.0.convs.1.conv.bias', 'discriminators.0.convs.1.conv.weight_g', 'discriminators.0.convs.1.conv.weight_v']
    >>> widths("mstftd", state)
    {'filters': 4}
"""
from __future__ import annotations

import re

import torch
from torch import nn

from ..errors import WeightsError
from ..nn.discriminators import (
    MultiPeriodDiscriminator,
    MultiScaleDiscriminator,
    MultiScaleSTFTDiscriminator,
)
from . import RenameTable, rename

#: Discriminator classes under the names the originals' checkpoints file them under.
KINDS: dict[str, type[nn.Module]] = {"mpd": MultiPeriodDiscriminator, "msd": MultiScaleDiscriminator,
                                     "mstftd": MultiScaleSTFTDiscriminator}

_WN_KEY = "parametrizations.weight.original"
_WN = re.escape(_WN_KEY)
#: speechzoo key -> original key. The MS-STFT convs sit in a ``conv`` wrapper in the original.
TO_ORIGINAL: RenameTable = (
    (rf"(discriminators\.\d+\.(?:convs\.\d+|conv_post))\.{_WN}0", r"\1.conv.weight_g"),
    (rf"(discriminators\.\d+\.(?:convs\.\d+|conv_post))\.{_WN}1", r"\1.conv.weight_v"),
    (r"(discriminators\.\d+\.(?:convs\.\d+|conv_post))\.(weight|bias)", r"\1.conv.\2"),
    (r"(discriminators\.\d+\.spec_transform\.window)", r"\1"),
)
#: The same for HiFi-GAN's MPD and MSD (no wrapper).
TO_ORIGINAL_HIFIGAN: RenameTable = (
    (rf"(.+)\.{_WN}0", r"\1.weight_g"),
    (rf"(.+)\.{_WN}1", r"\1.weight_v"),
    (r"(.+)", r"\1"),
)
#: Original key -> speechzoo key, per kind (``weight_v`` means weight norm only where a ``weight_g`` sits beside
#: it; beside ``weight_orig`` it is spectral norm's buffer and keeps its name).
FROM_ORIGINAL: dict[str, RenameTable] = {
    "mstftd": ((r"(.+)\.conv\.weight_g", rf"\1.{_WN_KEY}0"), (r"(.+)\.conv\.weight_v", rf"\1.{_WN_KEY}1"),
               (r"(.+)\.conv\.(weight|bias)", r"\1.\2"), (r"(.+\.spec_transform\.window)", r"\1")),
    "hifigan": ((r"(.+)\.weight_g", rf"\1.{_WN_KEY}0"), (r"(.+)", r"\1")),
}


def to_original(state: dict[str, torch.Tensor], kind: str = "mstftd") -> dict[str, torch.Tensor]:
    """A discriminator's ``state_dict()`` under the original's key names (``kind``: mpd, msd or mstftd)."""
    return rename(state, TO_ORIGINAL if kind == "mstftd" else TO_ORIGINAL_HIFIGAN)


def from_original(state: dict[str, torch.Tensor], kind: str) -> dict[str, torch.Tensor]:
    """An original discriminator state dict under the key names of :mod:`zoo.nn.discriminators`."""
    if kind == "mstftd":
        return rename(state, FROM_ORIGINAL["mstftd"])
    spectral = {k[: -len(".weight_orig")] for k in state if k.endswith(".weight_orig")}
    out = {}
    for key, value in state.items():
        prefix, _, name = key.rpartition(".")
        if name == "weight_v" and prefix not in spectral:
            out[f"{prefix}.{_WN_KEY}1"] = value
        else:
            out.update(rename({key: value}, FROM_ORIGINAL["hifigan"]))
    return out


def widths(kind: str, state: dict[str, torch.Tensor]) -> dict[str, object]:
    """The constructor arguments of ``KINDS[kind]`` that fit the original state dict ``state``: the channel widths
    of its convs (``channels`` of MPD/MSD, ``filters`` of MS-STFT)."""
    def out_channels(prefix: str) -> int:
        for name in ("weight_v", "weight_orig", "conv.weight_v", "conv.weight"):
            t = state.get(f"{prefix}.{name}")
            if t is not None and t.ndim > 1:
                return t.shape[0]
        raise WeightsError(f"{kind} state dict has no weight under {prefix}; is it a {kind} discriminator?")

    if kind == "mstftd":
        return {"filters": out_channels("discriminators.0.convs.0")}
    if kind not in ("mpd", "msd"):
        raise WeightsError(f"unknown discriminator {kind!r}; expected one of {sorted(KINDS)}")
    sub = "discriminators.1" if kind == "msd" else "discriminators.0"
    n = len({m.group(1) for k in state if (m := re.match(rf"{sub}\.convs\.(\d+)\.", k))})
    return {"channels": tuple(out_channels(f"{sub}.convs.{i}") for i in range(n))}


def build(kind: str, state: dict[str, torch.Tensor]) -> nn.Module:
    """The discriminator ``kind`` with the widths of the original state dict ``state``, loaded with it."""
    module = KINDS[kind](**widths(kind, state))
    missing, unexpected = module.load_state_dict(from_original(state, kind), strict=False)
    if missing or unexpected:
        raise WeightsError(f"{kind} checkpoint does not fit the {KINDS[kind].__name__} layout: missing "
                           f"{missing[:5]}, unexpected {unexpected[:5]}")
    return module
