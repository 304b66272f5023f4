"""Pieces of fairseq's on-disk formats that several converters share: ``dict.txt`` dictionaries and the checkpoint
container written by ``fairseq-train`` (``fairseq/checkpoint_utils.py``).

A checkpoint is a torch pickle ``{"args", "cfg", "model", ...}``. Hydra-era files (what ``fairseq-train`` writes
today) hold ``args = None`` and ``cfg``, a plain nested dict whose ``cfg["model"]`` and ``cfg["task"]`` carry every
field; legacy (pre-hydra) files hold ``args``, an ``argparse.Namespace`` of every command-line flag, and no ``cfg``.
Both are read with ``torch.load(weights_only=True)``; ``argparse.Namespace`` is the only class allowed beyond
tensors and containers.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import ConversionError
from ..nn.dictionary import FairseqDictionary
from . import load_original

#: fairseq's ``Dictionary.add_from_file`` flag that lets a line redefine an existing symbol.
OVERWRITE_FLAG = "#fairseq:overwrite"


def read_dictionary(path: str | Path) -> tuple[str, ...]:
    """The symbols of a fairseq ``dict.txt`` in id order: the four specials, then one per ``symbol count [flag]``
    line in file order (``Dictionary.load``). A repeated symbol is an error, unless flagged ``#fairseq:overwrite``."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path} does not exist")
    symbols = list(FairseqDictionary.SPECIALS)
    seen = set(symbols)
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.rstrip().rsplit(" ", 1)
        overwrite = len(fields) == 2 and fields[1] == OVERWRITE_FLAG
        if overwrite:
            fields = fields[0].rsplit(" ", 1)
        if len(fields) != 2 or not _is_int(fields[1]):
            raise ConversionError(f"{path} line {n}: {line!r} is not '<symbol> <count> [flags]'; is this a fairseq "
                                  "dict.txt?")
        if fields[0] in seen and not overwrite:
            raise ConversionError(f"{path} line {n}: the symbol {fields[0]!r} appears twice")
        seen.add(fields[0])
        symbols.append(fields[0])
    return tuple(symbols)


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def load_checkpoint(path: str | Path) -> dict:
    """A ``fairseq-train`` checkpoint, read weights-only; it must hold ``model`` and either ``cfg`` or ``args``."""
    container = load_original(path, allow=[argparse.Namespace])
    if not isinstance(container, dict) or "model" not in container or (
            container.get("cfg") is None and container.get("args") is None):
        found = sorted(container)[:10] if isinstance(container, dict) else type(container).__name__
        raise ConversionError(f"{path} is not a fairseq checkpoint: it needs 'model' and 'cfg' or 'args' "
                              f"(found {found}). Is this a checkpoint of another model?")
    return container


def checkpoint_config(container: dict, path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(model, task)`` settings as plain dicts: ``cfg["model"]``/``cfg["task"]`` (hydra), else every field of the
    legacy ``args`` for both (which held them in one namespace, with ``arch`` and ``task`` naming the model and
    task)."""
    cfg = container.get("cfg")
    if cfg is not None:
        if not isinstance(cfg, dict) or not isinstance(cfg.get("model"), dict) or not isinstance(cfg.get("task"), dict):
            raise ConversionError(f"{path}: cfg must be a dict with 'model' and 'task' dicts")
        return dict(cfg["model"]), dict(cfg["task"])
    args = container["args"]
    if not isinstance(args, argparse.Namespace):
        raise ConversionError(f"{path}: args must be an argparse.Namespace, got {type(args).__name__}")
    fields = vars(args)
    return {**fields, "_name": fields.get("arch")}, {**fields, "_name": fields.get("task")}
