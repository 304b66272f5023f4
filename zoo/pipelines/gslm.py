"""GSLM speech → units: textlesslib's ``SpeechEncoder`` (dense features → k-means units → run-length encoding, and
YAAPT F0 per unit) over speechzoo's GSLM readers and k-means, batched.

``SpeechEncoder.by_name(dense_model_name, quantizer_model_name, vocab_size, deduplicate, ...)`` takes textlesslib's
names (``hubert-base-ls960``, ``cpc-big-ll6k``, ``logmel``, ...): it loads the registered k-means, then the dense
model and layer that k-means clusters (its config names them) through the registered readers. ``encoder(wav)``
returns textlesslib's dict: ``units`` (int64), ``durations`` (frames per unit; ones without deduplication),
``dense`` (the features) and, with ``need_f0``, ``f0`` (the mean voiced YAAPT F0 of each unit, 0 where none is
voiced). ``encoder.encode(wavs)``
encodes a list of waveforms in padded batches; each result equals the waveform encoded alone.

Example::

    >>> import torch
    >>> from zoo.models.codebook import Codebook
    >>> from zoo.models.logmel import LogMelFeatureReader
    >>> encoder = SpeechEncoder(LogMelFeatureReader(), Codebook.from_tensor(torch.randn(10, 80)), deduplicate=True,
    ...                         need_f0=False)
    >>> out = encoder(torch.randn(16000) * 0.1)
    >>> sorted(out), int(out["durations"].sum()), out["dense"].shape
    (['dense', 'durations', 'units'], 98, torch.Size([98, 80]))

GSLM end to end (fairseq's ``unit2speech`` and ``tools/resynthesize_speech.py``, textlesslib's ``TacotronVocoder``
and GSLM continuation example):

* :class:`UnitToSpeech`: units → Tacotron2 (through its code_dict; the prenet dropout stays on) → WaveGlow at
  ``sigma = 0.666`` → the denoiser at strength 0.1 → 22.05 kHz speech, optionally resampled to 16 kHz as
  ``unit2speech/convert_to_16k.py`` does for ASR metrics. Tacotron2 decodes utterances in padded batches (each as
  if alone); WaveGlow vocodes them one at a time, since a padded batch only lengthens its convolutions on a CPU.
* :class:`GSLM`: :class:`SpeechEncoder` + the unit LM + :class:`UnitToSpeech` for one dense model and vocabulary:
  ``encode``, ``resynthesize`` and ``continue_speech`` (the prompt's deduplicated units continued by sampling at
  temperature 0.7, then spoken).

Synthesis is stochastic, as in the originals: ``seed=`` makes it reproducible.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence

import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence
from tqdm.auto import tqdm

from ..audio import resample
from ..download import DType, load
from ..errors import InputError
from ..f0 import peak_normalize, yaapt_f0
from ..models.codebook import GSLM_FEATURE_TYPES, Codebook
from ..models.cpc import CPC, CpcFeatureReader
from ..models.feature_reader import SAMPLE_RATE, FeatureReader
from ..models.gslm_ulm import GSLMUnitLM
from ..models.hubert import Hubert, HubertFeatureReader, Wav2Vec2, Wav2VecFeatureReader
from ..models.logmel import LogMelFeatureReader
from ..models.tacotron2 import DEFAULT_MAX_DECODER_STEPS, Tacotron2
from ..models.waveglow import HOP_LENGTH, WaveGlow, WaveGlowDenoiser
from ..registry import all_weights

#: The reader entry points, with the model class each loads and the reader it builds.
READERS = {"hubert_feature_reader": (Hubert, HubertFeatureReader),
           "w2v2_feature_reader": (Wav2Vec2, Wav2VecFeatureReader),
           "cpc_feature_reader": (CPC, CpcFeatureReader)}
#: The k-means configs' name of the log-mel features, which need no weights.
LOGMEL = "logmel"
#: Seconds between two YAAPT F0 frames (textlesslib's ``F0_FRAME_SPACE``).
F0_FRAME_SPACE = 0.005
#: The F0 track may be this many unit frames longer or shorter than the units (textlesslib's tolerance).
F0_TOLERANCE_FRAMES = 5


def dense_reader(checkpoint: str, layer: int | None, *, map_location: str | torch.device = "cpu",
                 progress: bool = True, weights: str | os.PathLike | None = None, dtype: DType | None = None
                 ) -> FeatureReader:
    """The GSLM reader of the registered dense checkpoint ``checkpoint`` (e.g. "hubert-base-ls960") at ``layer``
    (in that reader's own indexing), or "logmel" (always float32), its model in ``dtype``."""
    if checkpoint == LOGMEL:
        return LogMelFeatureReader().to(map_location)
    entries = [w for w in all_weights() if w.entry_point in READERS and w.kwargs.get("checkpoint") == checkpoint]
    if not entries:
        known = sorted(w.kwargs["checkpoint"] for w in all_weights() if w.entry_point in READERS)
        raise InputError(f"no registered dense model {checkpoint!r}; choose one of {[LOGMEL, *known]}")
    if layer is None:
        raise InputError(f"{checkpoint}: the k-means does not record which layer it clusters; pass layer=")
    model_class, reader_class = READERS[entries[0].entry_point]
    model = load(model_class, entries[0].entry_point, weights, map_location=map_location, progress=progress,
                 dtype=dtype, checkpoint=checkpoint)
    return reader_class(model, layer)


def align_f0_to_durations(f0: torch.Tensor, durations: torch.Tensor, ratio: float,
                          tolerance: float) -> torch.Tensor:
    """textlesslib's ``align_f0_to_durations``: the F0 track ``(frames,)`` cut or padded (with its last value) to
    ``ratio`` F0 frames per unit frame, then the mean of the voiced (non-zero) F0 under each unit (0 if none)."""
    target = int(ratio * int(durations.sum()))
    diff = f0.shape[0] - target
    if abs(diff) > tolerance:
        raise InputError(f"cannot align {f0.shape[0]} F0 frames to {int(durations.sum())} unit frames "
                         f"(× {ratio}): they differ by more than {tolerance}")
    f0 = f0[:target] if diff > 0 else torch.cat([f0, f0.new_full((-diff,), float(f0[-1]))])
    out, offset = [], 0.0
    for duration in durations.tolist():
        span = f0[int(offset): int(offset + duration * ratio)]
        voiced = span[span != 0]
        out.append(voiced.mean() if len(voiced) else f0.new_zeros(()))
        offset += duration * ratio
    return torch.stack(out) if out else f0.new_zeros(0)


class SpeechEncoder(nn.Module):
    """textlesslib's ``SpeechEncoder(dense_model, quantizer_model, deduplicate, add_bos_eos=False, need_f0=True,
    f0_normalizer=None, f0_quantizer=None)``: see the module docstring."""

    def __init__(self, dense_model: FeatureReader, quantizer_model: Codebook, deduplicate: bool,
                 add_bos_eos: bool = False, need_f0: bool = True,
                 f0_normalizer: Callable[[torch.Tensor, object], torch.Tensor] | None = None,
                 f0_quantizer: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        super().__init__()
        if add_bos_eos and deduplicate:
            raise InputError("add_bos_eos pads the dense stream frame by frame, as textlesslib's wrap_bos_eos: it "
                             "needs deduplicate=False")
        self.dense_model, self.quantizer_model = dense_model, quantizer_model
        self.deduplicate, self.add_bos_eos, self.need_f0 = deduplicate, add_bos_eos, need_f0
        self.f0_normalizer, self.f0_quantizer = f0_normalizer, f0_quantizer
        self.register_buffer("bos", torch.tensor([self.vocab_size]), persistent=False)
        self.register_buffer("eos", torch.tensor([self.vocab_size + 1]), persistent=False)

    @classmethod
    def by_name(cls, dense_model_name: str = "hubert-base-ls960", quantizer_model_name: str = "kmeans",
                vocab_size: int = 100, deduplicate: bool = True, add_bos_eos: bool = False, need_f0: bool = True,
                f0_normalizer: Callable | None = None, f0_quantizer: Callable | None = None, *,
                layer: int | None = None, map_location: str | torch.device = "cpu", progress: bool = True,
                dense_weights: str | os.PathLike | None = None,
                quantizer_weights: str | os.PathLike | None = None, dtype: DType | None = None) -> SpeechEncoder:
        """The registered k-means for textlesslib's names, and the dense model at the layer it clusters (``layer``
        overrides it; ``*_weights`` load directories or Hub repos instead of the registry's), the dense model in
        ``dtype`` (the k-means stays float32)."""
        selection = {"quantizer_model": quantizer_model_name} if quantizer_model_name != "kmeans" else {}
        quantizer = load(Codebook, "gslm_kmeans", quantizer_weights, map_location=map_location, progress=progress,
                         dense_model=dense_model_name, vocab_size=vocab_size, **selection)
        dense = dense_reader(quantizer.config.dense_model or dense_model_name,
                             quantizer.config.layer if layer is None else layer, map_location=map_location,
                             progress=progress, weights=dense_weights, dtype=dtype)
        return cls(dense, quantizer, deduplicate, add_bos_eos, need_f0, f0_normalizer, f0_quantizer)

    @property
    def device(self) -> torch.device:
        return self.bos.device

    @property
    def vocab_size(self) -> int:
        """Units (bos and eos, when added, are ``vocab_size`` and ``vocab_size + 1``)."""
        return self.quantizer_model.config.num_codes

    @property
    def code_hop_size(self) -> int:
        """Samples per unit frame."""
        return self.dense_model.hop_length

    @property
    def expected_sample_rate(self) -> int:
        return SAMPLE_RATE

    @property
    def f0_code_ratio(self) -> float:
        """F0 frames per unit frame."""
        return self.code_hop_size / self.expected_sample_rate / F0_FRAME_SPACE

    def maybe_resample(self, waveform: torch.Tensor, input_sample_rate: int) -> torch.Tensor:
        """``waveform`` at ``input_sample_rate`` resampled to 16 kHz (torchaudio's resampler, same numbers)."""
        return resample(waveform, input_sample_rate, self.expected_sample_rate)

    def forward(self, waveform: torch.Tensor, speaker: object = None) -> dict[str, torch.Tensor]:
        """One waveform ``(samples,)`` at 16 kHz (``(channels, samples)`` is averaged, as textlesslib does)."""
        return self.encode([waveform], speakers=[speaker])[0]

    @torch.no_grad()
    def encode(self, wavs: Sequence[torch.Tensor], *, speakers: Sequence[object] | None = None,
               batch_size: int = 8, progress: bool = False) -> list[dict[str, torch.Tensor]]:
        """textlesslib's dict for each waveform, ``batch_size`` of similar length per dense-model batch."""
        wavs = [torch.as_tensor(w).float() for w in wavs]
        wavs = [w.mean(0) if w.ndim > 1 else w for w in wavs]
        speakers = [None] * len(wavs) if speakers is None else list(speakers)
        results: list[dict[str, torch.Tensor]] = [{} for _ in wavs]
        order = sorted(range(len(wavs)), key=lambda i: len(wavs[i]))
        batches = [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
        for batch in tqdm(batches, desc="speech → units", disable=not progress):
            padded = pad_sequence([wavs[i] for i in batch], batch_first=True)
            features, frames = self.dense_model(padded, torch.tensor([len(wavs[i]) for i in batch]))
            units = self.quantizer_model(features)
            for row, i in enumerate(batch):
                results[i] = self._streams(wavs[i], features[row, : frames[row]], units[row, : frames[row]],
                                           speakers[i])
        return results

    def _streams(self, wav: torch.Tensor, dense: torch.Tensor, units: torch.Tensor,
                 speaker: object) -> dict[str, torch.Tensor]:
        if self.deduplicate:
            units, durations = torch.unique_consecutive(units, return_counts=True)
        else:
            durations = torch.ones_like(units)
        f0 = None
        if self.need_f0:
            f0 = yaapt_f0(peak_normalize(wav.double().cpu()), self.expected_sample_rate)
            if self.f0_normalizer is not None:
                f0 = self.f0_normalizer(f0, speaker)
            f0 = align_f0_to_durations(f0, durations.cpu(), self.f0_code_ratio,
                                       F0_TOLERANCE_FRAMES * self.f0_code_ratio)
            if self.f0_quantizer is not None:
                f0 = self.f0_quantizer(f0)
        if self.add_bos_eos:
            units = torch.cat([self.bos, units, self.eos])
            durations = torch.cat([durations.new_zeros(1), durations, durations.new_zeros(1)])
            dense = torch.cat([dense.new_zeros(1, dense.shape[1]), dense, dense.new_zeros(1, dense.shape[1])])
            if f0 is not None:
                f0 = torch.cat([f0.new_zeros(1), f0, f0.new_zeros(1)])
        out = {"units": units.to(self.device), "durations": durations.to(self.device), "dense": dense}
        if f0 is not None:
            out["f0"] = f0
        return out


# ------------------------------------------------------------------------------------------ units → speech
#: WaveGlow's sigma and the denoiser's strength in fairseq's ``synthesize_audio`` and textlesslib.
SIGMA = 0.666
DENOISER_STRENGTH = 0.1
#: The rate ``unit2speech/convert_to_16k.py`` resamples to (ASR metrics).
ASR_SAMPLE_RATE = 16_000
#: Utterances per Tacotron2 batch.
DEFAULT_BATCH_SIZE = 8

Units = str | Sequence[int] | torch.Tensor


class UnitToSpeech(nn.Module):
    """GSLM's unit-to-speech chain: ``tacotron2`` → ``waveglow`` (``sigma``) → ``denoiser``
    (``denoiser_strength``); see the module docstring.

    Example (tiny random models; the released ones come from :meth:`from_pretrained`)::

        >>> from zoo.models.tacotron2 import Tacotron2Config
        >>> from zoo.models.waveglow import WaveGlowConfig
        >>> taco = Tacotron2(Tacotron2Config(codes=tuple(map(str, range(20))), symbols_embedding_dim=16,
        ...     encoder_embedding_dim=16, n_mel_channels=8, attention_rnn_dim=24, decoder_rnn_dim=24, prenet_dim=16,
        ...     attention_dim=12, attention_location_n_filters=4, attention_location_kernel_size=7,
        ...     postnet_embedding_dim=16)).eval()
        >>> _ = torch.nn.init.constant_(taco.decoder.gate.bias, -10.0)    # a gate that never says stop
        >>> wg = WaveGlow(WaveGlowConfig(n_mel_channels=8, n_flows=4, n_early_every=2, n_layers=2, n_channels=8))
        >>> u2s = UnitToSpeech(taco, wg.eval(), max_decoder_steps=10)
        >>> speech = u2s.synthesize(["3 3 7 1", [5, 9, 9]], seed=0)
        >>> [tuple(s.shape) for s in speech]            # max_decoder_steps frames of 256 samples
        [(2560,), (2560,)]
    """

    def __init__(self, tacotron2: Tacotron2, waveglow: WaveGlow, *, sigma: float = SIGMA,
                 denoiser_strength: float = DENOISER_STRENGTH, max_decoder_steps: int | None = None) -> None:
        super().__init__()
        self.tacotron2, self.waveglow = tacotron2, waveglow
        self.denoiser = WaveGlowDenoiser(waveglow)
        self.sigma, self.denoiser_strength = sigma, denoiser_strength
        if max_decoder_steps is not None:
            if max_decoder_steps < 1:
                raise InputError(f"max_decoder_steps must be at least 1, got {max_decoder_steps}")
            tacotron2.max_decoder_steps = max_decoder_steps

    @classmethod
    def from_pretrained(cls, dense: str = "hubert", vocab_size: int = 100, *,
                        max_decoder_steps: int = DEFAULT_MAX_DECODER_STEPS, map_location: str | torch.device = "cpu",
                        progress: bool = True, dtype: torch.dtype | None = None,
                        weights: Mapping[str, str | os.PathLike] | None = None, **options) -> UnitToSpeech:
        """The released Tacotron2 for ``dense`` units of ``vocab_size`` clusters and the released WaveGlow (or
        ``weights["tacotron2"]`` / ``weights["waveglow"]``), in ``dtype`` (the originals run both in float16 on
        GPUs); ``options``: ``sigma``, ``denoiser_strength``."""
        weights = weights or {}
        taco = load(Tacotron2, "tacotron2", weights.get("tacotron2"), map_location=map_location, progress=progress,
                    dense=dense, vocab_size=vocab_size)
        wg = load(WaveGlow, "waveglow", weights.get("waveglow"), map_location=map_location, progress=progress)
        if dtype is not None:
            taco, wg = taco.to(dtype), wg.to(dtype)
        return cls(taco, wg, max_decoder_steps=max_decoder_steps, **options)

    @property
    def sample_rate(self) -> int:
        """Hz of the speech (the Tacotron2's ``sampling_rate``: 22050 for the released models)."""
        return self.tacotron2.sample_rate

    def generator(self, seed: int | None) -> torch.Generator | None:
        """A generator on the models' device seeded with ``seed`` (None: the global random state is used)."""
        if seed is None:
            return None
        return torch.Generator(self.tacotron2.embedding.weight.device).manual_seed(seed)

    def synthesize(self, units: Sequence[Units], *, seed: int | None = None, sample_rate: int | None = None,
                   batch_size: int = DEFAULT_BATCH_SIZE, max_frames: Sequence[int | None] | None = None,
                   progress: bool = False) -> list[torch.Tensor]:
        """Speech ``(samples,)`` float32 for each unit sequence (a string ``"u1 u2 ..."``, a sequence or a 1-D
        tensor of units, as the units file of ``synthesize_audio_from_units.py``), in order, at ``sample_rate``
        (default :attr:`sample_rate`). ``max_frames`` caps the mel frames of each utterance (None:
        ``max_decoder_steps``); ``seed`` seeds the prenet dropout and WaveGlow's latent."""
        speech: list[torch.Tensor | None] = [None] * len(units)
        for i, wav in self.iter_synthesize(units, seed=seed, sample_rate=sample_rate, batch_size=batch_size,
                                           max_frames=max_frames, progress=progress):
            speech[i] = wav
        return speech

    @torch.no_grad()
    def iter_synthesize(self, units: Sequence[Units], *, seed: int | None = None, sample_rate: int | None = None,
                        batch_size: int = DEFAULT_BATCH_SIZE, max_frames: Sequence[int | None] | None = None,
                        progress: bool = False) -> Iterator[tuple[int, torch.Tensor]]:
        """:meth:`synthesize`, yielding ``(index, speech)`` as each utterance is done (in order)."""
        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}")
        if max_frames is not None and len(max_frames) != len(units):
            raise InputError(f"max_frames has {len(max_frames)} entries for {len(units)} utterances")
        ids = [self.tacotron2.encode(u) for u in units]   # units of another quantizer fail here, before synthesis
        generator = self.generator(seed)
        with tqdm(total=len(ids), desc="units → speech", unit="utt", disable=not progress) as bar:
            for start in range(0, len(ids), batch_size):
                batch = range(start, min(start + batch_size, len(ids)))
                limits = None if max_frames is None else [max_frames[i] for i in batch]
                mels = self.tacotron2.infer_batch([ids[i] for i in batch], generator=generator,
                                                  max_decoder_steps=limits)
                for i, mel in zip(batch, mels):
                    yield i, self.vocode(mel.mel, sample_rate=sample_rate, generator=generator)
                    bar.update()

    @torch.no_grad()
    def vocode(self, mel: torch.Tensor, *, sample_rate: int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Denoised WaveGlow speech ``(256 T,)`` float32 of one mel ``(n_mel, T)``, resampled to ``sample_rate``
        if given."""
        wav = self.waveglow.infer(mel[None], sigma=self.sigma, generator=generator)
        if wav.shape[-1] > self.denoiser.stft.filter_length // 2:
            wav = self.denoiser(wav, strength=self.denoiser_strength)[0, 0]
        else:  # 1 or 2 frames: shorter than the STFT's reflect padding, which the original would fail on
            wav = wav[0].float()
        if sample_rate is not None and sample_rate != self.sample_rate:
            wav = resample(wav, self.sample_rate, sample_rate)
        return wav


# ------------------------------------------------------------------------------------------ the whole system
#: Temperature of GSLM's continuation example (textlesslib ``examples/gslm/sample.py``).
CONTINUATION_TEMPERATURE = 0.7


class GSLM(nn.Module):
    """GSLM for one dense model and vocabulary: :class:`SpeechEncoder` (speech → units), the unit LM
    (:class:`~zoo.models.gslm_ulm.GSLMUnitLM`) and :class:`UnitToSpeech`.

    >>> gslm = GSLM.from_pretrained(dense="hubert", vocab_size=100)                    # doctest: +SKIP
    >>> units = gslm.encode([wav])                      # (frames,) int64 per waveform  # doctest: +SKIP
    >>> speech = gslm.resynthesize([wav], seed=0)       # 22.05 kHz                     # doctest: +SKIP
    >>> continued = gslm.continue_speech(wav, seconds=5, temperature=0.7)              # doctest: +SKIP
    """

    def __init__(self, speech_encoder: SpeechEncoder, unit_to_speech: UnitToSpeech,
                 unit_lm: GSLMUnitLM | None = None) -> None:
        super().__init__()
        self.speech_encoder, self.unit_to_speech, self.unit_lm = speech_encoder, unit_to_speech, unit_lm

    @classmethod
    def from_pretrained(cls, dense: str = "hubert", vocab_size: int = 100, *, layer: int | None = None,
                        with_unit_lm: bool = True, max_decoder_steps: int = DEFAULT_MAX_DECODER_STEPS,
                        map_location: str | torch.device = "cpu", progress: bool = True,
                        dtype: torch.dtype | None = None, weights: Mapping[str, str | os.PathLike] | None = None,
                        **options) -> GSLM:
        """The released models of GSLM's ``dense`` features ("logmel", "cpc", "hubert" or "w2v2") quantised
        with ``vocab_size`` in {50, 100, 200} clusters: the reader at the layer the k-means clusters (``layer``
        overrides it; GSLM did not record the w2v2 one), the k-means, the unit LM (``with_unit_lm``), Tacotron2
        and WaveGlow. ``weights`` replaces some of them by converted copies: keys "dense", "kmeans", "ulm",
        "tacotron2", "waveglow". ``dtype`` applies to the unit LM, Tacotron2 and WaveGlow (the originals run them
        in float16 on GPUs; the readers stay float32). ``options``: ``sigma``, ``denoiser_strength``."""
        if dense not in GSLM_FEATURE_TYPES:
            raise InputError(f"dense must be one of {sorted(GSLM_FEATURE_TYPES)}, got {dense!r}")
        weights = dict(weights or {})
        unknown = set(weights) - set(COMPONENTS)
        if unknown:
            raise InputError(f"weights names {sorted(unknown)}; the GSLM components are {', '.join(COMPONENTS)}")
        common = {"map_location": map_location, "progress": progress}
        encoder = SpeechEncoder.by_name(GSLM_FEATURE_TYPES[dense], "kmeans", vocab_size, deduplicate=False,
                                        need_f0=False, layer=layer, dense_weights=weights.get("dense"),
                                        quantizer_weights=weights.get("kmeans"), **common)
        unit_lm = None
        if with_unit_lm:
            unit_lm = load(GSLMUnitLM, "gslm_ulm", weights.get("ulm"), dense=dense, vocab_size=vocab_size, **common)
            unit_lm = unit_lm if dtype is None else unit_lm.to(dtype)
        u2s = UnitToSpeech.from_pretrained(dense, vocab_size, max_decoder_steps=max_decoder_steps, dtype=dtype,
                                           weights=weights, **common, **options)
        return cls(encoder, u2s, unit_lm)

    @property
    def sample_rate(self) -> int:
        """Hz of the speech it writes (22050 for the released models)."""
        return self.unit_to_speech.sample_rate

    def encode(self, wavs: torch.Tensor | Sequence[torch.Tensor], *, sample_rate: int = SAMPLE_RATE,
               deduplicate: bool = False, batch_size: int = DEFAULT_BATCH_SIZE,
               progress: bool = False) -> list[torch.Tensor]:
        """Units ``(frames,)`` int64 of each waveform ``(samples,)`` at ``sample_rate`` (resampled to 16 kHz as
        textlesslib's ``maybe_resample``), one per dense frame, or run-length reduced when ``deduplicate``."""
        wavs = [wavs] if isinstance(wavs, torch.Tensor) and wavs.ndim == 1 else list(wavs)
        if sample_rate != SAMPLE_RATE:
            wavs = [self.speech_encoder.maybe_resample(torch.as_tensor(w), sample_rate) for w in wavs]
        units = [out["units"] for out in self.speech_encoder.encode(wavs, batch_size=batch_size, progress=progress)]
        return [torch.unique_consecutive(u) for u in units] if deduplicate else units

    def resynthesize(self, wavs: torch.Tensor | Sequence[torch.Tensor], *, sample_rate: int = SAMPLE_RATE,
                     output_sample_rate: int | None = None, seed: int | None = None,
                     batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = False) -> list[torch.Tensor]:
        """Each waveform through units and back (``tools/resynthesize_speech.py``): speech ``(samples,)`` at
        ``output_sample_rate`` (default :attr:`sample_rate`; 16000 as ``convert_to_16k.py``)."""
        units = self.encode(wavs, sample_rate=sample_rate, batch_size=batch_size, progress=progress)
        return self.unit_to_speech.synthesize(units, seed=seed, sample_rate=output_sample_rate,
                                              batch_size=batch_size, progress=progress)

    def continue_speech(self, wav: torch.Tensor, seconds: float, temperature: float = CONTINUATION_TEMPERATURE, *,
                        sample_rate: int = SAMPLE_RATE, output_sample_rate: int | None = None,
                        seed: int | None = None, progress: bool = False) -> torch.Tensor:
        """The prompt ``wav`` ``(samples,)`` resynthesised and continued by ``seconds`` of new speech, as GSLM's
        continuation example: the prompt's deduplicated units, sampled on (``sample.py`` with ``--sampling
        --beam 1 --prefix-size -1 --temperature``) for at most one unit per dense frame of ``seconds``, spoken,
        and cut at the prompt's duration + ``seconds`` (fewer when the Tacotron2's gate stops it first)."""
        if self.unit_lm is None:
            raise InputError("this GSLM was built without its unit LM: from_pretrained(..., with_unit_lm=True)")
        if not seconds > 0:
            raise InputError(f"seconds must be positive, got {seconds}")
        wav = torch.as_tensor(wav)
        prompt = self.encode(wav, sample_rate=sample_rate, deduplicate=True)[0]
        prompt_seconds = wav.shape[-1] / sample_rate
        new_units = math.ceil(seconds * SAMPLE_RATE / self.speech_encoder.code_hop_size)
        (line,) = self.unit_lm.sample_prompts([f"prompt|{' '.join(map(str, prompt.tolist()))}"], beam=1,
                                              sampling=True, temperature=temperature, max_len_a=0,
                                              max_len_b=len(prompt) + new_units, prefix_size=-1, seed=seed,
                                              progress=progress)
        units = line.partition("|")[2]
        frames = math.ceil((prompt_seconds + seconds) * self.sample_rate / HOP_LENGTH)
        (speech,) = self.unit_to_speech.synthesize([units], seed=seed, max_frames=[frames], progress=progress)
        speech = speech[: round((prompt_seconds + seconds) * self.sample_rate)]
        if output_sample_rate is not None and output_sample_rate != self.sample_rate:
            speech = resample(speech, self.sample_rate, output_sample_rate)
        return speech


#: What ``GSLM.from_pretrained(weights=...)`` may replace.
COMPONENTS = ("dense", "kmeans", "ulm", "tacotron2", "waveglow")
