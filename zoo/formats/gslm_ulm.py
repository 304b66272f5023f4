"""GSLM unit LMs: a fairseq ``transformer_lm`` checkpoint (``checkpoint_best.pt``) plus the ``dict.txt`` of its data
directory, given as two files, or GSLM's release archive (``hubert100_lm.tgz`` …) holding both.

``python -m conversion gslm_ulm checkpoint_best.pt dict.txt --out DIR`` (or ``... gslm_ulm hubert100_lm.tgz ...``).
The model settings come from ``cfg["model"]`` (hydra layout) or the legacy ``args`` (:mod:`zoo.formats.fairseq`),
read as fairseq's ``transformer_lm`` builds the model: pre-LN is forced whatever the file says, ``max_target_positions``
falls back to ``tokens_per_sample``, and old files without a final LayerNorm are recognised as fairseq recognises them.
The dictionary travels inside ``config.json`` as the model's symbols.
"""
from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, ConversionError
from ..models.gslm_ulm import GSLMUnitLM, GSLMUnitLMConfig
from . import RenameTable, rename
from .fairseq import checkpoint_config, load_checkpoint, read_dictionary

#: Original key → speechzoo key. ``output_projection`` is the tied copy of the embedding (checked, then dropped);
#: ``version`` and the old ``embed_positions._float_tensor`` hold no weights; ``embed_positions.weight`` exists only
#: with learned positions.
RENAME: RenameTable = (
    (r"decoder\.embed_tokens\.weight", r"embed_tokens.weight"),
    (r"decoder\.layers\.(\d+)\.(self_attn\.(?:q|k|v|out)_proj|self_attn_layer_norm|fc1|fc2|final_layer_norm)\.(weight|bias)",
     r"layers.\1.\2.\3"),
    (r"decoder\.layer_norm\.(weight|bias)", r"layer_norm.\1"),
    (r"decoder\.embed_positions\.weight", r"embed_positions.weight"),
    (r"decoder\.output_projection\.weight", None),
    (r"decoder\.version", None),
    (r"decoder\.embed_positions\._float_tensor", None),
)

#: fairseq's default when neither max_target_positions nor tokens_per_sample is set.
DEFAULT_MAX_TARGET_POSITIONS = 1024

#: Switches of transformer_lm that change the network, with the only value this model implements (fairseq's
#: default, except for the tied embedding, which every GSLM unit LM uses).
REQUIRED = {
    "no_token_positional_embeddings": False, "character_embeddings": False,
    "adaptive_input": False, "adaptive_softmax_cutoff": None, "layernorm_embedding": False,
    "share_decoder_input_output_embed": True, "decoder_layers_to_keep": None, "cross_self_attention": False,
    "scale_fc": False, "scale_attn": False, "scale_heads": False, "scale_resids": False, "base_layers": 0,
    "quant_noise_pq": 0, "quant_noise_scalar": 0,
}

#: The names GSLM's archives give their two files.
CHECKPOINT_SUFFIX, DICTIONARY_NAME = ".pt", "dict.txt"


