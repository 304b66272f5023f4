"""GAN discriminators of the HiFi-GAN family of vocoders and codecs, for training: the multi-period (MPD) and
multi-scale (MSD) discriminators of HiFi-GAN (``jik876/hifi-gan`` ``models.py``, copied by speech-resynthesis and
SpeechTokenizer) and EnCodec's multi-scale STFT discriminator (MS-STFT, as SpeechTokenizer's
``discriminators.py`` has it).

Each ``Multi*`` module maps ``(real, fake)`` waveforms ``(B, 1, N)`` to the originals' 4-tuple
``(real_logits, fake_logits, real_feature_maps, fake_feature_maps)``: one logit tensor and one list of feature
maps (every activation, plus the last conv's output) per sub-discriminator, each sub-discriminator reading the
real input first, then the fake one — the order matters for spectral norm, whose power iteration updates its
``weight_u``/``weight_v`` buffers on every training forward.

The layer structure (kernels, strides, groups, paddings, norms, activations) is the originals'; only the channel
widths are arguments, with the released widths as defaults, so a checkpoint with narrower discriminators loads
(:mod:`zoo.formats.discriminators` reads the widths off its tensors and maps its ``weight_g``/``weight_v`` keys
onto torch's weight-norm parametrisation used here). Spectral norm is torch's original hook
(``torch.nn.utils.spectral_norm``): its ``parametrizations`` successor iterates ``u`` and ``v`` in the other
order, which gives other numbers.

Example::

    >>> import torch
    >>> mpd = MultiPeriodDiscriminator(channels=(2, 4, 8, 8, 8))
    >>> real, fake = torch.randn(2, 1, 2400), torch.randn(2, 1, 2400)
    >>> real_logits, fake_logits, real_maps, fake_maps = mpd(real, fake)
    >>> len(real_logits), len(real_maps[0])        # 5 periods; 5 convs + conv_post per period
    (5, 6)
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm
from torch.nn.utils.parametrizations import weight_norm

#: Leaky ReLU slope of HiFi-GAN's MPD and MSD.
LRELU_SLOPE = 0.1
#: Leaky ReLU slope of EnCodec's STFT discriminator.
STFT_LRELU_SLOPE = 0.2

MPD_PERIODS = (2, 3, 5, 7, 11)
MPD_CHANNELS = (32, 128, 512, 1024, 1024)
MSD_CHANNELS = (128, 128, 256, 512, 1024, 1024, 1024)
#: (kernel, stride, groups, padding) of MSD's seven convs.
MSD_LAYERS = ((15, 1, 1, 7), (41, 2, 4, 20), (41, 2, 16, 20), (41, 4, 16, 20), (41, 4, 16, 20), (41, 1, 16, 20),
              (5, 1, 1, 2))
#: (n_fft, hop, win) of the five MS-STFT scales.
STFT_SCALES = ((1024, 256, 1024), (2048, 512, 2048), (512, 128, 512), (256, 64, 256), (128, 32, 128))
STFT_FILTERS = 32

#: (real logits, fake logits, real feature maps, fake feature maps), one entry per sub-discriminator.
DiscriminatorOutput = tuple[list[torch.Tensor], list[torch.Tensor], list[list[torch.Tensor]], list[list[torch.Tensor]]]


def _norm(module: nn.Module, spectral: bool) -> nn.Module:
    return spectral_norm(module) if spectral else weight_norm(module)


class DiscriminatorP(nn.Module):
    """One period of the MPD: the waveform ``(B, 1, N)`` is reflect-padded at the end to a multiple of ``period``
    and folded to ``(B, 1, N / period, period)``; 2-D convs with kernel ``(5, 1)`` run along the folded time."""

    def __init__(self, period: int, channels: Sequence[int] = MPD_CHANNELS, kernel_size: int = 5, stride: int = 3,
                 use_spectral_norm: bool = False) -> None:
        super().__init__()
        self.period = period
        widths = (1, *channels)
        self.convs = nn.ModuleList(
            _norm(nn.Conv2d(widths[i], widths[i + 1], (kernel_size, 1),
                            (stride, 1) if i < len(channels) - 1 else 1, padding=(2, 0)), use_spectral_norm)
            for i in range(len(channels)))
        self.conv_post = _norm(nn.Conv2d(channels[-1], 1, (3, 1), 1, padding=(1, 0)), use_spectral_norm)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits ``(B, frames)`` and the feature maps of ``x`` ``(B, 1, N)``."""
        b, c, t = x.shape
        if t % self.period:
            pad = self.period - t % self.period
            x = F.pad(x, (0, pad), "reflect")
            t += pad
        x = x.view(b, c, t // self.period, self.period)
        fmap = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            fmap.append(x)
        x = self.conv_post(x)
        fmap.append(x)
        return torch.flatten(x, 1, -1), fmap


class DiscriminatorS(nn.Module):
    """One scale of the MSD: seven grouped 1-D convs and ``conv_post`` on the waveform ``(B, 1, N)``."""

    def __init__(self, channels: Sequence[int] = MSD_CHANNELS, use_spectral_norm: bool = False) -> None:
        super().__init__()
        widths = (1, *channels)
        self.convs = nn.ModuleList(
            _norm(nn.Conv1d(widths[i], widths[i + 1], k, s, groups=g, padding=p), use_spectral_norm)
            for i, (k, s, g, p) in enumerate(MSD_LAYERS))
        self.conv_post = _norm(nn.Conv1d(channels[-1], 1, 3, 1, padding=1), use_spectral_norm)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        fmap = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            fmap.append(x)
        x = self.conv_post(x)
        fmap.append(x)
        return torch.flatten(x, 1, -1), fmap


class _Pair(nn.Module):
    """Runs every sub-discriminator on the real input, then on the fake one (the originals' order)."""

    discriminators: nn.ModuleList

    def _inputs(self, index: int, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return real, fake

    def forward(self, real: torch.Tensor, fake: torch.Tensor) -> DiscriminatorOutput:
        """``(real_logits, fake_logits, real_fmaps, fake_fmaps)`` for waveforms ``(B, 1, N)``."""
        out: DiscriminatorOutput = ([], [], [], [])
        for i, d in enumerate(self.discriminators):
            real, fake = self._inputs(i, real, fake)
            logit_r, fmap_r = d(real)
            logit_g, fmap_g = d(fake)
            out[0].append(logit_r)
            out[1].append(logit_g)
            out[2].append(fmap_r)
            out[3].append(fmap_g)
        return out


class MultiPeriodDiscriminator(_Pair):
    """HiFi-GAN's MPD: one :class:`DiscriminatorP` per period (2, 3, 5, 7, 11), weight norm."""

    def __init__(self, channels: Sequence[int] = MPD_CHANNELS, periods: Sequence[int] = MPD_PERIODS) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(DiscriminatorP(p, channels) for p in periods)


class MultiScaleDiscriminator(_Pair):
    """HiFi-GAN's MSD: three :class:`DiscriminatorS`, the first with spectral norm on the waveform, the others with
    weight norm on it average-pooled (``AvgPool1d(4, 2, padding=2)``) once and twice."""

    def __init__(self, channels: Sequence[int] = MSD_CHANNELS) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList([DiscriminatorS(channels, use_spectral_norm=True),
                                             DiscriminatorS(channels), DiscriminatorS(channels)])
        self.meanpools = nn.ModuleList([nn.AvgPool1d(4, 2, padding=2), nn.AvgPool1d(4, 2, padding=2)])

    def _inputs(self, index: int, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if index == 0:
            return real, fake
        pool = self.meanpools[index - 1]
        return pool(real), pool(fake)


class Spectrogram(nn.Module):
    """Complex STFT as ``torchaudio.transforms.Spectrogram(normalized=True, center=False, power=None)`` computes it:
    Hann window (buffer ``window``, periodic), divided by the window's L2 norm. ``(B, C, N) -> (B, C, freq, frames)``."""

    def __init__(self, n_fft: int, hop_length: int, win_length: int) -> None:
        super().__init__()
        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length
        self.register_buffer("window", torch.hann_window(win_length))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape  # the STFT runs in float32 even under autocast
        spec = torch.stft(x.float().reshape(-1, shape[-1]), self.n_fft, self.hop_length, self.win_length, self.window,
                          center=False, normalized=False, onesided=True, return_complex=True)
        spec = spec.reshape(*shape[:-1], *spec.shape[-2:])
        return spec / self.window.pow(2.0).sum().sqrt()


class DiscriminatorSTFT(nn.Module):
    """One scale of EnCodec's MS-STFT discriminator: the normalised complex STFT of ``(B, 1, N)`` as real and
    imaginary channels ``(B, 2, frames, freq)``, a plain 3x9 conv, three weight-normed 3x9 convs with stride 2 on
    frequency and dilations 1, 2, 4 on time, a 3x3 conv and a 3x3 ``conv_post``; LeakyReLU 0.2 after all but the
    last. ``n_fft`` samples at least (``center=False``)."""

    def __init__(self, filters: int = STFT_FILTERS, n_fft: int = 1024, hop_length: int = 256, win_length: int = 1024,
                 max_filters: int = 1024, dilations: Sequence[int] = (1, 2, 4)) -> None:
        super().__init__()
        self.spec_transform = Spectrogram(n_fft, hop_length, win_length)
        width = min(filters, max_filters)
        self.convs = nn.ModuleList([nn.Conv2d(2, filters, (3, 9), padding=(1, 4))])  # no norm (EnCodec's quirk)
        in_chs = width
        for dilation in dilations:
            self.convs.append(weight_norm(nn.Conv2d(in_chs, width, (3, 9), stride=(1, 2), dilation=(dilation, 1),
                                                    padding=(dilation, 4))))
        self.convs.append(weight_norm(nn.Conv2d(width, width, (3, 3), padding=(1, 1))))
        self.conv_post = weight_norm(nn.Conv2d(width, 1, (3, 3), padding=(1, 1)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        z = self.spec_transform(x)
        z = torch.cat([z.real, z.imag], dim=1).transpose(2, 3)  # (B, 2, frames, freq)
        fmap = []
        for conv in self.convs:
            z = F.leaky_relu(conv(z), STFT_LRELU_SLOPE)
            fmap.append(z)
        return self.conv_post(z), fmap


class MultiScaleSTFTDiscriminator(_Pair):
    """EnCodec's MS-STFT discriminator: :class:`DiscriminatorSTFT` at n_fft 1024, 2048, 512, 256, 128 (hop n_fft/4)."""

    def __init__(self, filters: int = STFT_FILTERS, scales: Sequence[tuple[int, int, int]] = STFT_SCALES) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(DiscriminatorSTFT(filters, n_fft, hop, win) for n_fft, hop, win in scales)
