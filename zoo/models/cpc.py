"""Modified CPC (Rivière et al. 2020, https://arxiv.org/abs/2002.02848), the "CPC big" model GSLM reads, and
GSLM's ``CpcFeatureReader`` (``speech2unit/pretrained/cpc_feature_reader.py``).

Architecture: five strided convs (kernel/stride/padding 10/5/3, 8/4/2, then 4/2/1 three times: 160 samples per
frame, 100 Hz), each followed by ChannelNorm (every frame normalised over its channels with the UNBIASED
variance, eps 1e-5, then an affine (1, C, 1)) and ReLU; then an LSTM (batch first, zero initial state).

The reader keeps the original's rules: ``layer`` is the number of LSTM layers kept (the original rebuilds the
LSTM with ``layer`` layers and loads the checkpoint non-strictly, dropping the ones above); the waveform is
encoded in independent chunks of ``max_chunk`` samples, and a remainder is taken from a pass over the WHOLE
signal (the original slices a ``(1, 1, T)`` tensor along its channel axis): its last ``delta`` frames, with
``df = T // frames(T)`` and ``delta = (T − start) // df`` — all of them when ``delta`` is 0.
``norm_features`` normalises each pass over time (unbiased variance, eps 1e-8); ``use_encoder_layer`` returns
the conv encoder's output instead of the LSTM's.

Example::

    >>> import torch
    >>> reader = CpcFeatureReader(CPC(CPCConfig(encoder_dim=24, ar_dim=20, num_layers=3)), layer=2)
    >>> reader(torch.randn(93680)).shape       # 400 frames from [0, 64000) + the last 185 of the whole pass
    torch.Size([585, 20])
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from tqdm.auto import tqdm

from ..errors import ConfigError, InputError
from ..modeling import PretrainedModel
from ..nn.precision import KeepFloat32, at_least_float32, compute_dtype
from ..nn.ragged import conv_output_length, zero_beyond
from ..registry import SourceFile, Weights
from .feature_reader import SAMPLE_RATE, FeatureReader

#: (kernel, stride, padding) of the five encoder convs.
CONV_LAYERS = ((10, 5, 3), (8, 4, 2), (4, 2, 1), (4, 2, 1), (4, 2, 1))
#: Samples per frame (the product of the strides).
HOP_LENGTH = 160
#: ChannelNorm's eps, and the reader's for ``norm_features``.
NORM_EPS = 1e-5
FEATURE_NORM_EPS = 1e-8
#: The reader's default chunk (4 s at 16 kHz).
MAX_CHUNK = 64_000


@dataclass(frozen=True)
class CPCConfig:
    """A CPC checkpoint's shape (its ``config`` keys are given)."""

    encoder_dim: int = 512      # hiddenEncoder
    ar_dim: int = 512           # hiddenGar
    num_layers: int = 4         # LSTM layers stored (nLevelsGRU)

    def __post_init__(self) -> None:
        if min(self.encoder_dim, self.ar_dim, self.num_layers) < 1:
            raise ConfigError(f"every CPC size must be positive, got {self}")


