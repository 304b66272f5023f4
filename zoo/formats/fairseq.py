"""Pieces of fairseq's on-disk formats that several converters and the LM trainers share: ``dict.txt`` dictionaries,
the binarised corpora of ``fairseq-preprocess`` (``.bin``/``.idx``, :func:`read_indexed_dataset`) and the checkpoint
container written by ``fairseq-train`` (``fairseq/checkpoint_utils.py``).

A checkpoint is a torch pickle ``{"args", "cfg", "model", ...}``. Hydra-era files (what ``fairseq-train`` writes
today) hold ``args = None`` and ``cfg``, a plain nested dict whose ``cfg["model"]`` and ``cfg["task"]`` carry every
field; legacy (pre-hydra) files hold ``args``, an ``argparse.Namespace`` of every command-line flag, and no ``cfg``.
Both are read with ``torch.load(weights_only=True)``; ``argparse.Namespace`` is the only class allowed beyond
tensors and containers.

Files written between October 2020 and March 2021 pickle ``cfg`` as an omegaconf ``DictConfig`` (with fairseq's
config dataclasses and enums inside), and training metrics may hold numpy scalars. Those classes are never imported:
each is replaced by an inert :class:`Stub` that only records what the pickle gives it (still under the
weights-only unpickler, so nothing else can run), and :func:`plain` turns the recorded config back into dicts,
resolving omegaconf's ``${a.b}`` interpolations.
"""
from __future__ import annotations

import argparse
import collections
import re
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConversionError
from ..nn.dictionary import FairseqDictionary
from . import load_original

#: fairseq's ``Dictionary.add_from_file`` flag that lets a line redefine an existing symbol.
OVERWRITE_FLAG = "#fairseq:overwrite"


def read_dictionary(path: str | Path) -> tuple[str, ...]:
    """The symbols of a fairseq ``dict.txt`` in id order: the four specials, then one per ``symbol count [flag]``
    line in file order (``Dictionary.load``). A repeated symbol is an error, unless flagged ``#fairseq:overwrite``."""
    return load_dictionary(path).symbols


def load_dictionary(path: str | Path) -> FairseqDictionary:
    """A fairseq ``dict.txt`` as a :class:`FairseqDictionary` with its counts (see :func:`read_dictionary`)."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path} does not exist")
    symbols, counts = list(FairseqDictionary.SPECIALS), [0] * len(FairseqDictionary.SPECIALS)
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
        counts.append(int(fields[1]))
    return FairseqDictionary(symbols, counts)


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


#: fairseq's mmap indexed dataset (``fairseq/data/indexed_dataset.py``, ``MMapIndexedDataset``): ``PREFIX.idx``
#: holds this magic, version 1 (uint64), a dtype code (uint8), the item count (uint64), the item sizes (int32)
#: and their byte offsets in ``PREFIX.bin`` (int64); ``PREFIX.bin`` holds the items back to back.
INDEX_MAGIC = b"MMIDIDX\x00\x00"
INDEX_DTYPES = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 6: np.float64, 7: np.double,
                8: np.uint16, 9: np.uint32, 10: np.uint64}


def token_dtype(vocab_size: int) -> type[np.integer]:
    """``best_fitting_int_dtype``: the storage type ``fairseq-preprocess`` picks for a vocabulary."""
    return np.uint16 if vocab_size < 65500 else np.uint32 if vocab_size < 4294967295 else np.int64


def read_indexed_dataset(prefix: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(tokens, sizes)`` of ``PREFIX.bin``/``PREFIX.idx``: every item's tokens back to back (memory-mapped, in the
    stored dtype) and the int64 item lengths."""
    index, data = Path(f"{prefix}.idx"), Path(f"{prefix}.bin")
    for f in (index, data):
        if not f.is_file():
            raise ConversionError(f"{f} does not exist (a fairseq binarised split is PREFIX.bin + PREFIX.idx)")
    header = index.read_bytes()[:34]
    if len(header) < 26 or header[:9] != INDEX_MAGIC or struct.unpack("<Q", header[9:17])[0] != 1:
        raise ConversionError(f"{index} is not a fairseq mmap index (MMIDIDX version 1); only --dataset-impl mmap "
                              "(fairseq's default) is read")
    dtype = INDEX_DTYPES.get(header[17])
    if dtype is None:
        raise ConversionError(f"{index}: unknown dtype code {header[17]}")
    count = struct.unpack("<Q", header[18:26])[0]
    sizes = np.fromfile(index, dtype=np.int32, count=count, offset=26).astype(np.int64)
    pointers = np.fromfile(index, dtype=np.int64, count=count, offset=26 + 4 * count)
    if len(sizes) != count or len(pointers) != count:
        raise ConversionError(f"{index} is truncated: {count} items announced")
    total = int(sizes.sum())
    item = np.dtype(dtype).itemsize
    if data.stat().st_size < total * item or (count and pointers[-1] != (total - sizes[-1]) * item):
        raise ConversionError(f"{data} does not hold the {total} tokens that {index} describes back to back")
    tokens = np.memmap(data, dtype=dtype, mode="r", shape=(total,)) if total else np.zeros(0, dtype)
    return tokens, sizes


