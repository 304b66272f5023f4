"""Training the unit language models as ``fairseq-train`` does, without fairseq: dGSLM's SpeechDLM
(``--task speech_dlm_task --criterion speech_dlm_criterion``) and GSLM's unit LM (``--task language_modeling
--arch transformer_lm*``, criterion ``cross_entropy``), update for update (fairseq @ 3d262bb).

One update (``Trainer.train_step``): ``update_freq`` batches (on each of the ``world_size`` processes), forward in
train mode, the criterion's summed loss back-propagated as is; the gradients summed over processes and multiplied by
``1 / Σ sample_size``; :func:`~zoo.train.fairseq_optim.clip_grad_norm` (``gnorm`` logged before clipping, ``clip``
= 100 when it clipped); :class:`~zoo.train.fairseq_optim.FairseqAdam` at the rate
:func:`~zoo.train.fairseq_optim.inverse_sqrt` ``(updates so far)``. After each epoch (and at the last update) the
valid split is scored the same way in eval mode. Logged names and reductions are fairseq's (losses in base 2).

Criteria:

- ``cross_entropy`` (:func:`cross_entropy`): ``NLL_sum(log_softmax(logits), target)`` over non-pad targets;
  ``sample_size`` = target tokens (sentences with ``sentence_avg``).
- ``speech_dlm_criterion`` (:func:`speech_dlm_criterion`): for every input channel ``ch`` and predicted channel
  ``p`` (``p = ch`` only, unless the model has cross-channel heads), the ``next`` (every unit), ``edge`` (the first
  unit of each run) and ``duration`` (L1 of the run length, read one step later with delayed durations) losses on
  channel ``p``'s targets, scaled by ``channel_weights[ch]`` and the main/cross weight, edge and duration ones
  renormalised by ``sample_size / count`` (``sample_size`` = ``B·T``, padding included); the training loss is
  ``Σ_t weight_t · Σ_(ch,p) loss``, its gradient denominator ``Σ_(ch,p) sample_size``.

The model comes from an original fairseq checkpoint (``init_from``, as ``--restore-file`` with every ``--reset-*``
flag: weights only), a converted zoo directory, or a fresh fairseq-style initialisation from the config's ``model``
section. Training states (weights, Adam moments, counters, random generators) are safetensors files written
atomically; :meth:`LMTrainer.load_state` resumes exactly.

Example (a two-update run on a tiny random model)::

    >>> import tempfile
    >>> from zoo.models.gslm_ulm import GSLMUnitLM, GSLMUnitLMConfig
    >>> from zoo.nn.dictionary import FairseqDictionary
    >>> from zoo.train.lm_data import prepare_units
    >>> data = tempfile.mkdtemp()
    >>> _ = open(f"{data}/t.txt", "w").write("1 2 3 4\\n4 3 2\\n2 2 1 3 4\\n")
    >>> d = prepare_units(data, f"{data}/t.txt", validpref=f"{data}/t.txt")
    >>> model = GSLMUnitLM(GSLMUnitLMConfig(symbols=d.symbols, embed_dim=16, ffn_embed_dim=32, layers=1,
    ...                                     attention_heads=2, max_target_positions=32))
    >>> cfg = LMTrainConfig(task="language_modeling", lr=1e-3, warmup_updates=2, max_tokens=64,
    ...                     required_batch_size_multiple=1, dropout=0.0)
    >>> trainer = LMTrainer(model, cfg, data)
    >>> records = trainer.run(max_update=2)
    >>> [(r["split"], r["num_updates"]) for r in records]
    [('train', 1), ('valid', 1), ('train', 2), ('valid', 2)]
"""
from __future__ import annotations

import ast
import dataclasses
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, InputError
from ..formats import gslm_ulm as gslm_ulm_format
from ..formats import speech_dlm as speech_dlm_format
from ..formats.fairseq import checkpoint_config, load_checkpoint, load_dictionary
from ..modeling import PretrainedModel, config_from_dict, config_to_dict
from ..models.gslm_ulm import GSLMUnitLM
from ..models.speech_dlm import CrossChannelLayer, SpeechDLM
from ..nn.dictionary import FairseqDictionary
from ..nn.fairseq_transformer import (
    MultiheadAttention,
    fairseq_attention_block,
    fairseq_decoder_layer,
    fairseq_dropout,
    fairseq_feed_forward,
    future_mask,
    make_positions,
)
from .checkpoint import flatten_state, load_state, rng_state, save_state, set_rng_state, unflatten_state
from .distributed import ProcessEnv, all_reduce_sum_
from .fairseq_optim import FairseqAdam, clip_grad_norm, inverse_sqrt
from .lm_data import BREAK_MODES, Batch, LMDataset, Split, batch_by_size, epoch_batches, ordered_indices, read_split

LN2 = math.log(2)
#: The zoo model each fairseq task trains, and its criterion.
TASKS = {"speech_dlm_task": (SpeechDLM, "speech_dlm_criterion"), "language_modeling": (GSLMUnitLM, "cross_entropy")}
#: fairseq's logged names of the SpeechDLM targets.
TARGET_KEYS = {"next": "general_token", "edge": "edge_token", "duration": "edge_duration"}
#: Keys of a log record that measure time, not the model.
TIMING_KEYS = ("wps", "ups", "wpb_per_s", "train_wall", "wall")
#: transformer_lm architectures by name (``--arch``): fairseq's defaults for a model built from scratch.
LM_ARCHS = {
    "transformer_lm": {"decoder_embed_dim": 512, "decoder_ffn_embed_dim": 2048, "decoder_layers": 6,
                       "decoder_attention_heads": 8},
    "transformer_lm_big": {"decoder_embed_dim": 1024, "decoder_ffn_embed_dim": 4096, "decoder_layers": 12,
                           "decoder_attention_heads": 16},
}


