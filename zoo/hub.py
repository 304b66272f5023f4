"""Saving and loading models as ``config.json`` + ``model.safetensors``, locally or on the Hugging Face Hub.

Every model class derives from :class:`PretrainedModel` and declares a frozen dataclass ``config_class`` and a
``model_type`` string. ``save_pretrained(dir)`` writes the config (with its ``model_type``) and the state dict;
``from_pretrained(dir_or_repo_id)`` reads them back strictly: a checkpoint of another model type, a truncated or
tampered file, a missing or unexpected tensor, or a shape mismatch is an error that names what is wrong.
Nothing here unpickles.

Example::

    >>> import tempfile, torch
    >>> from zoo.models.kmeans import Codebook
    >>> cb = Codebook.from_tensor(torch.randn(20, 64))
    >>> d = tempfile.mkdtemp(); _ = cb.save_pretrained(d)
    >>> torch.equal(Codebook.from_pretrained(d).codebook, cb.codebook)
    True
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import WeightsError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
_HASH_CHUNK = 1 << 22

M = TypeVar("M", bound="PretrainedModel")


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
def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str) -> None:
    """Raise :class:`WeightsError` unless the file's SHA-256 starts with ``expected`` (a full digest or a prefix,
    as torch.hub's ``check_hash`` file names carry)."""
    digest = sha256_of(path)
    if not digest.startswith(expected.lower()):
        raise WeightsError(f"{path} has SHA-256 {digest}, expected {expected}…: the file is corrupt or was "
                           "tampered with. Delete it and download it again.")


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
        """Write ``config.json`` and ``model.safetensors`` (contiguous CPU tensors) into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {"model_type": self.model_type, **config_to_dict(self.config)}
        (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        state = {k: v.detach().to("cpu").contiguous() for k, v in self.state_dict().items()}
        save_file(_unshare(state), str(directory / WEIGHTS_NAME), metadata={"model_type": self.model_type})
        return directory

    def push_to_hub(self, repo_id: str, *, private: bool = False, token: str | None = None,
                    commit_message: str = "Upload speechzoo model", model_card: str | None = None) -> str:
        """Upload config.json + model.safetensors (and ``model_card`` as README.md) to a Hub model repo."""
        import tempfile

        from huggingface_hub import HfApi

        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp)
            if model_card is not None:
                Path(tmp, "README.md").write_text(model_card)
            info = api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=commit_message)
        return str(info)

    # -------------------------------------------------------------- load
    @classmethod
    def from_pretrained(cls: type[M], name_or_path: str | os.PathLike, *, revision: str | None = None,
                        map_location: str | torch.device = "cpu", progress: bool = True) -> M:
        """Load from a local directory or a Hub repo id (``revision`` pins a branch, tag or commit)."""
        from .download import snapshot

        directory = snapshot(name_or_path, revision=revision, progress=progress)
        return cls.from_directory(directory, map_location=map_location)

    @classmethod
    def from_directory(cls: type[M], directory: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> M:
        """Load config.json + model.safetensors from ``directory``, strictly, in eval mode."""
        data = read_config(directory)
        model_type = data.pop("model_type", None)
        if model_type != cls.model_type:
            raise WeightsError(f"{directory} holds a {model_type!r} model, not a {cls.model_type!r} model: "
                               f"pass the weights of a {cls.model_type} model")
        model = cls(config_from_dict(cls.config_class, data))
        model.load_state_dict_strict(load_safetensors(Path(directory) / WEIGHTS_NAME))
        return model.to(map_location).eval()

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