def write_indexed_dataset(prefix: str | Path, items: Iterable[Sequence[int] | np.ndarray], vocab_size: int) -> None:
    """Write ``PREFIX.bin``/``PREFIX.idx`` as ``fairseq-preprocess`` does (``MMapIndexedDatasetBuilder`` with the
    dtype of :func:`token_dtype`), byte for byte."""
    dtype = token_dtype(vocab_size)
    sizes = []
    with open(f"{prefix}.bin", "wb") as data:
        for item in items:
            array = np.asarray(item, dtype=dtype)
            data.write(array.tobytes(order="C"))
            sizes.append(array.size)
    code = next(k for k, v in INDEX_DTYPES.items() if v == dtype)
    sizes_array = np.asarray(sizes, dtype=np.int32)
    pointers = np.concatenate([[0], np.cumsum(sizes_array, dtype=np.int64)[:-1]]) * np.dtype(dtype).itemsize
    with open(f"{prefix}.idx", "wb") as index:
        index.write(INDEX_MAGIC + struct.pack("<Q", 1) + struct.pack("<B", code) + struct.pack("<Q", len(sizes)))
        index.write(sizes_array.tobytes(order="C"))
        index.write(np.asarray(pointers[:len(sizes)], dtype=np.int64).tobytes(order="C"))


#: Globals that a fairseq checkpoint may pickle besides tensors: read as inert stubs (module prefixes), or as the
#: real, harmless builtin types.
STUB_PREFIXES = ("omegaconf.", "fairseq.", "numpy.", "typing.", "enum.")
SAFE_BUILTINS = {f"builtins.{t.__name__}": t for t in (dict, list, tuple, set, frozenset, int, float, str, bool)}
SAFE_BUILTINS["collections.defaultdict"] = collections.defaultdict
_INTERPOLATION = re.compile(r"\$\{([\w.]+)\}")
_MISSING = "???"


class Stub:
    """Stands in for a pickled object of a class that is not imported: keeps the arguments it was built with
    (``args``) and the state the pickle restores (``state``)."""

    qualname = "?"
    args: tuple = ()  # NEWOBJ builds the object without calling __init__
    state: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # REDUCE calls the class: Enum(value), scalar(dtype, b)
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<stub of {self.qualname}>"


def _stub_class(qualname: str) -> type[Stub]:
    return type(qualname.rsplit(".", 1)[-1], (Stub,), {"qualname": qualname})


def load_checkpoint(path: str | Path) -> dict:
    """A ``fairseq-train`` checkpoint, read weights-only; it must hold ``model`` and either ``cfg`` or ``args``.
    omegaconf, fairseq and numpy objects come back as :class:`Stub` objects (see the module docstring)."""
    try:
        container = load_original(path, allow=[argparse.Namespace])
    except ConversionError:
        try:
            names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception as e:  # not a zip checkpoint, truncated, ...: the first error says enough
            raise ConversionError(f"cannot read {path} as a fairseq checkpoint ({type(e).__name__}: {e})") from e
        refused = [n for n in names if n not in SAFE_BUILTINS and n != "argparse.Namespace"
                   and not n.startswith(STUB_PREFIXES)]
        if refused:
            raise ConversionError(f"{path} pickles {refused[:5]}, which a fairseq checkpoint never holds; it was "
                                  "not loaded (nothing in it ran)") from None
        allow = [argparse.Namespace, *((SAFE_BUILTINS[n], n) for n in names if n in SAFE_BUILTINS),
                 *((_stub_class(n), n) for n in names if n.startswith(STUB_PREFIXES))]
        container = load_original(path, allow=allow)
    if not isinstance(container, dict) or "model" not in container or (
            container.get("cfg") is None and container.get("args") is None):
        found = sorted(container)[:10] if isinstance(container, dict) else type(container).__name__
        raise ConversionError(f"{path} is not a fairseq checkpoint: it needs 'model' and 'cfg' or 'args' "
                              f"(found {found}). Is this a checkpoint of another model?")
    return container


def plain(value: Any) -> Any:
    """``value`` with every omegaconf stub replaced by its content (``DictConfig`` → dict, ``ListConfig`` → list,
    a value node → its value, an enum → its value, ``???`` → None) and ``${a.b}`` strings resolved against the
    outermost dict; ``argparse.Namespace`` becomes a dict too."""
    root = _unwrap(value)
    return _resolve(root, root, depth=0)


def _unwrap(value: Any) -> Any:
    if isinstance(value, Stub):
        state = value.state if isinstance(value.state, dict) else {}
        if "_content" in state:
            return _unwrap(state["_content"])
        if "_val" in state:
            return _unwrap(state["_val"])
        return _unwrap(value.args[0]) if value.args else None  # an enum member: Enum(value)
    if isinstance(value, argparse.Namespace):
        value = vars(value)
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_unwrap(v) for v in value]
    return None if value == _MISSING else value


def _resolve(value: Any, root: Any, depth: int) -> Any:
    if isinstance(value, dict):
        return {k: _resolve(v, root, depth) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, root, depth) for v in value]
    match = _INTERPOLATION.fullmatch(value) if isinstance(value, str) else None
    if match is None or depth > 10:
        return value
    target = root
    for key in match.group(1).split("."):
        if not isinstance(target, dict) or key not in target:
            return value  # fairseq never reads what it cannot resolve
        target = target[key]
    return _resolve(target, root, depth + 1)


def checkpoint_config(container: dict, path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(model, task)`` settings as plain dicts: ``cfg["model"]``/``cfg["task"]`` (hydra; a plain dict or an
    omegaconf ``DictConfig``), else every field of the legacy ``args`` for both (which held them in one namespace,
    with ``arch`` and ``task`` naming the model and task)."""
    cfg = plain(container.get("cfg"))
    if cfg is not None:
        if not isinstance(cfg, dict) or not isinstance(cfg.get("model"), dict) or not isinstance(cfg.get("task"), dict):
            raise ConversionError(f"{path}: cfg must be a dict with 'model' and 'task' dicts")
        return cfg["model"], cfg["task"]
    args = container["args"]
    if not isinstance(args, argparse.Namespace):
        raise ConversionError(f"{path}: args must be an argparse.Namespace, got {type(args).__name__}")
    fields = plain(args)
    return {**fields, "_name": fields.get("arch")}, {**fields, "_name": fields.get("task")}
