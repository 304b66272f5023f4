"""Readers of the ORIGINAL checkpoint formats, one module per format, each exposing
``convert(paths: list[Path], **options) -> PretrainedModel``.

They are used twice: by the runtime fallback that converts an original release on download
(:func:`zoo.download.converted_original`) and by the maintainers' ``python -m conversion`` CLI. Each module keeps
its key-renaming rules as data — a :data:`RenameTable` — applied by :func:`rename`, which fails on any key that no
rule covers. This module holds the helpers they share.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import ConversionError

#: Ordered ``(regex, replacement)`` rules; the first rule whose regex matches the whole key wins. A ``None``
#: replacement drops the key (training-only state: discriminators, optimiser, EMA counters...).
RenameTable = Sequence[tuple[str, str | None]]

#: (gain, direction) names of the old ``weight_norm`` hook and of the ``parametrizations`` API.
_WEIGHT_NORM_PAIRS = (("weight_g", "weight_v"),
                      ("parametrizations.weight.original0", "parametrizations.weight.original1"))


def load_original(path: str | os.PathLike, *, allow: Iterable[Any] = ()) -> Any:
    """``torch.load`` an original checkpoint with ``weights_only=True``; ``allow`` lists the extra classes the
    format is known to pickle (e.g. ``argparse.Namespace``). Anything else is refused, never executed."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path} does not exist")
    try:
        with torch.serialization.safe_globals(list(allow)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle/zip errors come in many types; all mean "cannot read this safely"
        raise ConversionError(f"cannot read {path} as a weights-only checkpoint ({type(e).__name__}: {e}); "
                              "it is truncated, not a PyTorch checkpoint, or holds objects outside the "
                              "allowlist of this format") from e


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON object in the original config file ``path``; anything else is a :class:`ConversionError`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConversionError(f"{path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConversionError(f"{path} is not a JSON config ({e}); check which file was given as the config") from e
    if not isinstance(data, dict):
        raise ConversionError(f"{path} is not a JSON object")
    return data


def checkpoint_and_config(paths: Sequence[str | os.PathLike], options: dict[str, Any], *, example: str,
                          any_order: bool = False) -> tuple[Path, Path]:
    """The checkpoint and config of a format that comes as two files: ``CKPT CONFIG.json`` or
    ``CKPT --config CONFIG.json`` (``config`` is the only option); with ``any_order`` the ``.json`` file is the
    config wherever it stands. ``example`` shows the expected arguments in the error message."""
    unknown = sorted(set(options) - {"config"})
    if unknown:
        raise ConversionError(f"this conversion takes no options {unknown}, only --config; e.g. {example}")
    files = [Path(p) for p in paths] + ([Path(options["config"])] if options.get("config") is not None else [])
    if any_order:
        configs = [p for p in files if p.suffix == ".json"]
        if len(files) == 2 and len(configs) == 1:
            (checkpoint,) = (p for p in files if p.suffix != ".json")
            return checkpoint, configs[0]
        raise ConversionError(f"this conversion takes the original config.json and checkpoint (in either order), "
                              f"e.g. {example}; got {[str(p) for p in files]}")
    if len(files) != 2:
        raise ConversionError(f"this conversion takes a checkpoint and its config.json, e.g. {example}; "
                              f"got {[str(p) for p in files]}")
    return files[0], files[1]


def expect_keys(container: Any, keys: Iterable[str], *, what: str, path: str | os.PathLike) -> None:
    """Fail unless ``container`` is a dict holding ``keys`` — the signature of the format being converted."""
    missing = [k for k in keys if not isinstance(container, dict) or k not in container]
    if missing:
        found = sorted(container)[:10] if isinstance(container, dict) else type(container).__name__
        raise ConversionError(f"{path} is not {what}: it lacks {missing} (found {found}). "
                              "Is this a checkpoint of another model?")


def rename(state: dict[str, torch.Tensor], table: RenameTable) -> dict[str, torch.Tensor]:
    """Apply a :data:`RenameTable`; keys that no rule covers, or two keys mapped to one, are an error."""
    compiled = [(re.compile(pattern), repl) for pattern, repl in table]
    out: dict[str, torch.Tensor] = {}
    unmapped = []
    for key, value in state.items():
        for pattern, repl in compiled:
            if pattern.fullmatch(key):
                if repl is not None:
                    new = pattern.sub(repl, key)
                    if new in out:
                        raise ConversionError(f"two original keys map to {new!r}")
                    out[new] = value
                break
        else:
            unmapped.append(key)
    if unmapped:
        raise ConversionError(f"{len(unmapped)} original keys are not covered by the rename table: "
                              f"{', '.join(unmapped[:10])}{' …' if len(unmapped) > 10 else ''}")
    return out


def fold_weight_norm(g: torch.Tensor, v: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """w = g · v / ‖v‖ with the norm over every dim but ``dim`` — the very kernel both of torch's weight-norm
    APIs call, so the folded weight is bit-identical to the one the original computes at each forward."""
    if v.ndim < 1 or not -v.ndim <= dim < v.ndim or g.numel() != v.shape[dim]:
        raise ConversionError(f"weight norm over dim {dim}: a gain of shape {tuple(g.shape)} does not fit a "
                              f"direction of shape {tuple(v.shape)}")
    gain_shape = [1] * v.ndim
    gain_shape[dim] = v.shape[dim]
    return torch._weight_norm(v, g.reshape(gain_shape), dim)


def fold_weight_norms(state: dict[str, torch.Tensor], dim: int = 0,
                      dims: dict[str, int] | None = None) -> dict[str, torch.Tensor]:
    """Replace every weight-norm pair (``weight_g``/``weight_v`` or ``parametrizations.weight.original0/1``) by its
    folded ``weight``. ``dims`` maps a module prefix to a non-default norm dim (WavLM's positional conv uses 2)."""
    out = dict(state)
    for g_name, v_name in _WEIGHT_NORM_PAIRS:
        for key in [k for k in state if k.endswith("." + g_name) or k == g_name]:
            prefix = key[: -len(g_name)]
            v_key = prefix + v_name
            if v_key not in state:
                raise ConversionError(f"{key} has no matching {v_key}")
            module = prefix.rstrip(".")
            out[prefix + "weight"] = fold_weight_norm(out.pop(key), out.pop(v_key), (dims or {}).get(module, dim))
    return out
