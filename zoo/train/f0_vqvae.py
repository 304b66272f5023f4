"""speech-resynthesis' F0 VQ-VAE trainer (``train_f0_vq.py``): the Jukebox encoder / EMA codebook / decoder of
:class:`~zoo.models.f0_vqvae.F0VQVAE` trained to reconstruct speaker-normalised F0 contours.

One step: ``y_g_hat = decoder(quantise(encoder(f0)))``; ``loss_recon = mse(y_g_hat, f0) + lambda_commit ·
commit_loss`` with ``commit_loss = ‖x_q.detach() − x‖² / numel`` (straight-through quantisation); AdamW (weight decay
0.01) + ``ExponentialLR(lr_decay)`` per epoch.

The codebook is not trained by gradients but as Jukebox's ``BottleneckBlock`` does it (:class:`EMACodebook`): on the
first training forward it is drawn from the batch's latents (``init_k``), then on EVERY training step the per-code
sums and counts are moving averages (``mu``) and each code whose count falls below ``threshold`` (1.0) restarts at
a random latent of the batch (batches with fewer latents than codes are tiled with N(0, (0.01/√width)²) noise).
These draws use torch's global generator and have no knob, and — as in the original, where ``init``/``k_sum``/
``k_elem`` are plain attributes outside the state dict — the first training step after loading a checkpoint draws
a fresh codebook. So runs are reproducible with a seed, but not comparable number-for-number with the original's
beyond the first step's loss.

Checkpoints: ``g_{steps:08d}`` = ``{'generator': Quantizer state dict (original key names), 'optim_g', 'steps',
'epoch'}``, readable with ``torch.load(weights_only=True)`` and by the original; the model exports to
``f0_vqvae(weights=DIR)`` and ``f0_quantizer_path`` of the vocoder recipe takes the ``g_`` file.
"""
from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError, ConversionError, InputError
from ..formats import load_original, rename
from ..formats.f0_vqvae import RENAMES, f0_vqvae_config, original_quantizer_keys
from ..models.f0_vqvae import F0VQVAE, F0VQVAEConfig
from . import checkpoint
from .logger import TrainLogger
from .resynthesis_data import DATASET_SEED, F0Dataset, F0Options, ManifestEntry

#: Codes whose moving-average count falls below this restart at a batch latent (Jukebox's ``threshold``).
RESTART_THRESHOLD = 1.0
TRAINING_EPOCHS = 10000
CHECKPOINT_INTERVAL = 10000
VALIDATION_INTERVAL = 1000


@dataclass(frozen=True)
class F0VQVAETrainConfig:
    """The fields of a speech-resynthesis F0 VQ-VAE config (``configs/*/f0_vqvae.json``) that ``train_f0_vq.py``
    reads."""

    model: F0VQVAEConfig
    f0: F0Options = field(default_factory=F0Options)
    lambda_commit: float = 0.02
    batch_size: int = 16
    learning_rate: float = 2e-4
    adam_b1: float = 0.8
    adam_b2: float = 0.99
    lr_decay: float = 0.999
    seed: int = 1234
    segment_size: int = 16640
    input_training_file: str | None = None
    input_validation_file: str | None = None

    def __post_init__(self) -> None:
        frames = self.segment_size // 80
        hop = self.model.hop_length
        if self.batch_size < 1 or self.learning_rate <= 0 or frames % hop:
            raise ConfigError(f"batch_size and learning_rate must be positive and segment_size // 80 ({frames} F0 "
                              f"frames) a multiple of the VQ-VAE's hop ({hop} frames)")


