"""WavTokenizer (Ji et al., 2024): a single-codebook acoustic codec for 24 kHz speech.

::

    waveform (B, N) ─SEANet encoder─▶ (B, 512, T) ─Euclidean VQ─▶ codec ids (1, B, T),  T = ceil(N / hop)
    codec ids ─codebook rows─▶ (B, 512, L) ─Vocos backbone─▶ (B, L, dim) ─ISTFT head─▶ waveform (B, L·hop)

A re-implementation of ``nicolvisser/WavTokenizer`` @ 02ce308 (the inference fork of ``jishengpeng/WavTokenizer``
that DP-SLM uses as the vocoder behind ELLA-V) with the same numbers: same codes, same waveforms to float32
rounding. The backbone is Vocos with WavTokenizer's ``pos_net`` (ResNet blocks around one full-sequence attention
block) between the input conv and the first norm; the head predicts a log-magnitude and a phase per STFT bin and
inverts them with an ISTFT.

The model is inference-only: weights come from a converted release (``zoo.formats.wavtokenizer``), the encoder's
weight norm is folded, and the k-means/EMA codebook updates and dropout of training are not part of it.

Example (a tiny random model; the released ones come from ``hubconf.wavtokenizer``)::

    >>> import torch
    >>> config = WavTokenizerConfig(downsamples=(5, 4), codebook_size=64,
    ...                             backbone=BackboneConfig(dim=64, intermediate_dim=128, num_layers=2,
    ...                                                     adanorm_num_embeddings=4),
    ...                             head=ISTFTHeadConfig(n_fft=80, hop_length=20))
    >>> model = WavTokenizer(config).eval()
    >>> features, codes = model.encode(torch.randn(2, 2410), bandwidth_id=0)
    >>> features.shape, codes.shape                  # 2410 samples / hop 20 -> 121 frames
    (torch.Size([2, 512, 121]), torch.Size([1, 2, 121]))
    >>> model.decode(model.codes_to_features(codes)).shape
    torch.Size([2, 2420])
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..audio import check_waveform, resample
from ..errors import ConfigError, InputError
from ..modeling import PretrainedModel
from ..nn.precision import GroupNorm, KeepFloat32, at_least_float32, compute_dtype
from ..nn.precision import LayerNorm as Float32LayerNorm
from ..nn.quantization import nearest_code
from ..nn.seanet import SEANetConfig, SEANetEncoder
from ..registry import SourceFile, Weights

#: EncodecFeatures hard-codes the rate too: every WavTokenizer reads and writes 24 kHz audio.
SAMPLE_RATE = 24000
#: EncodecFeatures hard-codes the encoder's width and output (= codebook) dimension, whatever the config says.
ENCODER_FILTERS = 32
CODEBOOK_DIM = 512
#: EncodecFeatures' frame rate, hard-coded whatever the hop; it only decides how many VQ layers copy-synthesis uses.
BANDWIDTH_FRAME_RATE = 25
#: Every GroupNorm of pos_net: 32 groups.
NUM_GROUPS = 32
NORM_EPS = 1e-6
CONVNEXT_KERNEL = 7
#: The head clips exp(log-magnitude) here (no lower clip) against exploding magnitudes.
MAX_MAGNITUDE = 100.0
#: The "same" ISTFT refuses a window envelope at or below this (it would divide by ~0).
MIN_WINDOW_ENVELOPE = 1e-11
ISTFT_PADDINGS = ("same", "center")


# ------------------------------------------------------------------------------------------ configs
@dataclass(frozen=True)
class BackboneConfig:
    """The Vocos backbone (``VocosBackboneArgs``)."""

    input_channels: int = CODEBOOK_DIM
    dim: int = 768
    intermediate_dim: int = 2304
    num_layers: int = 12
    #: ConvNeXt layer scale; None or 0 mean 1/num_layers (a gamma is still stored), only < 0 removes it.
    layer_scale_init_value: float | None = None
    #: Rows of the AdaLayerNorm tables (selected by ``bandwidth_id``); None means plain LayerNorm.
    adanorm_num_embeddings: int | None = None

    def __post_init__(self) -> None:
        if self.dim % NUM_GROUPS:
            raise ConfigError(f"backbone dim {self.dim} must be a multiple of {NUM_GROUPS} (pos_net's GroupNorm)")
        if self.adanorm_num_embeddings is not None and self.adanorm_num_embeddings < 1:
            raise ConfigError("adanorm_num_embeddings must be None (LayerNorm) or at least 1, "
                             f"got {self.adanorm_num_embeddings}")

    @property
    def layer_scale(self) -> float:
        """The ConvNeXt gamma's init value as the original computes it (``or`` turns 0.0 into the default)."""
        return self.layer_scale_init_value or 1 / self.num_layers


