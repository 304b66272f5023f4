"""dGSLM's SpeechDLM: a two-channel (two-speaker) unit language model with cross-channel attention, edge-unit and
duration prediction (Nguyen et al. 2022, *Generative Spoken Dialogue Language Modeling*, arXiv 2203.16502).

The original is fairseq's ``speech_dlm`` model (``fairseq/models/speech_dlm/``, facebookresearch/fairseq @ 3d262bb);
this module reproduces its numbers without fairseq:

- :class:`SpeechDLM` (``hub.models[0]``): one decoder applied to every channel (all weights shared). ``N =
  len(channels)`` token streams ``(B, T)`` of dictionary indices (``</s>`` = 2 first, right-padded with ``<pad>`` = 1)
  are embedded (``embed_tokens · √E`` + sinusoidal or learned positions from 2 on), run through
  ``layers - cross_layers`` standard pre-norm layers per channel, then ``cross_layers`` cross-channel layers::

      y_c = x_c + SelfAttention(LN(x_c))                      # causal, per channel
      z_c = y_c + CrossAttention(LN(y_c), keys = values = y of the other channel)   # causal, same step included
      out_c = z_c + FFN(LN(z_c))

  then the final LayerNorm. Heads: token logits through ``output_projection[k]`` (head 0 tied to the embedding in
  the release) and a duration regression ``output_duration_prediction[k]`` (frames), ``k = (predicted channel -
  input channel) mod N``; the release has only the main-channel heads (``k = 0``). ``model(tokens)`` returns fairseq's
  nested ``(out, extra)``; ``get_normalized_probs`` and ``extract_features`` too.
- :class:`SpeechDLMHubInterface` (what ``hubconf.speech_dlm`` returns): fairseq's
  ``MultichannelGeneratorHubInterface`` — ``encode``/``decode`` unit strings per channel, ``generate`` (fairseq's
  ``MultichannelSequenceGenerator``: beam search or sampling, prompt forcing, ``<unk>`` prompt positions generated
  freely, the delayed or immediate duration/copy state machine) and ``sample``.

Generation decodes incrementally with per-channel key/value caches (fairseq re-uses incremental state too), and
runs the prompt in one forward pass where every hypothesis is bound to it (sampling, or beam 1).

Units outside the dictionary (in a prompt string) become ``<unk>``, as in fairseq; a ``<unk>`` prompt position is
not forced: the model generates that unit (this is how one channel is conditioned on the other alone).

Example (random weights)::

    >>> import torch
    >>> model = SpeechDLM(SpeechDLMConfig(symbols=unit_symbols(20), embed_dim=32, input_dim=32, output_dim=32,
    ...                                   ffn_embed_dim=64, layers=2, cross_layers=1, attention_heads=4)).eval()
    >>> hub = SpeechDLMHubInterface(model)
    >>> prompt = {"unitA": "7 7 7 3 3", "unitB": "1 1 12 12 12"}
    >>> out = hub.sample([prompt], max_len_b=12, beam=1)        # greedy, prompt + continuation, 12 units
    >>> [len(out[0][ch].split()) for ch in ("unitA", "unitB")]
    [12, 12]
    >>> hypos = hub.generate([hub.encode(prompt)], beam=2, max_len_b=8)
    >>> len(hypos[0]), tuple(hypos[0][0]["positional_scores"].shape)
    (2, (9, 2))
"""
from __future__ import annotations

import ast
import dataclasses
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..errors import ConfigError, InputError
from ..modeling import PretrainedModel
from ..nn.dictionary import FairseqDictionary
from ..nn.fairseq_transformer import (
    ACTIVATIONS,
    DecoderLayer,
    KVCache,
    MultiheadAttention,
    PositionalEmbedding,
    make_positions,
)
from ..nn.precision import LayerNorm
from ..registry import SourceFile, Weights

logger = logging.getLogger(__name__)

SPECIALS = FairseqDictionary.SPECIALS
PAD, EOS, UNK = FairseqDictionary.pad_index, FairseqDictionary.eos_index, FairseqDictionary.unk_index
#: fairseq's DEFAULT_MAX_TARGET_POSITIONS, used when neither max_target_positions nor tokens_per_sample is set.
DEFAULT_MAX_POSITIONS = 1024


def unit_symbols(num_units: int) -> tuple[str, ...]:
    """The symbols of a dictionary of units ``0 … num_units - 1`` in numeric order, specials first."""
    return SPECIALS + tuple(str(u) for u in range(num_units))


@dataclass(frozen=True)
class GenerationDefaults:
    """The generation options stored in the checkpoint (fairseq's ``cfg.generation``): what ``generate``/``sample``
    use for every option not passed. Names and meanings are fairseq's."""

    max_len_a: float = 0.0
    max_len_b: int = 200
    min_len: int = 1
    lenpen: float = 1.0
    unkpen: float = 0.0
    temperature: float = 1.0
    sampling: bool = False
    sampling_topk: int = -1
    sampling_topp: float = -1.0
    unnormalized: bool = False


@dataclass(frozen=True)
class SpeechDLMConfig:
    """Architecture (fairseq's ``SpeechDLMConfig`` after ``base_lm_architecture``), dictionary and channels.

    ``cross_layers`` are the LAST layers; pre-norm is forced (as ``base_lm_architecture`` does). ``symbols`` is the
    dictionary shared by every channel (``dict.<channel>.txt``), specials first; ``channels`` are sorted names.
    """

    symbols: tuple[str, ...] = unit_symbols(500)
    channels: tuple[str, ...] = ("unitA", "unitB")
    embed_dim: int = 512                 # decoder_embed_dim
    input_dim: int = 512                 # decoder_input_dim: width of embed_tokens (project_in_dim if ≠ embed_dim)
    output_dim: int = 512                # decoder_output_dim: width of the features (project_out_dim if ≠ embed_dim)
    ffn_embed_dim: int = 2048
    layers: int = 6
    cross_layers: int = 4
    attention_heads: int = 8
    activation_fn: str = "relu"
    positions: str = "sinusoidal"        # "sinusoidal", "learned" or "none"
    max_target_positions: int = 6144
    scale_embedding: bool = True         # multiply token embeddings by √embed_dim
    layernorm_embedding: bool = False
    final_layer_norm: bool = True        # decoder.layer_norm after the last layer
    tied_embedding: bool = True          # share_decoder_input_output_embed: head 0 is embed_tokens.weight
    cross_prediction: bool = False       # one head per (input, predicted) channel offset, not only the main one
    duration_prediction: bool = True
    delayed_duration: bool = True        # durations predicted one step after the unit (the release)
    generation: GenerationDefaults = field(default_factory=GenerationDefaults)

    def __post_init__(self) -> None:
        problems = []
        if tuple(self.symbols[:4]) != SPECIALS:
            problems.append(f"symbols must start with {SPECIALS}")
        if not self.channels or len(set(self.channels)) != len(self.channels):
            problems.append(f"channels must be distinct names, got {self.channels}")
        if tuple(self.channels) != tuple(sorted(self.channels)):
            problems.append(f"channels must be sorted (fairseq orders them so), got {self.channels}")
        if not 0 <= self.cross_layers <= self.layers:
            problems.append(f"cross_layers={self.cross_layers} must lie in [0, layers={self.layers}]")
        if self.embed_dim % self.attention_heads:
            problems.append(f"embed_dim={self.embed_dim} is not divisible by attention_heads={self.attention_heads}")
        if self.activation_fn not in ACTIVATIONS:
            problems.append(f"activation_fn {self.activation_fn!r} is not one of {sorted(ACTIVATIONS)}")
        if self.positions not in ("sinusoidal", "learned", "none"):
            problems.append(f"positions must be 'sinusoidal', 'learned' or 'none', got {self.positions!r}")
        if self.tied_embedding and self.output_dim != self.input_dim:
            problems.append(f"a tied head needs output_dim == input_dim, got {self.output_dim} and {self.input_dim}")
        if problems:
            raise ConfigError("invalid SpeechDLMConfig: " + "; ".join(problems))

    @property
    def vocab_size(self) -> int:
        return len(self.symbols)


