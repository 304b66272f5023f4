"""GSLM unit-to-speech: the modified Tacotron2 of fairseq's ``examples/textless_nlp/gslm/unit2speech``.

Tacotron2 (Shen et al. 2018) reading discrete units instead of characters: units → ids through the checkpoint's
``code_dict`` → embedding → 3 × (conv, BatchNorm, ReLU) → BiLSTM = memory ``(B, N, E)``; then an autoregressive
decoder with location-sensitive attention writes 80-bin log-mel frames at 22.05 kHz / 256 (one per step) until its
gate says stop, and a 5-conv postnet refines them. WaveGlow (:mod:`zoo.models.waveglow`) turns the mel into speech.

What makes it GSLM's rather than NVIDIA's (every point checked against the original by ``check_reference.py
gslm_u2s``):

* :meth:`Tacotron2.encode` is ``TacotronInputDataset.get_tensor``: ``'_'`` is id 0 (padding), line ``i`` of
  ``code_dict`` is id ``i + 1``, then ``<s>`` and ``</s>`` (only the enabled ones) take the next ids. ``<s>``/``</s>``
  are added around the units; codes not in ``code_dict`` are dropped; ``collapse_code`` emits a code only when it
  differs from the last *emitted* one (so ``5 99 5`` gives one 5). The order of ``code_dict`` is model specific:
  never assume ``id = unit + 1``.
* The prenet's dropout (p = 0.5) stays ON at inference, as in the original: every decoder step draws a fresh keep
  mask per prenet layer (kept values × 2). ``prenet_dropout_masks=`` replays given masks, ``generator=`` seeds the
  draws; with either, synthesis is reproducible.
* Optional observed-attribute (``obs_dim``) and latent (``lat_dim``) embeddings are appended to the decoder input;
  at inference the observed label defaults to 0 and the latent to zeros. The latent's training-time audio encoder
  is not part of this model.
* The decoder stops after a step whose ``sigmoid(gate) > gate_threshold`` (that frame is kept), or after
  ``max_decoder_steps`` steps (2000 by default, the value both original loaders set).

Batches: :meth:`Tacotron2.inference` takes ``(B, N)`` ids with optional ``lengths`` (rows right-padded); padding is
masked out of the convolutions, the BiLSTM and the attention, and every row stops on its own gate, so each row's
frames are the ones it would get alone with the same dropout masks. The original decodes one utterance at a time.

Example::

    >>> import torch
    >>> config = Tacotron2Config(codes=tuple(str(u) for u in range(10)), symbols_embedding_dim=16,
    ...     encoder_embedding_dim=16, n_mel_channels=8, attention_rnn_dim=24, decoder_rnn_dim=24, prenet_dim=16,
    ...     attention_dim=12, attention_location_n_filters=4, attention_location_kernel_size=7,
    ...     postnet_embedding_dim=16)
    >>> taco = Tacotron2(config).eval()
    >>> ids = taco.encode("3 3 7 1 1 9")                 # <s> 3 7 1 9 </s>
    >>> ids.tolist()
    [11, 4, 8, 2, 10, 12]
    >>> taco.max_decoder_steps = 20
    >>> mel, mel_postnet, gate, alignments = taco.inference(ids[None], generator=torch.Generator().manual_seed(0))
    >>> mel_postnet.shape[:2], alignments.shape[-1]
    (torch.Size([1, 8]), 6)
"""
from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, InputError
from ..modeling import PretrainedModel
from ..nn.conv import Conv1d
from ..nn.ragged import valid_mask, zero_beyond
from ..registry import SourceFile, Weights
from .gslm_ulm import ULM_ARCHIVES

PAD_TOKEN = "_"
SOS_TOKEN = "<s>"
EOS_TOKEN = "</s>"
#: Dropout probability of the prenet, applied at inference too.
PRENET_DROPOUT = 0.5
#: The prenet has two layers of ``prenet_dim`` units.
PRENET_LAYERS = 2
#: What both original loaders set ``hparams.max_decoder_steps`` to (the CLI default).
DEFAULT_MAX_DECODER_STEPS = 2000
#: The original prints a warning above this fraction of out-of-dictionary codes (without collapse_code).
OOV_WARNING_FRACTION = 0.05


