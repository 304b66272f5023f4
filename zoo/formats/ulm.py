"""nicolvisser/Mistral-ULM checkpoints: ``torch.save({"model_args": {...}, "model_state_dict": {...}})`` as written
by ``TransformerModel.save_pretrained_checkpoint`` and released as ``mistral-ulm-k-<k>-lmbda-<l>-...-<sha8>.pt``.

``model_args`` holds ``dim, n_layers, head_dim, hidden_dim, n_heads, n_kv_heads, dropout, norm_eps, vocab_size,
rope_theta``. A checkpoint without them is read with the ``model_config.json`` that ``train.py`` uses: the one
given as ``config=`` (``--config``), else the one beside the checkpoint. The state dict keys are the Mistral names
that :mod:`zoo.nn.transformer` keeps, under ``transformer.``; ELLA-V's converter reuses these rules.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError, ConversionError
from ..models.ulm import UnitLanguageModel
from ..nn.transformer import TransformerConfig
from . import RenameTable, expect_keys, load_original, read_json, rename

#: Original key → speechzoo key. Every key of the Mistral block, nothing else.
RENAME: RenameTable = (
    (r"tok_embeddings\.weight", r"transformer.tok_embeddings.weight"),
    (r"layers\.(\d+)\.attention\.(wq|wk|wv|wo)\.weight", r"transformer.layers.\1.attention.\2.weight"),
    (r"layers\.(\d+)\.feed_forward\.(w1|w2|w3)\.weight", r"transformer.layers.\1.feed_forward.\2.weight"),
    (r"layers\.(\d+)\.(attention_norm|ffn_norm)\.weight", r"transformer.layers.\1.\2.weight"),
    (r"norm\.weight", r"transformer.norm.weight"),
    (r"output\.weight", r"transformer.output.weight"),
)

#: ``model_args`` fields that map onto :class:`TransformerConfig` one to one.
ARCHITECTURE_ARGS = ("dim", "n_layers", "head_dim", "hidden_dim", "n_heads", "n_kv_heads", "norm_eps",
                     "vocab_size", "rope_theta")
#: Training-only ``model_args`` fields: dropout (ULM; identity at inference), max_batch_size (ELLA-V; unused).
TRAINING_ARGS = ("dropout", "max_batch_size")

CONFIG_NAME = "model_config.json"


def transformer_config(model_args: Any, *, output_bias: bool, source: Path) -> TransformerConfig:
    """The :class:`TransformerConfig` of an original ``model_args`` dict; unknown or missing fields are errors."""
    if not isinstance(model_args, dict):
        raise ConversionError(f"{source}: model_args must be a dict, got {type(model_args).__name__}")
    missing = [k for k in ARCHITECTURE_ARGS if k not in model_args]
    unknown = sorted(set(model_args) - set(ARCHITECTURE_ARGS) - set(TRAINING_ARGS))
    if missing or unknown:
        raise ConversionError(f"{source}: model_args lack {missing} / hold unknown {unknown}; "
                              "not the args of a Mistral-ULM or ELLA-V transformer")
    types = {"norm_eps": float, "rope_theta": float}
    try:
        return TransformerConfig(**{k: types.get(k, int)(model_args[k]) for k in ARCHITECTURE_ARGS},
                                 output_bias=output_bias)
    except ConfigError as e:
        raise ConversionError(f"{source}: model_args describe no valid transformer ({e})") from e


def convert(paths: list[Path], config: Path | None = None) -> UnitLanguageModel:
    if len(paths) != 1:
        raise ConversionError("ulm conversion takes one checkpoint, e.g. mistral-ulm-k-500-lmbda-4500-hours-1k-"
                              "steps-10k-9b75c46e.pt [--config model_config.json]")
    path = Path(paths[0])
    container = load_original(path)
    expect_keys(container, ["model_state_dict"], what="a Mistral-ULM checkpoint {'model_args', 'model_state_dict'}",
                path=path)
    model_args = container.get("model_args")
    if model_args is None:
        model_args = _read_model_config(Path(config) if config is not None else path.parent / CONFIG_NAME, path)
    model = UnitLanguageModel(transformer_config(model_args, output_bias=False, source=path))
    model.load_state_dict_strict(rename(container["model_state_dict"], RENAME))
    return model


def _read_model_config(config: Path, checkpoint: Path) -> dict:
    if not config.is_file():
        raise ConversionError(f"{checkpoint} holds no model_args and there is no {config}: pass the "
                              f"{CONFIG_NAME} it was trained with as --config")
    return read_json(config)
