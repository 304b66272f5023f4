"""SpeechTokenizer (Zhang et al., 2023): a SEANet codec whose residual VQ holds semantic tokens in its first
codebook (distilled from HuBERT) and acoustic detail in the others. 16 kHz audio, 50 codes/s per codebook.

Reproduces ``ZhangXInFD/SpeechTokenizer`` @ 30c96fb (PyPI ``speechtokenizer`` 1.0.1): the same ``encode`` /
``decode`` / ``forward`` / ``forward_feature`` semantics, including the original's index conventions (``encode``'s
``n_q`` is an END index and ``st`` restarts the residual at quantizer ``st``; ``decode`` reads row i with
quantizer ``st + i``). Unlike the original, codebooks are plain buffers that nothing updates: there is no EMA or
k-means code, so neither ``model.train()`` nor any call can change them. Weight norm is folded at conversion.

Example::

    >>> import torch
    >>> model = SpeechTokenizer(SpeechTokenizerConfig(n_filters=2, dimension=8, semantic_dimension=6,
    ...                                               codebook_size=16, n_q=3))
    >>> wav = torch.randn(2, 1, 1000)                      # (B, 1, N) at model.sample_rate
    >>> codes = model.encode(wav)                          # (n_q, B, ceil(N / 320)) int64
    >>> codes.shape, model.decode(codes).shape             # decode gives 320 samples per frame
    (torch.Size([3, 2, 4]), torch.Size([2, 1, 1280]))
    >>> semantic_tokens = codes[0]                         # (B, T): the HuBERT-distilled codebook
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..audio import check_waveform
from ..errors import AudioError, InputError
from ..modeling import PretrainedModel
from ..nn.precision import KeepFloat32, compute_dtype
from ..nn.quantization import nearest_code
from ..nn.ragged import Lengths, length_buckets, zero_beyond
from ..nn.seanet import SEANetConfig, SEANetDecoder, SEANetEncoder
from ..registry import SourceFile, Weights


#: A ragged batch runs as sub-batches whose longest item is at most this much longer than their shortest (at most
#: twice as long), so that a 1 s file never pads to a minute.
MAX_PADDING = 1.0
#: Whether ragged batches run as batches on CPUs. Measured on this project's idle 2-core CPU (AVX2, float32,
#: ``bench_speechtokenizer``), encode + decode of 8 files batched vs one by one: 0.6-1.4 s files 0.93x (buckets of at
#: most 8 s padded), 6-14 s files 0.64x (buckets within MAX_PADDING): a batch never paid there (the convolutions of
#: one file already keep both cores busy, and a batch's activations outgrow the caches), so on CPUs each item runs
#: alone (1.00x) and the call only saves the caller's loop. GPUs run the buckets as batches.
BATCH_ON_CPU = False


@dataclass(frozen=True)
class SpeechTokenizerConfig:
    """The model keys of the original ``config.json`` (the HiFi-GAN leftovers there are never read)."""

    n_filters: int = 64
    strides: tuple[int, ...] = (8, 5, 4, 2)   # decoder order; the encoder runs them reversed
    dimension: int = 1024                     # latent and codebook vectors
    semantic_dimension: int = 768             # HuBERT features the first quantizer is distilled towards
    bidirectional: bool = True                # encoder LSTM (the decoder's is always forward-only)
    dilation_base: int = 2
    residual_kernel_size: int = 3
    n_residual_layers: int = 1
    lstm_layers: int = 2
    activation: str = "ELU"                   # "ELU" or "Snake"
    sample_rate: int = 16000
    codebook_size: int = 1024
    n_q: int = 8                              # quantizers in the residual VQ

    def __post_init__(self) -> None:
        self.seanet(bidirectional=self.bidirectional)  # refuses an unknown activation, a BiLSTM without LSTM

    def seanet(self, *, bidirectional: bool) -> SEANetConfig:
        return SEANetConfig(dimension=self.dimension, n_filters=self.n_filters, ratios=self.strides,
                            n_residual_layers=self.n_residual_layers, residual_kernel_size=self.residual_kernel_size,
                            dilation_base=self.dilation_base, activation=self.activation,
                            lstm_layers=self.lstm_layers, bidirectional=bidirectional)


class ResidualVectorQuantizer(KeepFloat32, nn.Module):
    """``n_q`` frozen Euclidean codebooks ``(n_q, K, D)`` applied one after another to the remaining residual; the
    codebooks and the residual chain stay float32 in a half-precision model (code vectors come out float32)."""

    def __init__(self, n_q: int, codebook_size: int, dimension: int) -> None:
        super().__init__()
        self.register_buffer("codebooks", torch.zeros(n_q, codebook_size, dimension))

    def nearest(self, layer: int, residual: torch.Tensor) -> torch.Tensor:
        """Index ``(B, T)`` of the nearest code of quantizer ``layer`` to each frame of ``residual`` ``(B, T, D)``."""
        return nearest_code(residual, self.codebooks[layer])  # the original's rounding, so its near-tie choices

    def lookup(self, layer: int, codes: torch.Tensor) -> torch.Tensor:
        """The code vectors ``(B, D, T)`` of quantizer ``layer`` for ``codes`` ``(B, T)``."""
        return F.embedding(codes, self.codebooks[layer]).transpose(1, 2)

    def encode(self, latent: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Codes ``(stop - start, B, T)`` of quantizers ``start..stop-1``; the residual chain starts from the
        latent ``(B, D, T)`` itself at quantizer ``start``, as in the original."""
        return torch.stack([codes for codes, _, _ in self.quantize(latent, start, stop)])

    def quantize(self, latent: torch.Tensor, start: int, stop: int, *, straight_through: bool = False,
                 ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per quantizer ``start..stop-1``: its codes ``(B, T)``, code vectors ``(B, D, T)`` and the residual
        ``(B, D, T)`` it quantized. With ``straight_through`` the code vectors pass the residual's gradient on
        (the original's training mode)."""
        residual, out = latent.to(self.codebooks.dtype), []
        for layer in range(start, stop):
            codes = self.nearest(layer, residual.transpose(1, 2))
            quantized = self.lookup(layer, codes)
            if straight_through:
                quantized = residual + (quantized - residual).detach()
            out.append((codes, quantized, residual))
            residual = residual - quantized
        return out

    def decode(self, codes: torch.Tensor, start: int = 0) -> torch.Tensor:
        """The sum ``(B, D, T)`` of the code vectors of rows ``codes[i]`` ``(m, B, T)`` under quantizer
        ``start + i``."""
        return sum((self.lookup(start + i, row) for i, row in enumerate(codes)),
                   torch.zeros((), dtype=self.codebooks.dtype, device=codes.device))


def _buckets(lengths: list[int], device: torch.device) -> list[tuple[torch.Tensor, int, list[int]]]:
    """A ragged batch as sub-batches of similar lengths (:func:`~zoo.nn.ragged.length_buckets`; on CPUs one item
    each unless :data:`BATCH_ON_CPU`): per bucket, its rows (an index tensor), its longest length (the width to cut
    the batch to) and its items' lengths. A padded sample costs what a valid one does."""
    if device.type == "cpu" and not BATCH_ON_CPU:
        buckets = [[i] for i in range(len(lengths))]
    else:
        buckets = length_buckets(lengths, MAX_PADDING)
    return [(torch.tensor(rows, device=device), max(lengths[i] for i in rows), [lengths[i] for i in rows])
            for rows in buckets]


class SpeechTokenizer(PretrainedModel):
    """SEANet encoder (BiLSTM) -> residual VQ -> SEANet decoder, plus the semantic projection ``transform``.

    Audio is ``(B, 1, N)`` float at ``sample_rate``; codes are int64 ``(n_q, B, T)`` with
    ``T = ceil(N / downsample_rate)``. Batches of different lengths: zero-pad the audio and pass ``lengths``
    (valid samples per item) to :meth:`encode`; it then also returns the valid FRAME counts per item, which
    :meth:`decode` takes as its ``lengths``. The valid part of each item equals its one-by-one result.
    """

    config_class = SpeechTokenizerConfig
    model_type = "speechtokenizer"

    def __init__(self, config: SpeechTokenizerConfig) -> None:
        super().__init__(config)
        self.encoder = SEANetEncoder(config.seanet(bidirectional=config.bidirectional))
        self.quantizer = ResidualVectorQuantizer(config.n_q, config.codebook_size, config.dimension)
        self.transform = (nn.Linear(config.dimension, config.semantic_dimension)
                          if config.dimension != config.semantic_dimension else nn.Identity())
        self.decoder = SEANetDecoder(config.seanet(bidirectional=False))

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def n_q(self) -> int:
        return self.config.n_q

    @property
    def downsample_rate(self) -> int:
        """Audio samples per code frame (320 for the released model)."""
        return self.encoder.config.hop_length

    # -------------------------------------------------------------- original API
    def encode(self, wav: torch.Tensor, n_q: int | None = None, st: int | None = None,
               lengths: Lengths | torch.Tensor = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Codes ``(n_q - st, B, T)`` int64 of quantizers ``st .. n_q - 1`` for audio ``wav`` ``(B, 1, N)``.

        As in the original, ``n_q`` is the END index (default: all quantizers) and ``st`` (default 0) restarts the
        residual chain at quantizer ``st`` from the encoder output, so ``encode(x, st=i) != encode(x)[i:]``, while
        ``encode(x, n_q=k) == encode(x)[:k]``.

        ``lengths`` ``(B,)``: valid samples of each item of a zero-padded batch. Then the return value is
        ``(codes, frame_lengths)`` where ``frame_lengths[b] = ceil(lengths[b] / downsample_rate)`` valid frames;
        codes past them are 0 (padding, not tokens).
        """
        st = 0 if st is None else st
        n_q = n_q or self.n_q  # the original also reads n_q=0 as "all"
        if not 0 <= st < n_q <= self.n_q:
            raise InputError(f"encode(n_q={n_q}, st={st}) selects quantizers st..n_q-1 (n_q is an end index); "
                             f"this model has {self.n_q}, so 0 <= st < n_q <= {self.n_q} is needed")
        wav, sample_lengths = self._check_audio(wav, lengths)
        if sample_lengths is None:
            return self.quantizer.encode(self.encoder(wav), st, n_q)
        frames = self.encoder.output_lengths(sample_lengths)
        codes = torch.zeros((n_q - st, wav.shape[0], -(-wav.shape[-1] // self.downsample_rate)), dtype=torch.long,
                            device=wav.device)
        for rows, width, item_lengths in _buckets(sample_lengths, wav.device):
            latent = self.encoder(wav[rows, :, :width], item_lengths)
            codes[:, rows, : latent.shape[-1]] = self.quantizer.encode(latent, st, n_q)
        frame_lengths = torch.tensor(frames, device=codes.device)
        return zero_beyond(codes, frame_lengths, batch_dim=1), frame_lengths

    def decode(self, codes: torch.Tensor, st: int = 0,
               lengths: Lengths | torch.Tensor = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Audio ``(B, 1, downsample_rate * T)`` from codes ``(m, B, T)``, row i read by quantizer ``st + i``:
        ``decode(codes[i:j + 1], st=i)`` is the audio of quantizers i..j alone (0-based, inclusive).

        ``lengths`` ``(B,)``: valid frames per item (as :meth:`encode` returns them). Then the return value is
        ``(wav, sample_lengths)``, with the audio past ``sample_lengths[b] = downsample_rate * lengths[b]`` zeroed.
        """
        self._check_codes(codes, st)
        frame_lengths = self._check_lengths(lengths, codes.shape[1], codes.shape[2], "frames")
        codes = codes.to(self.quantizer.codebooks.device)
        dtype = compute_dtype(self)
        if frame_lengths is None:
            return self.decoder(self.quantizer.decode(codes, st).to(dtype))
        wav = torch.zeros((codes.shape[1], 1, codes.shape[2] * self.downsample_rate), dtype=dtype,
                          device=codes.device)
        for rows, width, item_lengths in _buckets(frame_lengths, codes.device):
            decoded = self.decoder(self.quantizer.decode(codes[:, rows, :width], st).to(dtype), item_lengths)
            wav[rows, :, : decoded.shape[-1]] = decoded
        sample_lengths = torch.tensor(frame_lengths, device=wav.device) * self.downsample_rate
        return zero_beyond(wav, sample_lengths), sample_lengths

    def forward(self, wav: torch.Tensor, n_q: int | None = None,
                layers: Sequence[int] = (0,)) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(wav_out (B, 1, N'), commit_loss (), feature (B, T, semantic_dimension))`` with the first ``n_q``
        quantizers; ``feature`` is ``transform`` of the code vectors of the smallest index in ``layers`` — the
        output distilled towards HuBERT. In training mode the quantizer passes gradients straight through to the
        encoder and ``commit_loss`` is the mean over quantizers of MSE(code vectors, residual); in eval mode it is
        0. The codebooks never change.
        """
        n_q = n_q or self.n_q
        wav, _ = self._check_audio(wav, None)
        first = min(self._check_layers(layers, n_q))
        steps = self.quantizer.quantize(self.encoder(wav), 0, n_q, straight_through=self.training)
        dtype = compute_dtype(self)
        quantized = sum(q for _, q, _ in steps).to(dtype)
        if self.training:
            commit_loss = torch.stack([F.mse_loss(q.detach(), r) for _, q, r in steps]).mean()
        else:
            commit_loss = wav.new_zeros(())
        feature = self.transform(steps[first][1].transpose(1, 2).to(dtype))
        return self.decoder(quantized), commit_loss, feature

    def forward_feature(self, wav: torch.Tensor, layers: Sequence[int] | None = None) -> list[torch.Tensor]:
        """The code vectors ``(B, D, T)`` of each quantizer in ``layers`` (default: all), in ascending order."""
        wav, _ = self._check_audio(wav, None)
        kept = self._check_layers(layers or range(self.n_q), self.n_q)
        steps = self.quantizer.quantize(self.encoder(wav), 0, self.n_q, straight_through=self.training)
        return [q for layer, (_, q, _) in enumerate(steps) if layer in kept]

    # -------------------------------------------------------------- checks
    def _check_audio(self, wav: torch.Tensor, lengths: Lengths | torch.Tensor
                     ) -> tuple[torch.Tensor, list[int] | None]:
        if not isinstance(wav, torch.Tensor) or wav.ndim != 3 or wav.shape[1] != 1:
            shape = tuple(wav.shape) if isinstance(wav, torch.Tensor) else type(wav).__name__
            raise AudioError(f"SpeechTokenizer takes mono audio shaped (batch, 1, samples), got {shape}. "
                             "Add axes with wav[None, None] / wav[:, None]; keep one channel of multi-channel "
                             "audio (the original keeps channel 0: wav[:, :1]).")
        check_waveform(wav[:, 0], name="wav", sample_rate=self.sample_rate)
        wav = wav.to(device=self.quantizer.codebooks.device, dtype=compute_dtype(self))
        return wav, self._check_lengths(lengths, wav.shape[0], wav.shape[-1], "samples")

    @staticmethod
    def _check_lengths(lengths: Lengths | torch.Tensor, batch: int, longest: int, unit: str) -> list[int] | None:
        if lengths is None:
            return None
        lengths = torch.as_tensor(lengths).tolist()
        if not isinstance(lengths, list) or len(lengths) != batch or not all(isinstance(n, int) for n in lengths):
            raise InputError(f"lengths must be {batch} integers (valid {unit} per item), got {lengths}")
        if not all(1 <= n <= longest for n in lengths):
            raise InputError(f"lengths {lengths} must lie in 1..{longest} (valid {unit} per item of the batch)")
        return lengths

    def _check_codes(self, codes: torch.Tensor, st: int) -> None:
        if not isinstance(codes, torch.Tensor) or codes.ndim != 3 or codes.is_floating_point() or codes.is_complex():
            shape = tuple(codes.shape) if isinstance(codes, torch.Tensor) else type(codes).__name__
            raise InputError(f"codes must be an integer tensor (n_q, batch, frames), got {shape}"
                             + (f" of {codes.dtype}" if isinstance(codes, torch.Tensor) else "")
                             + "; a single item's (n_q, frames) codes become (n_q, 1, frames) with codes[:, None]")
        if codes.shape[0] == 0 or codes.shape[2] == 0:
            raise InputError(f"codes {tuple(codes.shape)} are empty: need at least one quantizer row and one frame")
        if st < 0 or st + codes.shape[0] > self.n_q:
            raise InputError(f"decode(st={st}) of {codes.shape[0]} code rows needs quantizers {st}.."
                             f"{st + codes.shape[0] - 1}, but this model has quantizers 0..{self.n_q - 1}")
        low, high = int(codes.min()), int(codes.max())
        if low < 0 or high >= self.config.codebook_size:
            raise InputError(f"codes range over {low}..{high}; ids must lie in 0..{self.config.codebook_size - 1} "
                             f"(codebook size {self.config.codebook_size})")

    @staticmethod
    def _check_layers(layers: Sequence[int], n_q: int) -> set[int]:
        kept = set(layers)
        if not kept or min(kept) < 0 or max(kept) >= n_q:
            raise InputError(f"layers {list(layers)} must be quantizer indices in 0..{n_q - 1}")
        return kept


def d_axis_distill_loss(feature: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The released model's semantic distillation loss: ``-mean(log sigmoid(cos))`` where ``cos`` is the cosine
    similarity of ``feature`` ``(B, T, S)`` (the ``forward`` feature) and HuBERT ``target`` ``(B, T', S)`` along
    TIME, one value per feature dimension, after cutting both to the shorter length."""
    frames = min(feature.shape[1], target.shape[1])
    cos = F.cosine_similarity(feature[:, :frames], target[:, :frames], dim=1)
    return -torch.log(torch.sigmoid(cos)).mean()  # not F.logsigmoid: the original's rounding, as the trainer needs


# ------------------------------------------------------------------------------------------ releases
_HF = "https://huggingface.co/fnlp/SpeechTokenizer/resolve/793c3ac97eeb36463bdbb5e1d5e5e9a6b16cc656/"

WEIGHTS = (
    Weights(
        name="speechtokenizer_hubert_avg",
        entry_point="speechtokenizer",
        kwargs={"variant": "speechtokenizer_hubert_avg"},
        converter="speechtokenizer",
        source_files=(
            # No SHA-256 of this 906-byte git (not LFS) file is on record: it comes from the pinned commit, and the
            # converter checks its model keys against the checkpoint's tensor shapes.
            SourceFile(_HF + "speechtokenizer_hubert_avg/config.json", None),
            SourceFile(_HF + "speechtokenizer_hubert_avg/SpeechTokenizer.pt",
                       "d04593b6c9a4b475f91ca481141a6ef5b23e6ac112f347dd2b2717f193c1c728"),
        ),
        license="Apache-2.0",
        paper="https://arxiv.org/abs/2308.16692",
        description="SpeechTokenizer trained on LibriSpeech: 8 RVQ codebooks of 1024 (4 kbps); codebook 0 is "
                    "distilled from the average of all HuBERT-base layers",
        sample_rate=16000,
        frame_rate=50.0,
    ),
)