def _flag(value: Any) -> bool:
    """The speech_dlm task's flags are the strings "True"/"False" (any case)."""
    text = str(value).lower()
    if text not in ("true", "false"):
        raise ConfigError(f"expected 'True' or 'False', got {value!r}")
    return text == "true"


@dataclass(frozen=True)
class LMTrainConfig:
    """What ``fairseq-train`` reads for these recipes, under fairseq's field names and with its defaults (the
    ``common``, ``optimization``, ``optimizer`` (adam), ``lr_scheduler`` (inverse_sqrt), ``dataset``, ``task``,
    ``criterion`` and the training-time ``model`` fields)."""

    task: str = "speech_dlm_task"       # speech_dlm_task | language_modeling
    seed: int = 1
    # optimization
    lr: float = 0.25
    update_freq: int = 1
    clip_norm: float = 0.0
    sentence_avg: bool = False
    max_update: int = 0
    max_epoch: int = 0
    # optimizer: adam
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    # lr_scheduler: inverse_sqrt
    warmup_updates: int = 4000
    warmup_init_lr: float = -1.0
    # dataset
    max_tokens: int | None = None
    batch_size: int | None = None
    required_batch_size_multiple: int = 8
    max_tokens_valid: int | None = None   # None: max_tokens
    batch_size_valid: int | None = None   # None: batch_size
    skip_invalid_size_inputs_valid_test: bool = False
    validate_interval: int = 1
    validate_interval_updates: int = 0
    disable_validation: bool = False
    # checkpoint
    save_interval: int = 1
    save_interval_updates: int = 0
    # task
    sample_break_mode: str = "none"
    tokens_per_sample: int = 1024
    add_bos_token: bool = False
    channels: str | None = None           # speech_dlm_task: comma-separated; None: every dict.<channel>.txt
    channel_weights: str | None = None
    next_unit_prediction: str = "False"
    edge_unit_prediction: str = "True"
    duration_prediction: str = "True"
    delayed_duration_target: str = "True"
    max_target_durations: int | None = 256
    # criterion: speech_dlm_criterion
    main_and_cross_weights: str = "1,0"
    general_unit_loss_weight: float = 0.0
    edge_unit_loss_weight: float = 1.0
    duration_loss_weight: float = 1.0
    # model, training-time settings
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    # precision: fairseq's --fp16 / --bf16 run here as autocast over float32 weights
    fp16: bool = False
    bf16: bool = False
    fp16_init_scale: int = 128
    fp16_scale_window: int | None = None
    min_loss_scale: float = 1e-4

    def __post_init__(self) -> None:
        problems = []
        if self.task not in TASKS:
            problems.append(f"task {self.task!r} is not one of {sorted(TASKS)}")
        if self.sample_break_mode not in BREAK_MODES:
            problems.append(f"sample_break_mode {self.sample_break_mode!r} is not one of {BREAK_MODES}")
        if self.update_freq < 1 or self.tokens_per_sample < 1 or self.required_batch_size_multiple < 1:
            problems.append("update_freq, tokens_per_sample and required_batch_size_multiple must be >= 1")
        if not self.max_tokens and not self.batch_size:
            problems.append("give max_tokens or batch_size (fairseq: --max-tokens or --batch-size)")
        if self.lr <= 0 or self.warmup_updates < 1:
            problems.append(f"lr must be > 0 and warmup_updates >= 1 (fairseq's inverse_sqrt divides by it; got "
                            f"{self.lr}, {self.warmup_updates})")
        if self.add_bos_token:
            problems.append("add_bos_token is not supported (no released unit LM uses it)")
        if self.fp16 and self.bf16:
            problems.append("fp16 and bf16 exclude each other")
        for name in ("next_unit_prediction", "edge_unit_prediction", "duration_prediction",
                     "delayed_duration_target"):
            if str(getattr(self, name)).lower() not in ("true", "false"):
                problems.append(f"{name} must be 'True' or 'False', got {getattr(self, name)!r}")
        weights = str(self.main_and_cross_weights).split(",")
        if len(weights) != 2 or any(not _is_number(w) or float(w) < 0 for w in weights):
            problems.append(f"main_and_cross_weights must be 'main,cross' with weights >= 0, got "
                            f"{self.main_and_cross_weights!r}")
        if problems:
            raise ConfigError("invalid LM training config: " + "; ".join(problems))
        if self.task == "speech_dlm_task":
            for target, weight in zip(self.targets, self.target_weights):
                if weight <= 0:
                    raise ConfigError(f"the {target!r} target needs a positive {_WEIGHT_NAMES[target]} (got {weight})")

    # -------------------------------------------------------------- derived
    @property
    def targets(self) -> tuple[str, ...]:
        """The SpeechDLM targets switched on, in fairseq's order (``next`` alone if none)."""
        on = [t for t, flag in (("next", self.next_unit_prediction), ("edge", self.edge_unit_prediction),
                                ("duration", self.duration_prediction)) if _flag(flag)]
        return tuple(on) or ("next",)

    @property
    def target_weights(self) -> tuple[float, ...]:
        return tuple(getattr(self, _WEIGHT_NAMES[t]) for t in self.targets)

    @property
    def main_cross(self) -> tuple[float, float]:
        main, cross = (float(w) for w in str(self.main_and_cross_weights).split(","))
        return main, cross

    @property
    def precision(self) -> str:
        return "fp16" if self.fp16 else "bf16" if self.bf16 else "fp32"

    # -------------------------------------------------------------- reading fairseq's cfg
    @classmethod
    def from_sections(cls, sections: dict[str, Any], **overrides: Any) -> LMTrainConfig:
        """From a fairseq cfg (``{"common": {...}, "optimization": {...}, ...}``, e.g. a checkpoint's ``cfg`` or
        ``train_config.json``) plus ``overrides`` (fairseq field names; None values ignored). Fields of other
        fairseq options are ignored; an optimizer other than adam, a scheduler other than inverse_sqrt, or a
        criterion other than the task's is an error."""
        flat: dict[str, Any] = {}
        for name, section in sections.items():
            if not isinstance(section, dict):
                continue
            for key, value in section.items():
                if key == "_name":
                    flat[f"{name}._name"] = value
                else:
                    flat.setdefault(key, value)
        for section, expected in (("optimizer", ("adam",)), ("lr_scheduler", ("inverse_sqrt",))):
            name = flat.get(f"{section}._name")
            if name is not None and name not in expected:
                raise ConfigError(f"{section} {name!r} is not supported: the LM recipes use {expected[0]}")
        if "task._name" in flat:
            flat["task"] = flat["task._name"]
        flat.update({k: v for k, v in overrides.items() if v is not None})
        if not flat.get("activation_dropout") and flat.get("relu_dropout"):  # fairseq's layers fall back on it
            flat["activation_dropout"] = flat["relu_dropout"]
        task = flat.get("task", cls.task)
        criterion = flat.get("criterion._name")
        if task in TASKS and criterion is not None and criterion != TASKS[task][1]:
            raise ConfigError(f"criterion {criterion!r} is not supported for {task}: use {TASKS[task][1]}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values = {}
        for key, value in flat.items():
            if key not in fields or value is None and key not in ("max_tokens", "batch_size", "channels"):
                continue
            if key in ("lr", "update_freq") and isinstance(value, (list, tuple)):
                if len(set(value)) != 1:
                    raise ConfigError(f"{key}={value}: one value for every epoch is supported")
                value = value[0]
            if key == "adam_betas" and isinstance(value, str):
                value = ast.literal_eval(value)
            values[key] = value
        for key in ("adam_betas",):
            if key in values:
                values[key] = tuple(float(b) for b in values[key])
        return cls(**values)


_WEIGHT_NAMES = {"next": "general_unit_loss_weight", "edge": "edge_unit_loss_weight",
                 "duration": "duration_loss_weight"}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_config(path: str | Path, **overrides: Any) -> LMTrainConfig:
    """:meth:`LMTrainConfig.from_sections` of a JSON file of fairseq cfg sections."""
    try:
        sections = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"--config {path}: not a readable JSON file of fairseq cfg sections ({e})") from e
    return LMTrainConfig.from_sections(sections, **overrides)


