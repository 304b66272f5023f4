"""The official SpeechTokenizer trainer (``ZhangXInFD/SpeechTokenizer`` @ 30c96fb, ``speechtokenizer/trainer/``),
on the zoo's trainer foundation: same data, discriminators, losses and weights, step order, optimisers, cosine
schedule (with its off-by-one), RVQ EMA codebooks, and checkpoints in the original's layout both ways.

What the original does and this does too:

* data — ``audio<TAB>teacher-feature`` lines; audio averaged over channels; a random ``segment_size`` crop (the
  feature rows cut at ``min(start // hop, T - segment // hop)``) or zero padding at the end; the teacher features
  zero-padded to the batch's longest;
* one step — generator forward (EMA codebook update), discriminator step on ``x_hat.detach()``, generator step with
  the UPDATED discriminators: ``loss_feature + loss_adversarial + loss_mel + λ_q loss_q + λ_recon loss_recon +
  λ_distill loss_distill`` (:class:`SpeechTokenizerTrainer`);
* ``Adam`` (or ``AdamW`` with two groups when ``wd > 0``) for each side; ``CosineAnnealingLR(T_max = epochs ·
  len(files) // batch_size)`` stepped once before the first batch, so step ``s`` runs at the cosine of ``s + 1``;
* ``--resume`` of ``SpeechTokenizerTrainer_XXXXXXXX``: weights, optimiser and scheduler states, step counter = the
  file's number + 1, epochs counted from 0 again — and, unlike the original (which builds a lazy ``map()`` and
  never runs it), the discriminators' weights.

Where it deliberately differs: the teacher feature must fit its audio and every file must be at the configured
sample rate (checked before training; ``resample=True`` resamples as the original does); random crops are drawn
from ``(seed, epoch, index)`` instead of Python's unseeded global ``random``; with several processes the EMA
statistics of the codebooks are summed over ranks (the original under accelerate keeps rank 0's), so N processes
with batch B train as one process with batch N·B; the learning-rate schedule advances once per process per step
as accelerate's does. The zoo's own checkpoints also hold the data position and every RNG state, so a resumed run
continues exactly.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm
from torch.nn.utils.rnn import pad_sequence

from ..audio import load as load_audio
from ..audio import resample
from ..errors import ConfigError, ConversionError, InputError, WeightsError
from ..formats import discriminators as disc_format
from ..formats import load_original, read_json
from ..formats import speechtokenizer as st_format
from ..models.hubert import Hubert
from ..models.speechtokenizer import (
    ResidualVectorQuantizer,
    SpeechTokenizer,
    SpeechTokenizerConfig,
    d_axis_distill_loss,
)
from ..nn.discriminators import (
    MultiPeriodDiscriminator,
    MultiScaleDiscriminator,
    MultiScaleSTFTDiscriminator,
)
from ..nn.quantization import nearest_code
from ..nn.seanet import SConv1d, SConvTranspose1d
from . import checkpoint
from .distributed import ProcessEnv, all_reduce_mean, all_reduce_sum_, broadcast_, wrap
from .logger import TrainLogger
from .loop import Precision, ShardedSampler, make_loader
from .losses import (
    LogMel,
    adversarial_loss,
    discriminator_loss,
    feature_loss,
    mel_loss,
    recon_loss,
)

#: Names of the original's trainer checkpoints and of the zoo's training states.
CHECKPOINT_PATTERN = r"SpeechTokenizerTrainer_(\d{8})"
STATE_PATTERN = r"training_state_(\d{8})\.safetensors"
RECIPE = "speechtokenizer"
#: The discriminators in the original's dict order (the order of every per-discriminator sum and of ``optim_d``).
DISCRIMINATORS = ("mpd", "msd", "mstftd")
#: Validation reads the first 30 s of each file, as the original.
VALID_SECONDS = 30
#: TensorBoard tags of the original's ``train/...`` scalars, by the trainer's local variable names.
TENSORBOARD_TAGS = {"loss_disc_all": "train/discriminators loss", "loss_generator_all": "train/generator loss",
                    "loss_feature": "train/feature loss", "loss_adversarial": "train/adversarial loss",
                    "loss_q": "train/quantizer loss", "loss_mel": "train/mel loss", "mel_error": "train/mel error",
                    "loss_distill": "train/distillation loss", "lr": "train/learning_rate"}
#: Frames (at least; 2 % of long files) by which a teacher feature may fall short of, or exceed, the codec's
#: ceil(N / hop) frames: HuBERT gives floor((N - 400) / 320) + 1; the losses cut both to the shorter.
FEATURE_SLACK = 3


# ------------------------------------------------------------------------------------------ config
@dataclass(frozen=True)
class TrainConfig:
    """The training part of the original ``config.json`` (``config/spt_base_cfg.json``; its key names), plus the
    discriminator widths, which the original hard-codes (``mpd_channels``, ``msd_channels``, ``mstftd_filters``:
    speechzoo's keys, the released widths by default)."""

    sample_rate: int = 16000
    segment_size: int = 48000
    batch_size: int = 6
    epochs: int = 10
    learning_rate: float = 1e-4
    intial_learning_rate: float = 1e-4  # sic: the original's spelling
    num_warmup_steps: int = 0
    betas: tuple[float, float] = (0.9, 0.99)
    wd: float = 0.0
    seed: int = 1234
    n_fft: int = 1024
    hop_size: int = 240
    win_size: int = 1024
    num_mels: int = 80
    fmin: float = 0.0
    fmax_for_loss: float | None = None
    mel_loss_lambdas: tuple[float, ...] = (45.0, 1.0, 1.0, 1.0)
    recon_loss_lambda: float = 500.0
    commitment_loss_lambda: float = 10.0
    distill_loss_lambda: float = 120.0
    distill_type: str = "d_axis"
    log_steps: int = 100
    stdout_steps: int = 100
    save_model_steps: int = 5000
    num_ckpt_keep: int = 6
    num_workers: int = 0
    drop_last: bool = True
    split_batches: bool = False
    mpd_channels: tuple[int, ...] = (32, 128, 512, 1024, 1024)
    msd_channels: tuple[int, ...] = (128, 128, 256, 512, 1024, 1024, 1024)
    mstftd_filters: int = 32

    def __post_init__(self) -> None:
        if self.distill_type != "d_axis":
            raise ConfigError(f"distill_type {self.distill_type!r}: only 'd_axis' trains (the original's 't_axis' "
                              "calls the nonexistent torch.functional.l1_loss and crashes)")
        for name in ("segment_size", "batch_size", "epochs", "log_steps", "stdout_steps", "save_model_steps",
                     "sample_rate", "n_fft", "hop_size", "win_size", "num_mels"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.mel_loss_lambdas or self.n_fft >> (len(self.mel_loss_lambdas) - 1) < 2:
            raise ConfigError(f"mel_loss_lambdas {self.mel_loss_lambdas}: one weight per scale, n_fft / 2^i per scale")

    @classmethod
    def from_original(cls, data: dict[str, Any], path: str | Path = "config.json") -> TrainConfig:
        known = {f.name: f for f in dataclasses.fields(cls)}
        values = {}
        for key, value in data.items():
            if key in known and value is not None:
                values[key] = tuple(value) if isinstance(value, list) else value
        values.setdefault("fmax_for_loss", None)
        try:
            return cls(**values)
        except (TypeError, ConfigError) as e:
            raise ConfigError(f"{path}: {e}") from e

    def mel_scales(self) -> list[LogMel]:
        """The log-mels of the loss' scales: n_fft, hop and window divided by 1, 2, 4, ..."""
        return [LogMel(self.n_fft // 2 ** i, self.num_mels, self.sample_rate, self.hop_size // 2 ** i,
                       self.win_size // 2 ** i, self.fmin, self.fmax_for_loss)
                for i in range(len(self.mel_loss_lambdas))]


def read_config(path: str | Path) -> tuple[SpeechTokenizerConfig, TrainConfig, dict[str, Any]]:
    """Model and training configs of an original trainer ``config.json``; a file that is not one is an
    :class:`InputError` that says so."""
    path = Path(path)
    try:
        data = read_json(path)
    except ConversionError as e:
        raise InputError(f"--config: {e}") from e
    if not isinstance(data, dict):
        raise InputError(f"--config {path} is not a JSON object; give the original trainer's config.json")
    try:
        model = st_format.config_from_original(data, path)
    except ConversionError as e:
        raise InputError(f"--config: {e} (the SpeechTokenizer trainer reads config/spt_base_cfg.json's schema)") from e
    return model, TrainConfig.from_original(data, path), data


# ------------------------------------------------------------------------------------------ data
@dataclass(frozen=True)
class Item:
    audio: Path
    feature: Path


def read_file_list(path: str | Path) -> list[Item]:
    """``audio<TAB>feature`` lines; relative paths are relative to the list's folder."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"file list {path} does not exist")
    items = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.strip().split("\t")
        if len(parts) != 2:
            raise InputError(f"{path}:{number}: expected 'audio<TAB>feature', got {line!r}")
        items.append(Item(*((path.parent / p) if not Path(p).is_absolute() else Path(p) for p in parts)))
    if not items:
        raise InputError(f"file list {path} names no files")
    return items


def read_feature(path: Path, *, header_only: bool = False) -> torch.Tensor | np.ndarray:
    """A teacher feature ``(frames, dim)`` float32 (``hubert_rep_extract.py``'s ``(1, frames, dim)`` is accepted);
    ``header_only``: a memory map, to check the shape without reading the data."""
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r" if header_only else None)
    except (OSError, ValueError) as e:
        raise InputError(f"teacher feature {path} is not a readable .npy array ({e})") from e
    if array.ndim == 3 and array.shape[0] == 1:  # hubert_rep_extract.py saves (1, T, D)
        array = array[0]
    if array.ndim != 2:
        raise InputError(f"teacher feature {path} has shape {array.shape}; expected (frames, dim)")
    return array if header_only else torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def check_files(items: Sequence[Item], *, sample_rate: int, segment_size: int | None, hop: int, dim: int,
                resample_audio: bool) -> None:
    """Every audio file readable at ``sample_rate`` (unless ``resample_audio``), every teacher feature readable,
    ``dim`` wide and as long as its audio's frames (within :data:`FEATURE_SLACK`): checked before training."""
    for item in items:
        if not item.audio.is_file():
            raise InputError(f"audio file {item.audio} does not exist (named in the file list)")
        if not item.feature.is_file():
            raise InputError(f"teacher feature {item.feature} does not exist; make it with `speechzoo train "
                             "speechtokenizer-teacher`")
        try:
            info = soundfile.info(str(item.audio))
        except (RuntimeError, soundfile.LibsndfileError) as e:
            raise InputError(f"cannot read {item.audio} as audio ({e})") from e
        if info.samplerate != sample_rate and not resample_audio:
            raise InputError(f"{item.audio} is at {info.samplerate} Hz but the config trains at {sample_rate} Hz: "
                             "resample the files (`speechzoo prepare resample`), or pass --resample to resample "
                             "while reading, as the original trainer does")
        samples = math.ceil(info.frames * sample_rate / info.samplerate)
        # shorter audio is zero-padded to the segment; its feature may cover the padding (hubert_rep_extract.py
        # pads too) or not
        padded = max(samples, segment_size or 0)
        feature = read_feature(item.feature, header_only=True)
        low, high = math.ceil(samples / hop), math.ceil(padded / hop)
        slack = max(FEATURE_SLACK, high // 50)
        if feature.shape[1] != dim:
            raise InputError(f"teacher feature {item.feature} has {feature.shape[1]} dims; the config distills "
                             f"towards semantic_dimension={dim}")
        if not low - slack <= feature.shape[0] <= high + slack:
            raise InputError(f"teacher feature {item.feature} has {feature.shape[0]} frames but its audio "
                             f"{item.audio} ({samples} samples) makes {low}"
                             + (f" (padded: {high})" if high != low else "")
                             + " at this hop: the feature belongs to another file or another hop; re-extract it")


class AudioFeatureDataset(torch.utils.data.Dataset):
    """The original ``audioDataset``: ``(audio (S,), feature (S // hop, D))`` per file (training), or the first
    30 s unpadded (``valid=True``)."""

    def __init__(self, items: Sequence[Item], segment_size: int, sample_rate: int, hop: int, *, valid: bool = False,
                 seed: int = 0) -> None:
        self.items, self.segment_size, self.sample_rate = list(items), segment_size, sample_rate
        self.hop, self.valid, self.seed, self.epoch = hop, valid, seed, 0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        item = self.items[index]
        audio, rate = load_audio(item.audio)
        audio = audio[0]
        if rate != self.sample_rate:
            audio = resample(audio, rate, self.sample_rate)
        feature = read_feature(item.feature)
        s = self.segment_size
        if audio.shape[-1] > s:
            if self.valid:
                return audio[:s], feature[: s // self.hop]
            start = random.Random(f"{self.seed}/{self.epoch}/{index}").randint(0, audio.shape[-1] - s)
            audio = audio[start: start + s]
            first = min(int(start / self.hop), feature.shape[0] - s // self.hop)
            feature = feature[first: first + s // self.hop]
        elif not self.valid:
            audio = F.pad(audio, (0, s - audio.shape[-1]))
        return audio, feature


def collate(batch: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad audio and features to the longest of the batch (``pad_sequence``, as the original)."""
    audio, feature = zip(*batch)
    return pad_sequence(audio, batch_first=True), pad_sequence(feature, batch_first=True)


# ------------------------------------------------------------------------------------------ generator
def kmeans(samples: torch.Tensor, num_clusters: int, num_iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """EnCodec's k-means codebook init: ``num_clusters`` random samples, then Lloyd iterations; empty clusters keep
    their centre. Returns the centres ``(K, D)`` and the last counts ``(K,)``."""
    means = sample_vectors(samples, num_clusters)
    bins = torch.zeros(num_clusters, dtype=torch.long, device=samples.device)
    for _ in range(num_iters):
        dists = -((samples[:, None] - means[None]) ** 2).sum(dim=-1)
        buckets = dists.max(dim=-1).indices
        bins = torch.bincount(buckets, minlength=num_clusters)
        zero = bins == 0
        new_means = torch.zeros(num_clusters, samples.shape[-1], dtype=samples.dtype, device=samples.device)
        new_means.scatter_add_(0, buckets[:, None].expand(-1, samples.shape[-1]), samples)
        new_means = new_means / bins.masked_fill(zero, 1)[:, None]
        means = torch.where(zero[:, None], means, new_means)
    return means, bins


def sample_vectors(samples: torch.Tensor, num: int) -> torch.Tensor:
    """``num`` rows of ``samples``: a random permutation's first ones, or draws with replacement when too few."""
    if samples.shape[0] >= num:
        indices = torch.randperm(samples.shape[0], device=samples.device)[:num]
    else:
        indices = torch.randint(0, samples.shape[0], (num,), device=samples.device)
    return samples[indices]


class EMAResidualVectorQuantizer(ResidualVectorQuantizer):
    """The residual VQ with EnCodec's training behaviour (``core_vq.EuclideanCodebook``): in training mode each
    quantizer picks codes with the codebook as it was, then moves the codebook by an exponential moving average
    (decay 0.99, Laplace smoothing ε 1e-5) of the frames it took; the first training batch initialises codebooks
    whose ``inited`` is 0 by k-means (50 iterations). Dead codes (EMA count below 2) are replaced by random batch
    frames before the EMA overwrites the whole codebook — numerically void, but it draws from torch's RNG as the
    original does. With several processes the counts and sums are added over ranks first."""

    def __init__(self, n_q: int, codebook_size: int, dimension: int, *, decay: float = 0.99, epsilon: float = 1e-5,
                 kmeans_iters: int = 50, threshold_ema_dead_code: int = 2) -> None:
        super().__init__(n_q, codebook_size, dimension)
        self.decay, self.epsilon, self.kmeans_iters, self.threshold = decay, epsilon, kmeans_iters, threshold_ema_dead_code
        self.register_buffer("inited", torch.zeros(n_q))
        self.register_buffer("cluster_size", torch.zeros(n_q, codebook_size))
        self.register_buffer("embed_avg", torch.zeros(n_q, codebook_size, dimension))

    def quantize(self, latent: torch.Tensor, start: int, stop: int, *, straight_through: bool = False,
                 ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        if not self.training:
            return super().quantize(latent, start, stop, straight_through=straight_through)
        residual, out = latent.float(), []
        for layer in range(start, stop):
            with torch.no_grad():
                frames = residual.detach().transpose(1, 2).reshape(-1, residual.shape[1])
                if not bool(self.inited[layer]):
                    self._init_layer(layer, frames)
                codes = nearest_code(frames, self.codebooks[layer])
                quantized = F.embedding(codes, self.codebooks[layer])
                self._update_layer(layer, frames, codes)
            quantized = quantized.view(residual.shape[0], -1, residual.shape[1]).transpose(1, 2)
            codes = codes.view(residual.shape[0], -1)
            if straight_through:
                quantized = residual + (quantized - residual).detach()
            out.append((codes, quantized, residual))
            residual = residual - quantized
        return out

    def _init_layer(self, layer: int, frames: torch.Tensor) -> None:
        embed, counts = kmeans(frames, self.codebooks.shape[1], self.kmeans_iters)
        self.codebooks[layer] = embed
        self.embed_avg[layer] = embed
        self.cluster_size[layer] = counts.to(self.cluster_size.dtype)
        self.inited[layer] = 1
        # every rank starts from rank 0's codebook (the original relies on DDP broadcasting buffers)
        broadcast_([self.codebooks, self.embed_avg, self.cluster_size])

    def _update_layer(self, layer: int, frames: torch.Tensor, codes: torch.Tensor) -> None:
        onehot = F.one_hot(codes, self.codebooks.shape[1]).type(frames.dtype)
        counts, embed_sum = onehot.sum(0), frames.t() @ onehot
        all_reduce_sum_(counts)
        all_reduce_sum_(embed_sum)
        if self.threshold > 0 and bool((self.cluster_size[layer] < self.threshold).any()):
            expired = self.cluster_size[layer] < self.threshold
            self.codebooks[layer] = torch.where(expired[:, None], sample_vectors(frames, self.codebooks.shape[1]),
                                                self.codebooks[layer])
        cluster_size, embed_avg = self.cluster_size[layer], self.embed_avg[layer]
        cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        embed_avg.mul_(self.decay).add_(embed_sum.t(), alpha=1 - self.decay)
        total = cluster_size.sum()
        smoothed = (cluster_size + self.epsilon) / (total + self.codebooks.shape[1] * self.epsilon) * total
        self.codebooks[layer] = embed_avg / smoothed.unsqueeze(1)


def training_generator(config: SpeechTokenizerConfig) -> SpeechTokenizer:
    """A :class:`SpeechTokenizer` as the original trains it: weight norm on every conv (torch's parametrisation,
    the original's numbers) and the EMA quantizer; codebooks wait for k-means (``inited`` 0)."""
    model = SpeechTokenizer(config)
    model.quantizer = EMAResidualVectorQuantizer(config.n_q, config.codebook_size, config.dimension)
    for module in list(model.modules()):
        if isinstance(module, (SConv1d, SConvTranspose1d)):
            weight_norm(module)
    return model.train()


def generator_key_map(config: SpeechTokenizerConfig, model: nn.Module) -> dict[str, str]:
    """original key -> training-module key for every parameter, in the original's parameter order."""
    ours_to_original = {ours: original for original, ours in st_format.training_modules(config)}
    theirs = {v: k for k, v in st_format.WEIGHT_NORM_NAMES.items()}
    mapping = {}
    for name, _ in model.named_parameters():
        suffix = next((s for s in theirs if name.endswith("." + s)), None)
        if suffix is not None:  # parametrised weight norm: <module>.parametrizations.weight.original0/1
            module, tensor = name[: -len(suffix) - 1], theirs[suffix]
        else:
            module, _, tensor = name.rpartition(".")
        if module not in ours_to_original:
            raise WeightsError(f"no original name for the generator parameter {name}")
        mapping[f"{ours_to_original[module]}.{tensor}"] = name
    return mapping


def generator_to_original(model: SpeechTokenizer, key_map: dict[str, str]) -> dict[str, torch.Tensor]:
    """The training generator's state dict in the original layout (encoder, transform, RVQ buffers, decoder)."""
    ours = model.state_dict()
    out = {}
    for original, name in key_map.items():
        if original.startswith("decoder.") and not any(k.startswith("quantizer.") for k in out):
            out.update(_codebooks_to_original(model.quantizer))
        out[original] = ours[name].detach().clone()
    return out


def _codebooks_to_original(q: EMAResidualVectorQuantizer) -> dict[str, torch.Tensor]:
    out = {}
    for i in range(q.codebooks.shape[0]):
        values = {"inited": q.inited[i: i + 1], "cluster_size": q.cluster_size[i], "embed": q.codebooks[i],
                  "embed_avg": q.embed_avg[i]}
        out.update({st_format.codebook_key(i, n): values[n].detach().clone() for n in st_format.CODEBOOK_BUFFERS})
    return out


def load_original_generator(model: SpeechTokenizer, state: dict[str, torch.Tensor], key_map: dict[str, str],
                            path: Path) -> None:
    """Load an original generator state dict (trainer checkpoint, release or best_dev) into the training module."""
    missing = [k for k in key_map if k not in state]
    if missing:
        raise WeightsError(f"{path}: the generator lacks {missing[:5]} — was it trained with another config?")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for original, name in key_map.items():
            if params[name].shape != state[original].shape:
                raise WeightsError(f"{path}: {original} has shape {tuple(state[original].shape)}, the config makes "
                                   f"{tuple(params[name].shape)}")
            params[name].copy_(state[original])
        q = model.quantizer
        for i in range(q.codebooks.shape[0]):
            embed = state.get(st_format.codebook_key(i, "embed"))
            if embed is None or embed.shape != q.codebooks[i].shape:
                raise WeightsError(f"{path}: quantizer {i}'s codebook is missing or not {tuple(q.codebooks[i].shape)}")
            q.codebooks[i] = embed
            q.embed_avg[i] = state.get(st_format.codebook_key(i, "embed_avg"), embed)
            q.cluster_size[i] = state.get(st_format.codebook_key(i, "cluster_size"), torch.zeros_like(q.cluster_size[i]))
            q.inited[i] = state.get(st_format.codebook_key(i, "inited"), torch.ones(1)).reshape(())


def export(model: SpeechTokenizer, config: SpeechTokenizerConfig, key_map: dict[str, str], out: Path) -> Path:
    """Write the trained generator as a zoo model directory (config.json + model.safetensors) that
    ``speechtokenizer(weights=out)`` loads: weight norm folded, codebooks as trained."""
    inference = st_format.model_from_state(generator_to_original(model, key_map), config, "the trained generator")
    inference.save_pretrained(out)
    return out


# ------------------------------------------------------------------------------------------ trainer
@dataclass
class Progress:
    """Where the run stands: the original's step counter, the epoch (an original checkpoint restarts it at 0, as
    the original's loop does), the batches of it already trained, the best dev mel error, the last mel error."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_dev_mel_loss: float = float("inf")
    mel_error: float | None = None
    dev_mel_error: float | None = None


class SpeechTokenizerTrainer:
    """Generator, discriminators, optimisers and schedulers of one run, with the original's step.

    Example (a tiny model on one file; see ``speechzoo train speechtokenizer`` for the command)::

        trainer = SpeechTokenizerTrainer(model_config, train_config, env)
        trainer.resume("SpeechTokenizerTrainer_00000002")        # optional
        trainer.fit(train_items, valid_items, out_dir, max_steps=3, logger=TrainLogger(...))
    """

    def __init__(self, model_config: SpeechTokenizerConfig, config: TrainConfig, env: ProcessEnv, *,
                 raw_config: dict[str, Any] | None = None, precision: str = "fp32",
                 clip_grad_norm: float | None = None) -> None:
        self.model_config, self.config, self.env = model_config, config, env
        self.raw_config = raw_config or {}
        self.generator = training_generator(model_config)
        self.key_map = generator_key_map(model_config, self.generator)
        self.discriminators: dict[str, nn.Module] = {
            "mpd": MultiPeriodDiscriminator(config.mpd_channels), "msd": MultiScaleDiscriminator(config.msd_channels),
            "mstftd": MultiScaleSTFTDiscriminator(config.mstftd_filters)}
        self.progress = Progress()
        self.precision = Precision(precision, env.device, clip_grad_norm)
        self.mels = [m.to(env.device) for m in config.mel_scales()]
        self.t_max = 1  # set_dataset_size() sets the original's count
        self._build_optimizers()

    # -------------------------------------------------------------- set-up
    def _build_optimizers(self) -> None:
        c = self.config
        self.optim_g = _optimizer(self.generator.parameters(), c)
        self.optim_d = _optimizer(itertools.chain(*(d.parameters() for d in self.discriminators.values())), c)
        self.scheduler_g = torch.optim.lr_scheduler.CosineAnnealingLR(self.optim_g, T_max=self.t_max)
        self.scheduler_d = torch.optim.lr_scheduler.CosineAnnealingLR(self.optim_d, T_max=self.t_max)

    @property
    def per_rank_batch(self) -> int:
        if self.config.split_batches:
            if self.config.batch_size % self.env.world_size:
                raise ConfigError(f"split_batches: batch_size {self.config.batch_size} does not split over "
                                  f"{self.env.world_size} processes")
            return self.config.batch_size // self.env.world_size
        return self.config.batch_size

    @property
    def scheduler_steps_per_step(self) -> int:
        """accelerate steps a prepared scheduler once per process unless batches are split."""
        return 1 if self.config.split_batches else self.env.world_size

    def set_dataset_size(self, n: int) -> None:
        """``T_max = epochs · len(train set) // batch_size`` (the original's count), set before training."""
        self.t_max = max(1, self.config.epochs * n // self.config.batch_size)
        for s in (self.scheduler_g, self.scheduler_d):
            s.T_max = self.t_max

    def resume(self, path: str | Path) -> None:
        """Continue from an original ``SpeechTokenizerTrainer_XXXXXXXX`` or a zoo training state."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"--resume {path} does not exist")
        if _is_safetensors(path):
            self._load_state(path)
            return
        pkg = _load_pickle(path, "--resume")
        wanted = ("generator", "discriminators", "optim_g", "optim_d", "scheduler_g", "scheduler_d")
        if not isinstance(pkg, dict) or any(k not in pkg for k in wanted):
            found = sorted(pkg)[:8] if isinstance(pkg, dict) else type(pkg).__name__
            hint = (" (g_/do_ files are speech-resynthesis checkpoints: `speechzoo train resynthesis --resume`)"
                    if isinstance(pkg, dict) and ("mpd" in pkg or "generator" in pkg) else "")
            raise InputError(f"--resume {path} is not a SpeechTokenizer trainer checkpoint: it lacks "
                             f"{[k for k in wanted if not isinstance(pkg, dict) or k not in pkg]} (found {found}){hint}")
        self._load_original_pkg(pkg, path)
        self.progress = Progress(step=_checkpoint_number(path) + 1,
                                 best_dev_mel_loss=float(pkg.get("best_dev_mel_loss", float("inf"))))

    def init_from(self, path: str | Path) -> None:
        """Weights only: an original trainer checkpoint (generator and discriminators), a release or best_dev
        generator state dict, or a zoo training state."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"--init-from {path} does not exist")
        if _is_safetensors(path):
            tensors, meta = checkpoint.load_state(path)
            _check_recipe(meta, path)
            self._load_modules(tensors, meta)
            return
        pkg = _load_pickle(path, "--init-from")
        if isinstance(pkg, dict) and "generator" in pkg:
            load_original_generator(self.generator, pkg["generator"], self.key_map, path)
            for name, state in (pkg.get("discriminators") or {}).items():
                if name in self.discriminators:
                    self.discriminators[name] = disc_format.build(name, state)
            self._build_optimizers()
        elif isinstance(pkg, dict) and "encoder.model.0.conv.conv.weight_v" in pkg:
            load_original_generator(self.generator, pkg, self.key_map, path)
        else:
            raise InputError(f"--init-from {path} holds neither a SpeechTokenizer generator nor a trainer checkpoint")

    def _load_original_pkg(self, pkg: dict[str, Any], path: Path) -> None:
        load_original_generator(self.generator, pkg["generator"], self.key_map, path)
        for name in DISCRIMINATORS:
            state = pkg["discriminators"].get(name)
            if state is None:
                raise WeightsError(f"{path}: no '{name}' discriminator")
            self.discriminators[name] = disc_format.build(name, state)
        self._build_optimizers()
        try:
            self.optim_g.load_state_dict(pkg["optim_g"])
            self.optim_d.load_state_dict(pkg["optim_d"])
        except (ValueError, KeyError) as e:
            raise WeightsError(f"{path}: its optimiser state does not fit this generator/discriminators ({e})") from e
        self.scheduler_g.load_state_dict(pkg["scheduler_g"])
        self.scheduler_d.load_state_dict(pkg["scheduler_d"])

    # -------------------------------------------------------------- the step
    def _lr_update(self) -> float:
        """The original's schedule update (before the first batch and after every step): warm-up while
        ``step < num_warmup_steps``, else the cosine schedulers; returns the lr the next step uses."""
        c, step = self.config, self.progress.step
        if step < c.num_warmup_steps:
            lr = c.intial_learning_rate + (c.learning_rate - c.intial_learning_rate) * step / c.num_warmup_steps
            for g in (*self.optim_g.param_groups, *self.optim_d.param_groups):
                g["lr"] = lr
            return lr
        for _ in range(self.scheduler_steps_per_step):
            self.scheduler_d.step()
            self.scheduler_g.step()
        return self.scheduler_g.get_last_lr()[0]

    def train_step(self, x: torch.Tensor, semantic: torch.Tensor, generator: nn.Module,
                   discriminators: dict[str, nn.Module]) -> dict[str, float]:
        """One optimisation step on a batch ``x`` ``(B, N)``, teacher ``semantic`` ``(B, T, D)``; the logged values
        (rank 0's before averaging)."""
        c, p = self.config, self.precision
        x = x.unsqueeze(1)
        with p.autocast():
            x_hat, loss_q, feature = generator(x)
        self.optim_d.zero_grad()
        with p.autocast():
            outputs = [d(x, x_hat.detach()) for d in discriminators.values()]
            losses_d = [discriminator_loss(o[0], o[1]) for o in outputs]
            loss_disc_all = sum(losses_d)
        p.backward(loss_disc_all)
        p.step(self.optim_d)

        self.optim_g.zero_grad()
        with p.autocast():
            outputs = [d(x, x_hat) for d in discriminators.values()]
            x_hat32 = x_hat.float()
            loss_recon = recon_loss(x, x_hat32)
            loss_mel = sum(w * mel_loss(m, x, x_hat32) for w, m in zip(c.mel_loss_lambdas, self.mels))
            features = [feature_loss(o[2], o[3]) for o in outputs]
            adversarials = [adversarial_loss(o[1]) for o in outputs]
            loss_feature, loss_adversarial = sum(features), sum(adversarials)
            loss_distill = d_axis_distill_loss(feature.float(), semantic)
            loss_generator_all = (loss_feature + loss_adversarial + loss_mel + loss_q * c.commitment_loss_lambda
                                  + loss_recon * c.recon_loss_lambda + c.distill_loss_lambda * loss_distill)
        p.backward(loss_generator_all)
        p.step(self.optim_g)
        p.update()

        record = {"loss_disc_all": loss_disc_all, "loss_generator_all": loss_generator_all,
                  "loss_feature": loss_feature, "loss_adversarial": loss_adversarial, "loss_mel": loss_mel,
                  "loss_recon": loss_recon, "loss_q": loss_q, "loss_distill": loss_distill}
        for name, f, a in zip(discriminators, features, adversarials):
            record[f"loss_feature.{name}"], record[f"loss_adversarial.{name}"] = f, a
        record = {k: float(v.detach()) for k, v in record.items()}
        if self.progress.mel_error is None or not self.progress.step % c.stdout_steps:
            with torch.inference_mode():
                self.progress.mel_error = float(mel_loss(self.mels[0], x, x_hat.float()))
        record["mel_error"] = self.progress.mel_error
        return record

    # -------------------------------------------------------------- the loop
    def fit(self, train_items: Sequence[Item], valid_items: Sequence[Item], out: Path, *,
            max_steps: int | None = None, logger: TrainLogger | None = None,
            export_dir: Path | None = None) -> dict[str, Any]:
        """Train until ``max_steps`` optimisation steps are done or the config's epochs are over (counted in this
        process, as the original counts them), validating and saving every ``save_model_steps`` and at the end;
        returns a summary."""
        c, env = self.config, self.env
        hop = self.generator.downsample_rate
        data = AudioFeatureDataset(train_items, c.segment_size, c.sample_rate, hop, seed=c.seed)
        if len(data) < c.batch_size:
            raise InputError(f"the file list has {len(data)} files, fewer than batch_size {c.batch_size}")
        sampler = ShardedSampler(data, env.rank, env.world_size, shuffle=True, seed=c.seed)
        b = self.per_rank_batch
        per_epoch = sampler.num_samples // b if c.drop_last else -(-sampler.num_samples // b)
        loader = make_loader(data, sampler, b, collate_fn=collate, drop_last=c.drop_last, num_workers=c.num_workers)
        generator = wrap(self.generator, env)
        discriminators = {k: wrap(d, env) for k, d in self.discriminators.items()}
        self.mels = [m.to(env.device) for m in self.mels]
        logger = logger or TrainLogger(enabled=False)
        lr = self._lr_update()  # the original's update before the first batch
        done, start, seconds, finished = 0, time.perf_counter(), 0.0, False
        while self.progress.epoch < c.epochs and not finished:
            data.epoch = self.progress.epoch
            sampler.set_position(self.progress.epoch, self.progress.batch_in_epoch, b)
            for x, semantic in loader:
                tic = time.perf_counter()
                record = self.train_step(x.to(env.device), semantic.to(env.device), generator, discriminators)
                seconds += time.perf_counter() - tic
                record = all_reduce_mean(record, env)
                logger.step({"step": self.progress.step, "lr": lr, **record})
                done += 1
                self.progress.batch_in_epoch += 1
                finished = (max_steps is not None and done >= max_steps) or (
                    self.progress.epoch == c.epochs - 1 and self.progress.batch_in_epoch >= per_epoch)
                periodic = self.progress.step % c.save_model_steps == 0 and self.progress.step != 0
                if periodic:
                    self.validate(valid_items, logger)
                if periodic or finished:
                    self.save(out, export_dir=export_dir if finished else None)
                self.progress.step += 1
                lr = self._lr_update()
                if finished:
                    break
            if not finished:
                self.progress.epoch += 1
                self.progress.batch_in_epoch = 0
        return {"steps": done, "seconds": time.perf_counter() - start, "step_seconds": seconds,
                "last_step": self.progress.step - 1}

    @torch.no_grad()
    def validate(self, items: Sequence[Item], logger: TrainLogger) -> dict[str, float]:
        """Mean scale-0 mel error and distillation loss over the validation files in eval mode (main process);
        a better mel error than ever writes ``SpeechTokenizer_best_dev.pt`` at the next save."""
        if not self.env.is_main or not items:
            return {}
        data = AudioFeatureDataset(items, self.config.sample_rate * VALID_SECONDS, self.config.sample_rate,
                                   self.generator.downsample_rate, valid=True)
        self.generator.eval()
        total_mel = total_distill = 0.0
        for i in range(len(data)):
            x, semantic = data[i]
            x = x[None, None].to(self.env.device)
            x_hat, _, feature = self.generator(x)
            total_mel += float(mel_loss(self.mels[0], x, x_hat))
            total_distill += float(d_axis_distill_loss(feature, semantic[None].to(self.env.device)))
        self.generator.train()
        values = {"dev/mel error": total_mel / len(data), "dev/distillation loss": total_distill / len(data)}
        logger.scalars(values, self.progress.step)
        self.progress.dev_mel_error = values["dev/mel error"]
        return values

    # -------------------------------------------------------------- checkpoints
    def original_checkpoint(self) -> dict[str, Any]:
        """The original's ``SpeechTokenizerTrainer_X`` dict."""
        return {"generator": generator_to_original(self.generator, self.key_map),
                "discriminators": {k: disc_format.to_original(d.state_dict(), k)
                                   for k, d in self.discriminators.items()},
                "optim_g": self.optim_g.state_dict(), "optim_d": self.optim_d.state_dict(),
                "scheduler_g": self.scheduler_g.state_dict(), "scheduler_d": self.scheduler_d.state_dict(),
                "best_dev_mel_loss": self.progress.best_dev_mel_loss}

    def save(self, out: Path, *, export_dir: Path | None = None) -> None:
        """Write ``SpeechTokenizerTrainer_{step:08d}`` (original layout), ``training_state_{step:08d}.safetensors``
        (the zoo's, for exact resume) and, after a validation that improved, ``SpeechTokenizer_best_dev.pt``;
        keep the newest ``num_ckpt_keep`` of each. Main process only."""
        if not self.env.is_main:
            return
        step = self.progress.step
        pkg = self.original_checkpoint()
        dev, self.progress.dev_mel_error = self.progress.dev_mel_error, None
        if dev is not None and dev < self.progress.best_dev_mel_loss:
            self.progress.best_dev_mel_loss = pkg["best_dev_mel_loss"] = dev
            checkpoint.torch_save(pkg["generator"], out / "SpeechTokenizer_best_dev.pt")
        checkpoint.torch_save(pkg, out / f"SpeechTokenizerTrainer_{step:08d}")
        tensors, skeleton = checkpoint.flatten_state({k: v for k, v in pkg.items() if k != "generator"}, "trainer")
        gen_tensors, gen_skeleton = checkpoint.flatten_state(pkg["generator"], "generator")
        rng_tensors, rng_skeleton = checkpoint.flatten_state(checkpoint.rng_state(), "rng")
        scaler_tensors, scaler_skeleton = checkpoint.flatten_state(self.precision.state_dict(), "scaler")
        meta = {"recipe": RECIPE, "trainer": skeleton, "generator": gen_skeleton, "rng": rng_skeleton,
                "scaler": scaler_skeleton,
                "progress": {"step": step, "epoch": self.progress.epoch,
                             "batch_in_epoch": self.progress.batch_in_epoch,
                             "best_dev_mel_loss": self.progress.best_dev_mel_loss,
                             "mel_error": self.progress.mel_error, "world_size": self.env.world_size},
                "config": self.raw_config}
        checkpoint.save_state(out / f"training_state_{step:08d}.safetensors",
                              {**tensors, **gen_tensors, **rng_tensors, **scaler_tensors}, meta)
        keep = max(1, self.config.num_ckpt_keep)
        checkpoint.keep_newest(out, CHECKPOINT_PATTERN, keep)
        checkpoint.keep_newest(out, STATE_PATTERN, keep)
        if export_dir is not None:
            export(self.generator, self.model_config, self.key_map, export_dir)

    def _load_modules(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
        """Generator and discriminators of a zoo training state; returns the rest of it (optimisers...)."""
        pkg = checkpoint.unflatten_state(tensors, meta["trainer"])
        generator = checkpoint.unflatten_state(tensors, meta["generator"])
        load_original_generator(self.generator, generator, self.key_map, Path("training state"))
        for name in DISCRIMINATORS:
            self.discriminators[name] = disc_format.build(name, pkg["discriminators"][name])
        self._build_optimizers()
        return pkg

    def _load_state(self, path: Path) -> None:
        tensors, meta = checkpoint.load_state(path)
        _check_recipe(meta, path)
        pkg = self._load_modules(tensors, meta)
        self.optim_g.load_state_dict(pkg["optim_g"])
        self.optim_d.load_state_dict(pkg["optim_d"])
        self.scheduler_g.load_state_dict(pkg["scheduler_g"])
        self.scheduler_d.load_state_dict(pkg["scheduler_d"])
        self.precision.load_state_dict(checkpoint.unflatten_state(tensors, meta["scaler"]))
        checkpoint.set_rng_state(checkpoint.unflatten_state(tensors, meta["rng"]))
        prog = meta["progress"]
        if prog["world_size"] != self.env.world_size:
            raise InputError(f"{path} was written by a run on {prog['world_size']} processes; resume it on as many "
                             f"(this run has {self.env.world_size}) or start from its weights with --init-from")
        # saved inside the step, before the step counter and schedule moved on: fit() does that update first
        self.progress = Progress(step=prog["step"] + 1, epoch=prog["epoch"], batch_in_epoch=prog["batch_in_epoch"],
                                 best_dev_mel_loss=prog["best_dev_mel_loss"], mel_error=prog["mel_error"])


# ------------------------------------------------------------------------------------------ teacher
@torch.no_grad()
def teacher_features(model: Hubert, wav: torch.Tensor, layer: int | str = "avg", *, segment_size: int = 0,
                     normalize: bool = True) -> torch.Tensor:
    """``scripts/hubert_rep_extract.py`` for one utterance ``wav`` ``(N,)`` at 16 kHz: zero-padded at the end to
    ``segment_size``, standardised (``Wav2Vec2FeatureExtractor``'s ``do_normalize``: ``(x - mean) / sqrt(var +
    1e-7)``) when ``normalize``, then transformers' ``HubertModel(output_hidden_states=True)`` hidden state
    ``layer`` (0: the transformer input after the positional conv and LayerNorm; L: block L's output) or, for
    "avg", the mean of all N + 1 of them. Returns ``(frames, dim)`` float32 (the original saves ``(1, frames,
    dim)``, which its own dataset cannot crop)."""
    if model.config.layer_norm_first:
        raise InputError("the SpeechTokenizer teacher is HuBERT Base (post-LN); a pre-LN (Large) model's hidden "
                         "states are laid out differently in transformers")
    n = model.num_layers
    if layer != "avg" and not (isinstance(layer, int) and 0 <= layer <= n):
        raise InputError(f"semantic_model_layer must be 'avg' or a hidden-state index 0..{n}, got {layer!r}")
    wav = wav.float().reshape(-1)
    if wav.shape[0] < segment_size:
        wav = F.pad(wav, (0, segment_size - wav.shape[0]))
    if normalize:
        wav = (wav - wav.mean()) / torch.sqrt(wav.var(unbiased=False) + 1e-7)
    states: list[torch.Tensor] = []
    hooks = [model.encoder.layer_norm.register_forward_hook(lambda m, i, o: states.append(o))]
    hooks += [block.register_forward_hook(lambda m, i, o: states.append(o)) for block in model.encoder.layers]
    try:
        model(wav[None].to(next(model.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
    chosen = torch.stack(states).mean(0) if layer == "avg" else states[layer]
    return chosen[0].float().cpu()


# ------------------------------------------------------------------------------------------ helpers
def _optimizer(params, c: TrainConfig) -> torch.optim.Optimizer:
    """The original's ``get_optimizer``: Adam when ``wd == 0``, else AdamW with no decay on 1-D tensors."""
    params = list(params)
    if c.wd > 0:
        groups = [{"params": [p for p in params if p.ndim >= 2]},
                  {"params": [p for p in params if p.ndim < 2], "weight_decay": 0}]
        return torch.optim.AdamW(groups, lr=c.learning_rate, weight_decay=c.wd, betas=c.betas, eps=1e-8)
    return torch.optim.Adam(params, lr=c.learning_rate, betas=c.betas, eps=1e-8)


def _checkpoint_number(path: Path) -> int:
    """The original's ``checkpoint_num_steps``: the last integer in the name (0 if none)."""
    numbers = re.findall(r"\d+", path.name)
    return int(numbers[-1]) if numbers else 0


def _is_safetensors(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def _load_pickle(path: Path, flag: str) -> Any:
    try:
        return load_original(path)
    except ConversionError as e:
        raise InputError(f"{flag} {path}: {e}") from e


def _check_recipe(meta: dict[str, Any], path: Path) -> None:
    if meta.get("recipe") != RECIPE:
        raise InputError(f"{path} is a training state of the {meta.get('recipe')!r} recipe, not of {RECIPE!r}")
