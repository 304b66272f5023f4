"""Kaldi-compatible log-mel filterbanks in pure torch, and GSLM's ``LogMelFeatureReader``
(``speech2unit/pretrained/logmel_feature_reader.py``).

:func:`fbank` computes what ``torchaudio.compliance.kaldi.fbank`` computes with ``dither=0`` and its other
defaults (10 ms shift, pre-emphasis 0.97, DC removal, povey window = symmetric Hann^0.85, FFT size rounded up to
a power of two, ``snip_edges``, power spectrum, Kaldi mel banks from 20 Hz to Nyquist built in float32, log
floored at float32 eps; no energy, no CMVN), with the same operations in the same order, so the same numbers.
GSLM feeds it the soundfile scale [-1, 1] (not int16), at the file's own rate, with 80 bins and 25 ms windows.

Example::

    >>> import torch
    >>> fbank(torch.zeros(16000)).shape           # 1 + (16000 - 400) // 160 frames
    torch.Size([98, 80])
"""
from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..nn.precision import KeepFloat32
from ..nn.ragged import conv_output_length, zero_beyond
from .feature_reader import SAMPLE_RATE, FeatureReader, read_audio

NUM_MEL_BINS = 80
FRAME_LENGTH_MS = 25.0
FRAME_SHIFT_MS = 10.0
PREEMPHASIS = 0.97
LOW_FREQ = 20.0
#: The povey window: a symmetric Hann window to this power.
POVEY_POWER = 0.85


def mel_scale(freq: torch.Tensor | float) -> torch.Tensor | float:
    """Kaldi's mel scale, ``1127 · ln(1 + f / 700)``."""
    if isinstance(freq, torch.Tensor):
        return 1127.0 * (1.0 + freq / 700.0).log()
    return 1127.0 * math.log(1.0 + freq / 700.0)


def mel_banks(num_bins: int, padded_window: int, sample_rate: float, low_freq: float = LOW_FREQ,
              high_freq: float = 0.0) -> torch.Tensor:
    """Kaldi's triangular mel filters ``(num_bins, padded_window // 2)`` (float32, as torchaudio builds them):
    evenly spaced in mel from ``low_freq`` to ``high_freq`` (≤ 0: that far below Nyquist)."""
    nyquist = 0.5 * sample_rate
    if high_freq <= 0.0:
        high_freq += nyquist
    if num_bins <= 3 or not 0.0 <= low_freq < high_freq <= nyquist:
        raise InputError(f"mel banks need more than 3 bins and 0 <= low_freq < high_freq <= {nyquist} Hz; got "
                         f"{num_bins} bins, {low_freq} to {high_freq} Hz")
    mel_low, mel_high = mel_scale(low_freq), mel_scale(high_freq)
    delta = (mel_high - mel_low) / (num_bins + 1)
    bins = torch.arange(num_bins).unsqueeze(1)
    left = mel_low + bins * delta
    center = mel_low + (bins + 1.0) * delta
    right = mel_low + (bins + 2.0) * delta
    mel = mel_scale(sample_rate / padded_window * torch.arange(padded_window / 2)).unsqueeze(0)
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    return torch.max(torch.zeros(1), torch.min(up, down))


def fbank(waveform: torch.Tensor, *, num_mel_bins: int = NUM_MEL_BINS, frame_length: float = FRAME_LENGTH_MS,
          frame_shift: float = FRAME_SHIFT_MS, sample_frequency: float = SAMPLE_RATE) -> torch.Tensor:
    """Log-mel filterbank of ``waveform`` ``(samples,)`` or ``(batch, samples)``: ``(frames, num_mel_bins)`` or
    ``(batch, frames, num_mel_bins)``, ``frames = 1 + (samples − window) // shift`` (0 when shorter than a
    window), in the waveform's dtype."""
    window = int(sample_frequency * frame_length * 0.001)
    shift = int(sample_frequency * frame_shift * 0.001)
    if window < 2 or shift < 1:
        raise InputError(f"frame_length {frame_length} ms / frame_shift {frame_shift} ms are too short at "
                         f"{sample_frequency} Hz")
    padded = 1 << (window - 1).bit_length()
    if waveform.shape[-1] < window:
        return waveform.new_empty(*waveform.shape[:-1], 0, num_mel_bins)
    frames = waveform.unfold(-1, window, shift)                             # (..., T, window)
    frames = frames - frames.mean(dim=-1, keepdim=True)                     # DC offset
    previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)       # replicate-padded delay
    frames = frames - PREEMPHASIS * previous
    hann = torch.hann_window(window, periodic=False, device=waveform.device, dtype=waveform.dtype)
    frames = F.pad(frames * hann.pow(POVEY_POWER), (0, padded - window))
    power = torch.fft.rfft(frames).abs().pow(2.0)
    banks = F.pad(mel_banks(num_mel_bins, padded, sample_frequency).to(waveform), (0, 1))
    energies = torch.matmul(power, banks.T)
    return torch.max(energies, torch.tensor(torch.finfo(torch.float).eps, dtype=energies.dtype,
                                            device=energies.device)).log()


class LogMelFeatureReader(KeepFloat32, FeatureReader):
    """GSLM's ``LogMelFeatureReader(num_mel_bins=80, frame_length=25.0)``: no weights, 100 Hz frames.

    ``get_feats(path, channel_id=None)`` computes the filterbank at the file's own rate and, as the original,
    never mixes channels down (a multi-channel file needs ``channel_id``); ``reader(wav)`` takes 16 kHz audio.
    The mel filterbank is float32 whatever dtype the reader is cast to.
    """

    def __init__(self, num_mel_bins: int = NUM_MEL_BINS, frame_length: float = FRAME_LENGTH_MS) -> None:
        super().__init__()
        fbank(torch.zeros(int(SAMPLE_RATE * frame_length * 0.001)), num_mel_bins=num_mel_bins,
              frame_length=frame_length)  # refuse settings that cannot work now, not at the first file
        self.num_mel_bins, self.frame_length = num_mel_bins, frame_length
        self.min_samples = int(SAMPLE_RATE * frame_length * 0.001)
        self.hop_length = int(SAMPLE_RATE * FRAME_SHIFT_MS * 0.001)
        self.register_buffer("_device", torch.empty(0), persistent=False)  # follows .to(device)

    @property
    def dim(self) -> int:
        """Feature dimension."""
        return self.num_mel_bins

    def get_feats(self, source: str | os.PathLike | torch.Tensor, channel_id: int | None = None) -> torch.Tensor:
        """The original's ``get_feats(file_path, channel_id=None)``, which also takes the 1-D 16 kHz waveform."""
        if not isinstance(source, (str, os.PathLike)):
            return self(self.read(source, channel_id))
        wav, rate = read_audio(source, channel_id, downmix=False, sample_rate=None)
        if rate == SAMPLE_RATE:
            return self(wav)
        return fbank(wav.to(self.device), num_mel_bins=self.num_mel_bins, frame_length=self.frame_length,
                     sample_frequency=rate)

    def encode(self, wavs: torch.Tensor, lengths: list[int], *, progress: bool = False
               ) -> tuple[torch.Tensor, list[int]]:
        features = fbank(wavs, num_mel_bins=self.num_mel_bins, frame_length=self.frame_length)
        frames = [conv_output_length(n, self.min_samples, self.hop_length) for n in lengths]
        return zero_beyond(features.transpose(1, 2), frames).transpose(1, 2), frames