def read_config(path: str | os.PathLike) -> F0VQVAETrainConfig:
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"no config at {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path} is not a JSON config ({e})") from e
    if not isinstance(raw, dict) or "f0_encoder_params" not in raw:
        hint = " (a vocoder config: use `speechzoo train resynthesis`)" if isinstance(raw, dict) and \
            "upsample_rates" in raw else ""
        raise InputError(f"{path} is not an F0 VQ-VAE config (configs/*/f0_vqvae.json){hint}")
    try:
        model = f0_vqvae_config(raw, where=str(path))
        f0 = F0Options(sampling_rate=raw.get("sampling_rate", 16000), multispkr=raw.get("multispkr") or None,
                       f0_stats=raw.get("f0_stats"), f0_normalize=bool(raw.get("f0_normalize")),
                       f0_feats=bool(raw.get("f0_feats")), f0_median=bool(raw.get("f0_median")),
                       f0_interp=bool(raw.get("f0_interp")))
        simple = {k: raw[k] for k in ("lambda_commit", "batch_size", "learning_rate", "adam_b1", "adam_b2",
                                      "lr_decay", "seed", "segment_size", "input_training_file",
                                      "input_validation_file") if k in raw}
        return F0VQVAETrainConfig(model=model, f0=f0, **simple)
    except (ConversionError, TypeError) as e:
        raise InputError(f"{path}: {e}") from e


