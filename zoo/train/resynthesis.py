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
original ``train.py`` and an original run continues here (:func:`build_trainer`; as in the original, the
checkpoint's epoch runs again). speechzoo's own ``training_state_XXXXXXXX.safetensors`` (weights, optimiser moments,
schedulers, the position in the epoch, the random states; never pickled) continues a run exactly. The trained
vocoder exports to ``hifigan_unit_vocoder(weights=DIR)`` (:meth:`TrainingVocoder.export`).

Several processes (``torchrun``): each reads ``batch_size / world_size`` items of a ``DistributedSampler`` shuffle,
as ``train.py`` does on several GPUs, and DDP averages the gradients.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import random
import time
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
from ..nn.discriminators import MPD_CHANNELS, MSD_CHANNELS, MultiPeriodDiscriminator, MultiScaleDiscriminator
from . import checkpoint
from .distributed import ProcessEnv, all_reduce_mean, barrier, setup, wrap
from .logger import TrainLogger
from .loop import Precision, ShardedSampler, make_loader
from .losses import LogMel, adversarial_loss, discriminator_loss, feature_loss, mel_filterbank
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
    #: speechzoo's addition: discriminator widths (the original hard-codes the released ones), for small runs.
    mpd_channels: tuple[int, ...] = MPD_CHANNELS
    msd_channels: tuple[int, ...] = MSD_CHANNELS

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.segment_size < 1 or self.learning_rate <= 0:
            raise ConfigError("batch_size, segment_size and learning_rate must be positive")
        if self.segment_size % self.vocoder.code_hop_size:
            raise ConfigError(f"segment_size {self.segment_size} must be a multiple of code_hop_size "
                              f"{self.vocoder.code_hop_size}")
        if self.vocoder.code_hop_size != self.vocoder.hop_length:
            raise ConfigError(f"code_hop_size {self.vocoder.code_hop_size} must equal prod(upsample_rates) = "
                              f"{self.vocoder.hop_length}: the generator's output must match the segment")

    def log_mel(self) -> LogMel:
        """The loss's log-mel (``dataset.mel_spectrogram`` with ``fmax_for_loss``): librosa's slaney-scale filters
        on ``sqrt(|X|² + 1e-9)``."""
        fmax = self.sampling_rate / 2 if self.fmax_for_loss is None else self.fmax_for_loss
        basis = mel_filterbank(self.n_fft // 2 + 1, self.fmin, fmax, self.num_mels, self.sampling_rate,
                               mel_scale="slaney").T
        return LogMel(self.n_fft, self.num_mels, self.sampling_rate, self.hop_size, self.win_size,
                      magnitude="sqrt", basis=basis)


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
    simple.update({k: tuple(raw[k]) for k in ("mpd_channels", "msd_channels") if k in raw})
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
#: Name pattern of the zoo's own training states (``training_state_{step:08d}.safetensors``).
STATE_PATTERN = r"training_state_(\d{8})\.safetensors"
RECIPE = "resynthesis"


@dataclass
class Trainer:
    """Models, optimisers and counters of a run. ``original_keys`` is the original generator's key order (that of
    its ``parameters()`` and so of ``optim_g``'s state); ``steps`` is the counter of the NEXT step, ``epoch`` and
    ``batches_done`` where it stands in the data (the zoo's own states resume mid-epoch exactly)."""

    config: ResynthesisConfig
    generator: TrainingVocoder
    mpd: MultiPeriodDiscriminator
    msd: MultiScaleDiscriminator
    original_keys: list[str]
    steps: int = 0
    epoch: int = 0
    batches_done: int = 0
    data_rng: random.Random = field(default_factory=lambda: random.Random(DATASET_SEED))
    scheduler_last_epoch: int = -1
    scheduler_states: list[dict] | None = None

    def __post_init__(self) -> None:
        self.names = training_names(self.original_keys)
        betas = (self.config.adam_b1, self.config.adam_b2)
        self.optim_g = torch.optim.AdamW(self.generator_parameters(), self.config.learning_rate, betas=betas)
        self.optim_d = torch.optim.AdamW(itertools.chain(self.msd.parameters(), self.mpd.parameters()),
                                         self.config.learning_rate, betas=betas)
        self.mel = self.config.log_mel()

    def generator_parameters(self) -> list[nn.Parameter]:
        """The generator's parameters in the original's order (frozen ones included, as in the original)."""
        own = dict(self.generator.named_parameters())
        return [own[self.names[k]] for k in self.original_keys if self.names[k] in own]

    def schedulers(self) -> list[torch.optim.lr_scheduler.ExponentialLR]:
        """``ExponentialLR(lr_decay, last_epoch=...)`` for both optimisers, as ``train.py`` builds them (a resumed
        run passes the checkpoint's epoch, which leaves the restored learning rates as they are)."""
        made = [torch.optim.lr_scheduler.ExponentialLR(o, gamma=self.config.lr_decay,
                                                       last_epoch=self.scheduler_last_epoch)
                for o in (self.optim_g, self.optim_d)]
        for scheduler, state in zip(made, self.scheduler_states or ()):
            scheduler.load_state_dict(state)
        return made

    # -------------------------------------------------------------- the original layout
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

    def load_optimizers(self, optim_g: dict, optim_d: dict, where: str) -> None:
        for optimizer, state, name in ((self.optim_g, optim_g, "optim_g"), (self.optim_d, optim_d, "optim_d")):
            try:
                optimizer.load_state_dict(state)
            except (ValueError, KeyError) as e:
                raise WeightsError(f"{where}: its {name} does not fit these models ({e})") from e

    def save_original(self, directory: Path, step: int, epoch: int) -> tuple[Path, Path]:
        """``g_{step:08d}`` and ``do_{step:08d}`` as ``train.py`` saves them after step ``step`` of ``epoch``."""
        g_path, do_path = directory / f"g_{step:08d}", directory / f"do_{step:08d}"
        checkpoint.torch_save({"generator": self.original_generator_state()}, g_path)
        checkpoint.torch_save({"mpd": disc_format.to_original(_cpu(self.mpd.state_dict()), "mpd"),
                               "msd": disc_format.to_original(_cpu(self.msd.state_dict()), "msd"),
                               "optim_g": self.optim_g.state_dict(), "optim_d": self.optim_d.state_dict(),
                               "steps": step, "epoch": epoch}, do_path)
        return g_path, do_path

    # -------------------------------------------------------------- the zoo's own state
    def save_state(self, directory: Path, schedulers: list) -> Path:
        """Everything to continue exactly where the run stands (weights, optimiser moments, schedulers, position in
        the epoch, the data and torch random states) as one safetensors file, never pickled."""
        tensors, meta = {}, {"recipe": RECIPE, "steps": self.steps, "epoch": self.epoch,
                             "batches_done": self.batches_done, "original_keys": self.original_keys,
                             "data_rng": _json_random(self.data_rng.getstate()),
                             "schedulers": [s.state_dict() for s in schedulers]}
        for name, state in (("generator", self.generator.state_dict()), ("mpd", self.mpd.state_dict()),
                            ("msd", self.msd.state_dict()), ("optim_g", self.optim_g.state_dict()),
                            ("optim_d", self.optim_d.state_dict()), ("rng", checkpoint.rng_state())):
            t, meta[name] = checkpoint.flatten_state(state, name)
            tensors.update(t)
        return checkpoint.save_state(directory / f"training_state_{self.steps - 1:08d}.safetensors", tensors, meta)


def _json_random(state: tuple) -> list:
    return [state[0], list(state[1]), state[2]]


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def build_trainer(config: ResynthesisConfig, *, seed: int, resume: list[Path] | None = None,
                  init_from: Path | None = None) -> Trainer:
    """Models and optimisers as ``train.py`` builds them: seeded initialisation, then the state of ``resume`` —
    an original ``g_``/``do_`` pair (weights, discriminators, optimisers, step and epoch; the epoch restarts, as in
    the original) or a speechzoo ``training_state_X.safetensors`` (all of it, mid-epoch) — or the generator weights of
    ``init_from`` (a ``g_``) alone."""
    torch.manual_seed(seed)
    generator = TrainingVocoder(config.vocoder)
    g_state = do_state = zoo_state = None
    if resume is not None and len(resume) == 1:
        zoo_state = read_state(resume[0])
    elif resume is not None:
        g_state, do_state = read_resume_pair(*resume)
    elif init_from is not None:
        g_state = read_generator_checkpoint(init_from)
    if zoo_state is not None:
        quantizer_keys = [k[len("quantizer."):] for k in zoo_state[1]["original_keys"] if k.startswith("quantizer.")]
    elif config.vocoder.f0_quantizer is None:
        quantizer_keys = []
    elif g_state is not None:  # the checkpoint carries the quantizer (the file is then only the original's need)
        quantizer_keys = [k[len("quantizer."):] for k in g_state if k.startswith("quantizer.")]
    elif not config.f0_quantizer_path or not Path(config.f0_quantizer_path).is_file():
        raise InputError(f"f0_quantizer_path {config.f0_quantizer_path!r} does not exist: train the F0 VQ-VAE "
                         "first (speechzoo train f0-vqvae) and point the config at its g_XXXXXXXX")
    else:
        quantizer_keys = load_f0_quantizer(generator, config.f0_quantizer_path)
    if do_state is not None:
        mpd, msd = disc_format.build("mpd", do_state["mpd"]), disc_format.build("msd", do_state["msd"])
    else:
        mpd, msd = MultiPeriodDiscriminator(config.mpd_channels), MultiScaleDiscriminator(config.msd_channels)
    trainer = Trainer(config, generator, mpd, msd, original_generator_keys(config.vocoder, quantizer_keys))
    if g_state is not None:
        trainer.load_original_generator_state(g_state, str(resume[0] if resume else init_from))
    if do_state is not None:
        trainer.load_optimizers(do_state["optim_g"], do_state["optim_d"], str(resume[1]))
        trainer.steps, trainer.epoch = int(do_state["steps"]) + 1, int(do_state["epoch"])
        trainer.scheduler_last_epoch = trainer.epoch
    if zoo_state is not None:
        _load_state(trainer, *zoo_state, where=str(resume[0]))
    return trainer


def read_state(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    if path.suffix != ".safetensors":
        raise InputError(f"--resume {path}: give the original g_XXXXXXXX and do_XXXXXXXX, or a speechzoo "
                         "training_state_XXXXXXXX.safetensors")
    tensors, meta = checkpoint.load_state(path)
    if meta.get("recipe") != RECIPE:
        raise InputError(f"{path} is a training state of the {meta.get('recipe')!r} recipe, not of {RECIPE}")
    return tensors, meta


def _load_state(trainer: Trainer, tensors: dict[str, torch.Tensor], meta: dict[str, Any], where: str) -> None:
    try:
        for name, module in (("generator", trainer.generator), ("mpd", trainer.mpd), ("msd", trainer.msd)):
            module.load_state_dict(checkpoint.unflatten_state(tensors, meta[name]))
        trainer.load_optimizers(checkpoint.unflatten_state(tensors, meta["optim_g"]),
                                checkpoint.unflatten_state(tensors, meta["optim_d"]), where)
    except RuntimeError as e:  # load_state_dict's size/key mismatch
        raise WeightsError(f"{where} does not fit the config's models ({str(e)[:300]})") from e
    checkpoint.set_rng_state(checkpoint.unflatten_state(tensors, meta["rng"]))
    rng = meta["data_rng"]
    trainer.data_rng.setstate((rng[0], tuple(rng[1]), rng[2]))
    trainer.steps, trainer.epoch, trainer.batches_done = meta["steps"], meta["epoch"], meta["batches_done"]
    trainer.scheduler_states = meta["schedulers"]
    trainer.scheduler_last_epoch = meta["schedulers"][0]["last_epoch"]


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
def train_step(trainer: Trainer, batch: tuple, generator: nn.Module, mpd: nn.Module, msd: nn.Module,
               precision: Precision) -> dict[str, float]:
    """One optimisation step of ``train.py`` (module docstring) with the (possibly DDP-wrapped) modules; returns
    the original's logged values of this process's share of the batch."""
    feats, y, _, y_mel = batch
    device = precision.device
    x = {k: v.to(device) for k, v in feats.items()}
    y, y_mel = y.to(device).unsqueeze(1), y_mel.to(device)
    with precision.autocast():
        y_g_hat = generator(**x)
    if y_g_hat.shape != y.shape:
        raise InputError(f"the generator's output {tuple(y_g_hat.shape)} does not match the audio {tuple(y.shape)}")
    y_g_hat_mel = trainer.mel(y_g_hat.squeeze(1).float())

    trainer.optim_d.zero_grad()
    with precision.autocast():
        y_df_hat_r, y_df_hat_g, _, _ = mpd(y, y_g_hat.detach())
        loss_disc_f = discriminator_loss(y_df_hat_r, y_df_hat_g)
        y_ds_hat_r, y_ds_hat_g, _, _ = msd(y, y_g_hat.detach())
        loss_disc_s = discriminator_loss(y_ds_hat_r, y_ds_hat_g)
        loss_disc_all = loss_disc_s + loss_disc_f
    precision.backward(loss_disc_all)
    precision.step(trainer.optim_d)

    trainer.optim_g.zero_grad()
    loss_mel = F.l1_loss(y_mel, y_g_hat_mel) * MEL_LOSS_WEIGHT
    with precision.autocast():
        y_df_hat_r, y_df_hat_g, fmap_f_r, fmap_f_g = mpd(y, y_g_hat)
        y_ds_hat_r, y_ds_hat_g, fmap_s_r, fmap_s_g = msd(y, y_g_hat)
        loss_fm_f = feature_loss(fmap_f_r, fmap_f_g)
        loss_fm_s = feature_loss(fmap_s_r, fmap_s_g)
        loss_gen_f = adversarial_loss(y_df_hat_g)
        loss_gen_s = adversarial_loss(y_ds_hat_g)
        loss_gen_all = loss_gen_s + loss_gen_f + loss_fm_s + loss_fm_f + loss_mel
    precision.backward(loss_gen_all)
    precision.step(trainer.optim_g)
    precision.update()

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
        total += F.l1_loss(y_mel.to(device), trainer.mel(y_g_hat.squeeze(1))).item()
        count += 1
    trainer.generator.train()
    return total / max(count, 1)


# ------------------------------------------------------------------------------------------ the loop
def make_dataset(config: ResynthesisConfig, entries: list[ManifestEntry], rng: random.Random) -> CodeDataset:
    return CodeDataset(entries, segment_size=config.segment_size, code_hop_size=config.vocoder.code_hop_size,
                       mel=config.log_mel(), f0=config.vocoder.f0, options=config.f0, rng=rng)


def datasets(trainer: Trainer, train_entries: list[ManifestEntry], valid_entries: list[ManifestEntry] | None = None
             ) -> tuple[CodeDataset, CodeDataset | None]:
    """The training and validation sets (every file checked now, before any training), sharing the trainer's data
    random generator as the original's share the module-level ``random``."""
    train_set = make_dataset(trainer.config, train_entries, trainer.data_rng)
    return train_set, make_dataset(trainer.config, valid_entries, trainer.data_rng) if valid_entries else None


def train(trainer: Trainer, dataset: CodeDataset, *, out: Path, max_steps: int,
          valid_set: CodeDataset | None = None, logger: TrainLogger | None = None,
          env: ProcessEnv | None = None, precision: str = "fp32", training_epochs: int = TRAINING_EPOCHS,
          checkpoint_interval: int = CHECKPOINT_INTERVAL, validation_interval: int = VALIDATION_INTERVAL,
          shuffle: bool | None = None) -> Trainer:
    """Run ``max_steps`` optimisation steps of ``train.py``'s loop from where the trainer stands, then write
    ``g_``/``do_`` of the last step (the original layout) and ``training_state_X.safetensors`` into ``out`` (and every
    ``checkpoint_interval`` steps on the way).

    In one process the batches are the original's (the manifest in order, no shuffling). Under torchrun each of the
    R processes reads ``batch_size / R`` items of a ``DistributedSampler`` shuffle (seed 0, reshuffled per epoch), as
    ``train.py`` does on several GPUs; gradients are averaged by DDP. Global batch ``k`` of an epoch is then items
    ``k·batch_size … (k+1)·batch_size − 1`` of the epoch's permutation whatever R is (rank ``r`` reads positions
    ``r, r+R, …``), so ``shuffle=True`` on one process (the same sampler, R = 1) trains on the same global batches as
    any torchrun run; None: shuffle only under torchrun, as the original.
    """
    env = env or setup("cpu")
    cfg = trainer.config
    amp = Precision(precision, env.device)
    modules = [wrap(m.train(), env) for m in (trainer.generator, trainer.mpd, trainer.msd)]
    trainer.mel = trainer.mel.to(env.device)
    batch_size = cfg.batch_size // env.world_size
    if batch_size < 1 or len(dataset) < cfg.batch_size:
        raise InputError(f"{len(dataset)} training files and {env.world_size} processes cannot make a batch of "
                         f"{cfg.batch_size} (the original drops incomplete batches)")
    shuffle = env.distributed if shuffle is None else shuffle
    sampler = ShardedSampler(dataset, env.rank, env.world_size, shuffle=shuffle)
    loader = make_loader(dataset, sampler, batch_size)
    valid = None
    if valid_set is not None and env.is_main:
        valid = make_loader(valid_set, ShardedSampler(valid_set, shuffle=False), batch_size)
    schedulers = trainer.schedulers()
    out.mkdir(parents=True, exist_ok=True)
    done = 0
    while done < max_steps and trainer.epoch < training_epochs:
        sampler.set_position(trainer.epoch, trainer.batches_done, batch_size)
        for batch in loader:
            start = time.perf_counter()
            lr = trainer.optim_g.param_groups[0]["lr"]
            values = all_reduce_mean(train_step(trainer, batch, *modules, amp), env)
            record = {"step": trainer.steps, "epoch": trainer.epoch, "lr": lr, **values}
            if env.is_main and trainer.steps % checkpoint_interval == 0 and trainer.steps != 0:
                trainer.save_original(out, trainer.steps, trainer.epoch)
            if valid is not None and trainer.steps % validation_interval == 0:
                record["valid_mel_error"] = validate(trainer, valid, env.device)
            record["seconds"] = time.perf_counter() - start
            if logger is not None:
                logger.step(record)
            done += 1
            trainer.steps += 1
            trainer.batches_done += 1
            if done >= max_steps:
                break
        else:
            for scheduler in schedulers:
                scheduler.step()
            trainer.epoch, trainer.batches_done = trainer.epoch + 1, 0
            continue
        break
    if env.is_main:  # named after the step just taken, as the original names them
        trainer.save_original(out, trainer.steps - 1, trainer.epoch)
        trainer.save_state(out, schedulers)
    barrier()
    return trainer
