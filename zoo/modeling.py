"""Persistence of models: ``config.json`` + ``model.safetensors``, read back strictly.

Every model class derives from :class:`PretrainedModel` and declares a frozen dataclass ``config_class`` and a
``model_type`` string (this module is to speechzoo what ``modeling_utils`` is to transformers; the Hub client is
:mod:`zoo.hub`). ``save_pretrained(dir)`` writes the config (with its ``model_type``) and the state dict;
``from_pretrained(dir_or_repo_id)`` reads them back strictly: a checkpoint of another model type, a truncated or
tampered file, a missing or unexpected tensor, or a shape mismatch is an error that names what is wrong.
Nothing here unpickles.

Example::

    >>> import tempfile, torch
    >>> from zoo.models.codebook import Codebook
    >>> cb = Codebook.from_tensor(torch.randn(20, 64))
    >>> d = tempfile.mkdtemp(); _ = cb.save_pretrained(d)
    >>> torch.equal(Codebook.from_pretrained(d).codebook, cb.codebook)
    True
    >>> Codebook.from_pretrained(d, dtype=torch.float16).codebook.dtype   # codebooks stay float32 (zoo.nn.precision)
    torch.float32
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import WeightsError
from .hub import CONFIG_NAME, WEIGHTS_NAME, snapshot, upload_folder

M = TypeVar("M", bound="PretrainedModel")
#: config.json's key for the floating dtype a model was saved in, when not float32 (transformers' name).
SAVED_DTYPE_KEY = "torch_dtype"

#: What ``dtype=`` / ``torch_dtype=`` take: a floating dtype, its name ("float16", "bfloat16", ...), or "auto"
#: (the dtype the floating tensors were saved in).
DType = torch.dtype | str


# ------------------------------------------------------------------------------------------ configs
def config_to_dict(config: Any) -> dict:
    """A dataclass config as JSON-ready data (tuples become lists, nested dataclasses dicts)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_from_dict(cls: type, data: dict) -> Any:
    """Build the frozen dataclass ``cls`` from JSON data; unknown keys are an error, lists become tuples."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise WeightsError(f"config.json has fields {sorted(unknown)} that {cls.__name__} does not know; "
                           "the weights were written by a newer speechzoo or for another model")
    return cls(**{k: _coerce(hints[k], v) for k, v in data.items()})


def _coerce(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    candidates = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    for h in candidates:
        if dataclasses.is_dataclass(h) and isinstance(value, dict):
            return config_from_dict(h, value)
    return _tuplify(value)


def _tuplify(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuplify(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuplify(v) for k, v in value.items()}
    return value


# ------------------------------------------------------------------------------------------ files
def read_config(directory: str | os.PathLike) -> dict:
    """The parsed ``config.json`` of a model directory, with its ``model_type``."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise WeightsError(f"{directory} has no {CONFIG_NAME}; it is not a speechzoo model directory "
                           "(convert an original checkpoint with `python -m conversion KIND SRC --out DIR`)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise WeightsError(f"{path} is not valid JSON ({e}); the file is truncated or corrupt") from e


def load_safetensors(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read a safetensors file, turning a truncated or corrupt file into a clear :class:`WeightsError`."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weight file {path} does not exist")
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{path} is not a readable safetensors file ({e}); it is truncated or corrupt. "
                           "Delete it and download or convert it again.") from e


def dtype_alias(dtype: DType | None, torch_dtype: DType | None) -> DType | None:
    """``dtype=`` or its transformers name ``torch_dtype=``, whichever is given (both: they must agree)."""
    if dtype is not None and torch_dtype is not None and dtype != torch_dtype:
        raise WeightsError(f"dtype={dtype!r} and torch_dtype={torch_dtype!r} disagree; pass one of them")
    return torch_dtype if dtype is None else dtype


def resolve_dtype(dtype: DType | None, state: dict[str, torch.Tensor]) -> torch.dtype | None:
    """``dtype=`` as a ``torch.dtype`` (None: leave the model's own)."""
    if dtype is None or isinstance(dtype, torch.dtype):
        resolved = dtype
    elif dtype == "auto":
        resolved = next((v.dtype for v in state.values() if v.is_floating_point()), None)
    else:
        resolved = getattr(torch, str(dtype).removeprefix("torch."), None)
    if resolved is not None and not (isinstance(resolved, torch.dtype) and resolved.is_floating_point):
        raise WeightsError(f"dtype={dtype!r} is not a floating-point torch dtype; pass e.g. torch.float16, "
                           "'bfloat16' or 'auto'")
    return resolved


