"""speech-resynthesis' unit HiFi-GAN trainer (``train.py``): a :class:`~zoo.models.hifigan.CodeHiFiGAN` conditioned on
units, quantised F0 and speaker, trained against HiFi-GAN's MPD and MSD with the original's losses, optimisers,
schedule and checkpoints.

One step, as the original takes it (spec ``train-codecs.md`` §3.3):

1. ``y_g_hat = generator(**x)``; its log-mel with ``fmax_for_loss``;
2. discriminators: ``optim_d.zero_grad()``; MPD and MSD on ``(y, y_g_hat.detach())``; LSGAN
   ``loss_disc_all = loss_disc_s + loss_disc_f``; backward; ``optim_d.step()``;
3. generator: ``loss_mel = 45 · L1(y_mel, y_g_hat_mel)``; MPD and MSD again (already updated; real features
   recomputed); ``loss_gen_all = loss_gen_s + loss_gen_f + loss_fm_s + loss_fm_f + loss_mel``; ``optim_g.step()``;
4. ``steps += 1``; after each EPOCH both ``ExponentialLR(lr_decay)`` schedulers step.

Optimisers: ``AdamW(lr, betas=(adam_b1, adam_b2))`` with torch's default weight decay 0.01, over the generator's
parameters in the ORIGINAL ``CodeGenerator``'s registration order and over ``chain(msd, mpd)`` — so their states are
the original's, index for index. The frozen F0 VQ-VAE (``f0_quantizer_path``) is part of the generator (and of its
checkpoint) but never changes.

Checkpoints: ``g_XXXXXXXX`` (``{'generator'}``) and ``do_XXXXXXXX`` (``{'mpd', 'msd', 'optim_g', 'optim_d', 'steps',
'epoch'}``) in the original's layout and key names (``weight_g``/``weight_v``, spectral norm's
``weight_orig``/``weight_u``/``weight_v``), readable with ``torch.load(weights_only=True)``: a run continues in the
original ``train.py`` and an original run continues here (:func:`resume_original`). The trained vocoder exports to
``hifigan_unit_vocoder(weights=DIR)`` (:meth:`TrainingVocoder.export`).
"""
from __future__ import annotations

import itertools
import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from ..errors import ConfigError, ConversionError, InputError, WeightsError
from ..formats import fold_weight_norms, load_original, rename
from ..formats import discriminators as disc_format
from ..formats.f0_vqvae import f0_vqvae_config, quantizer_rules
from ..formats.hifigan import original_generator_keys, training_names
from ..models.f0_vqvae import JukeboxDecoder
from ..models.hifigan import DEFAULT_NUM_SPEAKERS, CodeHiFiGAN, CodeHiFiGANConfig
from ..nn.discriminators import MultiPeriodDiscriminator, MultiScaleDiscriminator
from ..nn.mel import log_mel_spectrogram
from .losses import discriminator_loss, feature_loss, generator_loss
from .resynthesis_data import DATASET_SEED, CodeDataset, F0Options, ManifestEntry

#: Weight of the mel loss in ``loss_gen_all``.
MEL_LOSS_WEIGHT = 45.0
#: train.py's defaults for the loop's command-line options.
TRAINING_EPOCHS = 2000
CHECKPOINT_INTERVAL = 10000
VALIDATION_INTERVAL = 1000
#: Generator fields every speech-resynthesis config has.
_GENERATOR_FIELDS = ("upsample_rates", "upsample_kernel_sizes", "upsample_initial_channel", "resblock_kernel_sizes",
                     "resblock_dilation_sizes", "num_embeddings", "embedding_dim")


