"""EnCodec's SEANet encoder and decoder (non-causal, reflect padding), as SpeechTokenizer and WavTokenizer use them.

The original (``facebookresearch/encodec`` ``modules/{conv,seanet,lstm}.py``, copied into SpeechTokenizer with a
Snake activation and a bidirectional-LSTM option) wraps every convolution in weight norm. Here weight norm is folded
into plain ``weight`` tensors once, at conversion (:func:`zoo.formats.fold_weight_norms`, dim 0 — for a transposed
conv that is its input-channel axis, as in the original), so the runtime modules are ordinary ``nn.Conv1d`` /
``nn.ConvTranspose1d`` / ``nn.LSTM`` subclasses whose only addition is EnCodec's padding rule.

State-dict layout (:mod:`zoo.formats.encodec` maps EnCodec's ``model.<idx>...`` keys onto it)::

    encoder: conv_in, blocks.<i>.{residuals.<j>.{act1,conv1,act2,conv2,shortcut}, act, downsample}, lstm, act_out, conv_out
    decoder: conv_in, lstm, blocks.<i>.{act, upsample, residuals.<j>.{...}}, act_out, conv_out

Batches of different lengths: every module takes an optional ``lengths`` (a list of per-item valid lengths along
the last axis, at that module's input). Each item is then padded from its own valid samples, exactly as if it ran
alone, so the valid part of each output equals the one-by-one result; what lies beyond it is unspecified.

Example::

    >>> import torch
    >>> encoder = SEANetEncoder(SEANetConfig(n_filters=4, dimension=8, ratios=(4, 2)))
    >>> decoder = SEANetDecoder(SEANetConfig(n_filters=4, dimension=8, ratios=(4, 2)))
    >>> latent = encoder(torch.randn(2, 1, 100))        # (B, dimension, ceil(N / hop)), hop = 4 * 2
    >>> tuple(latent.shape), tuple(decoder(latent).shape)
    ((2, 8, 13), (2, 1, 104))
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .ragged import Lengths, conv_output_length, zero_beyond

#: Snake's guard against division by a zero ``alpha`` (the original's constant).
SNAKE_EPS = 1e-9
ACTIVATIONS = ("ELU", "Snake")


# ------------------------------------------------------------------------------------------ padding
def conv_paddings(length: int, kernel_size: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """(left, right) padding of EnCodec's non-causal ``SConv1d`` for an input of ``length`` samples.

    The total ``(kernel_size - 1) * dilation + 1 - stride`` is split with the larger half on the LEFT; the right
    side also gets the extra samples that make the last window full, so a stride-``s`` conv yields exactly
    ``ceil(length / s)`` frames. (EnCodec computes that extra as ``ideal_length - length`` from a float frame
    count; it reduces to ``-length mod stride``.)
    """
    total = (kernel_size - 1) * dilation + 1 - stride
    right = total // 2
    return total - right, right + (-length) % stride


def pad_reflect(x: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """Reflect-pad the last axis of ``x``. An input no longer than the padding cannot be reflected; like EnCodec's
    ``pad1d``, it is then zero-extended on the right just enough, reflected, and the zeros' share cut off the end."""
    length = x.shape[-1]
    too_short_by = max(left, right) - length + 1
    if too_short_by <= 0:
        return F.pad(x, (left, right), mode="reflect")
    padded = F.pad(F.pad(x, (0, too_short_by)), (left, right), mode="reflect")
    return padded[..., : padded.shape[-1] - too_short_by]