# ------------------------------------------------------------------------------------------ criteria
Stats = Counter  # summable logging outputs (floats)


def ulm_logits(model: GSLMUnitLM, tokens: torch.Tensor, cfg: LMTrainConfig) -> torch.Tensor:
    """Logits ``(B, T, V)`` of right-padded ``tokens`` ``(B, T)`` through fairseq's own op graph of
    ``TransformerDecoder.forward`` without incremental state (what fairseq-train and validation run): time-first
    layers with ``F.multi_head_attention_forward``, its float future mask and bool pad mask, fairseq's dropouts
    (in train mode) in its order of random draws, the tied output projection. The same numbers as ``model(tokens)``
    up to float rounding; the same bits as fairseq's, gradients included."""
    pad, training = model.padding_idx, model.training
    positions = make_positions(tokens, pad)
    if model.config.learned_pos:
        positions = F.embedding(positions, model.embed_positions.weight, pad)
    else:
        positions = model.embed_positions(positions)
    x = model.embed_scale * F.embedding(tokens, model.embed_tokens.weight, pad)
    x += positions
    x = fairseq_dropout(x, cfg.dropout, training).transpose(0, 1)
    pads = tokens.eq(pad)
    key_padding_mask = pads if pads.any() else None
    for layer in model.layers:
        x = fairseq_decoder_layer(layer, x, future_mask(x.shape[0], x), key_padding_mask, cfg.dropout,
                                  cfg.attention_dropout, cfg.activation_dropout, training)
    if model.layer_norm is not None:
        x = model.layer_norm(x)
    return F.linear(x.transpose(0, 1), model.embed_tokens.weight)


def cross_entropy(model: GSLMUnitLM, batch: Batch, cfg: LMTrainConfig) -> tuple[torch.Tensor, float, Stats]:
    """fairseq's ``cross_entropy`` criterion: ``(loss_sum, sample_size, stats)``."""
    logits = ulm_logits(model, batch.source[None], cfg)
    lprobs = F.log_softmax(logits, dim=-1, dtype=torch.float32)  # fairseq's utils.log_softmax
    target = batch.target[None]
    loss = F.nll_loss(lprobs.view(-1, lprobs.shape[-1]), target.view(-1), ignore_index=FairseqDictionary.pad_index,
                      reduction="sum")
    ntokens = int(batch.source[None].ne(FairseqDictionary.pad_index).sum())
    sample_size = batch.rows if cfg.sentence_avg else ntokens
    return loss, sample_size, Stats(loss=loss.item(), ntokens=ntokens, nsentences=batch.rows, sample_size=sample_size)