# ------------------------------------------------------------------------------------------ config
@dataclass(frozen=True)
class ResynthesisConfig:
    """The fields of a speech-resynthesis training config (``configs/*/*_lut.json``) that ``train.py`` reads."""

    vocoder: CodeHiFiGANConfig
    f0: F0Options = field(default_factory=F0Options)
    batch_size: int = 16
    learning_rate: float = 2e-4
    adam_b1: float = 0.8
    adam_b2: float = 0.99
    lr_decay: float = 0.999
    seed: int = 1234
    segment_size: int = 8960
    n_fft: int = 1024
    num_mels: int = 80
    hop_size: int = 256
    win_size: int = 1024
    sampling_rate: int = 16000
    fmin: float = 0.0
    fmax_for_loss: float | None = None
    f0_quantizer_path: str | None = None
    input_training_file: str | None = None
    input_validation_file: str | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.segment_size < 1 or self.learning_rate <= 0:
            raise ConfigError("batch_size, segment_size and learning_rate must be positive")
        if self.segment_size % self.vocoder.code_hop_size:
            raise ConfigError(f"segment_size {self.segment_size} must be a multiple of code_hop_size "
                              f"{self.vocoder.code_hop_size}")
        if self.vocoder.code_hop_size != self.vocoder.hop_length:
            raise ConfigError(f"code_hop_size {self.vocoder.code_hop_size} must equal prod(upsample_rates) = "
                              f"{self.vocoder.hop_length}: the generator's output must match the segment")

    @property
    def mel(self) -> dict[str, Any]:
        """Keyword arguments of :func:`~zoo.nn.mel.log_mel_spectrogram` for the loss (``fmax_for_loss``)."""
        return dict(n_fft=self.n_fft, num_mels=self.num_mels, sample_rate=self.sampling_rate,
                    hop_size=self.hop_size, win_size=self.win_size, fmin=self.fmin, fmax=self.fmax_for_loss)