class EMACodebook:
    """Jukebox's ``BottleneckBlock`` training state over one codebook buffer ``(K, width)`` (module docstring)."""

    def __init__(self, codebook: torch.Tensor, mu: float, threshold: float = RESTART_THRESHOLD) -> None:
        self.k = codebook
        self.mu, self.threshold = mu, threshold
        self.initialised = False
        self.k_sum: torch.Tensor | None = None
        self.k_elem: torch.Tensor | None = None

    def _tile(self, x: torch.Tensor) -> torch.Tensor:
        n, width = x.shape
        k_bins = self.k.shape[0]
        if n < k_bins:
            x = x.repeat((k_bins + n - 1) // n, 1)
            x = x + torch.randn_like(x) * (0.01 / np.sqrt(width))
        return x

    def _random_codes(self, x: torch.Tensor) -> torch.Tensor:
        y = self._tile(x)
        return y[torch.randperm(y.shape[0], device=y.device)][: self.k.shape[0]]

    @torch.no_grad()
    def initialise(self, x: torch.Tensor) -> None:
        """``init_k``: codes drawn from the latents ``x`` ``(N, width)``; unit counts."""
        self.k.copy_(self._random_codes(x))
        self.k_sum, self.k_elem = self.k.clone(), torch.ones(self.k.shape[0], device=x.device)
        self.initialised = True

    @torch.no_grad()
    def update(self, x: torch.Tensor, codes: torch.Tensor) -> dict[str, torch.Tensor]:
        """One EMA step with latents ``x`` ``(N, width)`` and their codes ``(N,)``; returns the original's
        metrics (entropy, used_curr, usage, dk)."""
        k_bins = self.k.shape[0]
        onehot = torch.zeros(k_bins, x.shape[0], device=x.device)
        onehot.scatter_(0, codes.view(1, -1), 1)
        batch_sum, batch_elem = onehot @ x, onehot.sum(dim=-1)
        k_rand = self._random_codes(x)
        old_k = self.k.clone()
        self.k_sum = self.mu * self.k_sum + (1.0 - self.mu) * batch_sum
        self.k_elem = self.mu * self.k_elem + (1.0 - self.mu) * batch_elem
        usage = (self.k_elem.view(k_bins, 1) >= self.threshold).float()
        self.k.copy_(usage * (self.k_sum / self.k_elem.view(k_bins, 1)) + (1 - usage) * k_rand)
        prob = batch_elem / batch_elem.sum()
        return dict(entropy=-(prob * torch.log(prob + 1e-8)).sum(), used_curr=(batch_elem >= self.threshold).sum(),
                    usage=usage.sum(), dk=torch.norm(self.k - old_k) / np.sqrt(old_k.numel()))


class F0VQVAETrainer:
    """The model, its optimiser and EMA codebook, and the step/epoch counters."""

    def __init__(self, config: F0VQVAETrainConfig, model: F0VQVAE) -> None:
        self.config, self.model = config, model
        self.original_keys = original_quantizer_keys(config.model)
        self.names = {k: next(iter(rename({k: k}, RENAMES))) for k in self.original_keys}
        own = dict(model.named_parameters())
        params = [own[self.names[k]] for k in self.original_keys if self.names[k] in own]
        self.optim_g = torch.optim.AdamW(params, config.learning_rate, betas=(config.adam_b1, config.adam_b2))
        self.codebook = EMACodebook(model.quantizer.codebooks[0].codebook, config.model.f0_vq_params.mu)
        if config.model.f0_vq_params.levels != 1:
            raise ConfigError("F0 VQ-VAE training supports one level (levels: 1), as every released config has")
        self.steps, self.last_epoch = 0, -1
        self.data_rng = random.Random(DATASET_SEED)  # the datasets' random.seed(1234)

    def forward(self, f0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Reconstruction ``(B, 1, T)``, commitment loss and codebook metrics (training mode updates the codebook)."""
        ((latent, _),) = self.model.quantizer.encoder(f0)
        b, width, t = latent.shape
        x = latent.permute(0, 2, 1).reshape(-1, width)
        if self.model.training and not self.codebook.initialised:
            self.codebook.initialise(x.detach())
        k = self.codebook.k
        distance = (x ** 2).sum(-1, keepdim=True) - 2 * x @ k.t() + (k.t() ** 2).sum(0, keepdim=True)
        codes = distance.min(dim=-1).indices
        x_d = F.embedding(codes, k)
        metrics = self.codebook.update(x.detach(), codes) if self.model.training else {}
        commit_loss = torch.norm(x_d.detach() - x) ** 2 / x.numel()
        x_d = x + (x_d - x).detach()
        if not self.model.training:
            x_d = x_d.detach()
        x_d = x_d.view(b, t, width).permute(0, 2, 1)
        return self.model.decoder([x_d]), commit_loss, metrics

    def original_state(self) -> dict[str, torch.Tensor]:
        own = self.model.state_dict()
        return {k: own[self.names[k]].detach().cpu().clone() for k in self.original_keys}

    def load_original(self, container: dict, where: str) -> None:
        state = container["generator"]
        if set(state) != set(self.original_keys):
            raise InputError(f"{where} does not fit the config's F0 VQ-VAE (its keys differ)")
        self.model.load_state_dict({self.names[k]: v for k, v in state.items()}, strict=True)
        if "optim_g" in container:
            self.optim_g.load_state_dict(container["optim_g"])
            self.steps, self.last_epoch = int(container["steps"]) + 1, int(container["epoch"])


def build_trainer(config: F0VQVAETrainConfig, *, seed: int, resume: Path | None = None,
                  init_from: Path | None = None) -> F0VQVAETrainer:
    torch.manual_seed(seed)
    trainer = F0VQVAETrainer(config, F0VQVAE(config.model))
    path = resume or init_from
    if path is not None:
        try:
            container = load_original(path)
        except ConversionError as e:
            raise InputError(str(e)) from e
        state = container.get("generator") if isinstance(container, dict) else None
        if not isinstance(state, dict) or not any(k.startswith("encoder.level_blocks") for k in state) or \
                any(k.startswith(("conv_pre.", "quantizer.")) for k in state):
            raise InputError(f"{path} is not an F0 VQ-VAE checkpoint (train_f0_vq.py's g_XXXXXXXX)")
        if resume is not None and "optim_g" not in container:
            raise InputError(f"{path} holds no optimiser state; continue from it with --init-from")
        trainer.load_original(container if resume is not None else {"generator": state}, str(path))
    return trainer


def save_original(trainer: F0VQVAETrainer, directory: Path, epoch: int) -> Path:
    return checkpoint.torch_save({"generator": trainer.original_state(), "optim_g": trainer.optim_g.state_dict(),
                                  "steps": trainer.steps, "epoch": epoch}, directory / f"g_{trainer.steps:08d}")


def datasets(trainer: F0VQVAETrainer, train_entries: list[ManifestEntry],
             valid_entries: list[ManifestEntry] | None = None) -> tuple[F0Dataset, F0Dataset | None]:
    """Training and validation sets (files checked now), sharing one data random generator as the original's."""
    cfg = trainer.config
    train_set = F0Dataset([e.audio for e in train_entries], cfg.segment_size, cfg.f0, trainer.data_rng)
    if len(train_set) < cfg.batch_size:
        raise InputError(f"{len(train_set)} files are fewer than one batch of {cfg.batch_size}")
    valid_set = (F0Dataset([e.audio for e in valid_entries], cfg.segment_size, cfg.f0, trainer.data_rng)
                 if valid_entries else None)
    return train_set, valid_set


def train(trainer: F0VQVAETrainer, dataset: F0Dataset, *, out: Path, max_steps: int,
          valid_set: F0Dataset | None = None, logger: TrainLogger | None = None,
          device: str | torch.device = "cpu", training_epochs: int = TRAINING_EPOCHS,
          checkpoint_interval: int = CHECKPOINT_INTERVAL, validation_interval: int = VALIDATION_INTERVAL
          ) -> F0VQVAETrainer:
    """``max_steps`` steps of ``train_f0_vq.py``'s loop, then ``g_`` of the last step in ``out``."""
    device = torch.device(device)
    cfg = trainer.config
    trainer.model.to(device).train()
    trainer.codebook.k = trainer.model.quantizer.codebooks[0].codebook
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False, drop_last=True)
    valid = (torch.utils.data.DataLoader(valid_set, batch_size=cfg.batch_size, drop_last=True)
             if valid_set is not None else None)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(trainer.optim_g, gamma=cfg.lr_decay,
                                                       last_epoch=trainer.last_epoch)
    out.mkdir(parents=True, exist_ok=True)
    done, epoch = 0, max(0, trainer.last_epoch)
    while done < max_steps and epoch < training_epochs:
        for feats, y, _ in loader:
            start = time.perf_counter()
            f0, y = feats["f0"].to(device), y.to(device)
            lr = trainer.optim_g.param_groups[0]["lr"]
            y_g_hat, commit_loss, metrics = trainer.forward(f0)
            trainer.optim_g.zero_grad()
            loss_recon = F.mse_loss(y_g_hat, y) + commit_loss * cfg.lambda_commit
            loss_recon.backward()
            trainer.optim_g.step()
            record = {"step": trainer.steps, "epoch": epoch, "lr": lr, "loss_recon": loss_recon.item(),
                      "commit_error": commit_loss.item(), **{k: float(v) for k, v in metrics.items()}}
            if trainer.steps % checkpoint_interval == 0 and trainer.steps != 0:
                save_original(trainer, out, epoch)
            if valid is not None and trainer.steps % validation_interval == 0:
                record["valid_error"] = validate(trainer, valid, device)
            record["seconds"] = time.perf_counter() - start
            if logger is not None:
                logger.step(record)
            done += 1
            if done >= max_steps:
                break
            trainer.steps += 1
        else:
            scheduler.step()
            epoch += 1
            continue
        break
    save_original(trainer, out, epoch)
    trainer.last_epoch = epoch
    return trainer


@torch.no_grad()
def validate(trainer: F0VQVAETrainer, loader: torch.utils.data.DataLoader, device: torch.device) -> float:
    """``train_f0_vq.py``'s validation error: mean of mse + lambda_commit · commit loss, in eval mode."""
    trainer.model.eval()
    total, count = 0.0, 0
    for feats, y, _ in loader:
        y_g_hat, commit_loss, _ = trainer.forward(feats["f0"].to(device))
        total += (F.mse_loss(y_g_hat, y.to(device)) + commit_loss * trainer.config.lambda_commit).item()
        count += 1
    trainer.model.train()
    return total / max(count, 1)


def reconstruction_error(trainer: F0VQVAETrainer, f0: torch.Tensor) -> float:
    """MSE of the eval-mode reconstruction of ``f0`` ``(B, 1, T)`` (no codebook update)."""
    was_training = trainer.model.training
    trainer.model.eval()
    with torch.no_grad():
        y_g_hat, _, _ = trainer.forward(f0)
    trainer.model.train(was_training)
    return F.mse_loss(y_g_hat, f0).item()

