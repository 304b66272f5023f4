"""DP-SLM end to end (Visser & Kamper, Interspeech 2025): speech → units → speech, and speech continuation.

    speech (16 kHz) ─ WavLM Large, layer 11 ─ DPDP over a k-means codebook ─ deduplicate ─▶ units
    units ─ ELLA-V ─▶ WavTokenizer codec ids (40 Hz) ─ WavTokenizer ─▶ speech (24 kHz)
    units ─ unit LM continuation ─▶ more units

Every stage is batched over files and runs on any device; the models are the hubconf ones, so the numbers are the
originals'.

Example (downloads the released models)::

    from zoo.pipelines import DPSLM
    dpslm = DPSLM.from_pretrained(k=500, lmbda=4500)
    units = dpslm.encode([wav], sr=16000)[0]            # Units(units=[...], durations=[...])
    (speech,) = dpslm.resynthesize([wav], sr=16000)     # 24 kHz
    longer = dpslm.continue_speech(wav, sr=16000, seconds=5)
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch.nn.utils.rnn import pad_sequence
from tqdm.auto import tqdm

from ..download import DType, load
from ..errors import InputError
from ..models.codebook import Codebook
from ..models.dpdp import DPDPQuantizer
from ..models.ellav import ELLAV
from ..models.ulm import UnitLanguageModel
from ..models.wavlm import WavLM, extract_features
from ..models.wavtokenizer import SAMPLE_RATE, WavTokenizer, decode

#: WavLM-Large layer whose features DP-SLM quantises (1-based).
WAVLM_LAYER = 11
#: DP-SLM's README limits DPDP to each frame's nearest 5 % of the codes.
NEIGHBOR_FRACTION = 0.05
#: WavLM frame rate: units and their durations count 20 ms frames.
UNIT_RATE = 50
#: ELLA-V sampling settings of DP-SLM's README and ``example_inference.py``.
ELLAV_MAX_TOKENS = 1000
ELLAV_MAX_CODEC_TOKENS_PER_PHONE = 10
ELLAV_TEMPERATURE = 1.0
ELLAV_TOP_P = 0.8


@dataclass(frozen=True)
class Units:
    """Deduplicated units of one utterance and how many 20 ms frames each lasted."""

    units: list[int]
    durations: list[int]

    @classmethod
    def from_framewise(cls, framewise: torch.Tensor) -> Units:
        units, counts = torch.unique_consecutive(framewise, return_counts=True)
        return cls(units.tolist(), counts.tolist())

    @property
    def seconds(self) -> float:
        return sum(self.durations) / UNIT_RATE


def _as_waveforms(wavs: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """A list of 1-D waveforms from one waveform ``(N,)``/``(1, N)`` or a list of them."""
    if isinstance(wavs, torch.Tensor):
        wavs = [wavs]
    out = []
    for i, wav in enumerate(wavs):
        wav = torch.as_tensor(wav)
        if wav.ndim == 2 and wav.shape[0] == 1:
            wav = wav[0]
        if wav.ndim != 1:
            raise InputError(f"waveform {i} has shape {tuple(wav.shape)}; give mono audio (N,) or (1, N) — "
                             "mix stereo down with zoo.audio.to_mono")
        out.append(wav)
    if not out:
        raise InputError("no waveforms given")
    return out


class SpeechToUnits:
    """WavLM-Large layer-11 features quantised by DPDP: ``speech_to_units(wavs, sr)`` → one :class:`Units` each.

    Files are encoded ``batch_size`` at a time (ragged batches; each item's units equal its unbatched units).
    """

    def __init__(self, wavlm: WavLM, quantizer: DPDPQuantizer, layer: int = WAVLM_LAYER) -> None:
        self.wavlm, self.quantizer, self.layer = wavlm, quantizer, layer

    def to(self, device: str | torch.device) -> SpeechToUnits:
        """Move both models to ``device``; returns self, as ``nn.Module.to`` does."""
        self.wavlm.to(device)
        self.quantizer.to(device)
        return self

    @classmethod
    def from_pretrained(cls, k: int, lmbda: float, *, num_neighbors: int | None = None, layer: int = WAVLM_LAYER,
                        map_location: str | torch.device = "cpu", progress: bool = True,
                        weights: Mapping[str, str] | None = None, dtype: DType | None = None) -> SpeechToUnits:
        """The released WavLM Large and (layer, k) codebook; ``num_neighbors`` defaults to 5 % of k as DP-SLM's
        README. ``weights`` may map "wavlm" and "codebook" to directories or repo ids. ``dtype`` (e.g.
        ``torch.bfloat16``) casts WavLM; the codebook and DPDP stay float32."""
        weights = weights or {}
        options = {"map_location": map_location, "progress": progress, "dtype": dtype}
        wavlm = load(WavLM, "wavlm_large", weights.get("wavlm"), **options)
        codebook = load(Codebook, "codebook", weights.get("codebook"), **options, layer=layer, k=k).codebook
        if num_neighbors is None:
            num_neighbors = min(max(int(NEIGHBOR_FRACTION * codebook.shape[0]), 1), codebook.shape[0])
        return cls(wavlm, DPDPQuantizer.from_codebook(codebook, lmbda, num_neighbors).to(map_location), layer)

    @torch.inference_mode()
    def __call__(self, wavs: torch.Tensor | Sequence[torch.Tensor], sr: int, *, batch_size: int = 8,
                 progress: bool = False) -> list[Units]:
        wavs = _as_waveforms(wavs)
        results: list[Units | None] = [None] * len(wavs)
        order = sorted(range(len(wavs)), key=lambda i: len(wavs[i]))  # similar lengths share a batch
        batches = [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
        for batch in tqdm(batches, desc="speech → units", disable=not progress):
            lengths = [len(wavs[i]) for i in batch]
            padded = pad_sequence([wavs[i] for i in batch], batch_first=True)
            features, frames = extract_features(self.wavlm, padded, sr, layer=self.layer, lengths=lengths)
            features = features.reshape(len(batch), -1, features.shape[-1])
            _, units = self.quantizer(features, frames)
            for row, i in enumerate(batch):
                results[i] = Units.from_framewise(units[row, : frames[row]].cpu())
        return results


class DPSLM:
    """The DP-SLM system for one (k, lmbda): encode, resynthesise and continue speech.

    ``weights`` (for tests and local copies) maps any of "wavlm", "codebook", "ellav", "wavtokenizer", "ulm" to a
    directory or repo id; the rest come from the registry.
    """

    def __init__(self, speech_to_units: SpeechToUnits, ellav: ELLAV, wavtokenizer: WavTokenizer,
                 ulm: UnitLanguageModel | None = None) -> None:
        self.speech_to_units, self.ellav, self.wavtokenizer, self.ulm = speech_to_units, ellav, wavtokenizer, ulm

    def to(self, device: str | torch.device) -> DPSLM:
        """Move every model of the system to ``device``; returns self, as ``nn.Module.to`` does.

        >>> dpslm = DPSLM.from_pretrained(k=500, lmbda=4500).to("cuda")   # doctest: +SKIP
        """
        self.speech_to_units.to(device)
        for model in (self.ellav, self.wavtokenizer, self.ulm):
            if model is not None:
                model.to(device)
        return self

    @classmethod
    def from_pretrained(cls, k: int, lmbda: int, *, with_ulm: bool = True, num_neighbors: int | None = None,
                        map_location: str | torch.device = "cpu", progress: bool = True,
                        weights: Mapping[str, str] | None = None, dtype: DType | None = None) -> DPSLM:
        """The released models of DP-SLM for (k, lmbda); ``dtype`` casts them all (their float32 parts stay)."""
        weights = weights or {}
        options = {"map_location": map_location, "progress": progress, "dtype": dtype}
        return cls(
            SpeechToUnits.from_pretrained(k, lmbda, num_neighbors=num_neighbors, weights=weights, **options),
            load(ELLAV, "ellav_units_to_wavtokenizer", weights.get("ellav"), **options, k=k, lmbda=lmbda),
            load(WavTokenizer, "wavtokenizer", weights.get("wavtokenizer"), **options, variant="small_600_24k_4096"),
            load(UnitLanguageModel, "ulm", weights.get("ulm"), **options, k=k, lmbda=lmbda) if with_ulm else None,
        )

    @property
    def sample_rate(self) -> int:
        """Rate of the speech this system writes (the WavTokenizer's)."""
        return SAMPLE_RATE

    def encode(self, wavs: torch.Tensor | Sequence[torch.Tensor], sr: int, *, batch_size: int = 8,
               progress: bool = False) -> list[Units]:
        return self.speech_to_units(wavs, sr, batch_size=batch_size, progress=progress)

    @torch.inference_mode()
    def units_to_speech(self, units: Sequence[Sequence[int]], *, temperature: float = ELLAV_TEMPERATURE,
                        top_p: float = ELLAV_TOP_P, max_tokens: int = ELLAV_MAX_TOKENS,
                        progress: bool = False) -> list[torch.Tensor]:
        """Speech ``(samples,)`` at :attr:`sample_rate` for each sequence of deduplicated units (one ELLA-V batch)."""
        prompts = [[f"u{u}" for u in row] for row in units]
        codec_ids, _ = self.ellav.generate(prompts, max_tokens=max_tokens,
                                           max_codec_tokens_per_phone=ELLAV_MAX_CODEC_TOKENS_PER_PHONE,
                                           temperature=temperature, top_p=top_p, strict=False, progress=progress)
        device = next(self.wavtokenizer.parameters()).device
        speech = []
        for i, ids in enumerate(codec_ids):
            if len(ids) == 0:  # ELLA-V ended a row before its first codec token: nothing to vocode
                warnings.warn(f"ELLA-V generated no codec tokens for sequence {i}; its speech is empty", stacklevel=2)
                speech.append(torch.zeros(0))
            else:
                speech.append(decode(self.wavtokenizer, ids[None, None, :].to(device))[0][0].cpu())
        return speech

    def resynthesize(self, wavs: torch.Tensor | Sequence[torch.Tensor], sr: int, *, batch_size: int = 8,
                     progress: bool = False, **sampling) -> list[torch.Tensor]:
        """Each waveform through units and back: speech ``(samples,)`` at :attr:`sample_rate`."""
        units = self.encode(wavs, sr, batch_size=batch_size, progress=progress)
        speech: list[torch.Tensor] = []
        for i in tqdm(range(0, len(units), batch_size), desc="units → speech", disable=not progress):
            speech += self.units_to_speech([u.units for u in units[i: i + batch_size]], **sampling)
        return speech

    def continue_speech(self, wav: torch.Tensor, sr: int, seconds: float, *, temperature: float = 1.0,
                        top_p: float = 1.0, progress: bool = False) -> torch.Tensor:
        """The prompt ``wav`` resynthesised and continued by about ``seconds`` of new speech.

        The unit LM models deduplicated units, so ``seconds`` becomes a number of new units through the prompt's
        mean unit duration."""
        if self.ulm is None:
            raise InputError("this DPSLM was built without a unit LM: use from_pretrained(..., with_ulm=True)")
        if seconds <= 0:
            raise InputError(f"seconds must be positive, got {seconds}")
        (prompt,) = self.encode(wav, sr)
        mean_unit_seconds = prompt.seconds / len(prompt.units)
        new_units = max(1, round(seconds / mean_unit_seconds))
        continuation = self.ulm.generate(prompt.units, new_units, temperature, top_p, progress=progress)
        (speech,) = self.units_to_speech([prompt.units + continuation.tolist()], progress=progress)
        return speech
