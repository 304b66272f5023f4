"""WaveGlow (Prenger et al. 2019), the mel vocoder of GSLM's unit-to-speech, and its denoiser.

:class:`WaveGlow` is the flow of fairseq's ``unit2speech/glow.py`` (NVIDIA's, textlesslib's copy is the same) run in
the inference direction: the mel ``(B, n_mel, T)`` is upsampled to one conditioning vector per sample (a transposed
conv, kernel 1024, stride 256, trimmed to ``256 T`` samples) and regrouped into ``n_group``-sample groups; a Gaussian
latent goes backwards through ``n_flows`` affine couplings (a WaveNet-like ``WN`` predicts shift and log-scale of one
half from the other half and the mel) and inverted 1×1 convolutions, with ``n_early_size`` latent channels
re-entering every ``n_early_every`` flows. Weight norm is folded into plain convolution weights at conversion.

:meth:`WaveGlow.infer` takes the latent as an ordinary argument: ``noise`` ``(B, n_group, 256 T / n_group)`` is the
unit-variance latent in the channel layout of the training-direction output (``WaveGlow.forward`` of the original:
the early outputs first, the last flow's channels at the end), scaled by ``sigma``; without it the latent is drawn
from ``generator``. The original draws it with ``torch.cuda.FloatTensor(...).normal_()`` (CUDA only).

:class:`WaveGlowDenoiser` is ``tacotron2/waveglow_denoiser.py``: it subtracts ``strength`` × the magnitude spectrum
of WaveGlow's output for an all-zero mel (its "bias") from the audio's STFT (1024-point, hop 256, periodic Hann,
computed as convolutions with the windowed DFT basis as the original's ``stft.py``) and resynthesises with the
original phase.

Example::

    >>> import torch
    >>> wg = WaveGlow(WaveGlowConfig(n_mel_channels=8, n_flows=4, n_group=8, n_early_every=2, n_early_size=2,
    ...                              n_layers=2, n_channels=8)).eval()
    >>> mel = torch.randn(1, 8, 10)                                  # 10 frames
    >>> audio = wg.infer(mel, sigma=0.666, generator=torch.Generator().manual_seed(0))
    >>> audio.shape                                                  # 256 samples per frame
    torch.Size([1, 2560])
    >>> WaveGlowDenoiser(wg)(audio, strength=0.1).shape
    torch.Size([1, 1, 2560])
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, InputError
from ..modeling import PretrainedModel
from ..nn.conv import Conv1d, ConvTranspose1d
from ..nn.ragged import zero_beyond
from ..registry import SourceFile, Weights

#: The upsampler is hard-coded in the original: kernel 1024, stride 256 (= the mel hop).
UPSAMPLE_KERNEL = 1024
HOP_LENGTH = 256
#: Frames of the all-zero mel whose output is the denoiser's bias, as the original.
DENOISER_BIAS_FRAMES = 88


@dataclass(frozen=True)
class WaveGlowConfig:
    """``WaveGlow(**hparams)`` of the original (``WN_config`` flattened). Defaults: the released 256-channel
    model."""

    n_mel_channels: int = 80
    n_flows: int = 12
    n_group: int = 8
    n_early_every: int = 4
    n_early_size: int = 2
    n_layers: int = 8            # WN_config
    n_channels: int = 256        # WN_config
    kernel_size: int = 3         # WN_config
    sampling_rate: int = 22050   # Hz of the output (not stored by the original; LJSpeech's)

    def __post_init__(self) -> None:
        if self.n_group % 2 or self.n_early_size % 2:
            raise ConfigError("n_group and n_early_size must be even (the flows split channels in halves)")
        if self.kernel_size % 2 == 0 or self.n_channels % 2:
            raise ConfigError("WN needs an odd kernel_size and an even n_channels")
        if HOP_LENGTH % self.n_group:
            raise ConfigError(f"n_group must divide the hop of {HOP_LENGTH} samples")
        if self.n_early_every < 1 or self.remaining_channels < 2:
            raise ConfigError("the early outputs leave fewer than 2 channels for the last flows")

    def channels_at(self, flow: int) -> int:
        """Channels that flow ``flow`` transforms (``n_group`` less the early outputs before it)."""
        return self.n_group - self.n_early_size * (flow // self.n_early_every)

    @property
    def remaining_channels(self) -> int:
        return self.channels_at(self.n_flows - 1)


# ------------------------------------------------------------------------------------------ blocks
class WN(nn.Module):
    """The coupling network: ``n_layers`` gated, dilated (``2**i``) convolutions conditioned on the mel, with
    residual and skip 1×1 convolutions; outputs ``[shift; log_scale]`` for the other half."""

    def __init__(self, n_in: int, n_cond: int, n_layers: int, n_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.n_channels = n_channels
        self.start = Conv1d(n_in, n_channels, 1)
        self.cond = Conv1d(n_cond, 2 * n_channels * n_layers, 1)
        self.in_layers = nn.ModuleList(
            Conv1d(n_channels, 2 * n_channels, kernel_size, dilation=2 ** i, padding=2 ** i * (kernel_size - 1) // 2)
            for i in range(n_layers))
        self.res_skip = nn.ModuleList(Conv1d(n_channels, 2 * n_channels if i < n_layers - 1 else n_channels, 1)
                                      for i in range(n_layers))
        self.end = Conv1d(n_channels, 2 * n_in, 1)

    def forward(self, audio: torch.Tensor, spect: torch.Tensor, lengths: Sequence[int] | None) -> torch.Tensor:
        c = self.n_channels
        audio = self.start(audio)
        skip = torch.zeros_like(audio)
        for i, (in_layer, res_skip) in enumerate(zip(self.in_layers, self.res_skip)):
            # the conditioning of layer i alone: the whole cond output is 2·c·n_layers channels per sample
            sl = slice(2 * c * i, 2 * c * (i + 1))
            cond = F.conv1d(spect, self.cond.weight[sl], self.cond.bias[sl])
            acts = in_layer(zero_beyond(audio, lengths)) + cond
            acts = torch.tanh(acts[:, :c]) * torch.sigmoid(acts[:, c:])
            out = res_skip(acts)
            if i < len(self.in_layers) - 1:
                audio = audio + out[:, :c]
                skip = skip + out[:, c:]
            else:
                skip = skip + out
        return self.end(skip)


class InvertibleConv1x1(nn.Module):
    """A ``c × c`` channel mixing, applied inverted at inference (the inverse is taken in float32, as the
    original)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.eye(channels)[:, :, None])

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        w_inverse = torch.linalg.inv(self.weight[:, :, 0].float()).to(z.dtype)
        return F.conv1d(z, w_inverse[:, :, None])


