"""WavLM (Chen et al. 2022, https://arxiv.org/abs/2110.13900): the self-supervised speech encoder whose layer-11
features DP-SLM quantises, as ``nicolvisser/WavLM-codebooks`` (a copy of Microsoft's ``unilm/wavlm`` code) runs it.

Architecture (eval mode): a strided conv stack turns 16 kHz audio into 50 Hz frames (each sees 400 samples, hop
320); LayerNorm + Linear project them to ``embed_dim``; a grouped positional conv is added; then ``num_layers``
transformer blocks whose self-attention adds a relative position bias — one table, owned by the encoder (block 0
in the original), shared by every block and re-gated per block and query by the block's own input.

The conv stack and transformer are the backbone it shares with wav2vec 2.0 and HuBERT (:mod:`zoo.nn.wav2vec2`).
Beyond the original: ragged batches (``lengths``), with every item's features equal to its unbatched features
in both extractor modes; attention through ``scaled_dot_product_attention``, in blocks of query rows so the
``(heads, T, T)`` bias is never held at once; a LayerNorm conv stack run in 10 s segments; and
:func:`extract_features` cuts long audio into chunks, so memory stays bounded for any length.

Example::

    >>> import torch
    >>> config = WavLMConfig(conv_layers=((32, 10, 5),) + ((32, 3, 2),) * 4 + ((32, 2, 2),) * 2,
    ...                      embed_dim=64, num_layers=2, num_heads=4, ffn_dim=128, pos_conv_kernel=16,
    ...                      pos_conv_groups=4)
    >>> model = WavLM(config).eval()
    >>> extract_features(model, torch.randn(1, 16000), 16000, layer=1).shape   # 1 s -> 50 frames
    torch.Size([50, 64])
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..audio import check_waveform, resample
from ..errors import AudioError, ConfigError, InputError
from ..modeling import PretrainedModel
from ..nn.precision import compute_dtype
from ..nn.ragged import Lengths, zero_beyond
from ..nn.wav2vec2 import EXTRACTOR_MODES, Chunk, Wav2Vec2Backbone, encode_chunks
from ..registry import SourceFile, Weights

#: The sample rate every released WavLM reads.
SAMPLE_RATE = 16_000
#: The original helper's framing of the real conv stack: a frame sees 400 samples (25 ms) every 320 (20 ms).
RECEPTIVE_FIELD = 400
HOP_LENGTH = 320
#: Zeros the helper pads on BOTH sides, so frame t is centred on sample 320·t + 160 and T = N // 320.
EDGE_PADDING = (RECEPTIVE_FIELD - HOP_LENGTH) // 2
#: Shortest input (samples at 16 kHz) that gives one frame once padded.
MIN_SAMPLES = RECEPTIVE_FIELD - 2 * EDGE_PADDING
#: Default chunk length of :func:`extract_features` (as textlesslib's 100 s): the cost of attention grows with
#: the square of the length, so longer audio is encoded chunk by chunk.
CHUNK_SECONDS = 100.0


@dataclass(frozen=True)
class WavLMConfig:
    """What a WavLM is at inference. Defaults are WavLM Large. Names in the original ``cfg`` / transformers'
    ``WavLMConfig`` are given for each field; dropouts, masking and the like are training-only."""

    # (channels, kernel, stride) per conv block — cfg conv_feature_layers / HF conv_dim, conv_kernel, conv_stride
    conv_layers: tuple[tuple[int, int, int], ...] = ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2
    extractor_mode: str = "layer_norm"      # cfg extractor_mode / HF feat_extract_norm ("layer" | "group")
    conv_bias: bool = False                 # cfg conv_bias / HF conv_bias
    project_features: bool = True           # cfg: post_extract_proj exists iff conv channels != embed_dim; HF: always
    embed_dim: int = 1024                   # cfg encoder_embed_dim / HF hidden_size
    num_layers: int = 24                    # cfg encoder_layers / HF num_hidden_layers
    num_heads: int = 16                     # cfg encoder_attention_heads / HF num_attention_heads
    ffn_dim: int = 4096                     # cfg encoder_ffn_embed_dim / HF intermediate_size
    layer_norm_first: bool = True           # pre-LN blocks (Large) or post-LN (Base) / HF do_stable_layer_norm
    pos_conv_kernel: int = 128              # cfg conv_pos / HF num_conv_pos_embeddings
    pos_conv_groups: int = 16               # cfg conv_pos_groups / HF num_conv_pos_embedding_groups
    relative_position_bias: bool = True     # cfg relative_position_embedding / HF: always
    num_buckets: int = 320                  # cfg num_buckets / HF num_buckets
    max_distance: int = 800                 # cfg max_distance / HF max_bucket_distance
    gated_position_bias: bool = True        # cfg gru_rel_pos / HF: always

    def __post_init__(self) -> None:
        if self.extractor_mode not in EXTRACTOR_MODES:
            raise ConfigError(f"extractor_mode must be one of {EXTRACTOR_MODES}, got {self.extractor_mode!r}")
        if self.embed_dim % self.num_heads:
            raise ConfigError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")


# ------------------------------------------------------------------------------------------ model
class WavLM(Wav2Vec2Backbone, PretrainedModel):
    """WavLM: waveforms ``(B, N)`` at 16 kHz → features ``(B, T, embed_dim)`` at 50 Hz (for the real conv stack,
    ``T = (N − 400) // 320 + 1``); ``model(waveforms, lengths, output_layer=L)`` as
    :meth:`~zoo.nn.wav2vec2.Wav2Vec2Backbone.forward`."""

    config_class = WavLMConfig
    model_type = "wavlm"

    def __init__(self, config: WavLMConfig) -> None:
        super().__init__(config)
        self.build_backbone(
            conv_layers=config.conv_layers, extractor_mode=config.extractor_mode, conv_bias=config.conv_bias,
            project_features=config.project_features, embed_dim=config.embed_dim, num_layers=config.num_layers,
            num_heads=config.num_heads, ffn_dim=config.ffn_dim, layer_norm_first=config.layer_norm_first,
            pos_conv_kernel=config.pos_conv_kernel, pos_conv_groups=config.pos_conv_groups,
            relative_position_bias=((config.num_buckets, config.max_distance) if config.relative_position_bias
                                    else None),
            gated=config.gated_position_bias)

    @property
    def sample_rate(self) -> int:
        """Hz of the audio the model reads (``extract_features`` resamples other rates to it)."""
        return SAMPLE_RATE


# ------------------------------------------------------------------------------------------ the original's helper
def _plan_chunks(model: WavLM, lengths: Sequence[int], max_frames: int | None) -> list[Chunk]:
    """Cut each edge-padded item into the fewest chunks of at most ``max_frames`` frames, of equal length (±1
    frame) and on frame boundaries: chunk frames are the item's frames, each computed from the same samples, and
    an item that fits in one chunk is passed whole."""
    hop, field = model.hop_length, model.receptive_field
    chunks = []
    for item, length in enumerate(lengths):
        frames = model.num_frames(length)
        parts = 1 if max_frames is None else -(-frames // max_frames)
        bounds = [frames * i // parts for i in range(parts + 1)]
        for first, last in itertools.pairwise(bounds):
            stop = length if last == frames else (last - 1) * hop + field
            chunks.append(Chunk(item, first, last, first * hop, stop))
    return chunks


def _check_lengths(lengths: torch.Tensor | Sequence[int], wav: torch.Tensor, min_samples: int) -> list[int]:
    values = torch.as_tensor(lengths).tolist()
    if not isinstance(values, list) or len(values) != wav.shape[0]:
        raise InputError(f"lengths must hold one sample count per row of wav ({wav.shape[0]}), got {lengths!r}")
    if any(not isinstance(n, int) or not min_samples <= n <= wav.shape[1] for n in values):
        raise InputError(f"lengths must be whole numbers between {min_samples} (one frame) and the padded length "
                         f"{wav.shape[1]}; got {values}")
    return values


@torch.inference_mode()
def extract_features(model: WavLM, wav: torch.Tensor, sr: int, layer: int | None = None, *,
                     lengths: Lengths | torch.Tensor = None,
                     chunk_seconds: float | None = CHUNK_SECONDS, progress: bool = False,
                     ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The original ``extract_features(model, wav, sr, layer=None)`` of ``hubconf.wavlm_large``, batched.

    ``wav`` ``(1, N)`` or ``(B, N)`` at ``sr`` Hz is resampled to 16 kHz (torchaudio's resampler), padded with
    40 zeros on both sides and encoded; ``layer`` is 1-based (see :meth:`WavLM.forward`; DP-SLM uses 11).
    Returns ``features.squeeze(0)``: ``(T, D)`` for one row, ``(B, T, D)`` for more, with ``T = N // 320`` at
    16 kHz.

    ``lengths`` ``(B,)`` (samples at ``sr``) marks a ragged batch; then the call returns ``(features,
    frame_lengths)``, frames past an item's end are zeros, and each item's frames equal its unbatched ones.

    Audio longer than ``chunk_seconds`` (default :data:`CHUNK_SECONDS`; None: never chunk) is encoded in equal
    chunks cut at frame boundaries, at most ``chunk_seconds`` long, whose frames are concatenated; up to B chunks
    run as one batch. Each frame is computed from the same samples, so a LayerNorm conv stack (Large) gives the
    same conv features (a GroupNorm one, Base, normalises each chunk over itself); the transformer sees only its
    chunk, so frames near a cut differ from a single pass (self-attention is global). Audio up to one chunk
    gives exactly the unchunked result.

    Example: ``features = extract_features(model, wav, 16000, layer=11)`` (see the module docstring).
    """
    if chunk_seconds is not None and chunk_seconds * SAMPLE_RATE < model.receptive_field:
        raise InputError(f"chunk_seconds={chunk_seconds} is shorter than one frame "
                         f"({model.receptive_field / SAMPLE_RATE} s); pass a longer chunk or None")
    wav, padded_lengths = _model_input(model, wav, sr, lengths)
    max_frames = None if chunk_seconds is None else int(chunk_seconds * SAMPLE_RATE) // model.hop_length
    features = encode_chunks(model, wav, _plan_chunks(model, padded_lengths, max_frames), layer,
                             num_frames=[model.num_frames(n) for n in padded_lengths], progress=progress,
                             desc="WavLM chunks").squeeze(0)
    if lengths is None:
        return features
    return features, torch.tensor([model.num_frames(n) for n in padded_lengths], device=features.device)


def _model_input(model: WavLM, wav: torch.Tensor, sr: int, lengths: Lengths | torch.Tensor
                 ) -> tuple[torch.Tensor, list[int]]:
    """Validate ``wav``, resample it to 16 kHz, zero what follows each item (as unbatched, before and after
    resampling), pad 40 zeros on both sides and move it to the model: the waveforms and their padded lengths."""
    if isinstance(wav, torch.Tensor) and wav.ndim != 2:
        raise AudioError(f"wav must be 2-D (1, samples) or (batch, samples); got shape {tuple(wav.shape)}. "
                         "Add a batch axis with wav[None] or mix channels down with zoo.audio.to_mono")
    min_samples = (MIN_SAMPLES - 1) * sr // SAMPLE_RATE + 1  # resampled to at least MIN_SAMPLES
    check_waveform(wav, min_samples=min_samples, sample_rate=sr, name="wav")
    if lengths is None:
        wav = resample(wav, sr, SAMPLE_RATE)
        sample_lengths = [wav.shape[1]] * wav.shape[0]
    else:
        sample_lengths = _check_lengths(lengths, wav, min_samples)
        wav = resample(zero_beyond(wav, sample_lengths), sr, SAMPLE_RATE)
        gcd = math.gcd(sr, SAMPLE_RATE)
        sample_lengths = [math.ceil(SAMPLE_RATE // gcd * n / (sr // gcd)) for n in sample_lengths]  # as resample
        wav = zero_beyond(wav, sample_lengths)
    parameter = next(model.parameters())
    wav = F.pad(wav, (EDGE_PADDING, EDGE_PADDING)).to(device=parameter.device, dtype=compute_dtype(model))
    return wav, [n + 2 * EDGE_PADDING for n in sample_lengths]


# ------------------------------------------------------------------------------------------ released weights
_RELEASE = "https://github.com/nicolvisser/WavLM-codebooks/releases/download/v0.1.0/"

WEIGHTS = (
    Weights(
        name="wavlm-large",
        entry_point="wavlm_large",
        kwargs={},
        converter="wavlm",
        source_files=(SourceFile(f"{_RELEASE}wavlm-large-6fb4b3c3.pt", "6fb4b3c3"),),
        license="MIT",
        paper="https://arxiv.org/abs/2110.13900",
        description="WavLM Large (Microsoft, 94k h), 24 blocks, 1024-dim features; DP-SLM reads layer 11",
        sample_rate=SAMPLE_RATE,
        frame_rate=SAMPLE_RATE / HOP_LENGTH,
    ),
)
