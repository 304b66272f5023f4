"""Log-mel spectrograms of the GAN vocoders' training losses, in pure torch.

Two originals, two filterbanks:

* HiFi-GAN / speech-resynthesis (``dataset.mel_spectrogram``): ``librosa.filters.mel`` — Slaney's mel scale
  (linear below 1 kHz, logarithmic above) and Slaney's area normalisation — on magnitudes
  ``sqrt(re² + im² + 1e-9)``;
* SpeechTokenizer's trainer: ``torchaudio``'s ``MelScale(mel_scale="htk", norm="slaney")`` on ``|X| + 1e-9``.

Both reflect-pad ``(n_fft - hop) // 2`` samples on each side, run ``torch.stft`` with ``center=False`` and a
periodic Hann window of ``win_size``, and take ``log(clamp(mel, 1e-5))``. :func:`mel_filterbank` builds each bank
the way its library does (librosa: float64 maths rounded into a float32 array, then normalised; torchaudio:
float32 throughout), so the features agree with the originals to float32 rounding.

Example::

    >>> import torch
    >>> mel = log_mel_spectrogram(torch.zeros(1, 4096), n_fft=1024, num_mels=80, sample_rate=16000,
    ...                           hop_size=256, win_size=1024)
    >>> tuple(mel.shape)                   # (B, num_mels, frames), frames = (samples - hop) // hop
    (1, 80, 15)
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError

#: Floor of the mel energies before the log (``dynamic_range_compression``'s ``clip_val``).
LOG_FLOOR = 1e-5
#: Added to the squared magnitude (HiFi-GAN) or to the magnitude (SpeechTokenizer) so that silence is finite.
MAGNITUDE_EPS = 1e-9
MEL_SCALES = ("slaney", "htk")


def _slaney_hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """librosa's ``hz_to_mel(htk=False)``: linear (3 mels per 200 Hz) below 1 kHz, logarithmic above."""
    hz = np.asanyarray(hz, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(hz >= min_log_hz, min_log_mel + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / logstep,
                    hz / f_sp)


def _slaney_mel_to_hz(mel: np.ndarray) -> np.ndarray:
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel)


def _librosa_bank(sample_rate: int, n_fft: int, num_mels: int, fmin: float, fmax: float) -> torch.Tensor:
    fft_freqs = np.linspace(0, sample_rate / 2, 1 + n_fft // 2)
    mel_freqs = _slaney_mel_to_hz(np.linspace(_slaney_hz_to_mel(fmin), _slaney_hz_to_mel(fmax), num_mels + 2))
    spacing = np.diff(mel_freqs)
    ramps = np.subtract.outer(mel_freqs, fft_freqs)
    weights = np.zeros((num_mels, 1 + n_fft // 2), dtype=np.float32)
    for i in range(num_mels):  # librosa fills a float32 array row by row, then normalises it in place
        weights[i] = np.maximum(0, np.minimum(-ramps[i] / spacing[i], ramps[i + 2] / spacing[i + 1]))
    weights *= (2.0 / (mel_freqs[2:num_mels + 2] - mel_freqs[:num_mels]))[:, None]
    return torch.from_numpy(weights)


def _torchaudio_bank(sample_rate: int, n_fft: int, num_mels: int, fmin: float, fmax: float) -> torch.Tensor:
    all_freqs = torch.linspace(0, sample_rate // 2, n_fft // 2 + 1)
    m_min, m_max = (2595.0 * math.log10(1.0 + f / 700.0) for f in (fmin, fmax))
    f_pts = 700.0 * (10 ** (torch.linspace(m_min, m_max, num_mels + 2) / 2595.0) - 1.0)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)
    down, up = -slopes[:, :-2] / f_diff[:-1], slopes[:, 2:] / f_diff[1:]
    bank = torch.clamp(torch.min(down, up), min=0.0)
    bank = bank * (2.0 / (f_pts[2:num_mels + 2] - f_pts[:num_mels])).unsqueeze(0)
    return bank.T.contiguous()


@functools.lru_cache(maxsize=16)
def mel_filterbank(sample_rate: int, n_fft: int, num_mels: int, fmin: float = 0.0, fmax: float | None = None,
                   mel_scale: str = "slaney") -> torch.Tensor:
    """Triangular mel filters ``(num_mels, n_fft // 2 + 1)`` float32 with Slaney area normalisation.

    ``mel_scale="slaney"``: ``librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=num_mels, fmin=fmin,
    fmax=fmax)``; ``"htk"``: ``torchaudio``'s ``melscale_fbanks(..., norm="slaney", mel_scale="htk").T``.
    ``fmax=None`` is Nyquist. Do not modify the returned tensor (it is cached).
    """
    if mel_scale not in MEL_SCALES:
        raise InputError(f"mel_scale must be one of {MEL_SCALES}, got {mel_scale!r}")
    fmax = sample_rate / 2 if fmax is None else fmax
    if not 0 <= fmin < fmax <= sample_rate / 2 or num_mels < 1 or n_fft < 2:
        raise InputError(f"mel filters need 0 <= fmin < fmax <= {sample_rate / 2} Hz, num_mels >= 1 and n_fft >= 2; "
                         f"got fmin={fmin}, fmax={fmax}, num_mels={num_mels}, n_fft={n_fft}")
    build = _librosa_bank if mel_scale == "slaney" else _torchaudio_bank
    return build(sample_rate, n_fft, num_mels, float(fmin), float(fmax))


def log_mel_spectrogram(y: torch.Tensor, n_fft: int, num_mels: int, sample_rate: int, hop_size: int, win_size: int,
                        fmin: float = 0.0, fmax: float | None = None, *, mel_scale: str = "slaney",
                        magnitude_eps_inside: bool = True) -> torch.Tensor:
    """Natural-log mel spectrogram ``(B, num_mels, frames)`` of waveforms ``(B, samples)`` (or ``(samples,)``).

    ``frames = (samples + 2 * ((n_fft - hop_size) // 2) - n_fft) // hop_size + 1``. ``magnitude_eps_inside``:
    ``sqrt(|X|² + 1e-9)`` (HiFi-GAN); otherwise ``|X| + 1e-9`` (SpeechTokenizer).
    """
    if y.ndim == 1:
        y = y.unsqueeze(0)
    pad = (n_fft - hop_size) // 2
    if y.shape[-1] + 2 * pad < n_fft or y.shape[-1] <= pad:
        raise InputError(f"{y.shape[-1]} samples are too few for a spectrogram with n_fft={n_fft}")
    y = F.pad(y.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
    window = torch.hann_window(win_size, device=y.device, dtype=y.dtype)
    spec = torch.stft(y, n_fft, hop_length=hop_size, win_length=win_size, window=window, center=False,
                      normalized=False, onesided=True, return_complex=True)
    if magnitude_eps_inside:
        magnitude = torch.sqrt(torch.view_as_real(spec).pow(2).sum(-1) + MAGNITUDE_EPS)
    else:
        magnitude = spec.abs() + MAGNITUDE_EPS
    bank = mel_filterbank(sample_rate, n_fft, num_mels, fmin, fmax, mel_scale).to(y.device, y.dtype)
    return torch.log(torch.clamp(torch.matmul(bank, magnitude), min=LOG_FLOOR))
