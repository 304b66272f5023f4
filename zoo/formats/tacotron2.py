"""GSLM unit-to-speech Tacotron2 checkpoints (``tts_checkpoint_best.pt``) and their ``code_dict``.

``python -m conversion tacotron2 tts_checkpoint_best.pt code_dict --out DIR``

The container is ``torch.save({"hparams": <attribute object>, "model_dict": state_dict, ...})``. Both original
loaders (fairseq's ``load_tacotron``, textlesslib's) only read attributes of ``hparams``. It is an
``argparse.Namespace`` or an ``easydict.EasyDict`` (a dict subclass): both are read through the allowlist of
:func:`read_checkpoint` without importing easydict, and nothing else is unpickled. The ``code_dict`` is the file
beside the checkpoint (the path stored in ``hparams.code_dict`` is a training machine's); its lines, in order, are
the model's codes and are kept in ``config.json``.

``hparams.max_decoder_steps`` is not kept: both loaders overwrite it (2000 by default), as
``hubconf.tacotron2(max_decoder_steps=...)`` does. The latent encoder (``lat_encoder.*``) is training only and
dropped; only ``lat_dim`` matters at inference.
"""
from __future__ import annotations

import argparse
import dataclasses
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import ConversionError, WeightsError
from ..models.tacotron2 import PAD_TOKEN, Tacotron2, Tacotron2Config
from . import RenameTable, expect_keys, load_original, rename

#: Classes the ``hparams`` of released checkpoints are pickled as. EasyDict is rebuilt as the OrderedDict it
#: behaves as (its items), so easydict need not be installed and none of its code runs.
HPARAMS_ALLOWLIST = (argparse.Namespace, (OrderedDict, "easydict.EasyDict"))

#: Original key → speechzoo key.
RENAMES: RenameTable = (
    (r"embedding\.weight", "embedding.weight"),
    (r"obs_embedding\.weight", "obs_embedding.weight"),
    (r"lat_encoder\..*", None),  # the latent's audio encoder: training only
    (r"(encoder|postnet)\.convolutions\.(\d+)\.0\.conv\.(weight|bias)", r"\1.convolutions.\2.conv.\3"),
    (r"(encoder|postnet)\.convolutions\.(\d+)\.1\.(weight|bias|running_mean|running_var|num_batches_tracked)",
     r"\1.convolutions.\2.norm.\3"),
    (r"encoder\.lstm\.((weight|bias)_(ih|hh)_l0(_reverse)?)", r"encoder.lstm.\1"),
    (r"decoder\.prenet\.layers\.(\d+)\.linear_layer\.weight", r"decoder.prenet.\1.weight"),
    (r"decoder\.(attention_rnn|decoder_rnn)\.((weight|bias)_(ih|hh))", r"decoder.\1.\2"),
    (r"decoder\.attention_layer\.(query|memory)_layer\.linear_layer\.weight", r"decoder.attention.\1.weight"),
    (r"decoder\.attention_layer\.v\.linear_layer\.weight", "decoder.attention.v.weight"),
    (r"decoder\.attention_layer\.location_layer\.location_conv\.conv\.weight",
     "decoder.attention.location_conv.weight"),
    (r"decoder\.attention_layer\.location_layer\.location_dense\.linear_layer\.weight",
     "decoder.attention.location_dense.weight"),
    (r"decoder\.linear_projection\.linear_layer\.(weight|bias)", r"decoder.projection.\1"),
    (r"decoder\.gate_layer\.linear_layer\.(weight|bias)", r"decoder.gate.\1"),
)

#: ``hparams`` fields copied into :class:`Tacotron2Config` (all of them are read by the original model).
HPARAMS = ("add_sos", "add_eos", "collapse_code", "n_symbols", "symbols_embedding_dim", "encoder_n_convolutions",
           "encoder_embedding_dim", "encoder_kernel_size", "n_mel_channels", "n_frames_per_step", "obs_dim",
           "obs_n_class", "lat_dim", "attention_rnn_dim", "decoder_rnn_dim", "prenet_dim", "gate_threshold",
           "attention_dim", "attention_location_n_filters", "attention_location_kernel_size",
           "postnet_embedding_dim", "postnet_kernel_size", "postnet_n_convolutions", "sampling_rate")