def read_config(path: str | os.PathLike) -> tuple[ResynthesisConfig, dict[str, Any]]:
    """The training config and the raw JSON (kept to be copied beside the checkpoints, as ``build_env`` does)."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"no config at {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path} is not a JSON config ({e})") from e
    if not isinstance(raw, dict):
        raise InputError(f"{path} is not a JSON object")
    if "upsample_rates" not in raw and "f0_encoder_params" in raw:
        raise InputError(f"{path} is an F0 VQ-VAE config: train it with `speechzoo train f0-vqvae`")
    missing = [k for k in _GENERATOR_FIELDS if k not in raw]
    if missing:
        raise InputError(f"{path} lacks {missing}: it is not a speech-resynthesis train.py config "
                         "(configs/*/*_lut.json)")
    try:
        return config_from_raw(raw), raw
    except (TypeError, ValueError, ConversionError) as e:
        raise InputError(f"{path}: {e}") from e


def config_from_raw(raw: dict[str, Any]) -> ResynthesisConfig:
    if raw.get("lambda_commit") or raw.get("lambda_commit_code") or raw.get("code_vq_params"):
        raise ConfigError("joint VQ training (lambda_commit / lambda_commit_code) is not supported: train the F0 "
                          "VQ-VAE first (speechzoo train f0-vqvae) and set f0_quantizer_path, as the released "
                          "configs do")
    vocoder = {k: raw[k] for k in _GENERATOR_FIELDS}
    vocoder.update(resblock=str(raw.get("resblock", "1")), model_in_dim=raw.get("model_in_dim", 128),
                   sampling_rate=raw.get("sampling_rate", 16000), f0=bool(raw.get("f0")),
                   code_hop_size=raw.get("code_hop_size") or math.prod(raw["upsample_rates"]),
                   f0_feats=bool(raw.get("f0_feats")), f0_normalize=bool(raw.get("f0_normalize")))
    if raw.get("f0_quantizer_path"):
        if not raw.get("f0") or not isinstance(raw.get("f0_quantizer"), dict):
            raise ConfigError("f0_quantizer_path needs f0: true and the f0_quantizer group")
        vocoder["f0_quantizer"] = f0_vqvae_config(raw["f0_quantizer"], where="f0_quantizer")
    if raw.get("multispkr"):
        vocoder.update(multispkr=str(raw["multispkr"]), num_speakers=DEFAULT_NUM_SPEAKERS)
    vocoder_config = CodeHiFiGANConfig(**{k: _tuples(v) for k, v in vocoder.items()})
    f0 = F0Options(sampling_rate=raw.get("sampling_rate", 16000), multispkr=raw.get("multispkr") or None,
                   f0_stats=raw.get("f0_stats"), f0_normalize=bool(raw.get("f0_normalize")),
                   f0_feats=bool(raw.get("f0_feats")), f0_median=bool(raw.get("f0_median")),
                   f0_interp=bool(raw.get("f0_interp")))
    simple = {k: raw[k] for k in ("batch_size", "learning_rate", "adam_b1", "adam_b2", "lr_decay", "seed",
                                  "segment_size", "n_fft", "num_mels", "hop_size", "win_size", "sampling_rate",
                                  "fmin", "fmax_for_loss", "f0_quantizer_path", "input_training_file",
                                  "input_validation_file") if k in raw}
    return ResynthesisConfig(vocoder=vocoder_config, f0=f0, **simple)


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


# ------------------------------------------------------------------------------------------ models
class TrainingVocoder(CodeHiFiGAN):
    """:class:`CodeHiFiGAN` as ``train.py`` trains it: the generator's convolutions weight-normed (torch's
    parametrisation: the same ``g · v / ‖v‖`` as the original's hook), the frozen F0 VQ-VAE's unused decoder kept
    (``f0_decoder``) so that the checkpoint holds everything the original's ``CodeGenerator`` does.

    ``forward(code, f0=None, spkr=None, f0_stats=None)`` takes the original's keyword names.
    """

    def __init__(self, config: CodeHiFiGANConfig) -> None:
        super().__init__(config)
        for module in self.generator.modules():
            if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
                weight_norm(module)
        self.f0_decoder = None
        if self.f0_quantizer is not None:  # frozen: parameters without gradients, as in the original
            self.f0_decoder = JukeboxDecoder(config.f0_quantizer.f0_decoder_params)
            self.f0_quantizer.requires_grad_(False)
            self.f0_decoder.requires_grad_(False)

    def forward(self, code: torch.Tensor, f0: torch.Tensor | None = None, spkr: torch.Tensor | None = None,
                f0_stats: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(code, speaker=spkr, f0=f0, f0_stats=f0_stats)

    def export(self) -> CodeHiFiGAN:
        """The trained vocoder with weight norm folded, for ``save_pretrained`` / ``hifigan_unit_vocoder``."""
        state = {k: v.detach().cpu() for k, v in self.state_dict().items() if not k.startswith("f0_decoder.")}
        model = CodeHiFiGAN(self.config)
        model.load_state_dict_strict(fold_weight_norms(state))
        return model.eval()


def load_f0_quantizer(vocoder: TrainingVocoder, path: str | os.PathLike) -> list[str]:
    """Load the frozen F0 VQ-VAE of ``f0_quantizer_path`` (a ``train_f0_vq.py`` checkpoint); return its keys in the
    file's order (they go under ``quantizer.`` in the generator's checkpoint)."""
    try:
        container = load_original(path)
    except ConversionError as e:
        raise InputError(f"f0_quantizer_path: {e}") from e
    state = container.get("generator") if isinstance(container, dict) else None
    if not isinstance(state, dict) or not any(k.startswith("encoder.") for k in state):
        raise InputError(f"f0_quantizer_path {path} is not an F0 VQ-VAE checkpoint (train_f0_vq.py's g_XXXXXXXX)")
    renamed = rename(state, quantizer_rules("", "f0_quantizer.", decoder="f0_decoder."))
    own = vocoder.state_dict()
    bad = [k for k in renamed if k not in own or own[k].shape != renamed[k].shape]
    if bad or len(renamed) != sum(k.startswith(("f0_quantizer.", "f0_decoder.")) for k in own):
        raise InputError(f"the F0 VQ-VAE in {path} does not fit the config's f0_quantizer group ({bad[:3]})")
    vocoder.load_state_dict({**own, **renamed})
    return list(state)


# ------------------------------------------------------------------------------------------ training state
@dataclass
class Trainer:
    """Everything a step touches; ``original_keys`` is the original generator's key order (the optimiser's)."""

    config: ResynthesisConfig
    generator: TrainingVocoder
    mpd: MultiPeriodDiscriminator
    msd: MultiScaleDiscriminator
    original_keys: list[str]
    optim_g: torch.optim.Optimizer | None = None
    optim_d: torch.optim.Optimizer | None = None
    steps: int = 0
    last_epoch: int = -1

    def __post_init__(self) -> None:
        self.names = training_names(self.original_keys)

    def generator_parameters(self) -> list[nn.Parameter]:
        """The generator's parameters in the original's order (frozen ones included, as in the original)."""
        own = dict(self.generator.named_parameters())
        return [own[self.names[k]] for k in self.original_keys if self.names[k] in own]

    def build_optimizers(self, optim_g: dict | None = None, optim_d: dict | None = None) -> None:
        cfg = self.config
        betas = (cfg.adam_b1, cfg.adam_b2)
        self.optim_g = torch.optim.AdamW(self.generator_parameters(), cfg.learning_rate, betas=betas)
        self.optim_d = torch.optim.AdamW(itertools.chain(self.msd.parameters(), self.mpd.parameters()),
                                         cfg.learning_rate, betas=betas)
        for optimizer, state, name in ((self.optim_g, optim_g, "optim_g"), (self.optim_d, optim_d, "optim_d")):
            if state is not None:
                try:
                    optimizer.load_state_dict(state)
                except (ValueError, KeyError) as e:
                    raise WeightsError(f"the checkpoint's {name} does not fit these models ({e})") from e

    def original_generator_state(self) -> dict[str, torch.Tensor]:
        own = self.generator.state_dict()
        return {k: own[self.names[k]].detach().cpu().clone() for k in self.original_keys}

    def load_original_generator_state(self, state: dict[str, torch.Tensor], where: str) -> None:
        own = self.generator.state_dict()
        if list(state) != self.original_keys:
            extra = sorted(set(state) - set(self.original_keys))[:4]
            lacking = sorted(set(self.original_keys) - set(state))[:4]
            raise WeightsError(f"{where} does not fit the config's generator (unexpected {extra}, missing {lacking})")
        bad = [k for k in state if state[k].shape != own[self.names[k]].shape]
        if bad:
            raise WeightsError(f"{where} does not fit the config's generator: {bad[0]} has shape "
                               f"{tuple(state[bad[0]].shape)}, the config builds {tuple(own[self.names[bad[0]]].shape)}")
        self.generator.load_state_dict({self.names[k]: v for k, v in state.items()})


def build_trainer(config: ResynthesisConfig, *, seed: int, resume: tuple[Path, Path] | None = None,
                  init_from: Path | None = None) -> Trainer:
    """Models and optimisers as ``train.py`` builds them: seeded initialisation, or the state of an original
    ``g_``/``do_`` pair (``resume``: weights, discriminators, optimisers, step and epoch) or of a ``g_`` alone
    (``init_from``: generator weights only)."""
    torch.manual_seed(seed)
    generator = TrainingVocoder(config.vocoder)
    g_state = do_state = None
    if resume is not None:
        g_state, do_state = read_resume_pair(*resume)
    elif init_from is not None:
        g_state = read_generator_checkpoint(init_from)
    quantizer_keys: list[str] = []
    if config.vocoder.f0_quantizer is not None:
        if g_state is not None:  # the checkpoint carries the quantizer (the file is then only the original's need)
            quantizer_keys = [k[len("quantizer."):] for k in g_state if k.startswith("quantizer.")]
        elif not config.f0_quantizer_path or not Path(config.f0_quantizer_path).is_file():
            raise InputError(f"f0_quantizer_path {config.f0_quantizer_path!r} does not exist: train the F0 VQ-VAE "
                             "first (speechzoo train f0-vqvae) and point the config at its g_XXXXXXXX")
        else:
            quantizer_keys = load_f0_quantizer(generator, config.f0_quantizer_path)
    if do_state is not None:
        mpd = disc_format.build("mpd", do_state["mpd"])
        msd = disc_format.build("msd", do_state["msd"])
    else:
        mpd, msd = MultiPeriodDiscriminator(), MultiScaleDiscriminator()
    trainer = Trainer(config, generator, mpd, msd, original_generator_keys(config.vocoder, quantizer_keys))
    if g_state is not None:
        trainer.load_original_generator_state(g_state, str(resume[0] if resume else init_from))
    trainer.build_optimizers(do_state["optim_g"] if do_state else None, do_state["optim_d"] if do_state else None)
    if do_state is not None:
        trainer.steps, trainer.last_epoch = int(do_state["steps"]) + 1, int(do_state["epoch"])
    return trainer


def read_generator_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    try:
        container = load_original(path)
    except ConversionError as e:
        raise InputError(str(e)) from e
    state = container.get("generator") if isinstance(container, dict) else None
    if not isinstance(state, dict) or "conv_pre.weight_g" not in state:
        raise InputError(f"{path} is not a speech-resynthesis vocoder checkpoint g_XXXXXXXX ({{'generator'}} with "
                         f"a weight-normed conv_pre){_other_recipe(container)}")
    return state


def read_resume_pair(g_path: Path, do_path: Path) -> tuple[dict, dict]:
    g_state = read_generator_checkpoint(g_path)
    try:
        do = load_original(do_path)
    except ConversionError as e:
        raise InputError(str(e)) from e
    needed = ("mpd", "msd", "optim_g", "optim_d", "steps", "epoch")
    if not isinstance(do, dict) or any(k not in do for k in needed):
        raise InputError(f"{do_path} is not a speech-resynthesis do_XXXXXXXX checkpoint (it needs {needed})"
                         f"{_other_recipe(do)}")
    return g_state, do


def _other_recipe(container: Any) -> str:
    if not isinstance(container, dict):
        return ""
    if "discriminators" in container and "scheduler_g" in container:
        return "; it is a SpeechTokenizer trainer checkpoint: use `speechzoo train speechtokenizer --resume`"
    state = container.get("generator")
    if isinstance(state, dict) and any(k.startswith("encoder.level_blocks") for k in state):
        return "; it is an F0 VQ-VAE checkpoint: use `speechzoo train f0-vqvae --resume`"
    return ""


# ------------------------------------------------------------------------------------------ one step
def train_step(trainer: Trainer, batch: tuple, device: torch.device) -> dict[str, float]:
    """One optimisation step of ``train.py`` (module docstring); returns the original's logged values."""
    feats, y, _, y_mel = batch
    x = {k: v.to(device) for k, v in feats.items()}
    y, y_mel = y.to(device).unsqueeze(1), y_mel.to(device)
    g, mpd, msd = trainer.generator, trainer.mpd, trainer.msd
    y_g_hat = g(**x)
    if y_g_hat.shape != y.shape:
        raise InputError(f"the generator's output {tuple(y_g_hat.shape)} does not match the audio {tuple(y.shape)}")
    y_g_hat_mel = log_mel_spectrogram(y_g_hat.squeeze(1), **trainer.config.mel)

    trainer.optim_d.zero_grad()
    y_df_hat_r, y_df_hat_g, _, _ = mpd(y, y_g_hat.detach())
    loss_disc_f = discriminator_loss(y_df_hat_r, y_df_hat_g)[0]
    y_ds_hat_r, y_ds_hat_g, _, _ = msd(y, y_g_hat.detach())
    loss_disc_s = discriminator_loss(y_ds_hat_r, y_ds_hat_g)[0]
    loss_disc_all = loss_disc_s + loss_disc_f
    loss_disc_all.backward()
    trainer.optim_d.step()

    trainer.optim_g.zero_grad()
    loss_mel = F.l1_loss(y_mel, y_g_hat_mel) * MEL_LOSS_WEIGHT
    y_df_hat_r, y_df_hat_g, fmap_f_r, fmap_f_g = mpd(y, y_g_hat)
    y_ds_hat_r, y_ds_hat_g, fmap_s_r, fmap_s_g = msd(y, y_g_hat)
    loss_fm_f = feature_loss(fmap_f_r, fmap_f_g)
    loss_fm_s = feature_loss(fmap_s_r, fmap_s_g)
    loss_gen_f = generator_loss(y_df_hat_g)[0]
    loss_gen_s = generator_loss(y_ds_hat_g)[0]
    loss_gen_all = loss_gen_s + loss_gen_f + loss_fm_s + loss_fm_f + loss_mel
    loss_gen_all.backward()
    trainer.optim_g.step()

    with torch.no_grad():
        mel_error = F.l1_loss(y_mel, y_g_hat_mel).item()
    values = dict(loss_disc_f=loss_disc_f, loss_disc_s=loss_disc_s, loss_disc_all=loss_disc_all, loss_mel=loss_mel,
                  loss_fm_f=loss_fm_f, loss_fm_s=loss_fm_s, loss_gen_f=loss_gen_f, loss_gen_s=loss_gen_s,
                  loss_gen_all=loss_gen_all)
    return {**{k: v.item() for k, v in values.items()}, "mel_error": mel_error}