# ------------------------------------------------------------------------------------------ config
@dataclass(frozen=True)
class Tacotron2Config:
    """The checkpoint's ``hparams`` that shape inference, plus its ``code_dict``. Defaults are the upstream
    Tacotron2 ones; converted checkpoints always carry their own values."""

    codes: tuple[str, ...]               # code_dict lines: code i has id i + 1 ('_' = 0 is padding)
    add_sos: bool = True
    add_eos: bool = True
    collapse_code: bool = True
    n_symbols: int | None = None         # embedding rows (default: the ids that codes, <s> and </s> use)
    symbols_embedding_dim: int = 512
    encoder_n_convolutions: int = 3
    encoder_embedding_dim: int = 512
    encoder_kernel_size: int = 5
    n_mel_channels: int = 80
    n_frames_per_step: int = 1
    obs_dim: int = 0                     # observed-attribute embedding size (0: none)
    obs_n_class: int = 1
    lat_dim: int = 0                     # latent size (0: none)
    attention_rnn_dim: int = 1024
    decoder_rnn_dim: int = 1024
    prenet_dim: int = 256
    gate_threshold: float = 0.5
    attention_dim: int = 128
    attention_location_n_filters: int = 32
    attention_location_kernel_size: int = 31
    postnet_embedding_dim: int = 512
    postnet_kernel_size: int = 5
    postnet_n_convolutions: int = 5
    sampling_rate: int = 22050           # Hz of the speech the mel frames describe (WaveGlow's output rate)

    def __post_init__(self) -> None:
        if len(set(self.codes)) != len(self.codes) or PAD_TOKEN in self.codes:
            raise ConfigError("code_dict lines must be distinct and must not be the padding symbol '_'")
        if self.n_symbols is not None and self.n_symbols < self.vocab_size:
            raise ConfigError(f"n_symbols={self.n_symbols} is smaller than the {self.vocab_size} ids of code_dict")
        if self.symbols_embedding_dim != self.encoder_embedding_dim:
            raise ConfigError("symbols_embedding_dim must equal encoder_embedding_dim (the encoder convs keep it)")
        if self.encoder_embedding_dim % 2:
            raise ConfigError("encoder_embedding_dim must be even (a BiLSTM of half that size per direction)")
        for name in ("encoder_kernel_size", "attention_location_kernel_size", "postnet_kernel_size"):
            if getattr(self, name) % 2 == 0:
                raise ConfigError(f"{name} must be odd (the original pads (k - 1) / 2 on both sides)")
        if self.postnet_n_convolutions < 2:
            raise ConfigError("the postnet has at least two convolutions")

    @property
    def vocab_size(self) -> int:
        """Ids used by the code dictionary: padding, the codes, then <s> and </s> if enabled."""
        return 1 + len(self.codes) + self.add_sos + self.add_eos

    @property
    def code_to_id(self) -> dict[str, int]:
        ids = {PAD_TOKEN: 0, **{code: i + 1 for i, code in enumerate(self.codes)}}
        for token, enabled in ((SOS_TOKEN, self.add_sos), (EOS_TOKEN, self.add_eos)):
            if enabled:
                ids[token] = len(ids)
        return ids


class _Decoded(NamedTuple):
    mel: torch.Tensor            # (B, n_mel, T) before the postnet
    mel_postnet: torch.Tensor    # (B, n_mel, T)
    gates: torch.Tensor          # (B, steps, 1) logits
    alignments: torch.Tensor     # (B, steps, N)
    steps: torch.Tensor          # (B,) decoder steps of each row
    has_eos: torch.Tensor        # (B,) bool: the gate stopped the row


class MelOutput(NamedTuple):
    """One utterance's mel from :meth:`Tacotron2.infer_batch`."""

    mel: torch.Tensor        # (n_mel_channels, frames): the postnet output, WaveGlow's input
    has_eos: bool            # True if the gate stopped decoding, False if max_decoder_steps did


