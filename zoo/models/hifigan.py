"""Discrete-unit HiFi-GAN vocoders: fairseq's ``CodeHiFiGANVocoder`` (speech-to-speech, dGSLM, pGSLM), textlesslib's
``CodeGenerator`` (TWIST, Expresso) and speech-resynthesis' ``CodeGenerator`` (units + quantised F0 + speaker).

All of them are one HiFi-GAN generator (:mod:`zoo.nn.hifigan`) fed a frame sequence built from conditioning
streams, concatenated along channels in the originals' order:

    [unit embedding | F0 feature | speaker embedding | style embedding | F0 statistics]

* units ``(B, T)``: embedded by ``unit_embedding``; with ``dur_prediction=True`` each (deduplicated) unit is first
  repeated ``clamp(round(exp(d) - 1), min=1)`` times, ``d`` from fairseq's ``VariancePredictor``;
* F0 (optional), one of: raw values as one channel; bin ids (pGSLM, ``f0_quant_num_bin``); or speaker-normalised
  F0 encoded by the F0 VQ-VAE of speech-resynthesis (:mod:`zoo.models.f0_vqvae`) whose codes are embedded;
* speaker (optional): a lookup table (``multispkr``) or a projected external vector (``embedder_dim``);
* style (optional, Expresso): a lookup table.

Streams at different frame rates are aligned by repeating frames (exact integer ratios only, never interpolation);
the fastest stream sets the generator's frame rate. Weight norm is folded into plain convolution weights when an
original checkpoint is converted (:mod:`zoo.formats.hifigan`).

Batches: rows of different lengths are padded with unit id ``-1`` on the right (fairseq's padding value). Each row
is computed exactly as if it ran alone (padding is zeroed before every convolution), and :meth:`CodeHiFiGAN.synthesize`
returns each row's length in samples. fairseq's wrapper instead joins every row of a batch into one utterance; call
it row by row (or concatenate the rows yourself) to get that.

The speech-resynthesis LJSpeech/VCTK/LibriLight generators were never released (the authors could not publish them):
train your own with that repository and convert it; configs and checkpoints of that format are fully supported.
Speech-resynthesis inference itself (units files, F0 tracking and normalisation, trimming, voice conversion) is
:mod:`zoo.pipelines.resynthesis`.

Example::

    >>> import torch
    >>> config = CodeHiFiGANConfig(upsample_rates=(5, 4, 2), upsample_kernel_sizes=(11, 8, 4),
    ...                            upsample_initial_channel=32, resblock_kernel_sizes=(3, 7, 11),
    ...                            resblock_dilation_sizes=((1, 3, 5),) * 3, num_embeddings=20, embedding_dim=16,
    ...                            model_in_dim=16, code_hop_size=40)
    >>> vocoder = CodeHiFiGAN(config).eval()
    >>> vocoder(torch.tensor([[3, 3, 7, 1]])).shape        # (B, 1, T * code_hop_size)
    torch.Size([1, 1, 160])
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, InputError
from ..modeling import PretrainedModel
from ..nn.hifigan import HiFiGANConfig, HiFiGANGenerator
from ..nn.precision import LayerNorm
from ..nn.ragged import PAD_UNIT, Lengths, zero_beyond
from ..registry import SourceFile, Weights
from .f0_vqvae import F0Quantizer, F0VQVAEConfig

#: Rows of speech-resynthesis' speaker table, whatever the number of training speakers.
DEFAULT_NUM_SPEAKERS = 200
DEFAULT_NUM_STYLES = 100
DEFAULT_EMBEDDER_DIM = 256
#: The duration predictor's second conv has padding 1 whatever its kernel (so only kernel 3 keeps the length).
DUR_CONV2_PADDING = 1


# ------------------------------------------------------------------------------------------ config
@dataclass(frozen=True)
class VariancePredictorConfig:
    """``dur_predictor_params`` of the original JSON (fairseq ``VariancePredictor``)."""

    encoder_embed_dim: int
    var_pred_hidden_dim: int
    var_pred_kernel_size: int = 3
    var_pred_dropout: float = 0.5      # training only


@dataclass(frozen=True)
class CodeHiFiGANConfig:
    """The vocoder's ``config.json`` fields that shape the model (training-only fields are dropped on conversion).

    Optional conditioning, as in the originals: ``dur_predictor_params`` (duration predictor), ``f0`` (with
    ``f0_quant_num_bin`` > 0: F0 bin ids embedded; with ``f0_quantizer``: the F0 VQ-VAE's codes embedded, or its
    quantised latent itself when ``f0_vq_latent``; otherwise raw values), ``multispkr`` (speaker table of
    ``num_speakers`` rows) or ``embedder_dim`` (external speaker vector), ``multistyle`` (style table), and
    ``f0_feats`` (the speaker's F0 mean and std as two extra channels).
    """

    upsample_rates: tuple[int, ...]
    upsample_kernel_sizes: tuple[int, ...]
    upsample_initial_channel: int
    resblock_kernel_sizes: tuple[int, ...]
    resblock_dilation_sizes: tuple[tuple[int, ...], ...]
    num_embeddings: int
    embedding_dim: int
    model_in_dim: int
    code_hop_size: int
    resblock: str = "1"
    sampling_rate: int = 16000
    dur_predictor_params: VariancePredictorConfig | None = None
    f0: bool = False
    f0_quant_num_bin: int = 0
    f0_quantizer: F0VQVAEConfig | None = None
    f0_vq_latent: bool = False
    f0_normalize: bool = False         # whether F0 inputs are speaker-normalised (see zoo.f0); informative
    f0_feats: bool = False
    multispkr: str | None = None       # how the original parsed speaker names from paths; informative
    num_speakers: int = DEFAULT_NUM_SPEAKERS
    embedder_dim: int | None = None
    multistyle: str | None = None
    num_styles: int = DEFAULT_NUM_STYLES

    def __post_init__(self) -> None:
        self.generator  # refuses an unknown resblock, mismatched rates / kernels / dilations
        if (self.f0_quant_num_bin or self.f0_quantizer) and not self.f0:
            raise ConfigError("F0 bins or an F0 quantizer need f0=True")
        if self.model_in_dim != self.conditioning_channels:
            raise ConfigError(f"model_in_dim={self.model_in_dim} but the conditioning streams add up to "
                             f"{self.conditioning_channels} channels")

    @property
    def has_speaker(self) -> bool:
        return bool(self.multispkr) or self.embedder_dim is not None

    @property
    def f0_channels(self) -> int:
        if not self.f0:
            return 0
        if self.f0_quantizer is not None and self.f0_vq_latent:
            return self.f0_quantizer.f0_vq_params.emb_width
        return self.embedding_dim if self.f0_quant_num_bin or self.f0_quantizer else 1

    @property
    def conditioning_channels(self) -> int:
        streams = (self.embedding_dim, self.f0_channels, self.embedding_dim * self.has_speaker,
                   self.embedding_dim * bool(self.multistyle), 2 * self.f0_feats)
        return sum(streams)

    @property
    def generator(self) -> HiFiGANConfig:
        """The HiFi-GAN generator's part of the config."""
        return HiFiGANConfig(upsample_rates=self.upsample_rates, upsample_kernel_sizes=self.upsample_kernel_sizes,
                             upsample_initial_channel=self.upsample_initial_channel,
                             resblock_kernel_sizes=self.resblock_kernel_sizes,
                             resblock_dilation_sizes=self.resblock_dilation_sizes, model_in_dim=self.model_in_dim,
                             resblock=self.resblock)

    @property
    def hop_length(self) -> int:
        """Output samples per generator frame (``prod(upsample_rates)``)."""
        return self.generator.hop_length


# ------------------------------------------------------------------------------------------ conditioning
class VariancePredictor(nn.Module):
    """fairseq's duration predictor: unit embeddings ``(B, T, E)`` -> ``log(1 + duration)`` ``(B, T)``.

    conv(k) + ReLU -> LayerNorm -> conv(k, padding 1) + ReLU -> LayerNorm -> Linear(1); dropout is training-only.
    """

    def __init__(self, config: VariancePredictorConfig) -> None:
        super().__init__()
        hidden, kernel = config.var_pred_hidden_dim, config.var_pred_kernel_size
        self.conv1 = nn.Conv1d(config.encoder_embed_dim, hidden, kernel, padding=(kernel - 1) // 2)
        self.ln1 = LayerNorm(hidden)
        self.conv2 = nn.Conv1d(hidden, hidden, kernel, padding=DUR_CONV2_PADDING)
        self.ln2 = LayerNorm(hidden)
        self.proj = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor, lengths: Lengths = None) -> torch.Tensor:
        h = self.ln1(F.relu(self.conv1(x.transpose(1, 2))).transpose(1, 2))
        h = zero_beyond(h.transpose(1, 2), lengths)
        h = self.ln2(F.relu(self.conv2(h)).transpose(1, 2))
        return self.proj(h).squeeze(-1)


def durations_from_log(log_durations: torch.Tensor) -> torch.Tensor:
    """Repeat counts as the originals round them: ``clamp(round(exp(d) - 1), min=1)`` (round half to even)."""
    return torch.round(torch.exp(log_durations) - 1).long().clamp(min=1)


def repeat_frames(x: torch.Tensor, factor: int) -> torch.Tensor:
    """``(B, C, T)`` -> ``(B, C, factor * T)``, each frame repeated ``factor`` times in place (the originals'
    ``_upsample``)."""
    return x if factor == 1 else x.repeat_interleave(factor, dim=2)


# ------------------------------------------------------------------------------------------ vocoder
class CodeHiFiGAN(PretrainedModel):
    """A unit-to-waveform HiFi-GAN vocoder with the originals' conditioning (see the module docstring).

    ``forward(units, dur_prediction=False, speaker=None, f0=None, style=None, f0_stats=None)`` -> ``(B, 1, samples)``.
    """

    config_class = CodeHiFiGANConfig
    model_type = "code_hifigan"

    def __init__(self, config: CodeHiFiGANConfig) -> None:
        super().__init__(config)
        self.unit_embedding = nn.Embedding(config.num_embeddings, config.embedding_dim)
        self.duration_predictor = (VariancePredictor(config.dur_predictor_params)
                                   if config.dur_predictor_params is not None else None)
        self.f0_quantizer = F0Quantizer(config.f0_quantizer) if config.f0_quantizer is not None else None
        self.f0_embedding = None
        if config.f0_quant_num_bin or (config.f0_quantizer is not None and not config.f0_vq_latent):
            num_f0_codes = config.f0_quant_num_bin or config.f0_quantizer.f0_vq_params.l_bins
            self.f0_embedding = nn.Embedding(num_f0_codes, config.embedding_dim)
        self.speaker_embedding: nn.Module | None = None
        if config.embedder_dim is not None:
            self.speaker_embedding = nn.Linear(config.embedder_dim, config.embedding_dim)
        elif config.multispkr:
            self.speaker_embedding = nn.Embedding(config.num_speakers, config.embedding_dim)
        self.style_embedding = nn.Embedding(config.num_styles, config.embedding_dim) if config.multistyle else None
        self.generator = HiFiGANGenerator(config.generator)

    @property
    def sample_rate(self) -> int:
        return self.config.sampling_rate

    def forward(self, units: torch.Tensor, dur_prediction: bool = False, speaker: torch.Tensor | int | None = None,
                f0: torch.Tensor | None = None, style: torch.Tensor | int | None = None,
                f0_stats: torch.Tensor | None = None) -> torch.Tensor:
        """Waveforms ``(B, 1, samples)`` in (-1, 1) at ``sample_rate``; rows shorter than the batch end in zeros.

        Args:
            units: ``(B, T)`` or ``(T,)`` int unit ids; ``-1`` pads shorter rows on the right.
            dur_prediction: expand deduplicated units with the duration predictor (pass run-length-reduced units).
            speaker: speaker ids ``(B,)``/``(B, 1)``/int for a speaker table, or vectors ``(B, embedder_dim)``.
            f0: ``(B, 1, T_f0)`` or ``(B, T_f0)``: normalised F0 (F0 VQ-VAE and raw models) or bin ids (pGSLM);
                ``T_f0`` must be an integer multiple or divisor of the unit frames (e.g. 4 F0 frames per unit).
            style: style ids (Expresso vocoders), like ``speaker``.
            f0_stats: ``(B, 2)`` speaker F0 mean and std, for ``f0_feats`` models.
        """
        return self.synthesize(units, dur_prediction, speaker, f0, style, f0_stats)[0]

    @torch.no_grad()
    def durations(self, units: torch.Tensor) -> torch.Tensor:
        """Predicted repeat count of each (deduplicated) unit, ``(B, T)`` int64, 0 at padding."""
        units, lengths = self._check_units(units)
        return self._durations(self._embed_units(units, lengths), lengths)

    def synthesize(self, units: torch.Tensor, dur_prediction: bool = False,
                   speaker: torch.Tensor | int | None = None, f0: torch.Tensor | None = None,
                   style: torch.Tensor | int | None = None,
                   f0_stats: torch.Tensor | None = None) -> tuple[torch.Tensor, list[int]]:
        """Like :meth:`forward`, also returning each row's length in samples."""
        x, lengths = self.conditioning(units, dur_prediction, speaker, f0, style, f0_stats)
        batch_lengths = None if len(set(lengths)) == 1 and lengths[0] == x.shape[-1] else lengths
        return self.generator(x, batch_lengths), self.generator.output_lengths(lengths)

    def conditioning(self, units: torch.Tensor, dur_prediction: bool = False,
                     speaker: torch.Tensor | int | None = None, f0: torch.Tensor | None = None,
                     style: torch.Tensor | int | None = None,
                     f0_stats: torch.Tensor | None = None) -> tuple[torch.Tensor, list[int]]:
        """The generator's input ``(B, model_in_dim, T)`` (what the originals feed ``conv_pre``) and row lengths."""
        width = torch.as_tensor(units).shape[-1]
        units, lengths = self._check_units(units, aligned_f0=f0 is not None)
        batch = units.shape[0]
        if f0 is not None and units.shape[1] < width:  # keep the F0 frames of the kept unit columns
            f0 = torch.as_tensor(f0)
            f0 = f0[..., : f0.shape[-1] * units.shape[1] // width]
        x = self._embed_units(units, lengths)
        if dur_prediction:
            if self.duration_predictor is None:
                raise InputError("this vocoder has no duration predictor (its config has no dur_predictor_params); "
                                 "pass frame-rate units with dur_prediction=False")
            if f0 is not None and batch > 1:
                raise InputError("duration prediction with F0 conditioning takes one utterance at a time")
            x, lengths = _expand(x, self._durations(x, lengths))
        streams = [x]
        if self.config.f0:
            if f0 is None:
                raise InputError("this vocoder is conditioned on F0: pass f0=(batch, 1, frames)")
            feature = self._f0_feature(f0, lengths, batch)
            x_frames, f_frames = x.shape[-1], feature.shape[-1]
            if x_frames < f_frames:
                factor = _ratio(f_frames, x_frames)
                streams = [repeat_frames(x, factor)]
                lengths = [n * factor for n in lengths]
            else:
                feature = repeat_frames(feature, _ratio(x_frames, f_frames))
            streams.append(feature)
        elif f0 is not None:
            raise InputError("this vocoder takes no F0 (its config has f0: false); drop the f0 argument")
        frames = streams[0].shape[-1]
        streams += [table.expand(-1, -1, frames) for table in self._global_streams(batch, speaker, style, f0_stats)]
        x = torch.cat(streams, dim=1)
        return (zero_beyond(x, lengths) if min(lengths) < frames else x), lengths

    # -------------------------------------------------------------- helpers
    def _check_units(self, units: torch.Tensor, aligned_f0: bool = False) -> tuple[torch.Tensor, list[int]]:
        """Validated ``(B, T)`` ids with each row's units first (padding dropped wherever it was, as fairseq's
        wrapper drops it) and the rows' lengths. With ``aligned_f0`` padding may only trail, so F0 frames keep
        their units."""
        units = torch.as_tensor(units, device=self.unit_embedding.weight.device)
        if units.ndim == 1:
            units = units[None]
        if units.ndim != 2 or units.is_floating_point() or units.is_complex() or units.dtype == torch.bool:
            raise InputError(f"units must be integer ids shaped (batch, frames) or (frames,), got "
                             f"{units.dtype} {tuple(units.shape)}")
        valid = units != PAD_UNIT
        lengths = valid.sum(1)
        if units.shape[1] == 0 or (lengths == 0).any():
            raise InputError("empty unit sequence: every row needs at least one unit")
        bad = valid & ((units < 0) | (units >= self.config.num_embeddings))
        if bad.any():
            raise InputError(f"unit id {int(units[bad][0])} is outside this vocoder's table of "
                             f"{self.config.num_embeddings} units (0..{self.config.num_embeddings - 1}); were the "
                             "units made with another k-means model?")
        if (valid.long().diff(dim=1) > 0).any():
            if aligned_f0:
                raise InputError(f"with F0, padding ({PAD_UNIT}) may only follow a row's units, not interrupt them")
            units = units.gather(1, (~valid).long().argsort(dim=1, stable=True))
        # Columns that are padding in every row are dropped (one padded row gives fairseq's output length).
        return units[:, : int(lengths.max())].long().clamp(min=0), lengths.tolist()

    def _embed_units(self, units: torch.Tensor, lengths: list[int]) -> torch.Tensor:
        x = self.unit_embedding(units).transpose(1, 2)
        return zero_beyond(x, lengths) if min(lengths) < x.shape[-1] else x

    def _durations(self, x: torch.Tensor, lengths: list[int]) -> torch.Tensor:
        padded = min(lengths) < x.shape[-1]
        log_durations = self.duration_predictor(x.transpose(1, 2), lengths if padded else None)
        durations = durations_from_log(log_durations)
        return zero_beyond(durations[:, None], lengths)[:, 0].long() if padded else durations

    def _f0_feature(self, f0: torch.Tensor, lengths: list[int], batch: int) -> torch.Tensor:
        """The F0 stream ``(B, C, T_f)``, zero beyond each row's end."""
        f0 = torch.as_tensor(f0, device=self.unit_embedding.weight.device)
        if f0.ndim == 3 and f0.shape[1] == 1:
            f0 = f0[:, 0]
        if f0.ndim != 2 or f0.shape[0] != batch:
            raise InputError(f"f0 must be ({batch}, 1, frames) or ({batch}, frames) for {batch} unit row(s), got "
                             f"shape {tuple(f0.shape)}")
        if f0.shape[1] == 0:
            raise InputError("f0 is empty")
        # Padded rows: their F0 lengths follow from their unit lengths at the batch's F0/unit frame ratio.
        frames = max(lengths)
        padded = min(lengths) < frames
        f0_lengths = _scale_lengths(lengths, frames, f0.shape[1]) if padded else [f0.shape[1]] * batch
        if self.config.f0_quant_num_bin:
            bins = f0.long()
            if ((bins < 0) | (bins >= self.config.f0_quant_num_bin)).any():
                raise InputError(f"F0 bin ids must lie in 0..{self.config.f0_quant_num_bin - 1}")
            return zero_beyond(self.f0_embedding(bins).transpose(1, 2), f0_lengths)
        f0 = zero_beyond(f0[:, None].to(self.unit_embedding.weight.dtype), f0_lengths)
        if self.f0_quantizer is None:
            return f0
        hop = self.config.f0_quantizer.hop_length
        if f0.shape[-1] < hop:
            raise InputError(f"the F0 VQ-VAE needs at least {hop} F0 frames, got {f0.shape[-1]}")
        codes, code_lengths = self.f0_quantizer(f0, f0_lengths if padded else None)
        code_lengths = code_lengths or [codes.shape[-1]] * batch
        if self.f0_embedding is None:  # joint-training variant: the quantised latent itself
            feature = self.f0_quantizer.codebooks[0].dequantize(codes)
        else:
            feature = self.f0_embedding(codes).transpose(1, 2)
        return zero_beyond(feature, code_lengths)

    def _global_streams(self, batch: int, speaker, style, f0_stats) -> list[torch.Tensor]:
        """Per-utterance conditioning as ``(B, C, 1)`` columns: speaker, style, F0 statistics."""
        columns = []
        if self.speaker_embedding is not None:
            if speaker is None and self.config.multispkr == "single":
                speaker = 0  # single-speaker speech-resynthesis models use row 0 of their table
            columns.append(self._lookup(self.speaker_embedding, speaker, batch, "speaker"))
        elif speaker is not None:
            raise InputError("this vocoder is single-speaker (no speaker table): drop the speaker argument")
        if self.style_embedding is not None:
            columns.append(self._lookup(self.style_embedding, style, batch, "style"))
        elif style is not None:
            raise InputError("this vocoder has no style table: drop the style argument")
        if self.config.f0_feats:
            if f0_stats is None:
                raise InputError("this vocoder takes the speaker's F0 mean and std: pass f0_stats=(batch, 2)")
            stats = torch.as_tensor(f0_stats, dtype=self.unit_embedding.weight.dtype,
                                    device=self.unit_embedding.weight.device).reshape(-1, 2)
            columns.append(_per_row(stats, batch, "f0_stats")[:, :, None])
        elif f0_stats is not None:
            raise InputError("this vocoder takes no F0 statistics (f0_feats is false): drop f0_stats")
        return columns

    def _lookup(self, table: nn.Module, ids, batch: int, what: str) -> torch.Tensor:
        device = self.unit_embedding.weight.device
        if ids is None:
            raise InputError(f"this vocoder is multi-{what}: pass {what}= (an id per utterance"
                             f"{', or a vector' if isinstance(table, nn.Linear) else ''})")
        if isinstance(table, nn.Linear):
            vectors = torch.as_tensor(ids, dtype=table.weight.dtype, device=device)
            vectors = vectors.reshape(-1, vectors.shape[-1]) if vectors.ndim else vectors
            if vectors.ndim != 2 or vectors.shape[-1] != table.in_features:
                raise InputError(f"{what} must be a ({batch}, {table.in_features}) vector per utterance, got shape "
                                 f"{tuple(vectors.shape)}")
            return table(_per_row(vectors, batch, what))[:, :, None]
        ids = torch.as_tensor(ids, device=device)
        if ids.is_floating_point():
            raise InputError(f"{what} ids must be integers, got {ids.dtype}")
        ids = _per_row(ids.reshape(-1), batch, what).long()
        rows = table.num_embeddings
        if ((ids < 0) | (ids >= rows)).any():
            bad = int(ids[(ids < 0) | (ids >= rows)][0])
            raise InputError(f"{what} id {bad} does not exist: this vocoder has {rows} {what}s (0..{rows - 1})")
        return table(ids)[:, :, None]


def _per_row(values: torch.Tensor, batch: int, what: str) -> torch.Tensor:
    if values.shape[0] == 1:
        return values.expand(batch, *values.shape[1:])
    if values.shape[0] != batch:
        raise InputError(f"got {values.shape[0]} {what} values for {batch} utterances")
    return values


def _ratio(longer: int, shorter: int) -> int:
    if longer % shorter:
        raise InputError(f"F0 and units do not line up: {longer} and {shorter} frames are not an integer multiple "
                         "of each other. Cut them to matching lengths (e.g. 4 F0 frames at 200 Hz per 50 Hz unit, "
                         "and a multiple of 16 F0 frames for the F0 VQ-VAE)")
    return longer // shorter


def _scale_lengths(lengths: list[int], frames: int, new_frames: int) -> list[int]:
    if frames == new_frames:
        return list(lengths)
    if new_frames > frames:
        return [n * _ratio(new_frames, frames) for n in lengths]
    factor = _ratio(frames, new_frames)
    return [-(-n // factor) for n in lengths]


def _expand(x: torch.Tensor, durations: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """Repeat frame ``t`` of row ``b`` ``durations[b, t]`` times; rows are right-padded with zeros."""
    rows = [xb.repeat_interleave(db, dim=1) for xb, db in zip(x, durations)]
    lengths = [r.shape[1] for r in rows]
    return torch.nn.utils.rnn.pad_sequence([r.t() for r in rows], batch_first=True).transpose(1, 2), lengths


# ------------------------------------------------------------------------------------------ releases
_S2ST = "https://dl.fbaipublicfiles.com/fairseq/speech_to_speech/vocoder/code_hifigan/"
_MATRIX = "https://dl.fbaipublicfiles.com/speech_matrix/vocoder/"
_PGSLM = "https://dl.fbaipublicfiles.com/textless_nlp/pgslm/vocoder/blizzard2013/"
_EXPRESSO = "https://dl.fbaipublicfiles.com/textless_nlp/expresso/checkpoints/hifigan_expresso_lj_vctk_"
_TWIST = "https://dl.fbaipublicfiles.com/textless_nlp/twist/speech_tokenizer/hifigan_lj_mhubert_base_25hz"
#: ``sha256`` of a file whose release published no checksum: the download is then not verified.
UNPUBLISHED = None

#: SpeechMatrix target languages -> (unit vocabulary, vocoder training data).
_MATRIX_LANGUAGES = {"de": (1000, "CSS10"), "nl": (1000, "CSS10"), "fi": (1000, "CSS10"), "hu": (1000, "CSS10"),
                     "et": (1000, "Common Voice"), "it": (800, "VoxPopuli"), "pt": (1000, "Common Voice"),
                     "ro": (1000, "VoxPopuli"), "cs": (1000, "VoxPopuli"), "pl": (1000, "VoxPopuli"),
                     "hr": (1000, "VoxPopuli"), "lt": (1000, "VoxPopuli"), "sk": (1000, "VoxPopuli"),
                     "sl": (1000, "VoxPopuli")}
#: Expresso vocoders: variant suffix -> (release folder, generator sha256, config sha256).
_EXPRESSO_RELEASES = {
    "hubert_km500": ("hubert_base_ls960_L9_km500",
                     "d50f4704e961c29cb386924ef32cd0c3a4d1089a3f9be856f8a3b6dcfdd6147a",
                     "31e65ef5e100cb43de08f2c8d225496ace1ed87a49fcb8ee44bd6805f079b1f0"),
    "hubert_km2000_expresso": ("hubert_base_ls960_L9_km2000_expresso",
                               "b892fdcca889f4bc6d7f0a0f407ae5d01eca8aaa66b9be333ef33a1c50f2ef52",
                               "73932563cedc43cd1dcddfab36ce3b2c3cb76eef3423d25d1fb536ce1ec513bb"),
    "mhubert_km2000": ("mhubert_base_vp_mls_cv_8lang_it3_L12_km2000",
                       "0d160c97519d3ed644e2ec636581b79e56767d60325308849fbb389a494c1466",
                       "73932563cedc43cd1dcddfab36ce3b2c3cb76eef3423d25d1fb536ce1ec513bb"),
    "mhubert_km2000_expresso": ("mhubert_base_vp_mls_cv_8lang_it3_L12_km2000_expresso",
                                "8d1585f20edd9b0982f80acbb387a892adf19e4aa719b8dea795c8fa96285cbc",
                                "73932563cedc43cd1dcddfab36ce3b2c3cb76eef3423d25d1fb536ce1ec513bb"),
}


def _vocoder(variant: str, files: tuple[tuple[str, str], ...], *, license: str, paper: str, description: str,
             datasets: tuple[str, ...], frame_rate: float = 50.0) -> Weights:
    return Weights(name="hifigan-" + variant.replace("_", "-"), entry_point="hifigan_unit_vocoder",
                   kwargs={"variant": variant}, converter="hifigan",
                   source_files=tuple(SourceFile(url, sha) for url, sha in files), license=license, paper=paper,
                   description=description, sample_rate=16000, frame_rate=frame_rate, datasets=datasets)


def _s2st(variant: str, folder: str, description: str, dataset: str,
          paper: str = "https://arxiv.org/abs/2112.08352") -> Weights:
    files = ((f"{_S2ST}{folder}/g_00500000", UNPUBLISHED), (f"{_S2ST}{folder}/config.json", UNPUBLISHED))
    return _vocoder(variant, files, license="MIT", paper=paper, description=description, datasets=(dataset,))


WEIGHTS = (
    _s2st("s2st_hubert_base_km100_lj", "hubert_base_100_lj",
          "fairseq S2ST unit vocoder: HuBERT Base layer-6 k-means-100 units, LJSpeech voice, duration predictor",
          "LJSpeech", paper="https://arxiv.org/abs/2107.05604"),
    *(_s2st(f"s2st_mhubert_km1000_{lang}", f"mhubert_vp_en_es_fr_it3_400k_layer11_km1000_{folder}",
            f"fairseq S2ST unit vocoder: mHuBERT (en-es-fr) layer-11 k-means-1000 units, {voice} voice, "
            "duration predictor", dataset)
      for lang, folder, voice, dataset in (("lj", "lj", "English LJSpeech", "LJSpeech"),
                                           ("es", "es_css10", "Spanish CSS10", "CSS10"),
                                           ("fr", "fr_css10", "French CSS10", "CSS10"))),
    _vocoder("s2st_hokkien_km2500_tat",
             (("http://dl.fbaipublicfiles.com/fairseq/vocoder/unit_hifigan_HK_layer12.km2500_frame_TAT-TTS.tar.gz",
               UNPUBLISHED),),
             license="MIT", paper="https://arxiv.org/abs/2211.06474",
             description="fairseq hub unit vocoder: Taiwanese Hokkien HuBERT layer-12 k-means-2500 units, TAT-TTS "
                         "voice (archive with model.pt + config.json)", datasets=("TAT-TTS",)),
    *(_vocoder(f"speechmatrix_mhubert_km{k}_{lang}",
               ((f"{_MATRIX}vocoder_{lang}.pt", UNPUBLISHED), (f"{_MATRIX}config_{lang}.json", UNPUBLISHED)),
               license="CC-BY-NC-4.0", paper="https://arxiv.org/abs/2211.04508",
               description=f"SpeechMatrix unit vocoder ({lang}): mHuBERT layer-11 k-means-{k} units, {data} voice",
               datasets=(data,))
      for lang, (k, data) in _MATRIX_LANGUAGES.items()),
    _vocoder("dgslm_fisher_hubert_km500",
             (("https://dl.fbaipublicfiles.com/textless_nlp/dgslm/checkpoints/hifigan/hifigan_vocoder", UNPUBLISHED),
              ("https://dl.fbaipublicfiles.com/textless_nlp/dgslm/checkpoints/hifigan/config.json", UNPUBLISHED)),
             license="MIT", paper="https://arxiv.org/abs/2203.16502",
             description="dGSLM unit vocoder: Fisher HuBERT layer-12 k-means-500 units, multi-speaker (the dialogue "
                         "channels use speakers 0 and 4)", datasets=("Fisher",)),
    *(_vocoder(f"pgslm_blizzard_hubert_km100_{name}",
               ((f"{_PGSLM}{folder}/checkpoint.pt", UNPUBLISHED), (f"{_PGSLM}{folder}/config.json", UNPUBLISHED)),
               license="MIT", paper="https://arxiv.org/abs/2109.03264",
               description=f"pGSLM unit vocoder (Blizzard 2013): HuBERT Base k-means-100 units + {f0}",
               datasets=("Blizzard-2013",))
      for name, folder, f0 in (("f0_bins32", "naive_quant_32_norm_log_seg_hubert",
                                "speaker-mean-normalised log F0 in 32 bins"),
                               ("f0", "mean_norm_log_f0_hubert", "speaker-mean-normalised log F0"))),
    _vocoder("twist_mhubert_25hz_km500_lj",
             ((f"{_TWIST}.pt", "d88224e95c501e2cd59a6e4014753169cfe060fb7ade3cc0da03c809fef73b79"),
              (f"{_TWIST}_config.json", "116dc39be4970cd393e562acd0a0ec70a86aaba7e9ca469b8b836cb3fe46afc7")),
             license="MIT", paper="https://arxiv.org/abs/2305.13009", frame_rate=25.0,
             description="TWIST (textlesslib) unit vocoder: mHuBERT Base 25 Hz k-means-500 units, LJSpeech voice",
             datasets=("LJSpeech",)),
    *(_vocoder(f"expresso_{name}",
               ((f"{_EXPRESSO}{folder}/generator.pt", generator_sha), (f"{_EXPRESSO}{folder}/config.json", config_sha)),
               license="CC-BY-NC-4.0", paper="https://arxiv.org/abs/2308.05725",
               description=f"Expresso (textlesslib) unit vocoder: {folder} units, LJSpeech + VCTK + Expresso "
                           "speakers and Expresso styles", datasets=("Expresso", "LJSpeech", "VCTK"))
      for name, (folder, generator_sha, config_sha) in _EXPRESSO_RELEASES.items()),
)