@torch.no_grad()
def validate(trainer: Trainer, loader: torch.utils.data.DataLoader, device: torch.device) -> float:
    """Mean mel error over the validation set, the generator in eval mode (``train.py``'s validation)."""
    trainer.generator.eval()
    total, count = 0.0, 0
    for feats, _, _, y_mel in loader:
        y_g_hat = trainer.generator(**{k: v.to(device) for k, v in feats.items()})
        total += F.l1_loss(y_mel.to(device), log_mel_spectrogram(y_g_hat.squeeze(1), **trainer.config.mel)).item()
        count += 1
    trainer.generator.train()
    return total / max(count, 1)


# ------------------------------------------------------------------------------------------ checkpoints
def save_original(trainer: Trainer, directory: Path, epoch: int) -> tuple[Path, Path]:
    """``g_{steps:08d}`` and ``do_{steps:08d}`` in the original layout (each written atomically)."""
    step = trainer.steps
    g_path, do_path = directory / f"g_{step:08d}", directory / f"do_{step:08d}"
    _atomic_save({"generator": trainer.original_generator_state()}, g_path)
    _atomic_save({"mpd": disc_format.to_original(_cpu(trainer.mpd.state_dict()), "mpd"),
                  "msd": disc_format.to_original(_cpu(trainer.msd.state_dict()), "msd"),
                  "optim_g": trainer.optim_g.state_dict(), "optim_d": trainer.optim_d.state_dict(),
                  "steps": step, "epoch": epoch}, do_path)
    return g_path, do_path


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def _atomic_save(obj: Any, path: Path) -> None:
    """Write to a temporary name, then rename: a crash never leaves a half-written checkpoint under ``path``."""
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------ the loop
def make_loader(config: ResynthesisConfig, entries: list[ManifestEntry], rng: random.Random,
                batch_size: int) -> torch.utils.data.DataLoader:
    dataset = CodeDataset(entries, segment_size=config.segment_size, code_hop_size=config.vocoder.code_hop_size,
                          mel=config.mel, f0=config.vocoder.f0, options=config.f0, rng=rng)
    if len(dataset) < batch_size:
        raise InputError(f"{len(dataset)} training files are fewer than one batch of {batch_size} "
                         "(the original drops incomplete batches)")
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, drop_last=True, num_workers=0)


