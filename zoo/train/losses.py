"""GAN-vocoder losses as HiFi-GAN defined them and SpeechTokenizer / speech-resynthesis train with them: least-squares
GAN, feature matching, log-mel L1, plus the mel filterbank they need.

The discriminator outputs are the 4-tuples of :mod:`zoo.nn.discriminators`; sums run over sub-discriminators and
layers in the originals' order, so the float sums round as theirs do.

Example::

    >>> import torch
    >>> real, fake = [torch.ones(2, 3)], [torch.zeros(2, 3)]
    >>> float(discriminator_loss(real, fake)), float(adversarial_loss(fake))
    (0.0, 1.0)
    >>> mel = LogMel(n_fft=256, num_mels=20, sample_rate=16000, hop_size=64, win_size=256)
    >>> mel(torch.randn(2, 1600)).shape                   # (B, mels, frames)
    torch.Size([2, 20, 25])
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: Floor of the magnitude before the log (HiFi-GAN's ``dynamic_range_compression_torch``).
LOG_CLIP = 1e-5


def discriminator_loss(real_logits: Sequence[torch.Tensor], fake_logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """LSGAN discriminator loss ``Σ mean((1 - D(x))²) + mean(D(x̂)²)`` over sub-discriminators."""
    loss = 0
    for dr, dg in zip(real_logits, fake_logits):
        loss = loss + (torch.mean((1 - dr) ** 2) + torch.mean(dg ** 2))
    return loss


def adversarial_loss(fake_logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """LSGAN generator loss ``Σ mean((1 - D(x̂))²)`` over sub-discriminators."""
    loss = 0
    for dg in fake_logits:
        loss = loss + torch.mean((1 - dg) ** 2)
    return loss


def feature_loss(real_maps: Sequence[Sequence[torch.Tensor]], fake_maps: Sequence[Sequence[torch.Tensor]]
                 ) -> torch.Tensor:
    """Feature matching ``2 Σ_sub Σ_layer mean|f_r - f_g|`` (HiFi-GAN's weight 2)."""
    loss = 0
    for dr, dg in zip(real_maps, fake_maps):
        for rl, gl in zip(dr, dg):
            loss = loss + torch.mean(torch.abs(rl - gl))
    return loss * 2


# ------------------------------------------------------------------------------------------ mel
def _hz_to_mel(freq: float, mel_scale: str) -> float:
    if mel_scale == "htk":
        return 2595.0 * math.log10(1.0 + freq / 700.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return min_log_mel + math.log(freq / min_log_hz) / logstep if freq >= min_log_hz else freq / f_sp


def _mel_to_hz(mels: torch.Tensor, mel_scale: str) -> torch.Tensor:
    if mel_scale == "htk":
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    freqs = f_sp * mels
    log_t = mels >= min_log_mel
    freqs[log_t] = min_log_hz * torch.exp(logstep * (mels[log_t] - min_log_mel))
    return freqs


def mel_filterbank(n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int,
                   norm: str | None = "slaney", mel_scale: str = "htk") -> torch.Tensor:
    """Triangular mel filters ``(n_freqs, n_mels)``, computed step by step as
    ``torchaudio.functional.melscale_fbanks`` does (float32), so SpeechTokenizer's ``MelScale(norm='slaney',
    mel_scale='htk')`` basis comes out the same without torchaudio."""
    all_freqs = torch.linspace(0, sample_rate // 2, n_freqs)
    m_pts = torch.linspace(_hz_to_mel(f_min, mel_scale), _hz_to_mel(f_max, mel_scale), n_mels + 2)
    f_pts = _mel_to_hz(m_pts, mel_scale)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)
    down = (-1.0 * slopes[:, :-2]) / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    fb = torch.max(torch.zeros(1), torch.min(down, up))
    if norm == "slaney":
        fb = fb * (2.0 / (f_pts[2: n_mels + 2] - f_pts[:n_mels])).unsqueeze(0)
    return fb


class LogMel(nn.Module):
    """HiFi-GAN's training log-mel as SpeechTokenizer's ``trainer/loss.py`` writes it: reflect-pad
    ``(n_fft - hop) // 2`` on both sides, ``|STFT|`` (``center=False``, periodic Hann window) ``+ 1e-9``, mel filters
    ``(num_mels, n_fft // 2 + 1)`` (torchaudio's HTK scale with Slaney norm by default; ``fmax`` None = sr / 2),
    natural log of the values floored at 1e-5. ``(B, N) -> (B, num_mels, frames)``.

    ``magnitude="sqrt"`` takes ``sqrt(re² + im² + 1e-9)`` instead (speech-resynthesis' ``mel_spectrogram``);
    ``basis`` replaces the filters (e.g. librosa's slaney-scale ones).
    """

    def __init__(self, n_fft: int, num_mels: int, sample_rate: int, hop_size: int, win_size: int, fmin: float = 0.0,
                 fmax: float | None = None, *, magnitude: str = "abs", basis: torch.Tensor | None = None) -> None:
        super().__init__()
        if magnitude not in ("abs", "sqrt"):
            raise ValueError(f"magnitude must be 'abs' or 'sqrt', got {magnitude!r}")
        self.n_fft, self.hop_size, self.win_size, self.magnitude = n_fft, hop_size, win_size, magnitude
        if basis is None:
            f_max = float(sample_rate // 2) if fmax is None else fmax
            basis = mel_filterbank(n_fft // 2 + 1, fmin, f_max, num_mels, sample_rate).T
        self.register_buffer("basis", basis.float(), persistent=False)
        self.register_buffer("window", torch.hann_window(win_size), persistent=False)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        pad = int((self.n_fft - self.hop_size) / 2)
        y = F.pad(y.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
        spec = torch.stft(y, self.n_fft, hop_length=self.hop_size, win_length=self.win_size,
                          window=self.window.to(y.dtype), center=False, normalized=False, onesided=True,
                          return_complex=True)
        if self.magnitude == "abs":
            spec = torch.abs(spec) + 1e-9
        else:
            spec = torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + 1e-9)
        return torch.log(torch.clamp(torch.matmul(self.basis.to(spec.dtype), spec), min=LOG_CLIP))


def mel_loss(mel: LogMel, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """L1 between the log-mels of ``x`` and ``x_hat`` ``(B, 1, N)``, cut to the shorter frame count."""
    x_mel, x_hat_mel = mel(x.squeeze(1)), mel(x_hat.squeeze(1))
    length = min(x_mel.size(2), x_hat_mel.size(2))
    return F.l1_loss(x_mel[:, :, :length], x_hat_mel[:, :, :length])


def recon_loss(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """L1 between waveforms ``(B, 1, N)`` cut to the shorter length."""
    length = min(x.size(-1), x_hat.size(-1))
    return F.l1_loss(x[:, :, :length], x_hat[:, :, :length])