# ------------------------------------------------------------------------------------------ layers
class SConv1d(nn.Conv1d):
    """``nn.Conv1d`` (no built-in padding) that pads its input like EnCodec's non-causal ``SConv1d``:
    reflect, larger half left, extra right padding for a full last window. ``(B, C, N) -> (B, C', ceil(N / s))``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, dilation=dilation)

    def paddings(self, length: int) -> tuple[int, int]:
        return conv_paddings(length, self.kernel_size[0], self.stride[0], self.dilation[0])

    def output_lengths(self, lengths: Lengths) -> Lengths:
        """``ceil(n / stride)`` for each of ``lengths``: the padded input's conv length."""
        if lengths is None:
            return None
        return [conv_output_length(n + sum(self.paddings(n)), self.kernel_size[0], self.stride[0],
                                   dilation=self.dilation[0]) for n in lengths]

    def forward(self, x: torch.Tensor, lengths: Lengths = None) -> torch.Tensor:
        width = x.shape[-1]
        left, right = self.paddings(width)
        if lengths is None or all(n == width for n in lengths):
            return super().forward(pad_reflect(x, left, right))
        # Shorter items reflect their own last samples, not the batch's padding: one gather builds every item's
        # padded input (each fits in the batch's padded width, as ceil(n / s) <= ceil(width / s)).
        n = torch.tensor(list(lengths), device=x.device)[:, None]
        p = torch.arange(width + left + right, device=x.device) - left
        source = torch.where(p < 0, -p, torch.where(p < n, p, 2 * (n - 1) - p)).clamp(0, width - 1)
        padded = x.gather(-1, source[:, None, :].expand(-1, x.shape[1], -1))
        for b, length in enumerate(lengths):
            if length <= max(self.paddings(length)):  # too short to reflect: pad_reflect's zero extension
                item = pad_reflect(x[b, :, :length], *self.paddings(length))
                padded[b, :, : item.shape[-1]] = item
        return super().forward(padded)


class SConvTranspose1d(nn.ConvTranspose1d):
    """``nn.ConvTranspose1d`` whose output is trimmed like EnCodec's non-causal ``SConvTranspose1d``: of the
    ``kernel_size - stride`` surplus samples, the smaller half comes off the right. ``(B, C, T) -> (B, C', s*T)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride)

    @property
    def surplus(self) -> int:
        """Samples trimmed off the transposed conv's output (both ends together)."""
        return self.kernel_size[0] - self.stride[0]

    def output_lengths(self, lengths: Lengths) -> Lengths:
        """``n * stride`` for each of ``lengths``."""
        if lengths is None:
            return None
        return [conv_output_length(n, self.kernel_size[0], self.stride[0], transposed=True) - self.surplus
                for n in lengths]

    def forward(self, x: torch.Tensor, lengths: Lengths = None) -> torch.Tensor:
        # Frames past an item's end must contribute nothing, as they do when it runs alone.
        y = super().forward(zero_beyond(x, lengths))
        right = self.surplus // 2
        return y[..., self.surplus - right: y.shape[-1] - right]