# ------------------------------------------------------------------------------------------ layers
class CrossChannelLayer(DecoderLayer):
    """fairseq's ``CrossChannelTransformerDecoderLayer``: self-attention per channel, then attention from each channel
    (query: ``cross_channel_attn_layer_norm(y)``) to the un-normalised streams ``y`` of the other channels, then the
    feed-forward block. Rows are ``(channel, batch)`` flattened channel-major: ``x`` is ``(N·B, T, C)``."""

    def __init__(self, embed_dim: int, ffn_embed_dim: int, heads: int, activation_fn: str) -> None:
        super().__init__(embed_dim, ffn_embed_dim, heads, activation_fn)
        self.cross_channel_attn = MultiheadAttention(embed_dim, heads)
        self.cross_channel_attn_layer_norm = LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False,
                cache: KVCache | None = None, layer: int = 0, *, partners: torch.Tensor,
                cross_mask: torch.Tensor | None = None, cross_cache: KVCache | None = None,
                cross_layer: int = 0) -> torch.Tensor:
        y = x + self.self_attn(self.self_attn_layer_norm(x), attn_mask, is_causal, cache, layer)
        keys, values = (_arrange_partners(t, partners) for t in self.cross_channel_attn.keys_values(y))
        if cross_cache is not None:
            keys, values = cross_cache.write(cross_layer, keys, values)
        z = y + self.cross_channel_attn.attend(self.cross_channel_attn_layer_norm(y), keys, values, cross_mask,
                                               is_causal and partners.shape[1] == 1)
        return self.feed_forward(z)


def _arrange_partners(x: torch.Tensor, partners: torch.Tensor) -> torch.Tensor:
    """Keys ``(N·B, H, T, d)`` of every channel → for each channel ``c``, the keys of its partner channels
    ``partners[c]`` interleaved in time: ``(N·B, H, T·P, d)``, key ``t·P + j`` = step ``t`` of ``partners[c, j]``."""
    x = x.unflatten(0, (partners.shape[0], -1))[partners]       # (N, P, B, H, T, d)
    return x.permute(0, 2, 3, 4, 1, 5).flatten(3, 4).flatten(0, 1)


class DecoderState:
    """Keys/values of every layer for ``rows`` hypotheses per channel, up to ``max_length`` steps (fairseq's
    ``incremental_state``): one cache for self-attention, one for cross-channel attention (whose steps hold the
    ``P`` partner channels interleaved)."""

    def __init__(self, model: SpeechDLM, rows: int, max_length: int) -> None:
        weight = model.embed_tokens.weight
        n, p = model.partners.shape
        heads, head_dim = model.config.attention_heads, model.config.embed_dim // model.config.attention_heads
        self.rows, self.channels, self.partners = rows, n, p
        cross_layers = sum(isinstance(layer, CrossChannelLayer) for layer in model.layers)
        self.self_cache = KVCache(len(model.layers), n * rows, heads, max_length, head_dim, device=weight.device,
                                  dtype=weight.dtype)
        self.cross_cache = KVCache(cross_layers, n * rows, heads, max_length * p, head_dim, device=weight.device,
                                   dtype=weight.dtype)

    @property
    def length(self) -> int:
        return self.self_cache.length

    def advance(self, steps: int) -> None:
        self.self_cache.advance(steps)
        self.cross_cache.advance(steps * self.partners)

    def reorder(self, index: torch.Tensor) -> None:
        """Hypothesis ``i`` of every channel takes the cache of hypothesis ``index[i]`` (``len(index)`` may differ
        from ``rows``: hypotheses duplicated or dropped)."""
        full = (index[None, :] + self.rows * torch.arange(self.channels, device=index.device)[:, None]).flatten()
        self.self_cache.reorder(full)
        self.cross_cache.reorder(full)
        self.rows = len(index)


