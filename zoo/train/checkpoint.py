"""Checkpoints that survive a crash: every file is written under a temporary name in its destination folder and
moved into place with ``os.replace`` (atomic on POSIX and Windows), so a process killed mid-save leaves the previous
checkpoint whole and at most a ``*.tmp-*`` file that :func:`newest` ignores.

The zoo's own training state is one safetensors file: tensors (weights, optimiser moments, RNG states) plus a JSON
document in the header metadata (step counters, optimiser hyper-parameters, scheduler states). Loading it never
unpickles. :func:`flatten_state` / :func:`unflatten_state` turn a nested ``state_dict()`` (optimisers, schedulers)
into that pair and back.

Example::

    >>> import tempfile, torch
    >>> opt = torch.optim.Adam([torch.nn.Parameter(torch.ones(2))], lr=0.1)
    >>> opt.param_groups[0]["params"][0].grad = torch.ones(2); opt.step()
    >>> tensors, meta = flatten_state(opt.state_dict(), "optim")
    >>> sorted(tensors)
    ['optim/state/0/exp_avg', 'optim/state/0/exp_avg_sq', 'optim/state/0/step']
    >>> folder = tempfile.mkdtemp()
    >>> path = save_state(f"{folder}/state_00000001.safetensors", tensors, {"optim": meta})
    >>> t, m = load_state(path)
    >>> unflatten_state(t, m["optim"], "optim")["state"][0]["exp_avg"]
    tensor([0.1000, 0.1000])
"""
from __future__ import annotations

import json
import os
import random
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..errors import InputError

#: Marks a tensor's place in the JSON skeleton of a flattened state.
_TENSOR = "__tensor__"


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)``, then move the finished file onto ``path``. If ``write`` fails (or the process
    dies), ``path`` keeps its previous content and the temporary file is removed where possible."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` through :func:`atomic_write` (for checkpoints in an original trainer's pickle layout)."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def flatten_state(state: Any, prefix: str) -> tuple[dict[str, torch.Tensor], Any]:
    """Split a nested state (dicts, lists, tuples, numbers, strings, tensors) into its tensors, keyed
    ``prefix/path/to/it``, and a JSON-able skeleton that points at them."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(obj: Any, path: str) -> Any:
        if isinstance(obj, torch.Tensor):
            tensors[path] = obj.detach().cpu().contiguous()
            return {_TENSOR: path}
        if isinstance(obj, dict):
            return {"__dict__": [[walk(k, f"{path}/k{i}"), walk(v, f"{path}/{k}")] for i, (k, v) in
                                 enumerate(obj.items())]}
        if isinstance(obj, (list, tuple)):
            return {"__list__" if isinstance(obj, list) else "__tuple__": [walk(v, f"{path}/{i}")
                                                                           for i, v in enumerate(obj)]}
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        raise TypeError(f"cannot store a {type(obj).__name__} at {path} in a training state")

    return tensors, walk(state, prefix)


def unflatten_state(tensors: dict[str, torch.Tensor], skeleton: Any, prefix: str = "") -> Any:
    """The inverse of :func:`flatten_state`."""
    def build(node: Any) -> Any:
        if isinstance(node, dict):
            if _TENSOR in node:
                return tensors[node[_TENSOR]]
            if "__dict__" in node:
                return {build(k): build(v) for k, v in node["__dict__"]}
            if "__list__" in node:
                return [build(v) for v in node["__list__"]]
            return tuple(build(v) for v in node["__tuple__"])
        return node

    return build(skeleton)


def save_state(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write a training state: ``tensors`` and the JSON document ``meta`` (safetensors header), atomically."""
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"speechzoo_training_state":
                                                                              json.dumps(meta)}))


def load_state(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read what :func:`save_state` wrote."""
    path = Path(path)
    try:
        with safe_open(str(path), "pt") as f:
            header = f.metadata() or {}
        tensors = load_file(str(path))
    except Exception as e:  # safetensors raises its own errors for truncated or foreign files
        raise InputError(f"{path} is not a readable safetensors training state ({e})") from e
    if "speechzoo_training_state" not in header:
        raise InputError(f"{path} is a safetensors file but not a speechzoo training state (no training metadata)")
    return tensors, json.loads(header["speechzoo_training_state"])


def rng_state() -> dict[str, Any]:
    """Every random generator's state (torch CPU/CUDA, numpy, Python), for exact resume."""
    py = random.getstate()
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": [py[0], list(py[1]), py[2]],
             "numpy": [np_state[0], torch.from_numpy(np_state[1].astype("int64")), *np_state[2:]]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype("uint32"), *n[2:]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def newest(folder: str | os.PathLike, pattern: str) -> Path | None:
    """The file of ``folder`` whose name matches ``pattern`` (a regex with one group of digits) with the highest
    number; unfinished ``*.tmp-*`` files never match."""
    found = [(int(m.group(1)), p) for p in Path(folder).glob("*") if (m := re.fullmatch(pattern, p.name))]
    return max(found)[1] if found else None


def keep_newest(folder: str | os.PathLike, pattern: str, keep: int) -> None:
    """Delete all but the ``keep`` highest-numbered files of ``folder`` matching ``pattern``."""
    found = sorted((int(m.group(1)), p) for p in Path(folder).glob("*") if (m := re.fullmatch(pattern, p.name)))
    for _, p in found[:-keep] if keep > 0 else ():
        p.unlink()