# ------------------------------------------------------------------------------------------ model
class WaveGlow(PretrainedModel):
    """Mel ``(B, n_mel, T)`` → audio ``(B, 256 T)`` with :meth:`infer` (see the module docstring)."""

    config_class = WaveGlowConfig
    model_type = "waveglow"

    def __init__(self, config: WaveGlowConfig) -> None:
        super().__init__(config)
        c = config
        self.upsample = ConvTranspose1d(c.n_mel_channels, c.n_mel_channels, UPSAMPLE_KERNEL, stride=HOP_LENGTH)
        self.wn = nn.ModuleList(WN(c.channels_at(k) // 2, c.n_mel_channels * c.n_group, c.n_layers, c.n_channels,
                                   c.kernel_size) for k in range(c.n_flows))
        self.convinv = nn.ModuleList(InvertibleConv1x1(c.channels_at(k)) for k in range(c.n_flows))

    @property
    def sample_rate(self) -> int:
        return self.config.sampling_rate

    def infer(self, mel: torch.Tensor, sigma: float = 1.0, noise: torch.Tensor | None = None, *,
              generator: torch.Generator | None = None, lengths: Sequence[int] | None = None) -> torch.Tensor:
        """Audio ``(B, 256 T)`` for mel ``(B, n_mel, T)``: the original ``WaveGlow.infer(mel, sigma)``.

        ``noise`` ``(B, n_group, 256 T / n_group)``: the unit-variance latent in ``WaveGlow.forward``'s output
        layout, used instead of a random draw (then from ``generator``). ``lengths`` ``(B,)``: valid frames per row
        of a right-padded batch; each row's samples are then those it gets alone, and zero past ``256 · length``.
        The computation runs in the model's dtype (fp16 or bf16 after ``.half()``/``.bfloat16()``).
        """
        c = self.config
        dtype = self.upsample.weight.dtype
        if mel.ndim != 3 or mel.shape[1] != c.n_mel_channels or mel.shape[2] == 0:
            raise InputError(f"mel must be (B, {c.n_mel_channels}, T) with T ≥ 1, got {tuple(mel.shape)}")
        if not bool(torch.isfinite(mel).all()):
            raise InputError("mel holds NaN or infinite values")
        batch, _, frames = mel.shape
        spect = self.upsample(mel.to(self.upsample.weight))[:, :, : frames * HOP_LENGTH]
        groups = frames * HOP_LENGTH // c.n_group
        spect = spect.reshape(batch, c.n_mel_channels, groups, c.n_group).transpose(2, 3)
        spect = spect.reshape(batch, c.n_mel_channels * c.n_group, groups)
        if noise is None:
            noise = torch.randn(batch, c.n_group, groups, generator=generator, device=mel.device)
        elif tuple(noise.shape) != (batch, c.n_group, groups):
            raise InputError(f"noise must be (B, n_group, 256 T / n_group) = {(batch, c.n_group, groups)}, "
                             f"got {tuple(noise.shape)}")
        noise = noise.to(device=spect.device, dtype=dtype)
        group_lengths = None
        if lengths is not None:
            lengths = [int(n) for n in lengths]
            if len(lengths) != batch or min(lengths) < 1 or max(lengths) > frames:
                raise InputError(f"lengths must hold one value in [1, {frames}] per row, got {lengths}")
            group_lengths = [n * HOP_LENGTH // c.n_group for n in lengths]
        audio = sigma * noise[:, c.n_group - c.remaining_channels:]
        for k in reversed(range(c.n_flows)):
            half = audio.shape[1] // 2
            out = self.wn[k](audio[:, :half], spect, group_lengths)
            shift, log_scale = out[:, :half], out[:, half:]
            audio = torch.cat((audio[:, :half], (audio[:, half:] - shift) / torch.exp(log_scale)), 1)
            audio = self.convinv[k].inverse(audio)
            if k % c.n_early_every == 0 and k > 0:
                block = k // c.n_early_every - 1   # early outputs come first in the latent, in flow order
                early = noise[:, block * c.n_early_size: (block + 1) * c.n_early_size]
                audio = torch.cat((sigma * early, audio), 1)
        audio = audio.transpose(1, 2).reshape(batch, -1)
        if lengths is not None:
            audio = zero_beyond(audio, [n * HOP_LENGTH for n in lengths])
        return audio


# ------------------------------------------------------------------------------------------ denoiser
class STFT(nn.Module):
    """The original's ``stft.py``: an STFT as a strided convolution with the windowed DFT basis (input
    reflect-padded by ``filter_length / 2``), and its inverse as a transposed convolution with the windowed
    pseudo-inverse, normalised by the squared-window overlap-add envelope."""

    def __init__(self, filter_length: int = 1024, hop_length: int = 256, win_length: int = 1024) -> None:
        super().__init__()
        if not 0 < win_length <= filter_length or filter_length % 2 or not 0 < hop_length <= filter_length:
            raise InputError(f"STFT needs an even filter_length ≥ win_length > 0 and 0 < hop ≤ filter_length, got "
                             f"filter_length={filter_length}, hop_length={hop_length}, win_length={win_length}")
        self.filter_length, self.hop_length, self.win_length = filter_length, hop_length, win_length
        n, bins = filter_length, filter_length // 2 + 1
        k = torch.arange(bins, dtype=torch.float64)[:, None]
        angle = 2 * math.pi * ((k * torch.arange(n, dtype=torch.float64)) % n) / n   # exact phase reduction
        basis = torch.cat((torch.cos(angle), -torch.sin(angle)))                  # [Re; Im] rows of the DFT
        # pinv(scale · basis)ᵀ in closed form: 2 / (n · scale) times the basis, with bins 0 and n/2 halved
        inverse = basis * (2 / (n * (filter_length / hop_length)))
        inverse[[0, bins - 1]] /= 2
        window = self.window().float()
        self.register_buffer("forward_basis", basis.float()[:, None] * window, persistent=False)
        self.register_buffer("inverse_basis", inverse.float()[:, None] * window, persistent=False)

    def window(self) -> torch.Tensor:
        """Periodic Hann of ``win_length`` (scipy's ``get_window('hann', fftbins=True)``), zero-padded to the
        centre of ``filter_length``, float64."""
        window = torch.hann_window(self.win_length, periodic=True, dtype=torch.float64)
        left = (self.filter_length - self.win_length) // 2
        return F.pad(window, (left, self.filter_length - self.win_length - left))

    def transform(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Magnitude and phase ``(B, filter_length / 2 + 1, frames)`` of audio ``(B, N)``."""
        half = self.filter_length // 2
        if audio.shape[-1] <= half:
            raise InputError(f"audio of {audio.shape[-1]} samples is too short for the STFT's reflect padding: "
                             f"it needs more than {half} samples")
        padded = F.pad(audio[:, None, None], (half, half, 0, 0), mode="reflect")[:, 0]
        spec = F.conv1d(padded, self.forward_basis, stride=self.hop_length)
        real, imag = spec[:, : half + 1], spec[:, half + 1:]
        return torch.sqrt(real ** 2 + imag ** 2), torch.atan2(imag, real)

    def inverse(self, magnitude: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        """Audio ``(B, 1, hop · (frames − 1))`` from magnitude and phase."""
        spec = torch.cat((magnitude * torch.cos(phase), magnitude * torch.sin(phase)), 1)
        audio = F.conv_transpose1d(spec, self.inverse_basis, stride=self.hop_length)
        # the overlap-add envelope of the squared window (librosa's window_sumsquare), divided out where non-zero
        window_sq = self.window() ** 2
        envelope = F.conv_transpose1d(torch.ones(1, 1, magnitude.shape[-1], dtype=torch.float64),
                                      window_sq[None, None], stride=self.hop_length)[0, 0].float()
        envelope = envelope.to(audio.device)
        nonzero = envelope > torch.finfo(torch.float32).tiny
        audio = torch.where(nonzero, audio / torch.where(nonzero, envelope, 1.0), audio)
        audio = audio * (self.filter_length / self.hop_length)
        half = self.filter_length // 2
        return audio[:, :, half: audio.shape[-1] - half]


class WaveGlowDenoiser(nn.Module):
    """The original ``Denoiser(waveglow, filter_length, n_overlap, win_length, mode)``: ``den(audio, strength)``
    maps audio ``(B, N)`` to ``(B, 1, 256 ⌊N / 256⌋)`` float32 with ``strength`` × WaveGlow's bias spectrum
    removed. ``mode="zeros"`` takes the bias from an all-zero mel, ``"normal"`` from a random one (``generator``)."""

    def __init__(self, waveglow: WaveGlow, filter_length: int = 1024, n_overlap: int = 4, win_length: int = 1024,
                 mode: str = "zeros", *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.stft = STFT(filter_length, int(filter_length / n_overlap), win_length)
        weight = waveglow.upsample.weight
        shape = (1, waveglow.config.n_mel_channels, DENOISER_BIAS_FRAMES)
        if mode == "zeros":
            mel = torch.zeros(shape)
        elif mode == "normal":
            mel = torch.randn(shape, generator=generator)
        else:
            raise InputError(f"denoiser mode must be 'zeros' or 'normal', got {mode!r}")
        with torch.no_grad():
            groups = DENOISER_BIAS_FRAMES * HOP_LENGTH // waveglow.config.n_group
            noise = torch.zeros(1, waveglow.config.n_group, groups)   # sigma = 0: the latent does not matter
            bias_audio = waveglow.infer(mel.to(weight), sigma=0.0, noise=noise).float()
            self.stft.to(bias_audio.device)
            bias_spec = self.stft.transform(bias_audio)[0][:, :, :1]
        self.register_buffer("bias_spec", bias_spec, persistent=False)

    def forward(self, audio: torch.Tensor, strength: float = 0.1) -> torch.Tensor:
        if audio.ndim == 1:
            audio = audio[None]
        if audio.ndim != 2:
            raise InputError(f"audio must be (B, N) or (N,), got shape {tuple(audio.shape)}")
        magnitude, phase = self.stft.transform(audio.to(self.bias_spec.device).float())
        magnitude = torch.clamp(magnitude - self.bias_spec * strength, min=0.0)
        return self.stft.inverse(magnitude, phase)


# ------------------------------------------------------------------------------------------ releases
WEIGHTS = (
    Weights(name="waveglow-256channels-ljspeech", entry_point="waveglow", kwargs={}, converter="waveglow",
            source_files=(SourceFile("https://dl.fbaipublicfiles.com/textless_nlp/gslm/"
                                     "waveglow_256channels_standalone.pt",
                                     "f383c7fd785502fc6a6bffd604fc14cb35d6155cdde30c53faaaeafa8a904dab"),),
            license="BSD-3-Clause", paper="https://arxiv.org/abs/1811.00002",
            description="WaveGlow mel vocoder (NVIDIA, 256 channels, LJSpeech), the vocoder of GSLM's unit-to-speech "
                        "Tacotron2 models, as textlesslib's standalone checkpoint",
            sample_rate=22050, frame_rate=22050 / HOP_LENGTH),
)

