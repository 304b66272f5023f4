"""F0 for speech resynthesis: YAAPT pitch tracks and speech-resynthesis' per-speaker normalisation.

speech-resynthesis (``dataset.get_yaapt_f0``) tracks F0 with YAAPT as implemented by ``amfm_decompy.pYAAPT`` —
the same maintained PyPI package is used here (``pip install amfm_decompy``; ``pip install -e '.[f0]'`` in a
checkout), with the original's settings, so the numbers are the original's: 20 ms frames every 5 ms (200
frames/s, 80 samples at 16 kHz), ``nccf_thresh1`` 0.25, 25 ms TDA frames, on float64 audio zero-padded by half a
frame on both sides; 0 Hz marks unvoiced frames. Before tracking, the original peak-normalises the waveform to
0.95 (:func:`peak_normalize`).

The vocoders with F0 take *speaker-normalised* F0 in linear Hz: voiced frames ``(f0 - mean) / std`` with the
speaker's statistics (``f0_stats.th``: ``{speaker_index: {'f0_mean', 'f0_std'}, 'f0_mean', 'f0_std'}``, the global
pair for speakers it lacks), unvoiced frames stay 0 (:func:`normalize_f0`). Voice conversion reuses that normalised
F0 with another speaker id; vocoders trained on raw F0 instead get the utterance's voiced F0 moved to the target
speaker's mean and std (:func:`rescale_f0`).

Example::

    >>> import torch
    >>> f0 = torch.tensor([0.0, 110.0, 130.0, 0.0])
    >>> normalize_f0(f0, mean=120.0, std=10.0).tolist()
    [0.0, -1.0, 1.0, 0.0]
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch

from .errors import AudioError, InputError, missing_dependency
from .formats import load_original

#: YAAPT settings of speech-resynthesis' ``get_yaapt_f0``.
FRAME_LENGTH_MS = 20.0
FRAME_SPACE_MS = 5.0
NCCF_THRESH1 = 0.25
TDA_FRAME_LENGTH_MS = 25.0
#: Peak level the original normalises audio to before tracking (``librosa.util.normalize(audio) * 0.95``).
PEAK_LEVEL = 0.95


def samples_per_frame(sample_rate: int) -> int:
    """Samples between two F0 frames (80 at 16 kHz)."""
    return int(FRAME_SPACE_MS / 1000 * sample_rate)


def peak_normalize(waveform: torch.Tensor, level: float = PEAK_LEVEL) -> torch.Tensor:
    """Scale so that the largest magnitude is ``level`` (silence is left as it is)."""
    peak = waveform.abs().max()
    return waveform if peak == 0 else waveform / peak * level


def yaapt_f0(waveform: torch.Tensor, sample_rate: int = 16000, *, interpolate: bool = False) -> torch.Tensor:
    """YAAPT F0 in Hz of a mono waveform ``(samples,)`` or ``(1, samples)``: ``(frames,)`` float32, 0 = unvoiced
    (with ``interpolate``, unvoiced frames are filled by interpolation, the original's ``f0_interp``).

    Peak-normalise first (:func:`peak_normalize`) to reproduce the original's features. There are
    ``samples // samples_per_frame + 1`` frames; speech-resynthesis keeps the first ``samples // 80`` of them.
    """
    try:
        import amfm_decompy.basic_tools as basic
        import amfm_decompy.pYAAPT as pYAAPT
    except ImportError as e:
        raise missing_dependency("F0 extraction", "amfm_decompy", "f0") from e
    samples = torch.as_tensor(waveform).detach().to("cpu", torch.float64)
    if samples.ndim == 2 and samples.shape[0] == 1:
        samples = samples[0]
    if samples.ndim != 1:
        raise AudioError(f"F0 extraction takes mono audio (samples,) or (1, samples), got {tuple(samples.shape)}")
    if not torch.isfinite(samples).all():
        raise AudioError("the waveform has NaN or infinite samples")
    half_frame = int(FRAME_LENGTH_MS / 1000 * sample_rate) // 2
    padded = np.pad(samples.numpy(), (half_frame, half_frame))
    try:
        pitch = pYAAPT.yaapt(basic.SignalObj(padded, sample_rate), frame_length=FRAME_LENGTH_MS,
                             frame_space=FRAME_SPACE_MS, nccf_thresh1=NCCF_THRESH1,
                             tda_frame_length=TDA_FRAME_LENGTH_MS)
    except (ValueError, IndexError) as e:  # YAAPT fails on clips too short to hold a few frames
        raise AudioError(f"YAAPT could not track {samples.numel()} samples ({e}); pass a longer clip") from e
    return torch.from_numpy(pitch.samp_interp if interpolate else pitch.samp_values).float()


@dataclass(frozen=True)
class F0Stats:
    """Per-speaker F0 mean and std in Hz (speech-resynthesis ``f0_stats.th``), with a global fallback."""

    mean: float
    std: float
    speakers: dict[int, tuple[float, float]] = field(default_factory=dict)

    def of(self, speaker: int) -> tuple[float, float]:
        """(mean, std) of ``speaker``, or the global pair when the file has none for it (as the original does)."""
        return self.speakers.get(int(speaker), (self.mean, self.std))

    @classmethod
    def load(cls, path: str | os.PathLike) -> F0Stats:
        """Read an ``f0_stats.th`` (a torch-saved dict; read weights-only)."""
        raw = load_original(path)
        try:
            speakers = {int(k): (float(v["f0_mean"]), float(v["f0_std"])) for k, v in raw.items()
                        if isinstance(k, int)}
            return cls(float(raw["f0_mean"]), float(raw["f0_std"]), speakers)
        except (KeyError, TypeError, AttributeError) as e:
            raise InputError(f"{path} is not a speech-resynthesis f0_stats file "
                             "({speaker: {'f0_mean', 'f0_std'}, 'f0_mean', 'f0_std'})") from e


def normalize_f0(f0: torch.Tensor, mean: float, std: float, *, fill_median: bool = False) -> torch.Tensor:
    """Voiced frames ``(f0 - mean) / std``; unvoiced (0) frames stay 0 — or, with ``fill_median`` (the original's
    ``f0_median``), take the utterance's voiced median before being normalised too."""
    f0 = torch.as_tensor(f0, dtype=torch.float32).clone()
    voiced = f0 != 0
    if fill_median and voiced.any():
        # numpy's median (mean of the two middle values), as the original computes it
        f0[~voiced] = float(np.median(f0[voiced].numpy()))
        voiced = torch.ones_like(voiced)
    f0[voiced] = (f0[voiced] - mean) / std
    return f0


def rescale_f0(f0: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """Move an utterance's voiced F0 to a target speaker's ``mean`` and ``std`` (speech-resynthesis ``--vc`` for
    vocoders trained on raw F0): ``(f0 - utt_mean) / utt_std * std + mean``, unbiased std; unvoiced stays 0."""
    f0 = torch.as_tensor(f0, dtype=torch.float32).clone()
    voiced = f0 != 0
    if voiced.sum() < 2:
        return f0
    values = f0[voiced]
    f0[voiced] = (values - values.mean()) / values.std() * std + mean
    return f0