class ChannelNorm(KeepFloat32, nn.Module):
    """Each frame of ``(B, C, T)`` normalised over its channels (unbiased variance), then scaled and shifted; in
    float32 in any dtype."""

    def __init__(self, channels: int, eps: float = NORM_EPS) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(1, channels, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wide = x.to(at_least_float32(x, self.weight))
        mean = wide.mean(dim=1, keepdim=True)
        var = wide.var(dim=1, keepdim=True)
        return ((wide - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias).to(x.dtype)


def conv_lengths(samples: torch.Tensor) -> list[torch.Tensor]:
    """Frames after each conv of ``samples`` samples, layer by layer."""
    out, length = [], samples
    for kernel, stride, padding in CONV_LAYERS:
        length = conv_output_length(length, kernel, stride, padding)
        out.append(length)
    return out


def num_frames(samples: int) -> int:
    """Frames CPC makes of ``samples`` samples (0 when too short)."""
    return max(0, int(conv_lengths(torch.tensor(samples))[-1]))


class CPC(PretrainedModel):
    """The CPC encoder + LSTM: waveforms ``(B, N)`` at 16 kHz → features at 100 Hz."""

    config_class = CPCConfig
    model_type = "cpc"

    def __init__(self, config: CPCConfig) -> None:
        super().__init__(config)
        dims = [1] + [config.encoder_dim] * len(CONV_LAYERS)
        self.convs = nn.ModuleList(nn.Conv1d(i, o, k, stride=s, padding=p)
                                   for i, o, (k, s, p) in zip(dims, dims[1:], CONV_LAYERS))
        self.norms = nn.ModuleList(ChannelNorm(config.encoder_dim) for _ in CONV_LAYERS)
        self.lstm = nn.LSTM(config.encoder_dim, config.ar_dim, num_layers=config.num_layers, batch_first=True)

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE

    def truncated(self, num_layers: int) -> CPC:
        """A copy that keeps the first ``num_layers`` LSTM layers (the original reader's ``layer``)."""
        if not 1 <= num_layers <= self.config.num_layers:
            raise InputError(f"layer={num_layers!r}: this CPC has {self.config.num_layers} LSTM layers; keep 1 ... "
                             f"{self.config.num_layers} (the original would leave the missing ones at random init)")
        model = CPC(CPCConfig(self.config.encoder_dim, self.config.ar_dim, num_layers))
        keep = model.state_dict()
        model.load_state_dict({k: v for k, v in self.state_dict().items() if k in keep})
        return model.to(next(self.parameters()).device, compute_dtype(self)).train(self.training)

    def encode(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Conv encoder output ``(B, T, encoder_dim)`` and frames per item. With ``lengths``, what each conv
        computes past an item's end is zeroed, as the zero padding it has alone, so items equal themselves alone."""
        if lengths is None:
            lengths = torch.full((waveforms.shape[0],), waveforms.shape[-1], device=waveforms.device)
        x = waveforms[:, None, :]
        for conv, norm, length in zip(self.convs, self.norms, conv_lengths(lengths)):
            x = F.relu(norm(conv(x)))
            x = zero_beyond(x, length)
        return x.transpose(1, 2), length

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None, *, encoded_only: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """LSTM output ``(B, T, ar_dim)`` (or the encoder's, ``encoded_only``) and frames per item; zeros past."""
        encoded, frames = self.encode(waveforms, lengths)
        if encoded_only:
            return encoded, frames
        if bool((frames == encoded.shape[1]).all()):
            return self.lstm(encoded)[0], frames
        packed = pack_padded_sequence(encoded, frames.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=encoded.shape[1])
        return out, frames


class CpcFeatureReader(FeatureReader):
    """GSLM's ``CpcFeatureReader(checkpoint_path, layer, use_encoder_layer=False, norm_features=False,
    max_chunk=64000)`` over a loaded :class:`CPC`, whose LSTM it cuts to ``layer`` layers (None: all)."""

    def __init__(self, model: CPC, layer: int | None = 2, use_encoder_layer: bool = False,
                 norm_features: bool = False, max_chunk: int = MAX_CHUNK) -> None:
        super().__init__()
        self.min_samples = next(n for n in range(1, 10 * HOP_LENGTH) if num_frames(n) > 0)
        self.hop_length = HOP_LENGTH
        if isinstance(max_chunk, bool) or not isinstance(max_chunk, int) or max_chunk < self.min_samples:
            raise InputError(f"max_chunk must be a whole number of samples of at least {self.min_samples} (one "
                             f"frame), got {max_chunk!r}")
        self.model = (model if layer is None else model.truncated(layer)).eval()
        self.use_encoder_layer, self.norm_features, self.max_chunk = use_encoder_layer, norm_features, max_chunk

    @property
    def dim(self) -> int:
        """Feature dimension."""
        config = self.model.config
        return config.encoder_dim if self.use_encoder_layer else config.ar_dim

    def _passes(self, length: int) -> tuple[list[tuple[int, int]], int]:
        """The pieces ``(start, stop)`` the original encodes for an item of ``length`` samples — whole chunks,
        then the whole signal if samples remain — and where the remainder starts."""
        starts = range(0, length - self.max_chunk + 1, self.max_chunk)
        pieces = [(start, start + self.max_chunk) for start in starts]
        start = len(pieces) * self.max_chunk
        return pieces + ([(0, length)] if start < length else []), start

    def encode(self, wavs: torch.Tensor, lengths: list[int], *, progress: bool = False
               ) -> tuple[torch.Tensor, list[int]]:
        pieces = [(item, start, stop) for item, n in enumerate(lengths) for start, stop in self._passes(n)[0]]
        outputs: list[torch.Tensor] = []
        batch = wavs.shape[0]
        for i in tqdm(range(0, len(pieces), batch), desc="CPC chunks", disable=not progress or len(pieces) <= batch):
            group = pieces[i: i + batch]
            sizes = torch.tensor([stop - start for _, start, stop in group], device=wavs.device)
            inputs = wavs.new_zeros(len(group), int(sizes.max()))
            for row, (item, start, stop) in enumerate(group):
                inputs[row, : stop - start] = wavs[item, start:stop]
            out, frames = self.model(inputs, sizes, encoded_only=self.use_encoder_layer)
            for row, count in enumerate(frames.tolist()):
                feats = out[row, :count]
                if self.norm_features:
                    feats = (feats - feats.mean(0)) / torch.sqrt(feats.var(0) + FEATURE_NORM_EPS)
                outputs.append(feats)
        done = iter(outputs)
        items = []
        for n in lengths:
            passes, start = self._passes(n)
            parts = [next(done) for _ in passes]
            if start < n:  # the last pass is the whole signal: its last delta frames (all of them when delta is 0)
                whole = parts.pop()
                parts.append(whole[-((n - start) // (n // len(whole))):])
            items.append(torch.cat(parts))
        frames = [len(f) for f in items]
        features = wavs.new_zeros(len(items), max(frames), self.dim)
        for row, f in enumerate(items):
            features[row, : len(f)] = f
        return features, frames


# ------------------------------------------------------------------------------------------ released weights
WEIGHTS = (
    Weights(
        name="cpc-big-ll6k",
        entry_point="cpc_feature_reader",
        kwargs={"checkpoint": "cpc-big-ll6k"},
        converter="cpc",
        source_files=(SourceFile("https://dl.fbaipublicfiles.com/textless_nlp/gslm/cpc/cpc_big_ll6kh_top_ctc.pt",
                                 "73155dad5d7c986fe7b7f548050060a8e9cc9a0ffd111a22932f38c3e617c5b8"),),
        license="MIT",
        paper="https://arxiv.org/abs/2102.01192",
        description="modified CPC 'big' trained on LibriLight 6k h with a CTC-like top criterion: GSLM's CPC "
                    "model; its k-means 50/100/200 cluster the output of LSTM layer 2",
        sample_rate=SAMPLE_RATE,
        frame_rate=SAMPLE_RATE / HOP_LENGTH,
    ),
)
