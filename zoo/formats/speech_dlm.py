"""fairseq SpeechDLM checkpoints (dGSLM's ``speech_dlm_base.pt``) with their ``dict.<channel>.txt`` dictionaries.

``python -m conversion speech_dlm CKPT.pt dict.unitA.txt dict.unitB.txt --out DIR``: the channel names come from the
dictionary file names (``dict.<channel>.txt``) and are sorted, as fairseq's task orders them; every channel must
have the same dictionary (fairseq asserts it), which is stored in the converted config.

The checkpoint is fairseq's trainer container (``torch.save`` zip): only ``state["model"]`` and
``state["cfg"]["model"]``/``["task"]``/``["generation"]`` are read (or the legacy flat ``state["args"]``), so the
criterion name that current fairseq no longer knows (fairseq issue #5041), the optimizer state (present or absent)
and the training state do not matter. Tensors may be float16 (``--fp16`` training) and are stored as float32; the
tied output projection, stored a second time under ``output_projection.0``, must equal the embedding; the legacy
``decoder.embed_positions._float_tensor`` and ``decoder.version`` buffers are dropped.

Architecture resolution follows ``SpeechDLM.build_model``: ``base_lm_architecture`` forces pre-norm (the stored
``decoder_normalize_before`` is ignored), ``decoder_cross_layers < 0`` means every layer,
``max_target_positions = None`` means ``tokens_per_sample``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, ConversionError
from ..models.speech_dlm import (
    DEFAULT_MAX_POSITIONS,
    GenerationDefaults,
    SpeechDLM,
    SpeechDLMConfig,
)
from . import RenameTable, rename
from .fairseq import checkpoint_config, load_checkpoint, plain, read_dictionary

#: Original key → speechzoo key (the decoder's names without the ``decoder.`` prefix); ``None`` drops the key.
RENAME: RenameTable = (
    (r"decoder\.version", None),
    (r"decoder\.embed_positions\.(_float_tensor|weights)", None),      # legacy sinusoidal buffers
    (r"decoder\.(embed_tokens\.weight)", r"\1"),
    (r"decoder\.(project_in_dim\.weight)", r"\1"),
    (r"decoder\.(embed_positions\.weight)", r"\1"),
    (r"decoder\.(layernorm_embedding\.(weight|bias))", r"\1"),
    (r"decoder\.(layers\.\d+\.(self_attn|cross_channel_attn)\.(k|v|q|out)_proj\.(weight|bias))", r"\1"),
    (r"decoder\.(layers\.\d+\.(self_attn|cross_channel_attn|final)_layer_norm\.(weight|bias))", r"\1"),
    (r"decoder\.(layers\.\d+\.fc[12]\.(weight|bias))", r"\1"),
    (r"decoder\.(layer_norm\.(weight|bias))", r"\1"),
    (r"decoder\.(project_out_dim\.weight)", r"\1"),
    (r"decoder\.(output_projection\.\d+\.weight)", r"\1"),
    (r"decoder\.(output_duration_prediction\.\d+\.(weight|bias))", r"\1"),
)

_DICT_NAME = re.compile(r"^dict\.(.+)\.txt$")
_SIGNATURE = "decoder.embed_tokens.weight"


def _flag(value: Any, name: str) -> bool:
    """fairseq stores SpeechDLM's task flags as the strings "True"/"False"."""
    text = str(value).lower()
    if text not in ("true", "false"):
        raise ConversionError(f"{name}={value!r}: expected 'True' or 'False'")
    return text == "true"