@dataclass(frozen=True)
class ISTFTHeadConfig:
    """The ISTFT head (``ISTFTHeadArgs``; its ``dim`` is the backbone's)."""

    n_fft: int = 1280
    hop_length: int = 320
    #: "same": trim (n_fft - hop)//2 per side, L·hop samples; "center": torch.istft(center=True), (L-1)·hop.
    padding: str = "same"

    def __post_init__(self) -> None:
        if self.padding not in ISTFT_PADDINGS:
            raise ConfigError(f"ISTFT padding must be one of {ISTFT_PADDINGS}, got {self.padding!r}")
        if not 0 < self.hop_length < self.n_fft:
            raise ConfigError(f"the ISTFT needs 0 < hop_length < n_fft, got hop {self.hop_length}, n_fft {self.n_fft}")
        if self.n_fft % 2:
            # n_fft + 2 outputs split into log-magnitudes and phases of n_fft/2 + 1 bins each.
            raise ConfigError(f"n_fft must be even, got {self.n_fft}")

    @property
    def trim(self) -> int:
        """Samples the "same" ISTFT cuts from each end."""
        return (self.n_fft - self.hop_length) // 2


@dataclass(frozen=True)
class WavTokenizerConfig:
    """A WavTokenizer (``WavTokenizerArgs``, without the settings inference ignores). Defaults are the fork's."""

    #: Down-sampling ratios in the original's (decoder) order; the encoder applies them reversed.
    downsamples: tuple[int, ...] = (8, 5, 4, 2)
    codebook_size: int = 4096                           # vq_bins
    num_quantizers: int = 1
    #: Only their count matters at inference: encode's ``bandwidth_id`` must index this list.
    bandwidths: tuple[float, ...] = (6.6, 6.6, 6.6, 6.6)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    head: ISTFTHeadConfig = field(default_factory=ISTFTHeadConfig)

    def __post_init__(self) -> None:
        if self.backbone.input_channels != CODEBOOK_DIM:
            raise ConfigError(f"the backbone reads {CODEBOOK_DIM}-dim codebook vectors, "
                             f"not input_channels={self.backbone.input_channels}")
        if self.num_quantizers < 1 or self.codebook_size < 1:
            raise ConfigError("num_quantizers and codebook_size must be positive")

    @property
    def encoder(self) -> SEANetConfig:
        """EncodecFeatures' SEANet encoder: EnCodec's defaults (ELU, 2-layer LSTM, 1×1-conv skips), 32 filters."""
        return SEANetConfig(dimension=CODEBOOK_DIM, n_filters=ENCODER_FILTERS, ratios=self.downsamples)

    @property
    def hop_length(self) -> int:
        """Waveform samples per codec frame on the encoder side."""
        return math.prod(self.downsamples)

    @property
    def frame_rate(self) -> float:
        """Codec frames per second."""
        return SAMPLE_RATE / self.hop_length