def train(trainer: Trainer, train_entries: list[ManifestEntry], *, out: Path, max_steps: int,
          valid_entries: list[ManifestEntry] | None = None, log: Callable[[dict], None] | None = None,
          device: str | torch.device = "cpu", training_epochs: int = TRAINING_EPOCHS,
          checkpoint_interval: int = CHECKPOINT_INTERVAL, validation_interval: int = VALIDATION_INTERVAL) -> Trainer:
    """Run ``max_steps`` optimisation steps of ``train.py``'s loop from the trainer's step and epoch, then write
    ``g_``/``do_`` of the last step into ``out`` (and every ``checkpoint_interval`` steps on the way)."""
    device = torch.device(device)
    cfg = trainer.config
    for module in (trainer.generator, trainer.mpd, trainer.msd):
        module.to(device).train()
    rng = random.Random(DATASET_SEED)  # the datasets' random.seed(1234), shared as the module-level random is
    loader = make_loader(cfg, train_entries, rng, cfg.batch_size)
    valid = None
    if valid_entries:
        valid_set = CodeDataset(valid_entries, segment_size=cfg.segment_size, code_hop_size=cfg.vocoder.code_hop_size,
                                mel=cfg.mel, f0=cfg.vocoder.f0, options=cfg.f0, rng=rng)
        valid = torch.utils.data.DataLoader(valid_set, batch_size=cfg.batch_size, drop_last=True)
    schedulers = [torch.optim.lr_scheduler.ExponentialLR(o, gamma=cfg.lr_decay, last_epoch=trainer.last_epoch)
                  for o in (trainer.optim_g, trainer.optim_d)]
    out.mkdir(parents=True, exist_ok=True)
    done = 0
    epoch = max(0, trainer.last_epoch)
    while done < max_steps and epoch < training_epochs:
        for batch in loader:
            start = time.perf_counter()
            lr = trainer.optim_g.param_groups[0]["lr"]
            record = {"step": trainer.steps, "epoch": epoch, "lr": lr, **train_step(trainer, batch, device)}
            if trainer.steps % checkpoint_interval == 0 and trainer.steps != 0:
                save_original(trainer, out, epoch)
            if valid is not None and trainer.steps % validation_interval == 0:
                record["valid_mel_error"] = validate(trainer, valid, device)
            record["seconds"] = time.perf_counter() - start
            if log is not None:
                log(record)
            done += 1
            if done >= max_steps:
                break
            trainer.steps += 1
        else:
            for scheduler in schedulers:
                scheduler.step()
            epoch += 1
            continue
        break
    save_original(trainer, out, epoch)
    trainer.last_epoch = epoch
    return trainer