def speech_dlm_output(model: SpeechDLM, tokens: dict[str, torch.Tensor], cfg: LMTrainConfig) -> dict[str, Any]:
    """``model(tokens)[0]`` (``{channel: {predicted channel: {"pred_token", "pred_duration"}}}``) through fairseq's
    own op graph of ``CrossChannelTransformerDecoder`` without incremental state (as :func:`ulm_logits`): per
    channel positions, embedding, input projection, scale, dropout, time-first; standard layers channel by
    channel; cross-channel layers in their three phases (self-attention of every channel, then attention of each
    channel to the others' streams, then the feed-forward blocks), each channel padded like channel 0."""
    pad, training = FairseqDictionary.pad_index, model.training
    xs = []
    for ch in model.channels:
        positions = None
        if model.embed_positions is not None:
            positions = make_positions(tokens[ch], pad)
            positions = (F.embedding(positions, model.embed_positions.weight, pad) if model.config.positions ==
                         "learned" else model.embed_positions(positions))
        x = F.embedding(tokens[ch], model.embed_tokens.weight, pad)
        if model.project_in_dim is not None:
            x = model.project_in_dim(x)
        x = model.embed_scale * x
        if positions is not None:
            x += positions
        if model.layernorm_embedding is not None:
            x = model.layernorm_embedding(x)
        xs.append(fairseq_dropout(x, cfg.dropout, training).transpose(0, 1))
    first = tokens[model.channels[0]]
    key_padding_mask = first.eq(pad) if first.eq(pad).any() else None
    dropouts = (cfg.dropout, cfg.attention_dropout, cfg.activation_dropout, training)
    stacked = None
    for layer in model.layers:
        mask = future_mask(xs[0].shape[0], xs[0])
        stacked = torch.stack(xs) if stacked is None else stacked
        if isinstance(layer, CrossChannelLayer):
            ys = [fairseq_attention_block(layer.self_attn, layer.self_attn_layer_norm, layer.normalize_before, x,
                                          None, mask, key_padding_mask, cfg.dropout, cfg.attention_dropout,
                                          training) for x in stacked]
            zs = [fairseq_attention_block(layer.cross_channel_attn, layer.cross_channel_attn_layer_norm,
                                          layer.normalize_before, y,
                                          torch.cat([ys[(i + j) % len(ys)] for j in range(1, len(ys))])
                                          if len(ys) > 1 else y, mask, key_padding_mask, cfg.dropout,
                                          cfg.attention_dropout, training) for i, y in enumerate(ys)]
            stacked = torch.stack([fairseq_feed_forward(layer, z, cfg.dropout, cfg.activation_dropout, training)
                                   for z in zs])
        else:
            stacked = torch.stack([fairseq_decoder_layer(layer, x, mask, key_padding_mask, *dropouts)
                                   for x in stacked])
        xs = list(stacked)
    features = {}
    for ch, x in zip(model.channels, torch.unbind(stacked)):
        if model.layer_norm is not None:
            x = model.layer_norm(x)
        x = x.transpose(0, 1)
        features[ch] = model.project_out_dim(x) if model.project_out_dim is not None else x
    return model.output_layer(features)


def speech_dlm_criterion(model: SpeechDLM, batch: Batch, cfg: LMTrainConfig) -> tuple[torch.Tensor, float, Stats]:
    """fairseq's ``speech_dlm_criterion``: ``(training_loss, sample_size, stats)`` (see the module docstring)."""
    targets, channels = cfg.targets, model.channels
    main_weight, cross_weight = cfg.main_cross
    channel_weights = ([float(w) for w in cfg.channel_weights.split(",")] if cfg.channel_weights
                       else [1.0] * len(channels))
    if len(channel_weights) != len(channels):
        raise ConfigError(f"channel_weights {cfg.channel_weights!r} needs one weight per channel {list(channels)}")
    delayed = _flag(cfg.delayed_duration_target)
    lprobs = model.get_normalized_probs((speech_dlm_output(model, batch.source, cfg), None), log_probs=True)
    stats, totals = Stats(), {t: 0.0 for t in targets}
    nsentences = batch.rows
    for ch, channel_weight in zip(channels, channel_weights):
        for pred, out in lprobs[ch].items():
            token_lprobs = out["pred_token"] if isinstance(out, dict) else out
            token_lprobs = token_lprobs.reshape(-1, token_lprobs.shape[-1])
            token_preds = token_lprobs.argmax(dim=-1)
            ntokens = batch.source[ch].numel()
            sample_size = nsentences if cfg.sentence_avg else ntokens
            prefix = f"[{ch}-{pred}]"
            stats[f"{prefix}ntokens"] += ntokens
            stats[f"{prefix}sample_size"] += sample_size
            stats["ntokens"] += ntokens
            stats["sample_size"] += sample_size
            for t in targets:
                if t == "duration":
                    if not isinstance(out, dict):
                        raise ConfigError("duration_prediction is on but the model has no duration head")
                    durations = out["pred_duration"].reshape(-1)
                    target = batch.duration[pred]
                    indices = batch.edge_indices[pred] + 1 if delayed else batch.edge_indices[pred]
                    if delayed and len(indices) and int(indices[-1]) == len(durations):
                        indices, target = indices[:-1], target[:-1]
                    preds = durations[indices]
                    loss = F.l1_loss(preds, target.to(preds.dtype), reduction="sum")
                    correct = float((preds.round() == target).sum())
                else:
                    if t == "next":
                        target, lp, preds = batch.target[pred].reshape(-1), token_lprobs, token_preds
                    else:
                        index = batch.edge_indices[pred]
                        target, lp, preds = batch.edge[pred], token_lprobs[index], token_preds[index]
                    loss = F.nll_loss(lp, target, ignore_index=FairseqDictionary.pad_index, reduction="sum")
                    correct = float((preds == target).sum())
                count = float(target.shape[0])
                key = TARGET_KEYS[t]
                stats[f"{prefix}{key}_loss"] += loss.item()
                stats[f"{prefix}{key}_correct"] += correct
                stats[f"{prefix}{key}_count"] += count
                weighted = loss * channel_weight * (main_weight if pred == ch else cross_weight)
                if t in ("edge", "duration"):
                    weighted = weighted / count * sample_size
                totals[t] = totals[t] + weighted
                stats[f"{key}_correct"] += correct
                stats[f"{key}_count"] += count
    training_loss = 0.0
    for t, weight in zip(targets, cfg.target_weights):
        stats[f"{TARGET_KEYS[t]}_loss"] += totals[t].item()
        training_loss = training_loss + totals[t] * weight
    stats["loss"] += training_loss.item()
    stats["nsentences"] += nsentences
    return training_loss, stats["sample_size"], stats