# ------------------------------------------------------------------------------------------ model
class SpeechDLM(PretrainedModel):
    """The SpeechDLM decoder (fairseq's ``SpeechDLM`` + ``CrossChannelTransformerDecoder``); see the module
    docstring. Inputs are ``{channel: LongTensor (B, T)}`` dicts, outputs fairseq's nesting."""

    config_class = SpeechDLMConfig
    model_type = "speech_dlm"

    def __init__(self, config: SpeechDLMConfig) -> None:
        super().__init__(config)
        c = config
        self.embed_tokens = nn.Embedding(c.vocab_size, c.input_dim, padding_idx=PAD)
        self.project_in_dim = nn.Linear(c.input_dim, c.embed_dim, bias=False) if c.input_dim != c.embed_dim else None
        self.embed_scale = math.sqrt(c.embed_dim) if c.scale_embedding else 1.0
        self.embed_positions = (PositionalEmbedding(c.max_target_positions, c.embed_dim, PAD,
                                                    c.positions == "learned")
                                if c.positions != "none" else None)
        self.layernorm_embedding = LayerNorm(c.embed_dim) if c.layernorm_embedding else None
        layer_args = (c.embed_dim, c.ffn_embed_dim, c.attention_heads, c.activation_fn)
        self.layers = nn.ModuleList(
            (DecoderLayer if i < c.layers - c.cross_layers else CrossChannelLayer)(*layer_args) for i in range(c.layers))
        self.layer_norm = LayerNorm(c.embed_dim) if c.final_layer_norm else None
        self.project_out_dim = (nn.Linear(c.embed_dim, c.output_dim, bias=False) if c.output_dim != c.embed_dim
                                else None)
        n_heads = len(c.channels) if c.cross_prediction else 1
        self.output_projection = nn.ModuleList(nn.Linear(c.output_dim, c.vocab_size, bias=False)
                                               for _ in range(n_heads))
        # fairseq's initialisation: N(0, 1/width) embeddings and heads, a zero <pad> row
        with torch.no_grad():
            self.embed_tokens.weight.normal_(std=c.input_dim ** -0.5)[PAD].zero_()
            for projection in self.output_projection:
                projection.weight.normal_(std=c.output_dim ** -0.5)
        if c.tied_embedding:
            self.output_projection[0].weight = self.embed_tokens.weight
        self.output_duration_prediction = (nn.ModuleList(nn.Linear(c.output_dim, 1) for _ in range(n_heads))
                                           if c.duration_prediction else None)
        n = len(c.channels)
        # partners[c]: the channels whose streams channel c's cross-attention reads (itself if it is alone)
        partners = [[(i + j) % n for j in range(1, n)] or [i] for i in range(n)]
        self.register_buffer("partners", torch.tensor(partners, dtype=torch.long), persistent=False)

    # -------------------------------------------------------------- properties
    @property
    def channels(self) -> tuple[str, ...]:
        return self.config.channels

    @property
    def dictionary(self) -> FairseqDictionary:
        return FairseqDictionary(self.config.symbols)

    @property
    def device(self) -> torch.device:
        return self.embed_tokens.weight.device

    def max_positions(self) -> int:
        """The longest sequence (``</s>`` included) the model takes: ``max_target_positions``."""
        return self.config.max_target_positions

    # -------------------------------------------------------------- core
    def _tokens(self, src_tokens: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``{channel: (B, T)}`` → ``(N, B, T)`` int64 on the model's device, validated."""
        if not isinstance(src_tokens, Mapping) or set(src_tokens) != set(self.channels):
            got = sorted(src_tokens) if isinstance(src_tokens, Mapping) else type(src_tokens).__name__
            raise InputError(f"tokens must be a dict with one (B, T) tensor per channel {list(self.channels)}, "
                             f"got {got}")
        tensors = [torch.as_tensor(src_tokens[ch]) for ch in self.channels]
        shapes = {tuple(t.shape) for t in tensors}
        if len(shapes) != 1 or tensors[0].ndim != 2 or tensors[0].shape[1] == 0:
            raise InputError(f"every channel needs a (B, T) tensor of the same shape with T >= 1, got "
                             f"{[tuple(t.shape) for t in tensors]}")
        if any(t.is_floating_point() or t.is_complex() or t.dtype == torch.bool for t in tensors):
            raise InputError("tokens must be integer dictionary indices")
        tokens = torch.stack(tensors).to(self.device, torch.long)
        if tokens.min() < 0 or tokens.max() >= self.config.vocab_size:
            raise InputError(f"token ids must lie in [0, {self.config.vocab_size}) (the dictionary); got "
                             f"{int(tokens.min())} … {int(tokens.max())}")
        return tokens

    def _embed(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """``(N, B, T)`` tokens and positions → ``(N·B, T, E)``."""
        x = self.embed_tokens(tokens.flatten(0, 1))
        if self.project_in_dim is not None:
            x = self.project_in_dim(x)
        x = self.embed_scale * x
        if self.embed_positions is not None:
            x = x + self.embed_positions(positions.flatten(0, 1)).to(x.dtype)
        if self.layernorm_embedding is not None:
            x = self.layernorm_embedding(x)
        return x

    def _masks(self, pad: torch.Tensor | None, steps: int, past: int) -> tuple[torch.Tensor | None, ...]:
        """Boolean masks ``(self_mask, cross_mask)`` for ``steps`` new queries after ``past`` cached steps; None
        where ``is_causal`` (no past, no padding, one partner channel) or no mask (one query) does the job."""
        p = self.partners.shape[1]
        if pad is None and past == 0 and steps > 1:
            return None, self._causal(steps, 0, p, None) if p > 1 else None
        if pad is None and steps == 1:
            return None, None
        return self._causal(steps, past, 1, pad), self._causal(steps, past, p, pad)

    def _causal(self, steps: int, past: int, p: int, pad: torch.Tensor | None) -> torch.Tensor:
        """Query ``s`` (step ``past + s``) sees keys of steps ≤ ``past + s`` that are not padding; keys are
        ``p``-interleaved. ``(N·B or 1, 1, steps, (past + steps)·p)``."""
        n = self.partners.shape[0]
        key_step = torch.arange((past + steps) * p, device=self.device) // p
        mask = key_step[None, :] <= (past + torch.arange(steps, device=self.device))[:, None]
        if pad is None:
            return mask[None, None]
        mask = mask[None] & ~pad[:, key_step][:, None, :]                # (B, steps, keys)
        return mask[None].expand(n, *mask.shape).flatten(0, 1)[:, None]

    def _run(self, tokens: torch.Tensor, state: DecoderState | None = None,
             inner_states: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Features ``(N, B, T, C)`` of tokens ``(N, B, T)``; with ``state``, the tokens continue the cached steps
        (and are appended to them)."""
        n, b, t = tokens.shape
        past = 0 if state is None else state.length
        if state is None:
            positions = make_positions(tokens.flatten(0, 1), PAD).unflatten(0, (n, b))
            # fairseq's key padding mask: channel 0's padding, applied to every channel and to cross-attention
            pad = tokens[0].eq(PAD) if tokens[0].eq(PAD).any() else None
        else:
            positions = (past + PAD + 1 + torch.arange(t, device=tokens.device)).expand(n, b, t)
            pad = None
        x = self._embed(tokens, positions)
        if inner_states is not None:
            inner_states.append(x)
        self_mask, cross_mask = self._masks(pad, t, past)
        causal = pad is None and past == 0 and t > 1
        cache, cross_cache = (None, None) if state is None else (state.self_cache, state.cross_cache)
        cross_index = 0
        for i, layer in enumerate(self.layers):
            if isinstance(layer, CrossChannelLayer):
                x = layer(x, self_mask, causal, cache, i, partners=self.partners, cross_mask=cross_mask,
                          cross_cache=cross_cache, cross_layer=cross_index)
                cross_index += 1
            else:
                x = layer(x, self_mask, causal, cache, i)
            if inner_states is not None:
                inner_states.append(x)
        if state is not None:
            state.advance(t)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        if self.project_out_dim is not None:
            x = self.project_out_dim(x)
        return x.unflatten(0, (n, b))

    def _head(self, features: torch.Tensor, k: int) -> torch.Tensor | dict[str, torch.Tensor]:
        logits = self.output_projection[k](features)
        if self.output_duration_prediction is None:
            return logits
        return {"pred_token": logits, "pred_duration": self.output_duration_prediction[k](features)}

    # -------------------------------------------------------------- fairseq's API
    def extract_features(self, src_tokens: Mapping[str, torch.Tensor], encoder_out: None = None,
                         **kwargs: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """``({channel: (B, T, output_dim)}, {"attn": [None], "inner_states": [...]})``: features after the final
        LayerNorm and ``project_out_dim``; ``inner_states`` holds ``{channel: (T, B, E)}`` (fairseq's layout) after
        the embedding and after each layer."""
        if encoder_out is not None or kwargs.get("incremental_state") is not None:
            raise InputError("SpeechDLM has no encoder; incremental decoding goes through the hub interface's "
                             "generate(), not incremental_state")
        tokens = self._tokens(src_tokens)
        n, b = tokens.shape[:2]
        states: list[torch.Tensor] = []
        features = self._run(tokens, inner_states=states)
        inner = [{ch: s.unflatten(0, (n, b))[i].transpose(0, 1) for i, ch in enumerate(self.channels)}
                 for s in states]
        return {ch: features[i] for i, ch in enumerate(self.channels)}, {"attn": [None], "inner_states": inner}

    def output_layer(self, features: Mapping[str, torch.Tensor]) -> dict[str, dict[str, Any]]:
        """``{channel: {predicted channel: logits (B, T, V) or {"pred_token", "pred_duration"}}}``; only the main
        channel is predicted unless the model has cross-prediction heads."""
        n = len(self.channels)
        if not self.config.cross_prediction:
            return {ch: {ch: self._head(features[ch], 0)} for ch in self.channels}
        return {ch: {pred: self._head(features[ch], (j - i) % n) for j, pred in enumerate(self.channels)}
                for i, ch in enumerate(self.channels)}

    def forward(self, src_tokens: Mapping[str, torch.Tensor], features_only: bool = False,
                **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """fairseq's ``model(src_tokens)``: ``(out, extra)``, ``out[ch][pred_ch]`` = ``{"pred_token": (B, T, V),
        "pred_duration": (B, T, 1)}`` (or the logits tensor for a model without duration head)."""
        features, extra = self.extract_features(src_tokens, **kwargs)
        return (features if features_only else self.output_layer(features)), extra

    @staticmethod
    def get_normalized_probs(net_output: tuple[dict[str, Any], Any], log_probs: bool,
                             sample: Any = None) -> dict[str, dict[str, Any]]:
        """The nesting of ``net_output[0]`` with float32 (log-)softmax of the logits; ``pred_duration`` passed
        through as float32."""
        normalize = F.log_softmax if log_probs else F.softmax
        out: dict[str, dict[str, Any]] = {}
        for ch, heads in net_output[0].items():
            out[ch] = {}
            for pred, o in heads.items():
                if isinstance(o, dict):
                    out[ch][pred] = {"pred_token": normalize(o["pred_token"].float(), dim=-1),
                                     "pred_duration": o["pred_duration"].float()}
                else:
                    out[ch][pred] = normalize(o.float(), dim=-1)
        return out

    # -------------------------------------------------------------- decoding
    def new_state(self, rows: int, max_length: int) -> DecoderState:
        """An empty :class:`DecoderState` for ``rows`` hypotheses of up to ``max_length`` steps."""
        return DecoderState(self, rows, max_length)

    def decode_step(self, tokens: torch.Tensor, state: DecoderState | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Main-channel head outputs for ``(N, R, t)`` tokens that continue ``state`` (None: tokens from step 0, no
        padding, no cache): logits ``(N, R, t, V)`` and durations ``(N, R, t)`` (None without a duration head), in
        the model's dtype."""
        features = self._run(tokens, state)
        logits = self.output_projection[0](features)
        if self.output_duration_prediction is None:
            return logits, None
        return logits, self.output_duration_prediction[0](features).squeeze(-1)


# ------------------------------------------------------------------------------------------ generation
#: Options of ``generate``/``sample`` beyond :class:`GenerationDefaults`, with their defaults.
_EXTRA_OPTIONS = {"duration_temperature": 1.0, "no_repeat_ngram_size": 0, "match_source_len": False}


@dataclass(frozen=True)
class _Options:
    beam: int
    max_len_a: float
    max_len_b: int
    min_len: int
    lenpen: float
    unkpen: float
    temperature: tuple[float, ...]     # per channel
    sampling: bool
    sampling_topk: int
    sampling_topp: float
    unnormalized: bool
    duration_temperature: float


def _options(model: SpeechDLM, beam: int, kwargs: dict[str, Any]) -> _Options:
    defaults = dataclasses.asdict(model.config.generation)
    unknown = sorted(set(kwargs) - set(defaults) - set(_EXTRA_OPTIONS))
    if unknown:
        raise InputError(f"unknown generation options {unknown}; SpeechDLM takes {sorted(defaults)} and "
                         f"{sorted(_EXTRA_OPTIONS)}")
    o = {**defaults, **_EXTRA_OPTIONS, **kwargs}
    if o["no_repeat_ngram_size"] or o["match_source_len"]:
        raise InputError("no_repeat_ngram_size and match_source_len are not supported for SpeechDLM generation")
    channels = model.channels
    t = o["temperature"]
    if isinstance(t, Mapping):
        if set(t) != set(channels):
            raise InputError(f"a temperature dict needs one value per channel {list(channels)}, got {sorted(t)}")
        temps = tuple(float(t[ch]) for ch in channels)
    elif isinstance(t, (list, tuple)):
        if len(t) != len(channels):
            raise InputError(f"a temperature list needs {len(channels)} values (one per channel), got {len(t)}")
        temps = tuple(float(v) for v in t)
    else:
        temps = (float(t),) * len(channels)
    if min(temps) <= 0:
        raise InputError(f"temperature must be > 0, got {t}")
    if not o["sampling"] and (o["sampling_topk"] > 0 or o["sampling_topp"] > 0):
        raise InputError("sampling_topk / sampling_topp need sampling=True (not beam search)")
    if o["sampling_topp"] > 1:
        raise InputError(f"sampling_topp must lie in (0, 1], got {o['sampling_topp']}")
    if int(beam) < 1:
        raise InputError(f"beam must be >= 1, got {beam}")
    if o["duration_temperature"] <= 0:
        raise InputError(f"duration_temperature must be > 0, got {o['duration_temperature']}")
    max_beam = math.prod(model.config.vocab_size - 1 for _ in channels)
    return _Options(beam=min(int(beam), max_beam), max_len_a=float(o["max_len_a"]), max_len_b=int(o["max_len_b"]),
                    min_len=int(o["min_len"]), lenpen=float(o["lenpen"]), unkpen=float(o["unkpen"]),
                    temperature=temps, sampling=bool(o["sampling"]), sampling_topk=int(o["sampling_topk"]),
                    sampling_topp=float(o["sampling_topp"]), unnormalized=bool(o["unnormalized"]),
                    duration_temperature=float(o["duration_temperature"]))


class _Duration:
    """The per-hypothesis, per-channel duration counter of fairseq's generator (counter starts at 1). ``step``
    returns which hypotheses must copy their previous unit at this step."""

    def __init__(self, rows: int, channels: int, delayed: bool, temperature: float, device: torch.device) -> None:
        self.counter = torch.ones(rows, channels, dtype=torch.long, device=device)
        self.delayed, self.temperature = delayed, temperature
        self.jump: torch.Tensor | None = None   # non-delayed only; NOT reordered with the beams, as in fairseq

    def step(self, step: int, durations: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        d = (durations.float() / self.temperature).round().long().clamp(min=1)
        counter = self.counter
        if step > 0:
            repeated = tokens[:, step] == tokens[:, step - 1]
            if self.delayed:
                d[repeated] = 1
                counter -= ((counter == 1) | repeated).long()
                counter.clamp_(min=0)
            else:
                if self.jump is not None:
                    counter[self.jump & repeated] = 2
                counter -= repeated.long()
                counter.clamp_(min=1)
        if self.delayed:
            jump = counter == 0
            counter[jump] = d[jump]
        copy = counter != 1
        if not self.delayed:
            self.jump = counter == 1
            counter[self.jump] = d[self.jump]
        return copy

    def reorder(self, index: torch.Tensor) -> None:
        self.counter = self.counter[index]


def _only(lprobs: torch.Tensor, rows: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
    """``lprobs`` ``(R, N, V)`` where ``rows`` ``(R, N)`` keep only ``token``'s entry (its value kept)."""
    kept = lprobs.gather(-1, token[..., None])
    restricted = torch.full_like(lprobs, -math.inf).scatter_(-1, token[..., None], kept)
    return torch.where(rows[..., None], restricted, lprobs)


def _sample_topp(lprobs: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """fairseq's ``_sample_topp``: the smallest set of most likely entries whose mass reaches ``p`` (the first entry
    whose cumulative mass is ≥ p included), other probabilities zeroed, truncated to the widest row's set."""
    probs = lprobs.exp()
    sorted_probs, sorted_indices = probs.sort(descending=True)
    mask = sorted_probs.cumsum(dim=2).lt(p)
    last_included = mask.cumsum(dim=2)[:, :, -1:].clamp(0, mask.size(2) - 1)
    mask = mask.scatter(2, last_included, True)
    width = int(last_included.max()) + 1
    return sorted_probs[:, :, :width].masked_fill(~mask[:, :, :width], 0), sorted_indices[:, :, :width]


def _beam_search_step(step: int, lprobs: torch.Tensor, scores: torch.Tensor | None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """fairseq's ``ContiguousMultichannelBeamSearch.step``: ``lprobs`` ``(bsz, beam, N, V)``, cumulative ``scores``
    ``(bsz, beam, N)`` of the previous step. Candidates (beam, unit per channel) are ranked by the sum over channels
    of cumulative log-probs, each channel pre-cut to its top 2·beam. Returns per-channel cumulative candidate scores
    ``(bsz, 2·beam, N)``, units ``(bsz, 2·beam, N)`` and beams ``(bsz, 2·beam)``."""
    bsz, beam, n, vocab = lprobs.shape
    lprobs = lprobs[:, :1] if step == 0 else lprobs + scores[..., None]
    k = 2 * beam
    values, indices = lprobs.topk(min(k, vocab), dim=-1)           # (bsz, b, N, k_i)
    total = values[:, :, 0]
    for i in range(1, n):
        total = total[..., None] + values[:, :, i].reshape(bsz, values.shape[1], *([1] * i), -1)
    _, flat = total.flatten(1).topk(k)
    coords, rest = [], flat
    for size in reversed(total.shape[1:]):
        coords.append(rest % size)
        rest = rest // size
    beams, *picks = reversed(coords)
    batch = torch.arange(bsz, device=lprobs.device)[:, None]
    units = torch.stack([indices[batch, beams, i, picks[i]] for i in range(n)], dim=-1)
    cand_scores = torch.stack([lprobs[batch, beams, i, units[..., i]] for i in range(n)], dim=-1)
    return cand_scores, units, beams


def _sampling_step(step: int, lprobs: torch.Tensor, scores: torch.Tensor | None, topk: int, topp: float
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """fairseq's ``ContiguousMultichannelSampling.step``: each channel drawn independently with ``torch.multinomial``
    (step 0: ``beam`` draws from beam 0; later one per beam), optionally among the top-k / top-p units; the score is
    the log-prob of the drawn unit, not renormalised. Same returns as :func:`_beam_search_step` with ``beam``
    candidates."""
    bsz, beam, n, vocab = lprobs.shape
    if step == 0:
        lprobs = lprobs[:, :1]
    units, cand_scores = [], []
    draws = []
    for i in range(n):
        lp = lprobs[:, :, i]
        if topp > 0:
            probs, top = _sample_topp(lp, topp)
        elif topk > 0:
            lp, top = lp.topk(min(topk, vocab))
            probs = lp.exp()
        else:
            probs, top = lp.exp(), None
        draws.append((probs, top))
    if any(bool((probs.sum(-1) == 0).any()) for probs, _ in draws):
        raise InputError(f"sampling step {step}: every unit a hypothesis may take has probability 0 in float32 (the "
                         "model gives the forced prompt unit or the unit to repeat a log-prob below -103); fairseq "
                         "fails here too. Raise the temperature or use beam search")
    for probs, _ in draws:   # the draws of every channel, in channel order, as fairseq makes them
        if step == 0:
            units.append(torch.multinomial(probs.reshape(bsz, -1), beam, replacement=True).view(bsz, beam))
        else:
            units.append(torch.multinomial(probs.reshape(bsz * beam, -1), 1, replacement=True).view(bsz, beam))
    for i, (probs, top) in enumerate(draws):
        probs = probs.expand(bsz, beam, -1)
        score = probs.gather(2, units[i][..., None]).log().view(bsz, beam)
        if top is not None:
            units[i] = top.expand(bsz, beam, -1).gather(2, units[i][..., None]).squeeze(2)
        if step > 0:
            score = score + scores[:, :, i]
        cand_scores.append(score)
    beams = torch.zeros(bsz, beam, dtype=torch.long, device=lprobs.device)
    if step > 0:
        beams += torch.arange(beam, device=lprobs.device)
    return torch.stack(cand_scores, -1), torch.stack(units, -1), beams


@torch.no_grad()
def generate_batch(model: SpeechDLM, prompts: Sequence[torch.Tensor], options: _Options,
                   progress: bool = False, use_cache: bool = True) -> list[list[dict[str, Any]]]:
    """fairseq's ``MultichannelSequenceGenerator._generate`` for one batch of prompts ``(P_b, N)`` (dictionary
    indices, no ``</s>``; ``<unk>``/``<pad>`` positions are free). Returns, per prompt, ``beam`` hypotheses sorted by
    score, each ``{"tokens": (L, N), "score", "positional_scores": (L, N), "attention", "alignment"}`` with
    ``L = max_len + 1`` (prompt + continuation + ``</s>``). ``use_cache=False`` re-runs every hypothesis' whole
    prefix at each step instead of decoding incrementally (same numbers, the slow reference)."""
    cfg, device = model.config, model.device
    n, vocab, beam, bsz = len(cfg.channels), cfg.vocab_size, options.beam, len(prompts)
    rows = bsz * beam
    width = max(len(p) for p in prompts)
    prefix = torch.full((bsz, width, n), PAD, dtype=torch.long, device=device)
    for b, p in enumerate(prompts):
        prefix[b, :len(p)] = p.to(device)
    src_len = width + 1                                   # the padded source batch has </s> first
    max_len = min(int(options.max_len_a * src_len + options.max_len_b), model.max_positions() - 1)
    if options.min_len > max_len:
        raise InputError(f"min_len={options.min_len} exceeds the maximum length {max_len} (max_len_a · "
                         f"{src_len} + max_len_b, at most max_positions - 1): raise max_len_b")
    if max_len < 1:
        raise InputError(f"the maximum length is {max_len}: raise max_len_b")
    tokens = torch.full((rows, max_len + 2, n), PAD, dtype=torch.long, device=device)
    tokens[:, 0] = EOS
    scores = torch.zeros(rows, max_len + 1, n, device=device)
    temperature = torch.tensor(options.temperature, device=device, dtype=model.embed_tokens.weight.dtype)
    duration = (_Duration(rows, n, cfg.delayed_duration, options.duration_temperature, device)
                if cfg.duration_prediction else None)

    # Steps whose input is the same for every beam run once per prompt: step 0, and while the prompt forces every
    # unit (sampling or beam 1: every hypothesis keeps the prompt) the whole forced part, in one forward pass.
    free = (prefix == PAD) | (prefix == UNK)
    forced_steps = int(free.any(-1).any(0).int().argmax()) if free.any() else width
    if options.sampling or beam == 1:
        shared = min(forced_steps, max_len) + 1
    else:
        shared = 1
    for b in range(bsz):
        tokens[b * beam:(b + 1) * beam, 1:shared] = prefix[b, :shared - 1]
    state = model.new_state(bsz, max_len + 1) if use_cache else None
    logits, durations = model.decode_step(tokens[::beam, :shared].permute(2, 0, 1), state)
    if beam > 1:
        if state is not None:  # every prompt's state becomes its beams'
            state.reorder(torch.arange(bsz, device=device).repeat_interleave(beam))
        logits, durations = (None if t is None else t.repeat_interleave(beam, 1) for t in (logits, durations))
    identity = torch.arange(rows, device=device)
    order: torch.Tensor | None = None
    final: list[list[dict[str, Any]]] = [[] for _ in range(bsz)]
    for step in tqdm(range(max_len + 1), desc="SpeechDLM: generating", disable=not progress):
        at = step if step < shared else -1
        if step >= shared and state is not None:
            if order is not None and not torch.equal(order, identity):
                state.reorder(order)
            logits, durations = model.decode_step(tokens[:, step:step + 1].permute(2, 0, 1), state)
        elif step >= shared:
            logits, durations = model.decode_step(tokens[:, :step + 1].permute(2, 0, 1))
        scaled = logits[:, :, at] / temperature[:, None, None]
        lprobs = F.log_softmax(scaled.float(), dim=-1).transpose(0, 1)            # (R, N, V)
        copy = None
        if duration is not None:
            copy = duration.step(step, durations[:, :, at].transpose(0, 1), tokens)
        lprobs = lprobs.masked_fill(torch.isnan(lprobs), -math.inf)
        lprobs[..., PAD] = -math.inf
        lprobs[..., UNK] -= options.unkpen
        if step >= max_len:
            lprobs[..., :EOS] = -math.inf
            lprobs[..., EOS + 1:] = -math.inf
        else:
            lprobs[..., EOS] = -math.inf
        if step < width and step < max_len:
            prompt_units = prefix[:, step].repeat_interleave(beam, 0)              # (R, N)
            forced = (prompt_units != PAD) & (prompt_units != UNK)
            lprobs = _only(lprobs, forced, prompt_units)
            if copy is not None:
                copy &= ~forced
        if copy is not None and step < max_len:
            lprobs = _only(lprobs, copy, tokens[:, step])

        view = lprobs.view(bsz, beam, n, vocab)
        previous = scores[:, step - 1].view(bsz, beam, n) if step > 0 else None
        if options.sampling:
            cand_scores, cand_units, cand_beams = _sampling_step(step, view, previous, options.sampling_topk,
                                                                 options.sampling_topp)
        else:
            cand_scores, cand_units, cand_beams = _beam_search_step(step, view, previous)
        cand_rows = cand_beams + torch.arange(bsz, device=device)[:, None] * beam

        if step == max_len:   # every unit but </s> is masked: the first `beam` candidates end here
            _finalize(final, step, cand_rows[:, :beam], cand_units[:, :beam], cand_scores[:, :beam], tokens, scores,
                      options)
            break
        # </s> is masked before max_len, so the first `beam` candidates are the active ones
        order = cand_rows[:, :beam].flatten()
        tokens[:, :step + 1] = tokens[order, :step + 1]
        tokens[:, step + 1] = cand_units[:, :beam].flatten(0, 1)
        if step > 0:
            scores[:, :step] = scores[order, :step]
        scores[:, step] = cand_scores[:, :beam].flatten(0, 1)
        if duration is not None:
            duration.reorder(order)
    for hypos in final:
        hypos.sort(key=lambda h: -float(h["score"]))
    return final


def _finalize(final: list[list[dict[str, Any]]], step: int, rows: torch.Tensor, units: torch.Tensor,
              cand_scores: torch.Tensor, tokens: torch.Tensor, scores: torch.Tensor, options: _Options) -> None:
    """fairseq's ``finalize_hypos`` at the last step: candidates whose ``</s>`` has a finite score in some channel."""
    ends = ((units == EOS) & (cand_scores != -math.inf)).any(-1)                 # (bsz, beam)
    for b, c in ends.nonzero().tolist():
        row = rows[b, c]
        hypo_tokens = tokens[row, 1:step + 2].clone()
        hypo_tokens[step] = EOS
        eos_scores = cand_scores[b, c].clone()
        positional = scores[row, :step + 1].clone()
        positional[step] = eos_scores
        positional[1:] = positional[1:] - positional[:-1]
        if not options.unnormalized:
            eos_scores /= (step + 1) ** options.lenpen
        final[b].append({"tokens": hypo_tokens, "score": eos_scores.sum(), "attention": torch.empty(0),
                         "alignment": torch.empty(0), "positional_scores": positional})


# ------------------------------------------------------------------------------------------ hub interface
class SpeechDLMHubInterface(nn.Module):
    """fairseq's ``MultichannelGeneratorHubInterface`` over a :class:`SpeechDLM` (``.models[0]``).

    ``encode``/``decode`` map ``{channel: "u u u"}`` unit strings to ``{channel: LongTensor}`` dictionary indices
    and back; ``generate`` runs the generator on encoded prompts, ``sample`` on strings. Generation options are
    fairseq's (:class:`GenerationDefaults` gives the checkpoint's defaults; also ``duration_temperature``).
    Prompts are decoded in batches of at most ``max_sentences`` prompts and ``max_tokens`` padded prompt tokens
    (None: no limit), shortest first, as fairseq's batch iterator orders them.
    """

    def __init__(self, model: SpeechDLM) -> None:
        super().__init__()
        self.models = nn.ModuleList([model])
        self.channels = list(model.channels)
        dictionary = model.dictionary
        self.src_dicts = self.tgt_dicts = {ch: dictionary for ch in self.channels}
        self.max_positions = model.max_positions()
        self.max_tokens: int | None = None
        self.max_sentences: int | None = None

    @property
    def device(self) -> torch.device:
        return self.models[0].device

    # -------------------------------------------------------------- text
    def encode(self, sentence: Mapping[str, str]) -> dict[str, torch.LongTensor]:
        """``{channel: "7 376 376 ..."}`` → ``{channel: LongTensor[n + 1]}``: dictionary indices (units outside the
        dictionary → ``<unk>`` = 3), then ``</s>`` = 2. Every channel needs the same number of units."""
        if not isinstance(sentence, Mapping) or set(sentence) != set(self.channels):
            got = sorted(sentence) if isinstance(sentence, Mapping) else type(sentence).__name__
            raise InputError(f"a prompt is a dict with one unit string per channel {self.channels}, got {got}")
        encoded = {}
        for ch in sentence:
            if not isinstance(sentence[ch], str):
                raise InputError(f"channel {ch!r}: expected a string of space-separated units, got "
                                 f"{type(sentence[ch]).__name__}")
            encoded[ch] = self.binarize(sentence[ch], ch)
        lengths = {ch: len(t) - 1 for ch, t in encoded.items()}
        if len(set(lengths.values())) != 1:
            raise InputError(f"every channel needs the same number of units, got {lengths}")
        return encoded

    def decode(self, tokens: Mapping[str, torch.Tensor]) -> dict[str, str]:
        """``{channel: indices}`` → ``{channel: "u u u"}`` (``<s>``/``</s>`` dropped, ``<unk>`` kept as a string)."""
        if not isinstance(tokens, Mapping) or set(tokens) != set(self.channels):
            raise InputError(f"tokens must be a dict with one tensor per channel {self.channels}")
        return {ch: self.string(tokens[ch], ch) for ch in tokens}

    def binarize(self, sentence: str, channel: str) -> torch.LongTensor:
        return self.src_dicts[channel].encode_line(sentence)

    def string(self, tokens: torch.Tensor, channel: str) -> str:
        return self.tgt_dicts[channel].string(tokens)

    # -------------------------------------------------------------- generation
    def sample(self, sentences: Sequence[Mapping[str, str]] | Mapping[str, str], beam: int = 1,
               verbose: bool = False, **kwargs: Any) -> list[dict[str, str]] | dict[str, str]:
        """Continue unit-string prompts: per prompt, ``decode`` of the best hypothesis (prompt included). A single
        dict gives a single dict. ``kwargs``: fairseq's generation options (e.g. ``sampling=True, max_len_b=500``).

        ``max_len_a · (prompt length + 1) + max_len_b`` counts prompt AND continuation (500 ≈ 10 s at 50 Hz)."""
        if isinstance(sentences, Mapping):
            return self.sample([sentences], beam=beam, verbose=verbose, **kwargs)[0]
        hypos = self.generate([self.encode(s) for s in sentences], beam, verbose, **kwargs)
        return [self.decode(h[0]["tokens"]) for h in hypos]

    def generate(self, tokenized_sentences: Sequence[Mapping[str, torch.Tensor]] | Mapping[str, torch.Tensor],
                 beam: int = 5, verbose: bool = False, skip_invalid_size_inputs: bool = False,
                 inference_step_args: dict | None = None, progress: bool = False,
                 **kwargs: Any) -> list[list[dict[str, Any]]]:
        """Per encoded prompt, ``beam`` hypotheses sorted by score (best first), each ``{"tokens": {channel:
        LongTensor[L]}, "score": tensor, "positional_scores": (L, N), ...}``, ``L = max_len + 1``. A prompt longer
        than ``max_positions`` raises, or is left out with ``skip_invalid_size_inputs=True`` (as fairseq)."""
        if isinstance(tokenized_sentences, Mapping):
            return self.generate([tokenized_sentences], beam, verbose, skip_invalid_size_inputs,
                                 inference_step_args, progress, **kwargs)[0]
        if inference_step_args:
            raise InputError("inference_step_args (prefix_tokens, constraints) are not supported: the prompt is "
                             "the prefix")
        model = self.models[0]
        options = _options(model, beam, kwargs)
        prompts = {}
        for i, sentence in enumerate(tokenized_sentences):
            prompt = self._prompt(sentence, i)
            if len(prompt) + 1 > self.max_positions:
                if skip_invalid_size_inputs:
                    logger.warning("prompt %d (%d units) is longer than max_positions=%d: skipped", i, len(prompt),
                                   self.max_positions)
                    continue
                raise InputError(f"{self._too_long(prompt, i)} (pass skip_invalid_size_inputs=True to skip it)")
            prompts[i] = prompt
        results: dict[int, list[dict[str, Any]]] = {}
        for batch in self._batches(prompts):
            for i, hypos in zip(batch, generate_batch(model, [prompts[i] for i in batch], options, progress)):
                for h in hypos:
                    h["tokens"] = {ch: h["tokens"][:, j] for j, ch in enumerate(self.channels)}
                results[i] = hypos
        outputs = [results[i] for i in sorted(results)]
        if verbose:
            for i, hypos in zip(sorted(results), outputs):
                logger.info("S\t%s", {ch: self.string(tokenized_sentences[i][ch], ch) for ch in self.channels})
                for h in hypos:
                    logger.info("H\t%s\t%s", float(h["score"]), self.decode(h["tokens"]))
        return outputs

    def check(self, sentence: Mapping[str, str], i: int = 0) -> None:
        """Raise the :class:`InputError` that :meth:`sample` would raise for the unit-string prompt ``sentence``
        (prompt number ``i``), without generating: its channels, lengths, units and ``max_positions``."""
        prompt = self._prompt(self.encode(sentence), i)
        if len(prompt) + 1 > self.max_positions:
            raise InputError(self._too_long(prompt, i))

    def _too_long(self, prompt: torch.Tensor, i: int) -> str:
        return f"prompt {i} has {len(prompt)} units; the model takes at most {self.max_positions - 1}"

    def _prompt(self, sentence: Mapping[str, torch.Tensor], i: int) -> torch.Tensor:
        """An encoded prompt → ``(P, N)`` units without the trailing ``</s>`` (fairseq's inference dataset)."""
        if not isinstance(sentence, Mapping) or set(sentence) != set(self.channels):
            raise InputError(f"prompt {i}: expected hub.encode(...) output, a dict with one tensor per channel "
                             f"{self.channels}")
        columns = [torch.as_tensor(sentence[ch]).long().cpu().flatten() for ch in self.channels]
        if len({len(c) for c in columns}) != 1:
            raise InputError(f"prompt {i}: every channel needs the same number of tokens, got "
                             f"{[len(c) for c in columns]}")
        units = torch.stack(columns, -1)
        while len(units) and (units[-1] == EOS).all():
            units = units[:-1]
        if len(units) == 0:
            raise InputError(f"prompt {i} is empty: give at least one unit per channel (a '<unk>' position is "
                             "generated freely, e.g. to condition on one channel only)")
        if ((units < 0) | (units >= len(self.src_dicts[self.channels[0]]))).any():
            raise InputError(f"prompt {i} holds indices outside the dictionary of {len(self.src_dicts[self.channels[0]])}")
        if (units == EOS).any():
            raise InputError(f"prompt {i} holds '</s>' among its units; a prompt is units (or '<unk>') only")
        return units

    def _batches(self, prompts: dict[int, torch.Tensor]) -> list[list[int]]:
        order = sorted(prompts, key=lambda i: len(prompts[i]))
        batches: list[list[int]] = []
        for i in order:
            size = len(prompts[i]) + 1
            if batches:
                batch = batches[-1]
                longest = max(size, *(len(prompts[j]) + 1 for j in batch))
                fits_tokens = self.max_tokens is None or longest * (len(batch) + 1) <= self.max_tokens
                fits_count = self.max_sentences is None or len(batch) < self.max_sentences
                if fits_tokens and fits_count:
                    batch.append(i)
                    continue
            batches.append([i])
        return batches


# ------------------------------------------------------------------------------------------ code files
def read_code_file(path: str | os.PathLike, channels: Sequence[str],
                   on_error: Callable[[str, InputError], None] | None = None) -> list[dict[str, str]]:
    """The input of fairseq's ``sample_speech_dlm.py``: one Python dict literal per line, ``{'audio': NAME,
    'unitA': 'u u ...', 'unitB': '...'}`` (as ``create_code_file.py`` writes it), read with ``ast.literal_eval``
    (no code runs). Blank lines are skipped; a malformed line is an :class:`InputError` naming it, or with
    ``on_error`` is passed to ``on_error(where, error)`` and left out."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"code file {path} does not exist")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(f"{path} is not a code file (not UTF-8 text: audio?); give the lines "
                         "{'audio': NAME, 'unitA': '...', 'unitB': '...'} of create_code_file.py") from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(_code_line(line, channels, f"{path} line {number}"))
        except InputError as e:
            if on_error is None:
                raise
            on_error(f"{path} line {number}", e)
    return records


def _code_line(line: str, channels: Sequence[str], where: str) -> dict[str, str]:
    try:
        record = ast.literal_eval(line.strip())
    except (ValueError, SyntaxError) as e:
        raise InputError(f"{where} is not a Python dict literal ({e})") from None
    missing = [k for k in ("audio", *channels) if not isinstance(record, dict) or k not in record]
    if missing:
        raise InputError(f"{where} lacks {missing}: each line is "
                         f"{{'audio': NAME, {', '.join(repr(c) + ': UNITS' for c in channels)}}}")
    if not all(isinstance(record[k], str) for k in ("audio", *channels)):
        raise InputError(f"{where}: 'audio' and the channels must be strings")
    return record


def write_code_file(path: str | os.PathLike, records: Sequence[Mapping[str, str]]) -> None:
    """Write records as ``sample_speech_dlm.py`` does: ``str(dict)`` per line (its parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{dict(record)}\n" for record in records))


def limit_prefix(codes: Mapping[str, str], size: int) -> dict[str, str]:
    """The first ``size`` units of every channel (``sample_speech_dlm.py --prefix-size``)."""
    return {ch: " ".join(units.split()[:size]) for ch, units in codes.items()}


# ------------------------------------------------------------------------------------------ releases
_RELEASE = "https://dl.fbaipublicfiles.com/textless_nlp/dgslm/checkpoints/speech_dlm/"

WEIGHTS = (
    Weights(
        name="speech_dlm_base",
        entry_point="speech_dlm",
        kwargs={"variant": "speech_dlm_base"},
        converter="speech_dlm",
        source_files=(SourceFile(f"{_RELEASE}speech_dlm_base.pt", None),
                      SourceFile(f"{_RELEASE}dict.unitA.txt", None),
                      SourceFile(f"{_RELEASE}dict.unitB.txt", None)),
        license="MIT",
        paper="https://arxiv.org/abs/2203.16502",
        description="SpeechDLM of dGSLM (DLM-5: edge-unit + delayed-duration prediction, 6 layers of which the last 4 "
                    "are cross-channel, 512 wide) over Fisher-HuBERT layer-12 k-means-500 units of the two channels "
                    "of Fisher telephone dialogues",
        sample_rate=16000,
        frame_rate=50.0,
    ),
)