def config_from_args(model: dict[str, Any], task: dict[str, Any], symbols: tuple[str, ...],
                     source: Path) -> GSLMUnitLMConfig:
    """The :class:`GSLMUnitLMConfig` that fairseq's ``TransformerLanguageModel.build_model`` would build."""
    arch = str(model.get("_name") or "")
    if not arch.startswith("transformer_lm"):
        raise ConversionError(f"{source} holds a {arch or 'unnamed'!r} model, not a fairseq transformer_lm "
                              "(GSLM unit LM) checkpoint")
    if task.get("_name") not in (None, "language_modeling"):
        raise ConversionError(f"{source} was trained for the task {task.get('_name')!r}, not language_modeling")
    for key, required in REQUIRED.items():
        value = model.get(key, False if key == "share_decoder_input_output_embed" else required)
        if value != required:
            raise ConversionError(f"{source}: {key}={value!r} is not supported (only {required!r}, as in every "
                                  "GSLM unit LM)")
    embed_dim = model["decoder_embed_dim"]
    for key in ("decoder_input_dim", "decoder_output_dim"):
        if model.get(key, embed_dim) != embed_dim:
            raise ConversionError(f"{source}: {key}={model[key]} differs from decoder_embed_dim={embed_dim}, "
                                  "which is not supported")
    # base_lm_architecture: old files flagged by no_tie_adaptive_proj lack the final norm; decoder_final_norm wins
    no_final_norm = bool(model.get("no_decoder_final_norm") or False)
    if model.get("no_tie_adaptive_proj") is not None:
        no_final_norm = True
    if model.get("decoder_final_norm") is not None:
        no_final_norm = not model["decoder_final_norm"]
    # fairseq builds the model named exactly transformer_lm from its dataclass (decoder_normalize_before default
    # False: post-LN layers, no final norm); every other arch name runs base_lm_architecture, which forces pre-LN
    normalize_before = bool(model.get("decoder_normalize_before", False)) if arch == "transformer_lm" else True
    max_positions = (model.get("max_target_positions") or model.get("tokens_per_sample")
                     or task.get("tokens_per_sample") or DEFAULT_MAX_TARGET_POSITIONS)
    try:
        return GSLMUnitLMConfig(
            symbols=symbols, embed_dim=int(embed_dim), ffn_embed_dim=int(model["decoder_ffn_embed_dim"]),
            layers=int(model["decoder_layers"]), attention_heads=int(model["decoder_attention_heads"]),
            max_target_positions=int(max_positions), learned_pos=bool(model.get("decoder_learned_pos", False)),
            activation_fn=str(model.get("activation_fn", "relu")),
            scale_embedding=not model.get("no_scale_embedding", False),
            final_layer_norm=normalize_before and not no_final_norm, normalize_before=normalize_before,
            add_bos_token=bool(task.get("add_bos_token", False)))
    except KeyError as e:
        raise ConversionError(f"{source}: the model settings lack {e}") from e
    except ConfigError as e:
        raise ConversionError(f"{source}: the model settings describe no valid unit LM ({e})") from e


def convert(paths: list[Path]) -> GSLMUnitLM:
    paths = [Path(p) for p in paths]
    if len(paths) == 1 and tarfile.is_tarfile(paths[0]):
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint, dictionary = _unpack(paths[0], Path(tmp))
            return convert([checkpoint, dictionary])
    if len(paths) != 2:
        raise ConversionError("gslm_ulm conversion takes CHECKPOINT.pt DICT.txt (the dict.txt of the model's data "
                              "directory), or one GSLM release archive such as hubert100_lm.tgz")
    path, dict_path = paths
    container = load_checkpoint(path)
    model_args, task_args = checkpoint_config(container, path)
    config = config_from_args(model_args, task_args, read_dictionary(dict_path), path)
    state = container["model"]
    embedding = state.get("decoder.embed_tokens.weight")
    if not isinstance(embedding, torch.Tensor):
        raise ConversionError(f"{path} has no decoder.embed_tokens.weight: not a transformer_lm state dict")
    if embedding.shape[0] != len(config.symbols):
        raise ConversionError(f"{dict_path} defines {len(config.symbols)} symbols (4 specials + "
                              f"{len(config.symbols) - 4} lines) but the model embeds {embedding.shape[0]}: give the "
                              "dict.txt of this model's data directory")
    projection = state.get("decoder.output_projection.weight")
    if projection is not None and not torch.equal(projection, embedding):
        raise ConversionError(f"{path}: the output projection is not tied to the embedding, which is not supported")
    model = GSLMUnitLM(config)
    model.load_state_dict_strict(rename(state, RENAME))
    return model


def _unpack(archive: Path, into: Path) -> tuple[Path, Path]:
    """Copy the archive's checkpoint and dict.txt into ``into`` under names of our own (never the member paths)."""
    with tarfile.open(archive) as tar:
        files = [m for m in tar.getmembers() if m.isfile()]
        checkpoints = [m for m in files if m.name.endswith(CHECKPOINT_SUFFIX)]
        best = [m for m in checkpoints if Path(m.name).name == "checkpoint_best.pt"]
        dictionaries = [m for m in files if Path(m.name).name == DICTIONARY_NAME]
        if len(best or checkpoints) != 1 or len(dictionaries) != 1:
            raise ConversionError(f"{archive} should hold one *.pt checkpoint and one dict.txt; it holds "
                                  f"{[m.name for m in files][:20]}")
        out = []
        for member, name in ((best or checkpoints)[0], "checkpoint.pt"), (dictionaries[0], DICTIONARY_NAME):
            with tar.extractfile(member) as src, open(into / name, "wb") as dst:
                shutil.copyfileobj(src, dst)
            out.append(into / name)
    return out[0], out[1]