def reduce_stats(stats: Stats, task: str) -> dict[str, float]:
    """fairseq's ``reduce_metrics`` of summed logging outputs: the logged values (losses in base 2)."""
    out: dict[str, float] = {}

    def div(a: float, b: float) -> float:
        return a / b if b else math.nan

    if task == "language_modeling":
        out["loss"] = div(stats["loss"], stats["sample_size"]) / LN2
        if stats["sample_size"] != stats["ntokens"]:
            out["nll_loss"] = div(stats["loss"], stats["ntokens"]) / LN2
            out["ppl"] = 2 ** out["nll_loss"]
        else:
            out["ppl"] = 2 ** out["loss"]
    else:
        prefixes = [k[:-len("ntokens")] for k in stats if k.endswith("ntokens")]
        for prefix in prefixes:
            for key in TARGET_KEYS.values():
                count = stats.get(f"{prefix}{key}_count")
                if count is None:
                    continue
                loss = div(stats[f"{prefix}{key}_loss"], count)
                if key != "edge_duration":
                    loss /= LN2
                out[f"{prefix}{key}_loss"] = loss
                out[f"{prefix}{key}_pred_acc"] = 100 * div(stats[f"{prefix}{key}_correct"], count)
                if key != "edge_duration":
                    out[f"{prefix}{key}_ppl"] = 2 ** loss if loss < 1024 else math.inf
        out["loss"] = div(stats["loss"], stats["sample_size"]) / LN2
    out["wpb"] = float(stats["ntokens"])
    out["bsz"] = float(stats["nsentences"])
    return out


# ------------------------------------------------------------------------------------------ models
def _model_class(cfg: LMTrainConfig) -> type[PretrainedModel]:
    return TASKS[cfg.task][0]


def channels_of(data: str | Path, cfg: LMTrainConfig) -> tuple[str, ...]:
    """SpeechDLM channels: ``cfg.channels`` or every ``dict.<channel>.txt`` of ``data``, sorted (fairseq's
    ``setup_dictionary``)."""
    if cfg.channels:
        return tuple(sorted(str(cfg.channels).split(",")))
    found = sorted(p.name[5:-4] for p in Path(data).glob("dict.*.txt"))
    if not found:
        raise InputError(f"{data} has no dict.<channel>.txt: run speechzoo prepare units first")
    return tuple(found)


def dictionary_paths(data: str | Path, cfg: LMTrainConfig) -> list[Path]:
    """The ``dict*.txt`` files of ``data`` that the task reads (one per channel for SpeechDLM)."""
    data = Path(data)
    paths = ([data / f"dict.{ch}.txt" for ch in channels_of(data, cfg)] if cfg.task == "speech_dlm_task"
             else [data / "dict.txt"])
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise InputError(f"{data} lacks {missing}: run speechzoo prepare units (fairseq-preprocess) first")
    return paths


def initial_model(cfg: LMTrainConfig, data: str | Path, init_from: str | Path | None = None,
                  model_args: dict[str, Any] | None = None, seed: int = 1) -> tuple[PretrainedModel, dict[str, Any]]:
    """The model to train and the model settings it was built from: ``init_from`` an original fairseq checkpoint
    (its weights and ``cfg["model"]``, converted with the data's dictionaries) or a converted zoo directory;
    otherwise built from ``model_args`` (fairseq ``model`` fields, ``_name``/``arch`` the architecture) with a
    fairseq-style initialisation seeded by ``seed``."""
    cls, dict_files = _model_class(cfg), dictionary_paths(data, cfg)
    if init_from is not None and Path(init_from).is_dir():
        model = cls.from_pretrained(init_from)
        args: dict[str, Any] = {}
    elif init_from is not None:
        container = load_checkpoint(init_from)
        args = checkpoint_config(container, init_from)[0]
        fmt = speech_dlm_format if cls is SpeechDLM else gslm_ulm_format
        model = fmt.convert([Path(init_from), *dict_files])
    else:
        args = dict(model_args or {})
        model = _fresh_model(cfg, data, args, dict_files, seed)
    symbols = load_dictionary(dict_files[0]).symbols
    if tuple(model.config.symbols) != symbols:
        raise InputError(f"the model's dictionary ({len(model.config.symbols)} symbols) is not {dict_files[0]} "
                         f"({len(symbols)} symbols): train with the dictionary the model was trained with")
    return model.train(), args