# ------------------------------------------------------------------------------------------ blocks
class ConvNorm(nn.Module):
    """Conv1d ('same' padding, bias) + BatchNorm1d (running statistics at inference)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = Conv1d(in_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2)
        self.norm = nn.BatchNorm1d(out_channels)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        # the original runs each utterance alone, zero-padded by the conv: padding must be zero at every conv
        return self.norm(self.conv(zero_beyond(x, lengths)))


class Encoder(nn.Module):
    """Convolutions + BiLSTM: ids' embeddings ``(B, E, N)`` → memory ``(B, N, E)``."""

    def __init__(self, c: Tacotron2Config) -> None:
        super().__init__()
        dim = c.encoder_embedding_dim
        self.convolutions = nn.ModuleList(ConvNorm(dim, dim, c.encoder_kernel_size)
                                          for _ in range(c.encoder_n_convolutions))
        self.lstm = nn.LSTM(dim, dim // 2, 1, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        for conv in self.convolutions:
            x = F.relu(conv(x, lengths))
        x = x.transpose(1, 2)
        if lengths is None:
            return self.lstm(x)[0]
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        return nn.utils.rnn.pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=x.shape[1])[0]


class Attention(nn.Module):
    """Location-sensitive additive attention: ``v · tanh(W q + U m + F (conv * [w, Σw]))``."""

    def __init__(self, c: Tacotron2Config) -> None:
        super().__init__()
        kernel = c.attention_location_kernel_size
        self.query = nn.Linear(c.attention_rnn_dim, c.attention_dim, bias=False)
        self.memory = nn.Linear(c.encoder_embedding_dim, c.attention_dim, bias=False)
        self.v = nn.Linear(c.attention_dim, 1, bias=False)
        self.location_conv = Conv1d(2, c.attention_location_n_filters, kernel, padding=(kernel - 1) // 2,
                                    bias=False)
        self.location_dense = nn.Linear(c.attention_location_n_filters, c.attention_dim, bias=False)

    def forward(self, query: torch.Tensor, memory: torch.Tensor, processed_memory: torch.Tensor,
                weights_cat: torch.Tensor, pad_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(context ``(B, E)``, weights ``(B, N)``) for the attention LSTM output ``query`` ``(B, A_rnn)``."""
        location = self.location_dense(self.location_conv(weights_cat).transpose(1, 2))
        energies = self.v(torch.tanh(self.query(query)[:, None] + location + processed_memory)).squeeze(-1)
        if pad_mask is not None:
            energies = energies.masked_fill(pad_mask, -math.inf)
        weights = F.softmax(energies, dim=1)
        return torch.bmm(weights[:, None], memory).squeeze(1), weights


class Decoder(nn.Module):
    """The autoregressive mel decoder (prenet, attention LSTM, attention, decoder LSTM, projections)."""

    def __init__(self, c: Tacotron2Config) -> None:
        super().__init__()
        self.config = c
        frame = c.n_mel_channels * c.n_frames_per_step
        extra = c.encoder_embedding_dim + c.obs_dim + c.lat_dim
        self.prenet = nn.ModuleList([nn.Linear(frame, c.prenet_dim, bias=False),
                                     nn.Linear(c.prenet_dim, c.prenet_dim, bias=False)])
        self.attention_rnn = nn.LSTMCell(c.prenet_dim + c.encoder_embedding_dim, c.attention_rnn_dim)
        self.attention = Attention(c)
        self.decoder_rnn = nn.LSTMCell(c.attention_rnn_dim + extra, c.decoder_rnn_dim)
        self.projection = nn.Linear(c.decoder_rnn_dim + extra, frame)
        self.gate = nn.Linear(c.decoder_rnn_dim + extra, 1)

    def forward(self, memory: torch.Tensor, lengths: torch.Tensor | None, obs_and_lat: torch.Tensor | None,
                max_steps: torch.Tensor, masks: torch.Tensor | None, generator: torch.Generator | None):
        """Decode until every row stopped (on its gate, or after its ``max_steps``, ``(B,)``). Returns frames ``(B, T, n_mel · n_frames_per_step)``, gate logits
        ``(B, T, 1)``, alignments ``(B, T, N)``, each row's steps ``(B,)`` and whether its gate stopped it ``(B,)``."""
        c = self.config
        batch, n_inputs, _ = memory.shape
        new = memory.new_zeros
        att_h, att_c = new(batch, c.attention_rnn_dim), new(batch, c.attention_rnn_dim)
        dec_h, dec_c = new(batch, c.decoder_rnn_dim), new(batch, c.decoder_rnn_dim)
        weights, weights_cum = new(batch, n_inputs), new(batch, n_inputs)
        context = new(batch, c.encoder_embedding_dim)
        frame = new(batch, c.n_mel_channels * c.n_frames_per_step)   # the all-zero "go" frame
        processed_memory = self.attention.memory(memory)
        pad_mask = None
        if lengths is not None:
            pad_mask = ~valid_mask(lengths, n_inputs, memory.device)
        steps = torch.zeros(batch, dtype=torch.long)
        stopped = torch.zeros(batch, dtype=torch.bool)
        has_eos = torch.zeros(batch, dtype=torch.bool)
        frames, gates, alignments = [], [], []
        while True:
            t = len(frames)
            x = frame
            for layer, linear in enumerate(self.prenet):
                x = F.relu(linear(x))
                x = x * (self._keep(masks, t, layer, x, generator) * (1 / (1 - PRENET_DROPOUT)))
            att_h, att_c = self.attention_rnn(torch.cat((x, context), -1), (att_h, att_c))
            context, weights = self.attention(att_h, memory, processed_memory,
                                              torch.stack((weights, weights_cum), dim=1), pad_mask)
            weights_cum = weights_cum + weights
            hidden = torch.cat((att_h, context) if obs_and_lat is None else (att_h, context, obs_and_lat), -1)
            dec_h, dec_c = self.decoder_rnn(hidden, (dec_h, dec_c))
            hidden = torch.cat((dec_h, context) if obs_and_lat is None else (dec_h, context, obs_and_lat), -1)
            frame, gate = self.projection(hidden), self.gate(hidden)
            frames.append(frame)
            gates.append(gate)
            alignments.append(weights)
            running = ~stopped
            steps[running] += 1
            eos = (torch.sigmoid(gate[:, 0]) > c.gate_threshold).cpu() & running
            has_eos |= eos
            stopped |= eos | (steps == max_steps)
            if bool(stopped.all()):
                break
        return torch.stack(frames, 1), torch.stack(gates, 1), torch.stack(alignments, 1), steps, has_eos

    def _keep(self, masks: torch.Tensor | None, step: int, layer: int, x: torch.Tensor,
              generator: torch.Generator | None) -> torch.Tensor:
        """The prenet dropout's keep flags for ``x`` at ``step``: given, or drawn as F.dropout draws them."""
        if masks is None:
            return torch.empty_like(x).bernoulli_(1 - PRENET_DROPOUT, generator=generator)
        if step >= masks.shape[0]:
            raise InputError(f"prenet_dropout_masks holds {masks.shape[0]} decoder steps but decoding needs more: "
                             "give one mask per step up to max_decoder_steps, or None to draw them")
        return masks[step, layer].to(x.dtype)


class Postnet(nn.Module):
    """``postnet_n_convolutions`` × (conv, BatchNorm), tanh after all but the last: the mel's residual."""

    def __init__(self, c: Tacotron2Config) -> None:
        super().__init__()
        dims = [c.n_mel_channels] + [c.postnet_embedding_dim] * (c.postnet_n_convolutions - 1) + [c.n_mel_channels]
        self.convolutions = nn.ModuleList(ConvNorm(i, o, c.postnet_kernel_size) for i, o in itertools.pairwise(dims))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        for conv in self.convolutions[:-1]:
            x = torch.tanh(conv(x, lengths))
        return self.convolutions[-1](x, lengths)


# ------------------------------------------------------------------------------------------ model
class Tacotron2(PretrainedModel):
    """GSLM's unit Tacotron2: :meth:`encode` units to ids, :meth:`inference` ids to mel frames (see the module
    docstring). ``max_decoder_steps`` bounds decoding (the entry point sets it)."""

    config_class = Tacotron2Config
    model_type = "gslm_tacotron2"

    def __init__(self, config: Tacotron2Config) -> None:
        super().__init__(config)
        self.max_decoder_steps = DEFAULT_MAX_DECODER_STEPS
        self.embedding = nn.Embedding(config.n_symbols or config.vocab_size, config.symbols_embedding_dim)
        self.obs_embedding = nn.Embedding(config.obs_n_class, config.obs_dim) if config.obs_dim > 0 else None
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.postnet = Postnet(config)

    @property
    def sample_rate(self) -> int:
        return self.config.sampling_rate

    # -------------------------------------------------------------- units → ids
    def encode(self, units: str | Sequence[int | str] | torch.Tensor) -> torch.Tensor:
        """``TacotronInputDataset.get_tensor``: units (a space-separated string, a sequence or a 1-D tensor) →
        1-D int64 ids, with ``<s>``/``</s>`` added, repeats collapsed and unknown codes dropped as configured."""
        c = self.config
        if isinstance(units, str):
            tokens = units.split()
        else:
            if isinstance(units, torch.Tensor):
                if units.ndim != 1 or units.is_floating_point():
                    raise InputError(f"units must be a 1-D integer tensor, got {units.dtype} {tuple(units.shape)}")
                units = units.tolist()
            tokens = [str(u) for u in units]
        n_units = len(tokens)
        tokens = [SOS_TOKEN] * c.add_sos + tokens + [EOS_TOKEN] * c.add_eos
        ids_of = c.code_to_id
        ids: list[int] = []
        if c.collapse_code:
            previous = None
            for token in tokens:
                if token in ids_of and token != previous:
                    ids.append(ids_of[token])
                    previous = token
        else:
            ids = [ids_of[t] for t in tokens if t in ids_of]
            if len(ids) < (1 - OOV_WARNING_FRACTION) * len(tokens):
                warnings.warn(f"{len(tokens) - len(ids)} of {len(tokens)} codes are not in this model's code_dict "
                              "and were dropped: were the units made with the quantizer this model was trained on?",
                              stacklevel=2)
        if n_units and not any(t in ids_of for t in tokens[c.add_sos: len(tokens) - c.add_eos]):
            raise InputError(f"none of the {n_units} units is in this model's code_dict (codes "
                             f"{c.codes[0]}…{c.codes[-1]}): use units of the quantizer it was trained on")
        return torch.tensor(ids, dtype=torch.long)

    # -------------------------------------------------------------- ids → mel
    def inference(self, inputs: torch.Tensor, obs_labels: torch.Tensor | None = None, lat: torch.Tensor | None = None,
                  ret_has_eos: bool = False, prenet_dropout_masks: torch.Tensor | None = None, *,
                  lengths: torch.Tensor | Sequence[int] | None = None,
                  generator: torch.Generator | None = None) -> list:
        """Mel frames of ids ``inputs`` ``(B, N)``, as the original ``Tacotron2.inference``.

        Returns ``[mel_outputs, mel_outputs_postnet, gate_outputs, alignments]`` (+ ``has_eos`` if
        ``ret_has_eos``): mels ``(B, n_mel, T · n_frames_per_step)``, gate logits ``(B, T, 1)``, attention weights
        ``(B, T, N)``; ``has_eos`` is a bool for one row, a ``(B,)`` bool tensor for more.

        * ``obs_labels`` ``(B,)`` int64: observed-attribute labels (default 0), for models with ``obs_dim > 0``;
          ``lat`` ``(B, lat_dim)``: the latent (default zeros), for models with ``lat_dim > 0``.
        * ``prenet_dropout_masks`` ``(steps, 2, B, prenet_dim)`` bool: keep flags of the prenet dropout, step ``t``
          uses ``masks[t]`` (kept values × 2); decoding past the last given step is an error. None draws them
          (Bernoulli(0.5), from ``generator`` if given).
        * ``lengths`` ``(B,)``: valid ids per row when rows are right-padded. Each row stops on its own; past a
          row's last step its mels are zero and its gate logits repeat the last one.
        """
        out = self._decode(inputs, obs_labels, lat, prenet_dropout_masks, lengths, generator)
        outputs = [out.mel, out.mel_postnet, out.gates, out.alignments]
        if ret_has_eos:
            outputs.append(bool(out.has_eos[0]) if len(out.has_eos) == 1 else out.has_eos)
        return outputs

    def infer_batch(self, ids: Sequence[torch.Tensor], *, obs_labels: torch.Tensor | None = None,
                    prenet_dropout_masks: torch.Tensor | None = None, generator: torch.Generator | None = None,
                    max_decoder_steps: Sequence[int | None] | None = None) -> list[MelOutput]:
        """Mels of several utterances' ids (from :meth:`encode`), decoded as one padded batch; each equals the
        utterance decoded alone with the same prenet masks (``(steps, 2, len(ids), prenet_dim)``).
        ``max_decoder_steps`` caps each utterance's steps further (None: :attr:`max_decoder_steps` only); the
        decoder's frames of a cut utterance are the first of the uncut one's, only the postnet sees the cut."""
        if not ids:
            return []
        limits = [self.max_decoder_steps if n is None else min(n, self.max_decoder_steps)
                  for n in (max_decoder_steps or [None] * len(ids))]
        if len(limits) != len(ids) or min(limits) < 1:
            raise InputError(f"max_decoder_steps must give each of the {len(ids)} utterances a limit ≥ 1, got "
                             f"{list(max_decoder_steps)}")
        lengths = torch.tensor([len(i) for i in ids])
        padded = nn.utils.rnn.pad_sequence([torch.as_tensor(i) for i in ids], batch_first=True)
        out = self._decode(padded, obs_labels, None, prenet_dropout_masks, lengths, generator, torch.tensor(limits))
        frames = (out.steps * self.config.n_frames_per_step).tolist()
        return [MelOutput(mel[:, :n], bool(eos)) for mel, n, eos in zip(out.mel_postnet, frames, out.has_eos)]

    def _decode(self, inputs, obs_labels, lat, masks, lengths, generator, max_steps=None) -> _Decoded:
        c = self.config
        ids = self._check_ids(inputs)
        batch, device = ids.shape[0], ids.device
        lengths = self._check_lengths(lengths, ids)
        masks = self._check_masks(masks, batch, device)
        memory = self.encoder(self.embedding(ids).transpose(1, 2), lengths)
        parts = []
        if self.obs_embedding is not None:
            labels = torch.zeros(batch, dtype=torch.long) if obs_labels is None else torch.as_tensor(obs_labels)
            parts.append(self.obs_embedding(labels.to(device).reshape(batch)))
        if c.lat_dim > 0:
            parts.append(memory.new_zeros(batch, c.lat_dim) if lat is None else lat.to(memory).reshape(batch, -1))
        elif lat is not None:
            raise InputError("this model has no latent (lat_dim = 0): pass lat=None")
        obs_and_lat = torch.cat(parts, -1) if parts else None
        if max_steps is None:
            max_steps = torch.full((batch,), self.max_decoder_steps)
        frames, gates, alignments, steps, has_eos = self.decoder(memory, lengths, obs_and_lat, max_steps, masks,
                                                                 generator)
        mel = frames.reshape(batch, -1, c.n_mel_channels).transpose(1, 2)
        mel_lengths = None
        if not bool((steps == steps.max()).all()):  # rows that stopped early: zero their frames past the stop
            mel_lengths = steps * c.n_frames_per_step
            mel = zero_beyond(mel, mel_lengths)
            last = (steps - 1).to(device)[:, None, None]
            gates = torch.where(torch.arange(gates.shape[1], device=device)[None, :, None] > last,
                                gates.gather(1, last), gates)
        mel_postnet = zero_beyond(mel + self.postnet(mel, mel_lengths), mel_lengths)
        return _Decoded(mel, mel_postnet, gates, alignments, steps, has_eos)

    # -------------------------------------------------------------- checks
    def _check_ids(self, inputs: torch.Tensor) -> torch.Tensor:
        ids = torch.as_tensor(inputs)
        if ids.ndim != 2 or ids.is_floating_point() or ids.shape[1] == 0:
            raise InputError(f"ids must be a non-empty (B, N) integer tensor (see encode), got {ids.dtype} "
                             f"{tuple(ids.shape)}")
        n = self.embedding.num_embeddings
        if ids.numel() and (ids.min() < 0 or ids.max() >= n):
            raise InputError(f"ids must lie in [0, {n}), got {ids.min().item()}…{ids.max().item()}: "
                             "encode units with this model's encode()")
        return ids.to(self.embedding.weight.device)

    @staticmethod
    def _check_lengths(lengths, ids: torch.Tensor) -> torch.Tensor | None:
        if lengths is None:
            return None
        lengths = torch.as_tensor(lengths, dtype=torch.long).cpu()
        if lengths.shape != ids.shape[:1] or lengths.min() < 1 or lengths.max() > ids.shape[1]:
            raise InputError(f"lengths must hold one value in [1, {ids.shape[1]}] per row, got {lengths.tolist()}")
        return None if bool((lengths == ids.shape[1]).all()) else lengths

    def _check_masks(self, masks: torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor | None:
        if masks is None:
            return None
        expected = (PRENET_LAYERS, batch, self.config.prenet_dim)
        if masks.ndim != 4 or tuple(masks.shape[1:]) != expected:
            raise InputError(f"prenet_dropout_masks must be (steps, {', '.join(map(str, expected))}), "
                             f"got {tuple(masks.shape)}")
        return masks.to(device=device, dtype=torch.bool)


# ------------------------------------------------------------------------------------------ releases
_RELEASE = "https://dl.fbaipublicfiles.com/textless_nlp/gslm/"
#: (dense, k) -> (model md5 from the fairseq README, model sha256, code_dict sha256) from textlesslib (None: none).
_CHECKSUMS = {
    ("logmel", 50): ("932b3b8527c0125f5f964b57762eba49", None, None),
    ("logmel", 100): ("cde0b0d278a39011d0acbd5df27abdf4", None, None),
    ("logmel", 200): ("dba0f1d4de64bc7976718834010b23e7", None, None),
    ("cpc", 50): ("a585e8dd8890ea56164f17635dd8e613",
                  "e80a46561d1ded73bbe6e7272fcd6b9943fb7607229040b06324f654b66396fd",
                  "5f01dd57fd3b4044fac93aaac2589bf49e34cbe1dc0713254c0f339ba2123bce"),
    ("cpc", 100): ("5c0ee2869b4f483d17f37f1a41a548e0",
                   "6cfe1ce4bbdfd0f531189f4013cefc9e1296aec62f8bc0172d68d088ab344a50",
                   "a343085a83c1acfc96a2bfecf5098b380e860cdbb832cbcbbb0bf1358bd7c932"),
    ("cpc", 200): ("2f0c9951cf37020d9464514bff48bc5d",
                   "5845b1c0a82d9176b9d8c33a32f098795c946077e741a9da2b665bafda17b7ff",
                   "48dae50f9f2d4561c4a84fa09ba748395808d7d3323b1d5754af71669117e2aa"),
    ("hubert", 50): ("85ffce8baec5aa90035ab696fe676fce",
                     "335e881a897cfa3389804110de8ac3909159d4de395880fbf1d3167a9477451e",
                     "5f01dd57fd3b4044fac93aaac2589bf49e34cbe1dc0713254c0f339ba2123bce"),
    ("hubert", 100): ("df4a9c6ffd1bb00c91405432c234aba3",
                      "b208f8d6433eb5524405aa29d2b5fdacddb63a182d9830b629232e63b3543e4d",
                      "6d506216aa5bad159f167e2535293b4e5ec8e1073b64449d30b66b460ebf6da0"),
    ("hubert", 200): ("ac72f2c0c563589819bec116c7f8d274",
                      "093f009935a4dadd692db85e859246e369cb17be3aecd22038fb70af4d5b0590",
                      "ea01ba3592e27c871b63b32e37d6532234edf7eee7077bdcc094061ee72922e6"),
    ("w2v2", 50): ("e3503d0ad822b2c24b89f68b857fedff", None, None),
    ("w2v2", 100): ("eb3666e456ae4c96bf2a1eec825c13ed", None, None),
    ("w2v2", 200): ("777d343e963c4d64f04d78eef032f4e8", None, None),
}

WEIGHTS = tuple(
    Weights(name=f"gslm-tacotron2-{dense}-km{k}", entry_point="tacotron2", kwargs={"dense": dense, "vocab_size": k},
            converter="tacotron2",
            source_files=(SourceFile(f"{_RELEASE}{dense}/tts_km{k}/tts_checkpoint_best.pt", model_sha, md5=model_md5),
                          SourceFile(f"{_RELEASE}{dense}/tts_km{k}/code_dict", dict_sha)),
            license="MIT", paper="https://arxiv.org/abs/2102.01192",
            description=f"GSLM unit-to-speech Tacotron2 (LJSpeech voice) for K = {k} k-means units of "
                        f"{ULM_ARCHIVES[dense][1]}",
            sample_rate=22050, frame_rate=22050 / 256)
    for (dense, k), (model_md5, model_sha, dict_sha) in _CHECKSUMS.items())