class Snake1d(nn.Module):
    """Snake activation ``x + sin(alpha x)^2 / alpha`` with a learnt per-channel ``alpha`` of shape (1, C, 1)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Same operations in the same order as the original, so the result is bit-identical.
        return x + (self.alpha + SNAKE_EPS).reciprocal() * torch.sin(self.alpha * x).pow(2)


def activation(name: str, channels: int) -> nn.Module:
    """The activation called ``name`` ("ELU" with alpha 1, or "Snake" with ``channels`` alphas)."""
    if name == "ELU":
        return nn.ELU()
    if name == "Snake":
        return Snake1d(channels)
    raise ValueError(f"unknown SEANet activation {name!r}; expected one of {ACTIVATIONS}")


class SLSTM(nn.LSTM):
    """A time-major ``nn.LSTM`` (zero initial state, hidden size = input size) in conv layout ``(B, C, T)``, with
    a skip connection. A bidirectional one outputs ``2C`` channels and its skip adds ``[x, x]``."""

    def __init__(self, channels: int, num_layers: int, bidirectional: bool = False) -> None:
        super().__init__(channels, channels, num_layers, bidirectional=bidirectional)

    def forward(self, x: torch.Tensor, lengths: Lengths = None) -> torch.Tensor:
        steps = x.permute(2, 0, 1)  # (T, B, C)
        # In the LSTM's own dtype with CPU autocast off: CPU autocast sends LSTMs to oneDNN's bfloat16 kernels,
        # which CPUs without bfloat16 units (AVX2) refuse; a model cast to bfloat16 runs them in bfloat16 anyway.
        with torch.autocast("cpu", enabled=False):
            inputs = steps.to(self.weight_ih_l0.dtype)
            # A forward-only LSTM never looks ahead, so padding after an item cannot change its valid outputs;
            # a bidirectional one must read each item backwards from its own end.
            if lengths is not None and self.bidirectional and min(lengths) != x.shape[-1]:
                y = self._ragged_bidirectional(inputs, lengths)
            else:
                y, _ = super().forward(inputs)
        skip = steps.repeat(1, 1, 2) if self.bidirectional else steps
        return (y.to(x.dtype) + skip).permute(1, 2, 0)

    def _ragged_bidirectional(self, steps: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
        """The bidirectional LSTM of ``steps`` ``(T, B, C)`` whose items end at ``lengths``, as each alone.

        Layer by layer, the backward direction runs forwards over each item reversed within its own length, so
        both directions are plain padded-batch LSTMs (the fast fused kernels; a packed sequence would fall back
        to a step-by-step loop over shrinking batches) and the padding only ever follows an item's steps."""
        total = steps.shape[0]
        t = torch.arange(total, device=steps.device)[:, None]
        n = torch.tensor(list(lengths), device=steps.device)[None, :]
        reverse = torch.where(t < n, n - 1 - t, t)[:, :, None]  # (T, B, 1): step of each item's reversal
        zeros = steps.new_zeros(1, steps.shape[1], self.hidden_size)
        x = steps
        for layer in range(self.num_layers):
            outputs = []
            for suffix in ("", "_reverse"):
                weights = [getattr(self, f"{name}_l{layer}{suffix}")
                           for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
                inputs = x.gather(0, reverse.expand_as(x)) if suffix else x
                out = torch.lstm(inputs, (zeros, zeros), weights, True, 1, 0.0, False, False, False)[0]
                outputs.append(out.gather(0, reverse.expand_as(out)) if suffix else out)
            x = torch.cat(outputs, dim=-1)
        return x


# ------------------------------------------------------------------------------------------ SEANet
@dataclass(frozen=True)
class SEANetConfig:
    """Hyper-parameters shared by the SEANet encoder and decoder (EnCodec's names and defaults, non-causal,
    weight norm folded, reflect padding, no final activation)."""

    dimension: int = 128                 # channels of the latent
    n_filters: int = 32                  # channels after the first conv; doubled by every stride stage
    ratios: tuple[int, ...] = (8, 5, 4, 2)  # up-sampling strides in DECODER order; the encoder runs them reversed
    channels: int = 1                    # audio channels
    n_residual_layers: int = 1           # residual blocks per stage; block j has dilation dilation_base ** j
    residual_kernel_size: int = 3
    dilation_base: int = 2
    kernel_size: int = 7                 # first conv
    last_kernel_size: int = 7            # last conv
    compress: int = 2                    # residual blocks run at channels // compress
    true_skip: bool = False              # identity shortcut instead of a 1x1 conv in residual blocks
    activation: str = "ELU"              # "ELU" or "Snake"
    lstm_layers: int = 2                 # 0: no LSTM
    bidirectional: bool = False          # encoder LSTM only; the decoder's is always forward-only

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.bidirectional and not self.lstm_layers:
            # The original builds this but its last conv then expects twice the channels it receives.
            raise ConfigError("bidirectional=True needs lstm_layers > 0")

    @property
    def hop_length(self) -> int:
        """Audio samples per latent frame."""
        return math.prod(self.ratios)

    @property
    def top_channels(self) -> int:
        """Channels at the latent end of the conv stack, before the last conv."""
        return self.n_filters * 2 ** len(self.ratios)


class SEANetResnetBlock(nn.Module):
    """``shortcut(x) + conv2(act2(conv1(act1(x))))``: conv1 has the residual kernel and a dilation and maps
    ``dim -> dim // compress``; conv2 is 1x1 back to ``dim``; the shortcut is a 1x1 conv (or identity)."""

    def __init__(self, config: SEANetConfig, dim: int, dilation: int) -> None:
        super().__init__()
        hidden = dim // config.compress
        self.act1 = activation(config.activation, dim)
        self.conv1 = SConv1d(dim, hidden, config.residual_kernel_size, dilation=dilation)
        self.act2 = activation(config.activation, hidden)
        self.conv2 = SConv1d(hidden, dim, 1)
        self.shortcut = nn.Identity() if config.true_skip else SConv1d(dim, dim, 1)

    def forward(self, x: torch.Tensor, lengths: Lengths = None) -> torch.Tensor:
        shortcut = x if isinstance(self.shortcut, nn.Identity) else self.shortcut(x, lengths)
        return shortcut + self.conv2(self.act2(self.conv1(self.act1(x), lengths)), lengths)


def _residuals(config: SEANetConfig, dim: int) -> nn.ModuleList:
    return nn.ModuleList(SEANetResnetBlock(config, dim, config.dilation_base ** j)
                         for j in range(config.n_residual_layers))


class EncoderBlock(nn.Module):
    """Residual blocks at ``dim`` channels, then activation and a stride-``ratio`` conv to ``2 dim``."""

    def __init__(self, config: SEANetConfig, dim: int, ratio: int) -> None:
        super().__init__()
        self.residuals = _residuals(config, dim)
        self.act = activation(config.activation, dim)
        self.downsample = SConv1d(dim, 2 * dim, 2 * ratio, stride=ratio)

    def forward(self, x: torch.Tensor, lengths: Lengths = None) -> torch.Tensor:
        for block in self.residuals:
            x = block(x, lengths)
        return self.downsample(self.act(x), lengths)


class DecoderBlock(nn.Module):
    """Activation, a stride-``ratio`` transposed conv from ``dim`` to ``dim // 2``, then residual blocks."""

    def __init__(self, config: SEANetConfig, dim: int, ratio: int) -> None:
        super().__init__()
        self.act = activation(config.activation, dim)
        self.upsample = SConvTranspose1d(dim, dim // 2, 2 * ratio, stride=ratio)
        self.residuals = _residuals(config, dim // 2)

    def forward(self, x: torch.Tensor, lengths: Lengths = None) -> torch.Tensor:
        x = self.upsample(self.act(x), lengths)
        lengths = self.upsample.output_lengths(lengths)
        for block in self.residuals:
            x = block(x, lengths)
        return x


class SEANetEncoder(nn.Module):
    """Audio ``(B, channels, N)`` to a latent ``(B, dimension, ceil(N / hop_length))``."""

    def __init__(self, config: SEANetConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.n_filters
        self.conv_in = SConv1d(config.channels, dim, config.kernel_size)
        self.blocks = nn.ModuleList()
        for ratio in reversed(config.ratios):
            self.blocks.append(EncoderBlock(config, dim, ratio))
            dim *= 2
        self.lstm = SLSTM(dim, config.lstm_layers, config.bidirectional) if config.lstm_layers else None
        dim *= 2 if config.bidirectional else 1
        self.act_out = activation(config.activation, dim)
        self.conv_out = SConv1d(dim, config.dimension, config.last_kernel_size)

    def output_lengths(self, lengths: Lengths) -> Lengths:
        """Valid latent frames per item for ``lengths`` valid samples: ``ceil(n / hop_length)``."""
        for block in self.blocks:
            lengths = block.downsample.output_lengths(lengths)
        return lengths

    def forward(self, x: torch.Tensor, lengths: Lengths = None) -> torch.Tensor:
        x = self.conv_in(x, lengths)
        for block in self.blocks:
            x = block(x, lengths)
            lengths = block.downsample.output_lengths(lengths)
        if self.lstm is not None:
            x = self.lstm(x, lengths)
        return self.conv_out(self.act_out(x), lengths)


class SEANetDecoder(nn.Module):
    """A latent ``(B, dimension, T)`` to audio ``(B, channels, T * hop_length)`` (no final activation)."""

    def __init__(self, config: SEANetConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.top_channels
        self.conv_in = SConv1d(config.dimension, dim, config.kernel_size)
        self.lstm = SLSTM(dim, config.lstm_layers) if config.lstm_layers else None
        self.blocks = nn.ModuleList()
        for ratio in config.ratios:
            self.blocks.append(DecoderBlock(config, dim, ratio))
            dim //= 2
        self.act_out = activation(config.activation, dim)
        self.conv_out = SConv1d(dim, config.channels, config.last_kernel_size)

    def forward(self, x: torch.Tensor, lengths: Lengths = None) -> torch.Tensor:
        x = self.conv_in(x, lengths)
        if self.lstm is not None:
            x = self.lstm(x, lengths)
        for block in self.blocks:
            x = block(x, lengths)
            lengths = block.upsample.output_lengths(lengths)
        return self.conv_out(self.act_out(x), lengths)