def _fresh_model(cfg: LMTrainConfig, data: str | Path, args: dict[str, Any], dict_files: list[Path],
                 seed: int) -> PretrainedModel:
    symbols = load_dictionary(dict_files[0]).symbols
    task = {"tokens_per_sample": cfg.tokens_per_sample, "_name": cfg.task,
            "duration_prediction": cfg.duration_prediction, "delayed_duration_target": cfg.delayed_duration_target,
            "add_bos_token": cfg.add_bos_token}
    torch.manual_seed(seed)
    if cfg.task == "speech_dlm_task":
        args = {"main_and_cross_weights": cfg.main_and_cross_weights, **args}
        config = speech_dlm_format.config_from_fairseq(args, task, {}, channels_of(data, cfg), symbols)
        model: PretrainedModel = SpeechDLM(config)
    else:
        arch = str(args.get("_name") or args.get("arch") or "transformer_lm")
        if arch not in LM_ARCHS:
            raise ConfigError(f"arch {arch!r} is not one of {sorted(LM_ARCHS)}")
        args = {**LM_ARCHS[arch], "share_decoder_input_output_embed": True, **args, "_name": arch}
        model = GSLMUnitLM(gslm_ulm_format.config_from_args(args, task, symbols, Path("the config's model section")))
    fairseq_init_(model)
    return model