# ------------------------------------------------------------------------------------------ models
class PretrainedModel(torch.nn.Module):
    """Base of every speechzoo model: a ``config`` dataclass plus tensors, saved as config.json + safetensors.

    Subclasses set ``config_class`` (a frozen dataclass) and ``model_type`` and build themselves from
    ``__init__(config)``.
    """

    config_class: ClassVar[type]
    model_type: ClassVar[str]

    def __init__(self, config: Any) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} takes a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config

    # -------------------------------------------------------------- save
    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (contiguous CPU tensors) into ``directory``; a model in
        another floating dtype than float32 records it in config.json (``"torch_dtype"``, as transformers does), and
        loads back in it."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {"model_type": self.model_type, **config_to_dict(self.config)}
        state = {k: v.detach().to("cpu").contiguous() for k, v in self.state_dict().items()}
        saved = next((v.dtype for v in state.values() if v.is_floating_point()), torch.float32)
        if saved != torch.float32:  # reloaded in this dtype unless from_pretrained(dtype=...) says otherwise
            config[SAVED_DTYPE_KEY] = str(saved).removeprefix("torch.")
        (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        save_file(_unshare(state), str(directory / WEIGHTS_NAME), metadata={"model_type": self.model_type})
        return directory

    def push_to_hub(self, repo_id: str, *, private: bool = False, token: str | None = None,
                    commit_message: str = "Upload speechzoo model", model_card: str | None = None) -> str:
        """Upload config.json + model.safetensors (and ``model_card`` as README.md) to a Hub model repo."""
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp)
            if model_card is not None:
                Path(tmp, "README.md").write_text(model_card)
            return upload_folder(repo_id, tmp, private=private, token=token, commit_message=commit_message)

    # -------------------------------------------------------------- load
    @classmethod
    def from_pretrained(cls: type[M], name_or_path: str | os.PathLike, *, revision: str | None = None,
                        cache_dir: str | os.PathLike | None = None, force_download: bool = False,
                        token: str | bool | None = None, local_files_only: bool = False,
                        map_location: str | torch.device = "cpu", dtype: DType | None = None,
                        torch_dtype: DType | None = None, progress: bool = True) -> M:
        """Load from a local directory or a Hub repo id, strictly, in eval mode.

        The Hub keywords are huggingface_hub's: ``revision`` pins a branch, tag or commit (``"org/name@rev"``
        does too), ``cache_dir`` replaces the Hub cache, ``force_download`` ignores it, ``token`` authenticates,
        ``local_files_only`` never touches the network. ``map_location`` is the device; ``dtype`` (or its
        transformers name ``torch_dtype``) casts the floating-point tensors, "auto" to the dtype they were saved in;
        without it, a model saved in half precision (config.json's ``"torch_dtype"``) loads in half precision.
        """
        dtype = dtype_alias(dtype, torch_dtype)
        directory = snapshot(name_or_path, revision=revision, progress=progress, cache_dir=cache_dir,
                             force_download=force_download, token=token, local_files_only=local_files_only)
        return cls.from_directory(directory, map_location=map_location, dtype=dtype)

    @classmethod
    def from_directory(cls: type[M], directory: str | os.PathLike, *, map_location: str | torch.device = "cpu",
                       dtype: DType | None = None) -> M:
        """Load config.json + model.safetensors from ``directory``, strictly, in eval mode."""
        data = read_config(directory)
        model_type = data.pop("model_type", None)
        saved_dtype = data.pop(SAVED_DTYPE_KEY, None)
        if model_type != cls.model_type:
            raise WeightsError(f"{directory} holds a {model_type!r} model, not a {cls.model_type!r} model: "
                               f"pass the weights of a {cls.model_type} model")
        model = cls(config_from_dict(cls.config_class, data))
        state = load_safetensors(Path(directory) / WEIGHTS_NAME)
        model.load_state_dict_strict(state)
        resolved = resolve_dtype(saved_dtype if dtype is None else dtype, state)
        return model.to(map_location, dtype=resolved).eval() if resolved else model.to(map_location).eval()

    def load_state_dict_strict(self, state: dict[str, torch.Tensor]) -> None:
        """``load_state_dict(strict=True)`` with one error that lists missing, unexpected and misshapen tensors."""
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        misshapen = [f"{k}: {tuple(state[k].shape)} != {tuple(own[k].shape)}"
                     for k in own.keys() & state.keys() if own[k].shape != state[k].shape]
        if missing or unexpected or misshapen:
            parts = [f"{label} ({len(keys)}): {', '.join(keys[:8])}{' …' if len(keys) > 8 else ''}"
                     for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshapen))
                     if keys]
            raise WeightsError(f"weights do not fit {type(self).__name__} — " + "; ".join(parts))
        self.load_state_dict(state, strict=True)


def _unshare(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors that share storage (tied weights): give each its own copy."""
    seen: set[int] = set()
    out = {}
    for k, v in state.items():
        ptr = v.untyped_storage().data_ptr() if v.numel() else -1
        out[k] = v.clone() if ptr in seen else v
        seen.add(ptr)
    return out
