"""EnCodec's SEANet checkpoint layout, as SpeechTokenizer and WavTokenizer save it: one ``nn.Sequential`` per
encoder/decoder, ``model.<idx>.conv.conv.weight_g``, ``model.<idx>.lstm.weight_ih_l0``, ``model.<idx>.alpha``...

:func:`seanet_rules` maps it onto :class:`zoo.nn.seanet.SEANetEncoder` / :class:`~zoo.nn.seanet.SEANetDecoder`'s
names; the formats that embed a SEANet prefix the rules with where it lives in their checkpoints.

Example::

    >>> import torch
    >>> from zoo.formats import rename
    >>> rules = seanet_rules(SEANetConfig(ratios=(2,), lstm_layers=0), "encoder")
    >>> list(rename({"model.0.conv.conv.weight_g": torch.zeros(1), "model.3.conv.conv.bias": torch.zeros(1)}, rules))
    ['conv_in.weight_g', 'blocks.0.downsample.bias']
"""
from __future__ import annotations

import re

from ..nn.seanet import SEANetConfig
from . import RenameTable


def seanet_rules(config: SEANetConfig, part: str) -> RenameTable:
    """Rename rules (:data:`~zoo.formats.RenameTable` pairs, without a prefix) from EnCodec's ``nn.Sequential``
    layout to the SEANet module's names. ``part`` is "encoder" or "decoder". The parameter name (``weight_g``,
    ``weight_v``, ``bias``, or an already folded ``weight``) is kept, so weight norm can be folded before or after
    renaming.
    """
    return [(re.escape(original) + r"\.(\w+)", ours + r".\1") for original, ours in seanet_modules(config, part)]


def seanet_modules(config: SEANetConfig, part: str) -> list[tuple[str, str]]:
    """``(EnCodec module path, SEANet module path)`` for every module of the ``part`` ("encoder" or "decoder")
    that may hold tensors, in the order of the layers (a trainer maps parameter names both ways with it)."""
    if part not in ("encoder", "decoder"):
        raise ValueError(f"part must be 'encoder' or 'decoder', got {part!r}")
    pairs: list[tuple[str, str]] = []

    def module(original: str, ours: str) -> None:
        pairs.append((original, ours))

    def residuals(first: int, block: int) -> None:
        for j in range(config.n_residual_layers):
            original, ours = f"model.{first + j}", f"blocks.{block}.residuals.{j}"
            module(original + ".block.0", ours + ".act1")  # activations have tensors only with Snake (alpha)
            module(original + ".block.1.conv.conv", ours + ".conv1")
            module(original + ".block.2", ours + ".act2")
            module(original + ".block.3.conv.conv", ours + ".conv2")
            module(original + ".shortcut.conv.conv", ours + ".shortcut")

    stage = config.n_residual_layers + 2  # modules per stride stage: residual blocks, activation, (t)conv
    module("model.0.conv.conv", "conv_in")
    index = 1
    if part == "decoder" and config.lstm_layers:
        module("model.1.lstm", "lstm")
        index = 2
    for i in range(len(config.ratios)):
        if part == "encoder":
            residuals(index, i)
            module(f"model.{index + stage - 2}", f"blocks.{i}.act")
            module(f"model.{index + stage - 1}.conv.conv", f"blocks.{i}.downsample")
        else:
            module(f"model.{index}", f"blocks.{i}.act")
            module(f"model.{index + 1}.convtr.convtr", f"blocks.{i}.upsample")
            residuals(index + 2, i)
        index += stage
    if part == "encoder" and config.lstm_layers:
        module(f"model.{index}.lstm", "lstm")
        index += 1
    module(f"model.{index}", "act_out")
    module(f"model.{index + 1}.conv.conv", "conv_out")
    return pairs