#: The released models' configs (nicolvisser ``configs.py`` = upstream's YAMLs).
_RELEASED_BACKBONE = BackboneConfig(adanorm_num_embeddings=4)
VARIANTS = {
    "small_600_24k_4096": WavTokenizerConfig(downsamples=(6, 5, 5, 4), backbone=_RELEASED_BACKBONE,
                                             head=ISTFTHeadConfig(n_fft=2400, hop_length=600)),
    "small_320_24k_4096": WavTokenizerConfig(downsamples=(8, 5, 4, 2), backbone=_RELEASED_BACKBONE,
                                             head=ISTFTHeadConfig(n_fft=1280, hop_length=320)),
}


# ------------------------------------------------------------------------------------------ quantizer
class VectorQuantizer(KeepFloat32, nn.Module):
    """One Euclidean codebook ``(codebook_size, dim)``: nearest row by the original's expanded squared distance
    (:func:`~zoo.nn.quantization.nearest_code`), so near-ties fall the same way; the codebook stays float32."""

    def __init__(self, codebook_size: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("codebook", nn.init.kaiming_uniform_(torch.empty(codebook_size, dim)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Codec ids ``(B, T)`` of frames ``x`` ``(B, T, dim)``."""
        return nearest_code(x, self.codebook)


# ------------------------------------------------------------------------------------------ backbone
def _group_norm(dim: int) -> GroupNorm:
    return GroupNorm(NUM_GROUPS, dim, eps=NORM_EPS, affine=True)


class ResnetBlock(nn.Module):
    """pos_net's residual block: (GroupNorm → swish → conv3) twice, plus the input. ``(B, C, L)`` → same."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm1 = _group_norm(dim)
        self.conv1 = nn.Conv1d(dim, dim, kernel_size=3, padding=1)
        self.norm2 = _group_norm(dim)
        self.conv2 = nn.Conv1d(dim, dim, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


class AttnBlock(nn.Module):
    """Single-head self-attention over the whole sequence (non-causal), 1×1-conv projections. ``(B, C, L)``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = _group_norm(dim)
        self.q = nn.Conv1d(dim, dim, kernel_size=1)
        self.k = nn.Conv1d(dim, dim, kernel_size=1)
        self.v = nn.Conv1d(dim, dim, kernel_size=1)
        self.proj_out = nn.Conv1d(dim, dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        q, k, v = (proj(h).transpose(1, 2).unsqueeze(1) for proj in (self.q, self.k, self.v))  # (B, 1, L, C)
        attended = F.scaled_dot_product_attention(q, k, v)  # softmax(q·kᵀ / √C) · v, memory-lean kernels
        return x + self.proj_out(attended.squeeze(1).transpose(1, 2))


class LayerNorm(Float32LayerNorm):
    """LayerNorm that takes (and ignores) ``bandwidth_id``, so both norms are called alike."""

    def forward(self, x: torch.Tensor, bandwidth_id: int = 0) -> torch.Tensor:
        return super().forward(x)


class AdaLayerNorm(KeepFloat32, nn.Module):
    """Parameter-free LayerNorm, then scale and shift taken from row ``bandwidth_id`` of two tables. ``(..., dim)``;
    float32 statistics and tables in any dtype."""

    def __init__(self, num_embeddings: int, dim: int) -> None:
        super().__init__()
        self.scale = nn.Embedding(num_embeddings, dim)
        self.shift = nn.Embedding(num_embeddings, dim)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: torch.Tensor, bandwidth_id: int = 0) -> torch.Tensor:
        # One row for the whole batch: it is layer_norm's own affine step.
        dtype = at_least_float32(x, self.scale.weight)
        return F.layer_norm(x.to(dtype), x.shape[-1:], self.scale.weight[bandwidth_id].to(dtype),
                            self.shift.weight[bandwidth_id].to(dtype), NORM_EPS).to(x.dtype)


def _norm(config: BackboneConfig) -> LayerNorm | AdaLayerNorm:
    if config.adanorm_num_embeddings is None:
        return LayerNorm(config.dim, eps=NORM_EPS)
    return AdaLayerNorm(config.adanorm_num_embeddings, config.dim)


class ConvNeXtBlock(nn.Module):
    """Depthwise conv7 → norm → Linear → GELU → Linear (→ ·gamma), plus the input. ``(B, dim, L)`` → same."""

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        dim = config.dim
        self.dwconv = nn.Conv1d(dim, dim, CONVNEXT_KERNEL, padding=CONVNEXT_KERNEL // 2, groups=dim)
        self.norm = _norm(config)
        self.pwconv1 = nn.Linear(dim, config.intermediate_dim)
        self.pwconv2 = nn.Linear(config.intermediate_dim, dim)
        scale = config.layer_scale
        self.gamma = nn.Parameter(torch.full((dim,), float(scale))) if scale > 0 else None

    def forward(self, x: torch.Tensor, bandwidth_id: int) -> torch.Tensor:
        h = self.norm(self.dwconv(x).transpose(1, 2), bandwidth_id)
        h = self.pwconv2(F.gelu(self.pwconv1(h)))
        if self.gamma is not None:
            h = h * self.gamma
        return x + h.transpose(1, 2)


class VocosBackbone(nn.Module):
    """Codebook vectors ``(B, input_channels, L)`` → channels-last hidden states ``(B, L, dim)``."""

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        dim = config.dim
        self.embed = nn.Conv1d(config.input_channels, dim, CONVNEXT_KERNEL, padding=CONVNEXT_KERNEL // 2)
        self.pos_net = nn.Sequential(ResnetBlock(dim), ResnetBlock(dim), AttnBlock(dim),
                                     ResnetBlock(dim), ResnetBlock(dim), _group_norm(dim))
        self.norm = _norm(config)
        self.convnext = nn.ModuleList(ConvNeXtBlock(config) for _ in range(config.num_layers))
        self.final_layer_norm = nn.LayerNorm(dim, eps=NORM_EPS)

    def forward(self, features: torch.Tensor, bandwidth_id: int = 0) -> torch.Tensor:
        x = self.pos_net(self.embed(features))  # pos_net comes before the first norm
        x = self.norm(x.transpose(1, 2), bandwidth_id).transpose(1, 2)
        for block in self.convnext:
            x = block(x, bandwidth_id)
        return self.final_layer_norm(x.transpose(1, 2))


# ------------------------------------------------------------------------------------------ head
class ISTFTHead(KeepFloat32, nn.Module):
    """Hidden states ``(B, L, dim)`` → log-magnitude and phase of ``n_fft/2+1`` bins → waveform ``(B, samples)``,
    in float32 whatever the model's dtype: the magnitudes are exponentials of its output, and the FFT has no
    half-precision CPU kernel (on GPU only for powers of two)."""

    def __init__(self, dim: int, config: ISTFTHeadConfig) -> None:
        super().__init__()
        self.config = config
        self.out = nn.Linear(dim, config.n_fft + 2)
        self.register_buffer("window", torch.hann_window(config.n_fft), persistent=False)  # periodic Hann

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.out(x.to(self.out.weight.dtype)).transpose(1, 2)
        log_magnitude, phase = x.chunk(2, dim=1)
        spec = torch.polar(log_magnitude.exp().clamp(max=MAX_MAGNITUDE), phase)  # (B, n_fft/2+1, L)
        window = self.window.to(spec.real.dtype)
        if self.config.padding == "center":
            return torch.istft(spec, self.config.n_fft, self.config.hop_length, self.config.n_fft, window,
                               center=True)
        return self._istft_same(spec, window)

    def _istft_same(self, spec: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
        """Overlap-add of windowed frames, trimmed like a "same"-padded conv: torch.istft only pads "center"."""
        n_fft, hop, trim = self.config.n_fft, self.config.hop_length, self.config.trim
        num_frames = spec.shape[-1]
        length = (num_frames - 1) * hop + n_fft

        def overlap_add(frames: torch.Tensor) -> torch.Tensor:  # (B, n_fft, L) -> (B, length - 2·trim)
            summed = F.fold(frames, output_size=(1, length), kernel_size=(1, n_fft), stride=(1, hop))
            return summed[:, 0, 0, trim:length - trim]

        frames = torch.fft.irfft(spec, n_fft, dim=1, norm="backward") * window[:, None]
        envelope = overlap_add(window.square()[None, :, None].expand(1, n_fft, num_frames))[0]
        if not bool((envelope > MIN_WINDOW_ENVELOPE).all()):
            raise InputError(f"the ISTFT window envelope vanishes (n_fft {n_fft}, hop {hop}): the frames do not "
                             "overlap enough to invert")
        return overlap_add(frames) / envelope


# ------------------------------------------------------------------------------------------ model
class WavTokenizer(PretrainedModel):
    """WavTokenizer: ``encode`` waveforms to codec ids, ``codes_to_features``, ``decode`` features to waveforms.

    Methods keep the original's shapes: ``encode`` returns features ``(B, 512, T)`` and codes ``(1, B, T)``;
    ``codes_to_features`` takes ``(K, L)`` (batch 1!) or ``(K, B, L)``; ``decode`` returns ``(B, samples)``.
    ``bandwidth_id`` (an int or a one-element LongTensor) picks the AdaLayerNorm row; the released models use 0.
    """

    config_class = WavTokenizerConfig
    model_type = "wavtokenizer"

    def __init__(self, config: WavTokenizerConfig) -> None:
        super().__init__(config)
        self.encoder = SEANetEncoder(config.encoder)
        self.quantizers = nn.ModuleList(VectorQuantizer(config.codebook_size, CODEBOOK_DIM)
                                        for _ in range(config.num_quantizers))
        self.backbone = VocosBackbone(config.backbone)
        self.head = ISTFTHead(config.backbone.dim, config.head)

    @property
    def sample_rate(self) -> int:
        """Hz of the audio the model reads and writes (``encode`` resamples other rates to it)."""
        return SAMPLE_RATE

    @torch.inference_mode()
    def encode(self, audio: torch.Tensor, bandwidth_id: int | torch.Tensor = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantise 24 kHz waveforms ``(B, N)`` (or ``(N,)``) with the first codebook.

        Returns ``(features (B, 512, T), codes (1, B, T) int64)`` with ``T = ceil(N / hop)``; the features are the
        codebook rows of the codes. ``bandwidth_id`` must index ``config.bandwidths`` (the original indexes that
        list with it, though it changes nothing here).
        """
        self._bandwidth_index(bandwidth_id, len(self.config.bandwidths), "config.bandwidths")
        codes = self.quantizers[0](self._encoder_frames(audio))[None]
        return self._lookup(codes), codes

    @torch.inference_mode()
    def codes_to_features(self, codes: torch.Tensor) -> torch.Tensor:
        """Sum over codebooks of the codebook rows of ``codes`` ``(K, L)`` (batch 1) or ``(K, B, L)``
        → ``(B, 512, L)``; row k of ``codes`` indexes codebook k."""
        if not isinstance(codes, torch.Tensor) or codes.ndim not in (2, 3):
            shape = tuple(codes.shape) if isinstance(codes, torch.Tensor) else type(codes).__name__
            raise InputError(f"codes must be a (K, L) or (K, B, L) tensor of codec ids, got {shape}; "
                             "a 2-D tensor is (codebooks, frames) of ONE item, so pass a batch as codes[None]")
        if codes.dtype.is_floating_point or codes.dtype.is_complex or codes.dtype == torch.bool:
            raise InputError(f"codes must be integer codec ids, got dtype {codes.dtype}")
        if codes.ndim == 2:
            codes = codes.unsqueeze(1)
        num_codebooks, size = codes.shape[0], self.config.codebook_size
        if not 1 <= num_codebooks <= self.config.num_quantizers:
            raise InputError(f"codes have {num_codebooks} codebooks (dim 0) but the model has "
                             f"{self.config.num_quantizers}; codes are (K, B, L)")
        if codes.numel() == 0:
            raise InputError(f"codes are empty (shape {tuple(codes.shape)}); pass at least one frame")
        low, high = int(codes.min()), int(codes.max())
        if low < 0 or high >= size:
            raise InputError(f"codec ids must lie in [0, {size}), got values in [{low}, {high}]")
        return self._lookup(codes.to(self.head.out.weight.device, torch.long))

    @torch.inference_mode()
    def decode(self, features: torch.Tensor, bandwidth_id: int | torch.Tensor = 0) -> torch.Tensor:
        """Waveforms ``(B, samples)`` at 24 kHz from codebook features ``(B, 512, L)``.

        ``samples = (L-1)·hop + n_fft - 2·((n_fft-hop)//2)`` (``L·hop`` for the released models) with "same"
        padding, ``(L-1)·hop`` with "center". Attention spans the whole sequence: decoding in chunks differs.
        """
        if not isinstance(features, torch.Tensor) or features.ndim != 3 or features.shape[1] != CODEBOOK_DIM:
            shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
            raise InputError(f"features must be (batch, {CODEBOOK_DIM}, frames), got {shape} "
                             "(codes_to_features or encode make them)")
        if features.shape[0] == 0 or features.shape[2] < self._min_frames:
            raise InputError(f"features have shape {tuple(features.shape)}; decoding needs at least "
                             f"{self._min_frames} frame(s) with {self.config.head.padding!r} ISTFT padding")
        rows = self.config.backbone.adanorm_num_embeddings
        index = self._bandwidth_index(bandwidth_id, rows, "the AdaLayerNorm tables") if rows is not None else 0
        return self.head(self.backbone(features.to(self.head.out.weight.device, compute_dtype(self)), index))

    @torch.inference_mode()
    def forward(self, audio: torch.Tensor, bandwidth_id: int | torch.Tensor = 0) -> torch.Tensor:
        """Copy-synthesis ``(B, N)`` → ``(B, samples)``, as the original's ``forward``: it quantises with the last
        of the codebooks that ``bandwidths[bandwidth_id]`` allows (each applied to the encoder output itself)."""
        bandwidth = self.config.bandwidths[self._bandwidth_index(bandwidth_id, len(self.config.bandwidths),
                                                                 "config.bandwidths")]
        bits_per_frame = math.log2(self.config.codebook_size) * BANDWIDTH_FRAME_RATE
        allowed = max(1, math.floor(bandwidth * 1000 / bits_per_frame)) if bandwidth > 0 else self.config.num_quantizers
        layer = min(allowed, self.config.num_quantizers) - 1
        codes = self.quantizers[layer](self._encoder_frames(audio))
        features = self.quantizers[layer].codebook[codes].transpose(1, 2)
        return self.decode(features, bandwidth_id)

    # -------------------------------------------------------------- helpers
    @property
    def _min_frames(self) -> int:
        """torch.istft(center=True) cannot invert a single frame."""
        return 2 if self.config.head.padding == "center" else 1

    def _encoder_frames(self, audio: torch.Tensor) -> torch.Tensor:
        """Validated waveforms ``(B, N)`` or ``(N,)`` → encoder frames ``(B, T, 512)``."""
        audio = check_waveform(audio, name="audio", sample_rate=SAMPLE_RATE)
        audio = audio.reshape(-1, audio.shape[-1]).to(self.head.out.weight.device, compute_dtype(self))
        return self.encoder(audio[:, None]).transpose(1, 2)

    def _lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """``(K, B, L)`` ids → ``(B, 512, L)``: the sum over k of codebook k's rows."""
        rows = torch.stack([F.embedding(ids, quantizer.codebook) for ids, quantizer in zip(codes, self.quantizers)])
        return rows.sum(dim=0).transpose(1, 2)

    @staticmethod
    def _bandwidth_index(bandwidth_id: int | torch.Tensor, size: int, what: str) -> int:
        """``bandwidth_id`` (int, or a one-element integer tensor: one row for the whole batch) as an int."""
        if isinstance(bandwidth_id, torch.Tensor):
            if bandwidth_id.numel() != 1 or bandwidth_id.dtype.is_floating_point:
                raise InputError(f"bandwidth_id must be an int or a one-element integer tensor such as "
                                 f"torch.tensor([0]) (one row for the whole batch), got {bandwidth_id!r}")
            bandwidth_id = int(bandwidth_id.item())
        if not isinstance(bandwidth_id, int) or isinstance(bandwidth_id, bool) or not 0 <= bandwidth_id < size:
            raise InputError(f"bandwidth_id must index {what} (0 ≤ id < {size}), got {bandwidth_id!r}")
        return bandwidth_id


# ------------------------------------------------------------------------------------------ releases
_HF_RELEASE = "https://huggingface.co/novateur/WavTokenizer/resolve/main/"
#: variant -> (file on novateur/WavTokenizer, its SHA-256). nicolvisser's hubconf downloads the same file from
#: github.com/nicolvisser/WavTokenizer/releases/download/v0.1/<name>_<sha256[:8]>.ckpt.
_RELEASED = {
    "small_600_24k_4096": ("WavTokenizer_small_600_24k_4096.ckpt",
                           "d44c40fbb83d2d42329ac098e252a31b5708fb7b3bf864d108dd3ed26911d004"),
    "small_320_24k_4096": ("WavTokenizer_small_320_24k_4096.ckpt",
                           "721a204fcfadf720b1136660b466c53d482c63fdfcaa0ac2a824bf2a006217b6"),
}

WEIGHTS = tuple(
    Weights(
        name=f"wavtokenizer-{variant.replace('_', '-')}",
        entry_point="wavtokenizer",
        kwargs={"variant": variant},
        converter="wavtokenizer",
        source_files=(SourceFile(_HF_RELEASE + filename, sha256),),
        license="MIT",
        paper="https://arxiv.org/abs/2408.16532",
        description=(f"WavTokenizer small, 1 x {VARIANTS[variant].codebook_size} codebook, "
                     f"{VARIANTS[variant].frame_rate:g} Hz codec tokens of 24 kHz speech (LibriTTS)"),
        sample_rate=SAMPLE_RATE,
        frame_rate=VARIANTS[variant].frame_rate,
        converter_options={"variant": variant},
    )
    for variant, (filename, sha256) in _RELEASED.items()
)


@torch.inference_mode()
def encode(model: WavTokenizer, wav: torch.Tensor, sr: int) -> torch.Tensor:
    """nicolvisser's hubconf ``encode``: resample ``wav`` ``(C, N)`` from ``sr`` to 24 kHz (torchaudio's
    ``functional.resample``, exactly), then codes ``(1, C, T)`` int64 on the model's device, ``bandwidth_id`` 0.

    No down-mix, normalisation or padding: the C channels are a batch of C waveforms."""
    wav = resample(check_waveform(wav, name="wav"), sr, SAMPLE_RATE)
    _, codes = model.encode(wav, bandwidth_id=0)
    return codes


@torch.inference_mode()
def decode(model: WavTokenizer, codes: torch.Tensor) -> tuple[torch.Tensor, int]:
    """nicolvisser's hubconf ``decode``: codes ``(K, B, L)`` (or ``(K, L)`` for one item) → ``(wav (B, samples),
    24000)``, with ``bandwidth_id`` 0."""
    features = model.codes_to_features(torch.as_tensor(codes))
    return model.decode(features, bandwidth_id=0), SAMPLE_RATE
