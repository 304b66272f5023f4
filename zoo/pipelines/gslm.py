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
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence
from tqdm.auto import tqdm

from ..audio import resample
from ..download import load
from ..errors import InputError
from ..f0 import peak_normalize, yaapt_f0
from ..models.codebook import Codebook
from ..models.cpc import CPC, CpcFeatureReader
from ..models.feature_reader import SAMPLE_RATE, FeatureReader
from ..models.hubert import Hubert, HubertFeatureReader, Wav2Vec2, Wav2VecFeatureReader
from ..models.logmel import LogMelFeatureReader
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
                 progress: bool = True, weights: str | os.PathLike | None = None) -> FeatureReader:
    """The GSLM reader of the registered dense checkpoint ``checkpoint`` (e.g. "hubert-base-ls960") at ``layer``
    (in that reader's own indexing), or "logmel"."""
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
                 checkpoint=checkpoint)
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
                quantizer_weights: str | os.PathLike | None = None) -> SpeechEncoder:
        """The registered k-means for textlesslib's names, and the dense model at the layer it clusters (``layer``
        overrides it; ``*_weights`` load directories or Hub repos instead of the registry's)."""
        selection = {"quantizer_model": quantizer_model_name} if quantizer_model_name != "kmeans" else {}
        quantizer = load(Codebook, "gslm_kmeans", quantizer_weights, map_location=map_location, progress=progress,
                         dense_model=dense_model_name, vocab_size=vocab_size, **selection)
        dense = dense_reader(quantizer.config.dense_model or dense_model_name,
                             quantizer.config.layer if layer is None else layer, map_location=map_location,
                             progress=progress, weights=dense_weights)
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
