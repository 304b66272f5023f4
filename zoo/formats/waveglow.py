"""WaveGlow checkpoints of GSLM's unit-to-speech, in both released containers.

``python -m conversion waveglow WAVEGLOW.pt --out DIR``

* textlesslib's ``waveglow_256channels_standalone.pt``: ``{"hparams": WaveGlow kwargs (dict, ``WN_config``
  nested), "model_dict": state_dict}`` with weight norm kept as ``weight_g``/``weight_v``; plain data, read with
  ``torch.load(weights_only=True)``.
* the fairseq README's ``waveglow_256channels_new.pt`` (NVIDIA's format): ``{"model": <pickled glow.WaveGlow
  module>, ...}``, which the original can only load with its ``glow`` module importable. Here it is read by
  torch's weights-only unpickler with an allowlist that maps each class such a file names (``glow.WaveGlow``,
  ``glow.WN``, ``glow.Invertible1x1Conv``, torch's ``Conv1d``/``ConvTranspose1d``/``ModuleList``, the weight-norm
  hook) to an inert record of its attributes: none of the pickled classes is imported or run, and any other global
  in the file is refused. The tensors and hyper-parameters are then read from those records.

Both give the same :class:`~zoo.models.waveglow.WaveGlow`: weight norm folded (``g · v / ‖v‖`` per output
channel), the invertible 1×1 convolutions kept as stored (their inverse is taken at inference, in float32, as the
original does).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import ConversionError, WeightsError
from ..modeling import config_from_dict
from ..models.waveglow import UPSAMPLE_KERNEL, WaveGlow, WaveGlowConfig
from . import RenameTable, expect_keys, fold_weight_norms, load_original, rename

#: Original key (weight norm folded) → speechzoo key.
RENAMES: RenameTable = (
    (r"upsample\.(weight|bias)", r"upsample.\1"),
    (r"WN\.(\d+)\.(start|end)\.(weight|bias)", r"wn.\1.\2.\3"),
    (r"WN\.(\d+)\.cond_layer\.(weight|bias)", r"wn.\1.cond.\2"),
    (r"WN\.(\d+)\.in_layers\.(\d+)\.(weight|bias)", r"wn.\1.in_layers.\2.\3"),
    (r"WN\.(\d+)\.res_skip_layers\.(\d+)\.(weight|bias)", r"wn.\1.res_skip.\2.\3"),
    (r"convinv\.(\d+)\.conv\.weight", r"convinv.\1.weight"),
)
#: Keyword arguments of the original ``WaveGlow(...)`` and of its ``WN_config``.
HPARAMS = ("n_mel_channels", "n_flows", "n_group", "n_early_every", "n_early_size", "WN_config")
WN_HPARAMS = ("n_layers", "n_channels", "kernel_size")


def convert(paths: list[Path], **options: Any) -> WaveGlow:
    if options or len(paths) != 1:
        raise ConversionError("waveglow takes one file (waveglow_256channels_standalone.pt or "
                              "waveglow_256channels_new.pt) and no options")
    path = Path(paths[0])
    container = load_original(path, allow=LEGACY_ALLOWLIST)
    if isinstance(container, dict) and "model_dict" in container:
        expect_keys(container, ["hparams", "model_dict"], what="a standalone WaveGlow {'hparams', 'model_dict'}",
                    path=path)
        hparams, state = container["hparams"], container["model_dict"]
        if not isinstance(hparams, Mapping) or not isinstance(hparams.get("WN_config"), Mapping):
            raise ConversionError(f"{path}: hparams is not a dict of WaveGlow arguments with WN_config")
    elif isinstance(container, dict) and isinstance(container.get("model"), _Pickled):
        hparams, state = _from_module(container["model"], path)
    else:
        found = sorted(container)[:10] if isinstance(container, dict) else type(container).__name__
        raise ConversionError(f"{path} is not a WaveGlow checkpoint: expected {{'hparams', 'model_dict'}} "
                              f"(textlesslib) or {{'model': WaveGlow}} (fairseq README), found {found}")
    config = waveglow_config(hparams, where=str(path))
    model = WaveGlow(config)
    try:
        model.load_state_dict_strict(rename(fold_weight_norms(dict(state)), RENAMES))
    except WeightsError as e:
        raise ConversionError(f"{path} does not match its hyper-parameters: {e}") from e
    return model.eval()


def waveglow_config(hparams: Mapping[str, Any], *, where: str) -> WaveGlowConfig:
    missing = [k for k in HPARAMS if k not in hparams] + [f"WN_config.{k}" for k in WN_HPARAMS
                                                          if k not in hparams.get("WN_config", {})]
    if missing:
        raise ConversionError(f"{where}: the WaveGlow hyper-parameters lack {missing}")
    fields = {k: hparams[k] for k in HPARAMS if k != "WN_config"}
    fields.update({k: hparams["WN_config"][k] for k in WN_HPARAMS})
    try:
        return config_from_dict(WaveGlowConfig, {k: int(v) for k, v in fields.items()})
    except (TypeError, ValueError, WeightsError) as e:
        raise ConversionError(f"{where}: invalid WaveGlow hyper-parameters {fields} ({e})") from e


# ------------------------------------------------------------------------------------------ legacy module pickle
class _Pickled:
    """An inert stand-in for a pickled object: the unpickler fills its ``__dict__`` with the object's state
    (plain data and tensors) and nothing else happens."""

    pickled_as = ""


def _stand_in(qualified_name: str) -> tuple[type, str]:
    return type(qualified_name.rpartition(".")[2], (_Pickled,), {"pickled_as": qualified_name}), qualified_name


def _no_backend() -> None:
    """Old torch modules pickled their THNN backend as a call to this function; it is rebuilt as None."""


#: What a pickled ``glow.WaveGlow`` refers to, each mapped to an inert stand-in.
LEGACY_CLASSES = ("glow.WaveGlow", "glow.WN", "glow.Invertible1x1Conv", "torch.nn.modules.conv.Conv1d",
                  "torch.nn.modules.conv.ConvTranspose1d", "torch.nn.modules.container.ModuleList",
                  "torch.nn.utils.weight_norm.WeightNorm")
LEGACY_ALLOWLIST = (*(_stand_in(name) for name in LEGACY_CLASSES),
                    (_no_backend, "torch.nn.backends.thnn._get_thnn_function_backend"))


def _from_module(root: _Pickled, path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(hyper-parameters, state dict) of a pickled ``glow.WaveGlow``, read from its attribute records."""
    if root.pickled_as != "glow.WaveGlow":
        raise ConversionError(f"{path}: 'model' is a pickled {root.pickled_as}, not glow.WaveGlow")
    try:
        attrs = vars(root)
        modules = attrs["_modules"]
        wn0 = vars(modules["WN"])["_modules"]["0"]
        first_in_layer = vars(vars(wn0)["_modules"]["in_layers"])["_modules"]["0"]
        upsample = vars(modules["upsample"])
        hparams = {"n_mel_channels": upsample["in_channels"], "n_flows": attrs["n_flows"],
                   "n_group": attrs["n_group"], "n_early_every": attrs["n_early_every"],
                   "n_early_size": attrs["n_early_size"],
                   "WN_config": {"n_layers": vars(wn0)["n_layers"], "n_channels": vars(wn0)["n_channels"],
                                 "kernel_size": vars(first_in_layer)["kernel_size"][0]}}
        if tuple(upsample["kernel_size"]) != (UPSAMPLE_KERNEL,):
            raise ConversionError(f"{path}: the upsampler's kernel is {upsample['kernel_size']}, not {UPSAMPLE_KERNEL}")
    except (KeyError, TypeError, IndexError) as e:
        raise ConversionError(f"{path}: the pickled WaveGlow lacks {e}; it is not NVIDIA's/GSLM's WaveGlow") from e
    state: dict[str, torch.Tensor] = {}
    _collect(root, "", state, path)
    return hparams, state


def _collect(module: _Pickled, prefix: str, state: dict[str, torch.Tensor], path: Path) -> None:
    """The state dict of a pickled module tree: ``_parameters`` and ``_buffers`` of every ``_modules`` entry
    (the ``weight`` that a weight-norm hook recomputes is not a parameter, so only ``weight_g``/``weight_v`` are)."""
    attrs = vars(module)
    for group in ("_parameters", "_buffers"):
        for name, tensor in (attrs.get(group) or {}).items():
            if tensor is not None:
                if not isinstance(tensor, torch.Tensor):
                    raise ConversionError(f"{path}: {prefix}{name} is a {type(tensor).__name__}, not a tensor")
                state[prefix + name] = tensor.detach()
    for name, child in (attrs.get("_modules") or {}).items():
        if child is not None:
            if not isinstance(child, _Pickled):
                raise ConversionError(f"{path}: {prefix}{name} is a {type(child).__name__}, not a module")
            _collect(child, f"{prefix}{name}.", state, path)