def config_from_fairseq(model: dict, task: dict, generation: dict, channels: tuple[str, ...],
                        symbols: tuple[str, ...]) -> SpeechDLMConfig:
    """The :class:`SpeechDLMConfig` that fairseq's ``SpeechDLM.build_model`` builds from a checkpoint's settings."""
    arch = model.get("arch", model.get("_name", "speech_dlm"))
    if arch not in ("speech_dlm", "speech_dlm_big"):
        raise ConversionError(f"the checkpoint's model is {arch!r}, not a SpeechDLM (arch speech_dlm): "
                              "convert it with its own kind")
    big = arch == "speech_dlm_big"

    def get(name: str, default: Any) -> Any:
        value = model.get(name)
        return default if value is None else value

    if get("decoder_layers_to_keep", None):
        raise ConversionError("decoder_layers_to_keep (a pruned model) is not supported")
    if float(get("quant_noise_pq", 0)) > 0:
        raise ConversionError("quant_noise_pq > 0 adds a projection that is not supported")
    if "decoder_final_norm" in model:  # legacy name, read by base_lm_architecture
        no_final_norm = not model["decoder_final_norm"]
    else:
        no_final_norm = bool(get("no_decoder_final_norm", False))
    embed_dim = int(get("decoder_embed_dim", 1024 if big else 512))
    layers = int(get("decoder_layers", 12 if big else 6))
    cross = int(get("decoder_cross_layers", layers))
    max_positions = get("max_target_positions", None)
    if max_positions is None:
        max_positions = get("tokens_per_sample", task.get("tokens_per_sample") or DEFAULT_MAX_POSITIONS)
    duration = _flag(get("duration_prediction", task.get("duration_prediction", "False")), "duration_prediction")
    delayed = _flag(get("delayed_duration_target", task.get("delayed_duration_target", "False")),
                    "delayed_duration_target")
    weights = str(get("main_and_cross_weights", "1,0")).split(",")
    if len(weights) != 2:
        raise ConversionError(f"main_and_cross_weights={get('main_and_cross_weights', '')!r}: expected 'main,cross'")
    activation = str(get("activation_fn", "relu"))
    known = {f.name for f in GenerationDefaults.__dataclass_fields__.values()}
    gen = GenerationDefaults(**{k: type(getattr(GenerationDefaults, k))(generation[k])
                                for k in known if generation.get(k) is not None})
    try:
        return SpeechDLMConfig(
            symbols=symbols, channels=channels, embed_dim=embed_dim,
            input_dim=int(get("decoder_input_dim", embed_dim)), output_dim=int(get("decoder_output_dim", embed_dim)),
            ffn_embed_dim=int(get("decoder_ffn_embed_dim", 4096 if big else 2048)), layers=layers,
            cross_layers=layers if cross < 0 else cross,
            attention_heads=int(get("decoder_attention_heads", 16 if big else 8)), activation_fn=activation,
            positions=("none" if get("no_token_positional_embeddings", False)
                       else "learned" if get("decoder_learned_pos", False) else "sinusoidal"),
            max_target_positions=int(max_positions), scale_embedding=not get("no_scale_embedding", False),
            layernorm_embedding=bool(get("layernorm_embedding", False)), final_layer_norm=not no_final_norm,
            tied_embedding=bool(get("share_decoder_input_output_embed", False)),
            cross_prediction=float(weights[1]) != 0, duration_prediction=duration, delayed_duration=delayed,
            generation=gen)
    except ConfigError as e:
        raise ConversionError(f"the checkpoint's architecture cannot be built: {e}") from e


def _split_paths(paths: list[Path]) -> tuple[Path, dict[str, Path]]:
    dictionaries = {m.group(1): p for p in map(Path, paths) if (m := _DICT_NAME.match(p.name))}
    checkpoints = [Path(p) for p in paths if not _DICT_NAME.match(Path(p).name)]
    if len(checkpoints) != 1 or not dictionaries:
        raise ConversionError("speech_dlm conversion takes one checkpoint and one dictionary per channel, named "
                              "dict.<channel>.txt: e.g. speech_dlm_base.pt dict.unitA.txt dict.unitB.txt")
    return checkpoints[0], dictionaries


def convert(paths: list[Path], config: Path | None = None) -> SpeechDLM:
    """A :class:`SpeechDLM` from ``[checkpoint, dict.<channel>.txt, ...]`` (any order)."""
    if config is not None:
        raise ConversionError("speech_dlm takes no --config: the architecture is read from the checkpoint")
    path, dict_paths = _split_paths(paths)
    channels = tuple(sorted(dict_paths))
    symbols = {ch: read_dictionary(dict_paths[ch]) for ch in channels}
    different = [ch for ch in channels if symbols[ch] != symbols[channels[0]]]
    if different:
        raise ConversionError(f"the dictionaries of {different} differ from that of {channels[0]!r}; SpeechDLM "
                              "needs the same dictionary in every channel")

    container = load_checkpoint(path)
    weights = container["model"]
    if not isinstance(weights, dict) or _SIGNATURE not in weights:
        found = sorted(weights)[:6] if isinstance(weights, dict) else type(weights).__name__
        raise ConversionError(f"{path} is not a SpeechDLM checkpoint: its model has no {_SIGNATURE} (found "
                              f"{found}). Is this a checkpoint of another model?")
    model_cfg, task_cfg = checkpoint_config(container, path)
    cfg = plain(container.get("cfg")) or {}
    generation = cfg.get("generation") if isinstance(cfg.get("generation"), dict) else model_cfg
    task_channels = task_cfg.get("channels")
    if task_channels and sorted(str(task_channels).split(",")) != list(channels):
        raise ConversionError(f"the checkpoint was trained on channels {sorted(str(task_channels).split(','))}, "
                              f"but dictionaries were given for {list(channels)}")
    config = config_from_fairseq(model_cfg, task_cfg, generation, channels, symbols[channels[0]])
    vocab = weights[_SIGNATURE].shape[0]
    if vocab != config.vocab_size:
        raise ConversionError(f"the dictionaries hold {config.vocab_size} symbols but the checkpoint's embedding "
                              f"has {vocab} rows: these are not the dictionaries it was trained with")

    renamed = rename(weights, RENAME)
    if config.tied_embedding:
        tied = renamed.setdefault("output_projection.0.weight", renamed["embed_tokens.weight"])
        if not torch.equal(tied, renamed["embed_tokens.weight"]):
            raise ConversionError("the checkpoint shares input and output embeddings, but stores different "
                                  "decoder.output_projection.0.weight and decoder.embed_tokens.weight")
    model = SpeechDLM(config)
    model.load_state_dict_strict({k: v.float() if v.is_floating_point() else v for k, v in renamed.items()})
    return model.eval()