#: Fields without which a checkpoint is not a Tacotron2 (the rest have the upstream defaults).
REQUIRED = ("n_symbols", "symbols_embedding_dim", "encoder_embedding_dim", "n_mel_channels", "prenet_dim",
            "attention_rnn_dim", "decoder_rnn_dim")


def convert(paths: list[Path], **options: Any) -> Tacotron2:
    if options:
        raise ConversionError(f"the tacotron2 converter takes no options, got {sorted(options)}")
    if len(paths) != 2:
        raise ConversionError("tacotron2 takes two files: tts_checkpoint_best.pt code_dict")
    checkpoint, code_dict = map(Path, paths)
    hparams, state = read_checkpoint(checkpoint)
    config = tacotron2_config(hparams, read_code_dict(code_dict), where=str(checkpoint))
    model = Tacotron2(config)
    try:
        model.load_state_dict_strict(rename(state, RENAMES))
    except WeightsError as e:
        raise ConversionError(f"{checkpoint} does not match its own hparams: {e}") from e
    return model.eval()


def read_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(hparams as a dict, model_dict)`` of a GSLM TTS checkpoint."""
    container = load_original(path, allow=HPARAMS_ALLOWLIST)
    expect_keys(container, ["hparams", "model_dict"], what="a GSLM Tacotron2 checkpoint {'hparams', 'model_dict'}",
                path=path)
    hparams = container["hparams"]
    if isinstance(hparams, Mapping):
        fields = dict(hparams)
    elif isinstance(hparams, argparse.Namespace):
        fields = vars(hparams)
    else:
        raise ConversionError(f"{path}: hparams is a {type(hparams).__name__}, not an attribute object")
    state = container["model_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConversionError(f"{path}: model_dict is not a state dict of tensors")
    return fields, dict(state)


def read_code_dict(path: Path) -> tuple[str, ...]:
    """The codes of a ``code_dict`` file, one per line (``load_code_dict``: each line right-stripped)."""
    if not path.is_file():
        raise ConversionError(f"{path} does not exist (the code_dict released beside the checkpoint)")
    try:
        with open(path, encoding="utf-8") as f:
            codes = tuple(line.rstrip() for line in f)
    except UnicodeDecodeError as e:
        raise ConversionError(f"{path} is not a text code_dict ({e})") from e
    if not codes:
        raise ConversionError(f"{path} is empty: a code_dict has one unit per line")
    duplicates = sorted({c for c in codes if codes.count(c) > 1})
    if duplicates:
        raise ConversionError(f"{path} is not a code_dict: it repeats {duplicates[:5]}")
    if PAD_TOKEN in codes:
        raise ConversionError(f"{path} is not a code_dict: it lists the padding symbol {PAD_TOKEN!r}")
    return codes


def tacotron2_config(hparams: dict[str, Any], codes: tuple[str, ...], *, where: str) -> Tacotron2Config:
    missing = [k for k in REQUIRED if k not in hparams]
    if missing:
        raise ConversionError(f"{where}: hparams lacks {missing}; it is not a Tacotron2 checkpoint")
    if hparams.get("text_or_code", "text") != "code":
        raise ConversionError(f"{where} is a text Tacotron2 (text_or_code={hparams.get('text_or_code', 'text')!r}); "
                              "only GSLM's unit models (text_or_code='code') are supported")
    defaults = {f.name: f.default for f in dataclasses.fields(Tacotron2Config)}
    defaults["n_symbols"] = 0
    try:
        # the JSON config keeps the field's own type (a hparams bool may have been pickled as an int)
        fields = {k: type(defaults[k])(hparams.get(k, defaults[k])) for k in HPARAMS}
        if not fields["obs_dim"]:
            fields["obs_n_class"] = defaults["obs_n_class"]   # unused without the embedding
        return Tacotron2Config(codes=codes, **fields)
    except (TypeError, ValueError) as e:
        raise ConversionError(f"{where}: hparams do not describe a Tacotron2 this code dict fits ({e})") from e
