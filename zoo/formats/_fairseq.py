"""Reading fairseq checkpoints (``torch.save`` of ``{"args" | "cfg", "model", "task_state", ...}``) without fairseq.

fairseq writes either the hydra layout (``cfg``: a nested dict, or omegaconf ``DictConfig`` in some versions;
``args`` None) or the legacy one (``args``: an ``argparse.Namespace`` of every flag, no ``cfg``); HuBERT adds its
label ``Dictionary`` objects under ``task_state``; training bookkeeping (``optimizer_history``, ``extra_state``)
may hold fairseq meter objects. The file is read with ``torch.load(weights_only=True)`` and an explicit
allowlist: ``argparse.Namespace``, inert stand-ins for the ``fairseq.*`` and ``omegaconf.*`` classes it names
(they only keep the state the pickle hands them; no fairseq or omegaconf code runs, nothing is imported), the
type objects omegaconf's metadata refers to, and numpy scalars. Any other global is refused before anything is
unpickled.

Example::

    >>> import argparse, tempfile, torch
    >>> path = tempfile.mkdtemp() + "/ckpt.pt"
    >>> torch.save({"args": argparse.Namespace(arch="hubert", task="hubert_pretraining", normalize=False),
    ...             "model": {"mask_emb": torch.zeros(4)}}, path)
    >>> ckpt = read_checkpoint(path)
    >>> ckpt.model_name, ckpt.task_name, ckpt.task["normalize"], list(ckpt.state)
    ('hubert', 'hubert_pretraining', False, ['mask_emb'])
"""
from __future__ import annotations

import argparse
import collections
import os
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConversionError

_NUMPY_CORE = getattr(np, "_core", None) or np.core  # numpy 2 renamed it; pickles name either
#: Module prefixes whose classes are replaced by inert stand-ins.
STUBBED_MODULES = ("fairseq.", "omegaconf.")
#: The real objects that the pickles of fairseq and omegaconf refer to by name and that are safe to hand out:
#: omegaconf's metadata records key/value types, defaultdict builds its resolver cache.
SAFE_GLOBALS: dict[str, Any] = {
    "argparse.Namespace": argparse.Namespace,
    "typing.Any": typing.Any,
    "builtins.dict": dict, "builtins.list": list, "builtins.int": int, "builtins.float": float,
    "builtins.str": str, "builtins.bool": bool, "builtins.object": object,
    "collections.defaultdict": collections.defaultdict,
    "numpy.dtype": np.dtype,
    "numpy.core.multiarray.scalar": _NUMPY_CORE.multiarray.scalar,
    "numpy._core.multiarray.scalar": _NUMPY_CORE.multiarray.scalar,
    **{f"numpy.dtypes.{name}": getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType")},
}
#: omegaconf containers keep their items in ``_content``, value nodes their value in ``_val``.
_NODE_VALUE = "_val"


class Stub:
    """Stand-in for a fairseq/omegaconf class: keeps the pickled state (and constructor arguments) as data."""

    qualname: str = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and (state[0] is None or isinstance(state[0], dict)):
            state = {**(state[0] or {}), **(state[1] or {})}  # (dict state, slot state)
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.state = state

    def __repr__(self) -> str:
        return f"<{self.qualname} stand-in>"


def _stub(qualname: str) -> type[Stub]:
    return type(qualname.rsplit(".", 1)[-1], (Stub,), {"qualname": qualname})


@dataclass
class Checkpoint:
    """What a fairseq checkpoint says about its model: ``model``/``task`` hold the model and task fields (from
    ``cfg["model"]``/``cfg["task"]``, or the legacy ``args`` for both), ``state`` the state dict."""

    path: Path
    model_name: str | None       # cfg.model._name, or args.arch
    task_name: str | None        # cfg.task._name, or args.task
    model: dict[str, Any]
    task: dict[str, Any]
    state: dict[str, torch.Tensor]
    container: dict[str, Any]


def load(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's top-level dict, read with ``weights_only=True`` and the allowlist above."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path} does not exist")
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception as e:  # zip and pickle errors come in many types; all mean "not a readable checkpoint"
        raise ConversionError(f"cannot read {path} as a PyTorch checkpoint ({type(e).__name__}: {e}); it is "
                              "truncated or not a checkpoint") from e
    refused = sorted(n for n in names if n not in SAFE_GLOBALS and not n.startswith(STUBBED_MODULES))
    if refused:
        raise ConversionError(f"{path} pickles {refused}, outside the allowlist of fairseq checkpoints; it is not a "
                              "fairseq checkpoint (nothing was unpickled)")
    # every safe global (a numpy dtype is built as an instance of a type the pickle never names), stand-ins for
    # the fairseq/omegaconf classes it names
    allow = [(obj, n) for n, obj in SAFE_GLOBALS.items()] + [(_stub(n), n) for n in names if n not in SAFE_GLOBALS]
    try:
        with torch.serialization.safe_globals(allow):
            container = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConversionError(f"cannot read {path} as a weights-only checkpoint ({type(e).__name__}: {e}); it is "
                              "truncated or corrupt") from e
    if not isinstance(container, dict):
        raise ConversionError(f"{path} holds a {type(container).__name__}, not a fairseq checkpoint dict")
    return container


def plain(value: Any) -> Any:
    """omegaconf stand-ins (DictConfig, ListConfig, value nodes) as plain dicts, lists and values."""
    if isinstance(value, Stub):
        if value.qualname.startswith("omegaconf."):
            for field in ("_content", _NODE_VALUE):  # containers, value nodes
                if field in value.__dict__:
                    return plain(value.__dict__[field])
        return value
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    return value


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a fairseq checkpoint in either layout (see the module docstring)."""
    path = Path(path)
    container = load(path)
    state = container.get("model")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConversionError(f"{path} has no fairseq 'model' state dict (found keys {sorted(container)[:10]}); "
                              "is this a checkpoint of another model?")
    cfg = plain(container.get("cfg"))
    args = container.get("args")
    if isinstance(cfg, dict) and isinstance(cfg.get("model"), (dict, argparse.Namespace)):
        model = cfg["model"] if isinstance(cfg["model"], dict) else vars(cfg["model"])
        task = plain(cfg.get("task")) or {}
        task = vars(task) if isinstance(task, argparse.Namespace) else task
        model_name, task_name = model.get("_name"), task.get("_name")
    elif isinstance(args, argparse.Namespace):
        model = task = {k: plain(v) for k, v in vars(args).items()}
        model_name, task_name = model.get("arch"), model.get("task")
    else:
        raise ConversionError(f"{path} has neither a hydra 'cfg' with a model section nor a legacy 'args' "
                              "Namespace: not a fairseq checkpoint")
    return Checkpoint(path, model_name, task_name, dict(model), dict(task), dict(state), container)