def fairseq_init_(model: nn.Module) -> None:
    """fairseq's initialisation of a fresh decoder: attention q/k/v Xavier-uniform with gain 1/√2, out_proj and
    the feed-forward layers Xavier-uniform, biases 0; token embeddings N(0, 1/dim) with a zero ``<pad>`` row."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, MultiheadAttention):
                for proj in (module.q_proj, module.k_proj, module.v_proj):
                    nn.init.xavier_uniform_(proj.weight, gain=2 ** -0.5)
                nn.init.xavier_uniform_(module.out_proj.weight)
                for proj in (module.q_proj, module.k_proj, module.v_proj, module.out_proj):
                    nn.init.zeros_(proj.bias)
            for name in ("fc1", "fc2"):
                layer = getattr(module, name, None)
                if isinstance(layer, nn.Linear):
                    nn.init.xavier_uniform_(layer.weight)
                    nn.init.zeros_(layer.bias)
        embed = model.embed_tokens.weight
        embed.normal_(std=embed.shape[1] ** -0.5)[FairseqDictionary.pad_index].zero_()


# ------------------------------------------------------------------------------------------ the trainer
class LMTrainer:
    """fairseq-train's loop for one model on one data directory (see the module docstring). ``env`` is this
    process's place among torchrun's processes (one process if None)."""

    def __init__(self, model: PretrainedModel, cfg: LMTrainConfig, data: str | Path, *,
                 env: ProcessEnv | None = None, device: str | torch.device | None = None,
                 subsets: Sequence[str] = ("train", "valid")) -> None:
        self.cfg, self.data = cfg, Path(data)
        self.env = env or ProcessEnv(0, 1, 0, torch.device(device or "cpu"))
        self.device = self.env.device
        self.model = model.to(self.device).train()
        self.criterion: Callable = speech_dlm_criterion if cfg.task == "speech_dlm_task" else cross_entropy
        self.datasets = {name: self._dataset(name) for name in subsets}
        self.optimizer = FairseqAdam(self.model.parameters(), lr=self.lr_after(0), betas=cfg.adam_betas,
                                     eps=cfg.adam_eps, weight_decay=cfg.weight_decay)
        self.num_updates, self.epoch, self.iterations_in_epoch = 0, 1, 0
        self.best_loss: float | None = None
        self.loss_scale = float(cfg.fp16_init_scale)
        self._good_updates = 0
        self._frozen: dict[str, list[np.ndarray]] = {}
        self._started = time.perf_counter()

    # -------------------------------------------------------------- data
    def _dataset(self, split: str) -> LMDataset:
        cfg = self.cfg
        paths = dictionary_paths(self.data, cfg)
        dictionary = load_dictionary(paths[0])
        channels = channels_of(self.data, cfg) if cfg.task == "speech_dlm_task" else (None,)
        splits = {}
        for channel in channels:
            tokens, sizes = read_split(self.data, split, channel, dictionary)
            splits[channel] = Split(tokens, sizes, cfg.tokens_per_sample, cfg.sample_break_mode)
        return LMDataset(splits, speech_dlm=cfg.task == "speech_dlm_task",
                         max_target_durations=cfg.max_target_durations)

    def batches(self, split: str) -> list[np.ndarray]:
        """The split's batches of sample indices, made once (as fairseq makes them for epoch 1)."""
        if split not in self._frozen:
            cfg, dataset = self.cfg, self.datasets[split]
            train = split == "train"
            indices = ordered_indices(dataset.sizes, cfg.seed)
            limit = self.max_positions
            too_long = indices[dataset.sizes[indices] > limit]
            if len(too_long):
                if not train and not cfg.skip_invalid_size_inputs_valid_test:
                    raise InputError(f"{split} sample {int(too_long[0])} has {int(dataset.sizes[too_long[0]])} "
                                     f"tokens, more than the model's {limit} positions; pass "
                                     "--skip-invalid-size-inputs-valid-test to skip such samples")
                indices = indices[dataset.sizes[indices] <= limit]
            max_tokens = cfg.max_tokens if train else (cfg.max_tokens_valid or cfg.max_tokens)
            max_sentences = cfg.batch_size if train else (cfg.batch_size_valid or cfg.batch_size)
            self._frozen[split] = batch_by_size(indices, dataset.sizes, max_tokens, max_sentences,
                                                cfg.required_batch_size_multiple)
            if not self._frozen[split]:
                raise InputError(f"the {split} split gives no batch: it has {len(dataset)} samples, and fairseq "
                                 f"drops a last batch whose size is not a multiple of required_batch_size_multiple "
                                 f"({cfg.required_batch_size_multiple}); lower it (e.g. to 1)")
        return self._frozen[split]

    @property
    def max_positions(self) -> int:
        config = self.model.config
        return int(config.max_target_positions)

    def _shard(self, batches: list[np.ndarray]) -> list[np.ndarray]:
        """fairseq's ``ShardedIterator``: every ``world_size``-th batch from this rank's, padded with empty ones."""
        world, rank = self.env.world_size, self.env.rank
        per_rank = math.ceil(len(batches) / world)
        mine = batches[rank::world]
        return mine + [np.zeros(0, np.int64)] * (per_rank - len(mine))

    def epoch_groups(self) -> list[list[np.ndarray]]:
        """This epoch's updates: groups of ``update_freq`` batches of this rank (the last group may be shorter)."""
        mine = self._shard(epoch_batches(self.batches("train"), self.cfg.seed, self.epoch))
        f = self.cfg.update_freq
        return [mine[i:i + f] for i in range(0, len(mine), f)]

    # -------------------------------------------------------------- one update
    def lr_after(self, num_updates: int) -> float:
        cfg = self.cfg
        return inverse_sqrt(num_updates, cfg.lr, cfg.warmup_updates, cfg.warmup_init_lr)

    def _autocast(self):
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.cfg.precision)
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    def _forward(self, indices: np.ndarray, split: str) -> tuple[torch.Tensor, float, Stats]:
        batch = self.datasets[split].collate(indices).to(self.device)
        with self._autocast():
            return self.criterion(self.model, batch, self.cfg)

    def _sum_over_ranks(self, stats: Stats) -> Stats:
        if not self.env.distributed:
            return stats
        keys = sorted(stats)
        gathered = [None] * self.env.world_size
        torch.distributed.all_gather_object(gathered, keys)
        keys = sorted(set().union(*gathered))
        values = torch.tensor([float(stats.get(k, 0.0)) for k in keys], dtype=torch.float64, device=self.device)
        all_reduce_sum_(values)
        return Stats(dict(zip(keys, values.tolist())))

    def train_step(self, group: Sequence[np.ndarray]) -> dict[str, Any]:
        """One update from this rank's ``group`` of batches; returns the logged record."""
        started = time.perf_counter()
        torch.manual_seed(self.cfg.seed + self.num_updates)  # fairseq's Trainer._set_seed: dropout draws per update
        self.model.train()
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer.set_lr(self.lr_after(self.num_updates))
        stats = Stats()
        scale = self.loss_scale if self.cfg.fp16 else 1.0
        for indices in group:
            if not len(indices):
                continue
            loss, _, batch_stats = self._forward(indices, "train")
            (loss * scale if scale != 1.0 else loss).backward()
            stats.update(batch_stats)
        if self.env.distributed:
            for p in params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                all_reduce_sum_(p.grad)
        stats = self._sum_over_ranks(stats)
        sample_size = stats["sample_size"]
        with torch.no_grad():
            factor = 1.0 / ((sample_size or 1.0) * scale)
            for p in params:
                if p.grad is not None:
                    p.grad.mul_(factor)
            gnorm = clip_grad_norm(params, self.cfg.clip_norm)
        record: dict[str, Any] = {}
        if self.cfg.fp16 and not torch.isfinite(gnorm):
            self.loss_scale /= 2
            self._good_updates = 0
            self.optimizer.zero_grad(set_to_none=True)
            if self.loss_scale < self.cfg.min_loss_scale:
                raise InputError(f"fp16 loss scale fell below {self.cfg.min_loss_scale}: the loss diverges; try "
                                 "--bf16 or a lower learning rate")
            return {"split": "train", "num_updates": self.num_updates, "overflow": True,
                    "loss_scale": self.loss_scale}
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.num_updates += 1
        if self.cfg.fp16:
            self._good_updates += 1
            window = self.cfg.fp16_scale_window or max(2 ** 14 // self.env.world_size // self.cfg.update_freq, 1)
            if self._good_updates % window == 0:
                self.loss_scale *= 2
            record["loss_scale"] = self.loss_scale
        elapsed = time.perf_counter() - started
        record = {"split": "train", "epoch": self.epoch, **reduce_stats(stats, self.cfg.task),
                  "wps": stats["ntokens"] / elapsed, "ups": 1 / elapsed, "num_updates": self.num_updates,
                  "lr": self.lr_after(self.num_updates), "gnorm": float(gnorm), **record,
                  "train_wall": elapsed, "wall": time.perf_counter() - self._started}
        if self.cfg.clip_norm > 0:
            record["clip"] = 100.0 if float(gnorm) > self.cfg.clip_norm else 0.0
        return record

    # -------------------------------------------------------------- validation
    @torch.no_grad()
    def validate(self, split: str = "valid") -> dict[str, Any]:
        """The criterion summed over the whole split in eval mode (fairseq's ``validate``): the logged record."""
        self.model.eval()
        stats = Stats()
        for indices in self._shard(self.batches(split)):
            if len(indices):
                stats.update(self._forward(indices, split)[2])
        stats = self._sum_over_ranks(stats)
        self.model.train()
        return {"split": split, "epoch": self.epoch, **reduce_stats(stats, self.cfg.task),
                "num_updates": self.num_updates}

    # -------------------------------------------------------------- the loop
    def run(self, max_update: int | None = None, max_epoch: int | None = None, *,
            log: Callable[[dict[str, Any]], None] | None = None, save_dir: str | Path | None = None,
            valid_subsets: Sequence[str] = ("valid",)) -> list[dict[str, Any]]:
        """Train until ``max_update`` updates or ``max_epoch`` epochs (the config's when None; 0: no limit),
        validating after every ``validate_interval`` epochs and at the end, saving a training state
        (``checkpoint_last.safetensors``) into ``save_dir`` after every ``save_interval`` epochs, every
        ``save_interval_updates`` updates and at the end. ``log`` receives each record as it is made; all of them
        are returned."""
        max_update = self.cfg.max_update if max_update is None else max_update
        max_epoch = self.cfg.max_epoch if max_epoch is None else max_epoch
        if not max_update and not max_epoch:
            raise InputError("give --max-update(s) or --max-epoch: without either training never stops")
        records: list[dict[str, Any]] = []

        def emit(record: dict[str, Any]) -> None:
            records.append(record)
            if log is not None:
                log(record)

        cfg = self.cfg
        while (not max_epoch or self.epoch <= max_epoch) and (not max_update or self.num_updates < max_update):
            groups = self.epoch_groups()
            stop = False
            while self.iterations_in_epoch < len(groups):
                record = self.train_step(groups[self.iterations_in_epoch])
                self.iterations_in_epoch += 1
                emit(record)
                end_of_epoch = self.iterations_in_epoch == len(groups)
                stop = bool(max_update) and self.num_updates >= max_update
                validate = not cfg.disable_validation and (
                    (end_of_epoch and self.epoch % cfg.validate_interval == 0) or stop
                    or (cfg.validate_interval_updates > 0 and self.num_updates % cfg.validate_interval_updates == 0))
                save = ((end_of_epoch and self.epoch % cfg.save_interval == 0) or stop
                        or (cfg.save_interval_updates > 0 and self.num_updates % cfg.save_interval_updates == 0))
                if validate:
                    for subset in valid_subsets:
                        valid = self.validate(subset)
                        if subset == valid_subsets[0]:
                            if self.best_loss is not None:
                                valid["best_loss"] = min(self.best_loss, valid["loss"])
                            improved = self.best_loss is None or valid["loss"] < self.best_loss
                            self.best_loss = valid["loss"] if improved else self.best_loss
                        emit(valid)
                if end_of_epoch:  # a state saved after the epoch's last update starts the next epoch
                    self.epoch, self.iterations_in_epoch = self.epoch + 1, 0
                if save and save_dir is not None and self.env.is_main:
                    self.save_state(Path(save_dir) / "checkpoint_last.safetensors")
                if stop or end_of_epoch:
                    break
            if stop:
                break
        return records

    # -------------------------------------------------------------- states
    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Tensors and JSON metadata of an exact training state."""
        model_tensors = {f"model/{k}": v for k, v in self.model.state_dict().items()}
        optim_tensors, optim_meta = flatten_state(self.optimizer.state_dict(), "optim")
        rng_tensors, rng_meta = flatten_state(rng_state(), "rng")
        meta = {"model_type": self.model.model_type, "model_config": config_to_dict(self.model.config),
                "train_config": config_to_dict(self.cfg), "optim": optim_meta, "rng": rng_meta,
                "num_updates": self.num_updates, "epoch": self.epoch, "iterations_in_epoch": self.iterations_in_epoch,
                "best_loss": self.best_loss, "loss_scale": self.loss_scale, "good_updates": self._good_updates}
        return {**_unshared(model_tensors), **optim_tensors, **rng_tensors}, meta

    def save_state(self, path: str | Path) -> Path:
        tensors, meta = self.state()
        return save_state(path, tensors, meta)

    def load_state(self, path: str | Path) -> None:
        """Continue the run saved in ``path``: weights, Adam moments, counters, data position, random generators."""
        tensors, meta = load_state(path)
        if meta.get("model_type") != self.model.model_type:
            raise InputError(f"{path} is a training state of a {meta.get('model_type')!r} model, not "
                             f"{self.model.model_type!r}")
        self.model.load_state_dict_strict({k[6:]: v for k, v in tensors.items() if k.startswith("model/")})
        self.optimizer.load_state_dict(unflatten_state(tensors, meta["optim"]))
        set_rng_state(unflatten_state(tensors, meta["rng"]))
        self.num_updates, self.epoch = meta["num_updates"], meta["epoch"]
        self.iterations_in_epoch, self.best_loss = meta["iterations_in_epoch"], meta["best_loss"]
        self.loss_scale, self._good_updates = meta["loss_scale"], meta["good_updates"]


def _unshared(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors sharing storage (tied embeddings): each gets its own copy."""
    seen: set[int] = set()
    out = {}
    for k, v in tensors.items():
        ptr = v.untyped_storage().data_ptr()
        out[k] = v.detach().clone() if ptr in seen else v.detach()
        seen.add(ptr)
    return out


def resume_trainer(path: str | Path, data: str | Path, *, env: ProcessEnv | None = None,
                   **overrides: Any) -> LMTrainer:
    """An :class:`LMTrainer` continuing the training state ``path`` (its config, with ``overrides`` such as a larger
    ``max_update``)."""
    tensors, meta = load_state(path)
    cls = TASKS[meta["train_config"]["task"]][0]
    model = cls(config_from_dict(cls.config_class, meta["model_config"]))
    cfg = config_from_dict(LMTrainConfig, {**meta["train_config"],
                                           **{k: v for k, v in overrides.items() if v is not None}})
    trainer = LMTrainer(model, cfg, data, env=env)
    trainer.load_state(path)
    return trainer


def export(model: PretrainedModel, out: str | Path) -> Path:
    """The trained model as a zoo directory (config.json + model.safetensors): ``speech_dlm(weights=OUT)`` or
    ``gslm_ulm(weights=OUT)``."""
    was_training = model.training
    path = model.eval().save_pretrained(out)
    model.train(was_training)
    return path

