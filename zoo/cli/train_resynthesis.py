"""``speechzoo train resynthesis`` and ``speechzoo train f0-vqvae``: speech-resynthesis' ``train.py`` (unit HiFi-GAN
with F0 and speaker, against MPD + MSD) and ``train_f0_vq.py`` (the F0 VQ-VAE).

    speechzoo train f0-vqvae --config configs/VCTK/f0_vqvae.json --files train.txt --max-steps 400000 -o f0_vq/
    speechzoo train resynthesis --config configs/VCTK/hubert100_lut.json --files train.txt --max-steps 400000 -o cp/
    speechzoo train resynthesis --config cp/config.json --resume cp/g_00010000 cp/do_00010000 ... -o cp/

``--config`` is the original JSON config; ``--files`` a speech-resynthesis manifest (``speechzoo prepare manifest``
writes one; default: the config's ``input_training_file``). ``--resume`` continues an original (or speechzoo) run
exactly from its ``g_``/``do_`` pair (or the newest pair in a folder); ``--init-from g_X`` takes the generator's
weights only. ``-o DIR`` receives the config, the checkpoints in the original layout (``g_``/``do_`` of the last step
and every ``--checkpoint-interval`` steps), the exported model (``DIR/model``: ``hifigan_unit_vocoder(weights=...)``
or ``f0_vqvae(weights=...)``) and, with ``--log-jsonl``, one JSON line per step with the original's loss names.
The original's flag spellings (``--checkpoint_path``, ``--checkpoint_interval``, ...) work too.
"""
from __future__ import annotations

import argparse
import importlib.util
import shutil
from pathlib import Path

import torch

from ..errors import InputError
from ..train.checkpoint import newest
from ..train import f0_vqvae as f0_recipe
from ..train import resynthesis as recipe
from ..train.resynthesis import STATE_PATTERN
from ..train.distributed import setup, teardown
from ..train.logger import TrainLogger
from ..train.loop import PRECISIONS
from ..train.resynthesis_data import ManifestEntry, read_manifest
from .inputs import positive_int
from .options import add_out

EXPORT_DIR = "model"


def register(subparsers: argparse._SubParsersAction) -> None:
    for name, help_text, defaults in (
            ("resynthesis", "speech-resynthesis' unit HiFi-GAN (train.py)", recipe),
            ("f0-vqvae", "speech-resynthesis' F0 VQ-VAE (train_f0_vq.py)", f0_recipe)):
        p = subparsers.add_parser(name, help=help_text, description=__doc__.splitlines()[0])
        p.add_argument("--config", type=Path, required=True, help="the original JSON config")
        p.add_argument("--files", "--input_training_file", dest="files", type=Path,
                       help="training manifest (default: the config's input_training_file)")
        p.add_argument("--valid-files", "--input_validation_file", dest="valid_files", type=Path,
                       help="validation manifest (default: the config's input_validation_file, if it exists)")
        add_out(p, "folder for the config, checkpoints, logs and the exported model (model/)", "--checkpoint_path",
                "--checkpoint-path")
        start = p.add_mutually_exclusive_group()
        start.add_argument("--resume", nargs="+", type=Path, metavar="CKPT",
                           help="continue exactly: g_X do_X" + (" (or g_X alone for f0-vqvae)" if name != "resynthesis"
                                                                else "") + ", or a folder (its newest checkpoint)")
        start.add_argument("--init-from", "--init_from", dest="init_from", type=Path, metavar="G_CKPT",
                           help="start from these generator weights with fresh optimisers and step 0")
        steps = p.add_mutually_exclusive_group(required=True)
        steps.add_argument("--max-steps", "--max_steps", dest="max_steps", type=positive_int,
                           help="optimisation steps to run (from where the run stands)")
        steps.add_argument("--training-steps", "--training_steps", dest="training_steps", type=positive_int,
                           help="as the original's --training_steps: run until the step counter reaches this")
        p.add_argument("--seed", type=int, help="torch seed (default: the config's seed)")
        p.add_argument("--log-jsonl", "--log_jsonl", dest="log_jsonl", type=Path,
                       help="append one JSON line per step (the original's loss names, step, epoch, lr)")
        p.add_argument("--device", help="torch device (default: this process's GPU under torchrun, else cuda:0 or "
                                        "the CPU)")
        p.add_argument("--tensorboard", type=Path, help="TensorBoard folder (default OUT/logs, as the original, when "
                                                         "tensorboard is installed)")
        p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
        for flag, default in (("training_epochs", defaults.TRAINING_EPOCHS),
                              ("checkpoint_interval", defaults.CHECKPOINT_INTERVAL),
                              ("validation_interval", defaults.VALIDATION_INTERVAL)):
            p.add_argument(f"--{flag.replace('_', '-')}", f"--{flag}", dest=flag, type=positive_int, default=default,
                           help=f"as the original's --{flag} (default {default})")
        if name == "resynthesis":
            p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                           help="fp32 (the original's), or bf16/fp16 autocast (fp16 with gradient scaling)")
            p.add_argument("--shuffle", action="store_true", default=None,
                           help="shuffle the training files every epoch with train.py's multi-GPU sampler "
                                "(DistributedSampler, seed 0) also on one process: the same global batches as a "
                                "torchrun run of any size (default: shuffle only under torchrun, as the original)")
        p.set_defaults(func=run_resynthesis if name == "resynthesis" else run_f0_vqvae)


def _entries(path: Path | None, what: str) -> list[ManifestEntry]:
    if path is None:
        raise InputError(f"no {what}: pass --files MANIFEST or set input_training_file in the config")
    return read_manifest(path)


def _valid_entries(args: argparse.Namespace, configured: str | None) -> list[ManifestEntry] | None:
    if args.valid_files is not None:
        return read_manifest(args.valid_files)
    return read_manifest(configured) if configured and Path(configured).is_file() else None


def _resume_pair(paths: list[Path] | None, prefixes: tuple[str, ...]) -> list[Path] | None:
    """``--resume`` as files: the given ones, or the newest of each prefix in a folder (the original's
    ``scan_checkpoint``)."""
    if not paths:
        return None
    if len(paths) == 1 and paths[0].suffix == ".safetensors":
        if not paths[0].is_file():
            raise InputError(f"--resume: {paths[0]} does not exist")
        return paths
    if len(paths) == 1 and paths[0].is_dir():
        state = newest(paths[0], STATE_PATTERN) if "do_" in prefixes else None
        if state is not None:  # speechzoo's own state resumes exactly (mid-epoch)
            return [state]
        found = []
        for prefix in prefixes:
            candidates = sorted(p for p in paths[0].glob(f"{prefix}????????") if p.name[len(prefix):].isdigit())
            if not candidates:
                raise InputError(f"{paths[0]} holds no {prefix}XXXXXXXX checkpoint to resume from")
            found.append(candidates[-1])
        return found
    if len(paths) != len(prefixes):
        raise InputError(f"--resume takes {' and '.join(p + 'XXXXXXXX' for p in prefixes)} (or their folder); "
                         f"got {len(paths)} path(s)")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise InputError(f"--resume: {missing[0]} does not exist")
    return paths


def _steps(args: argparse.Namespace, start: int) -> int:
    """``--max-steps``, or what is left until the step counter reaches ``--training-steps``."""
    if args.max_steps is not None:
        return args.max_steps
    if args.training_steps <= start:
        raise InputError(f"the run is already at step {start}, not below --training-steps {args.training_steps}")
    return args.training_steps - start


def _tensorboard(args: argparse.Namespace) -> Path | None:
    return args.tensorboard or (args.out / "logs" if importlib.util.find_spec("tensorboard") else None)


def _copy_config(config: Path, out: Path) -> None:
    """``build_env``: the config beside the checkpoints (inference.py reads it from there)."""
    out.mkdir(parents=True, exist_ok=True)
    target = out / "config.json"
    if config.resolve() != target.resolve():
        shutil.copyfile(config, target)


def run_resynthesis(args: argparse.Namespace) -> int:
    config, _ = recipe.read_config(args.config)
    train_entries = _entries(args.files or (Path(config.input_training_file) if config.input_training_file
                                             else None), "training manifest")
    valid_entries = _valid_entries(args, config.input_validation_file)
    resume = _resume_pair(args.resume, ("g_", "do_"))
    env = setup(args.device)
    trainer = recipe.build_trainer(config, seed=config.seed if args.seed is None else args.seed, resume=resume,
                                   init_from=args.init_from)
    train_set, valid_set = recipe.datasets(trainer, train_entries, valid_entries)
    if env.is_main:
        _copy_config(args.config, args.out)
    names = {"loss_gen_all": "training/gen_loss_total", "mel_error": "training/mel_spec_error",
             "valid_mel_error": "validation/mel_spec_error"}
    max_steps = _steps(args, trainer.steps)
    with TrainLogger(jsonl=args.log_jsonl, tensorboard=_tensorboard(args), names=names, total=max_steps,
                     show=("loss_gen_all", "mel_error"), progress=args.progress, enabled=env.is_main) as logger:
        recipe.train(trainer, train_set, out=args.out, max_steps=max_steps, valid_set=valid_set,
                     logger=logger, env=env, precision=args.precision, training_epochs=args.training_epochs,
                     checkpoint_interval=args.checkpoint_interval, validation_interval=args.validation_interval,
                     shuffle=args.shuffle)
    if env.is_main:
        trainer.generator.export().save_pretrained(args.out / EXPORT_DIR)
        step = trainer.steps - 1
        print(f"wrote {args.out}/g_{step:08d}, do_{step:08d}, training_state_{step:08d}.safetensors and "
              f"{args.out / EXPORT_DIR} (hifigan_unit_vocoder(weights=...))")
    teardown()
    return 0


def run_f0_vqvae(args: argparse.Namespace) -> int:
    config = f0_recipe.read_config(args.config)
    train_entries = _entries(args.files or (Path(config.input_training_file) if config.input_training_file
                                             else None), "training manifest")
    valid_entries = _valid_entries(args, config.input_validation_file)
    resume = _resume_pair(args.resume, ("g_",))
    trainer = f0_recipe.build_trainer(config, seed=config.seed if args.seed is None else args.seed,
                                      resume=resume[0] if resume else None, init_from=args.init_from)
    train_set, valid_set = f0_recipe.datasets(trainer, train_entries, valid_entries)
    _copy_config(args.config, args.out)
    names = {"loss_recon": "training/gen_loss_total", "valid_error": "validation/mel_spec_error"}
    max_steps = _steps(args, trainer.steps)
    with TrainLogger(jsonl=args.log_jsonl, tensorboard=_tensorboard(args), names=names, total=max_steps,
                     show=("loss_recon", "commit_error"), progress=args.progress) as logger:
        f0_recipe.train(trainer, train_set, out=args.out, max_steps=max_steps,
                        valid_set=valid_set, logger=logger, device=args.device or "cpu",
                        training_epochs=args.training_epochs, checkpoint_interval=args.checkpoint_interval,
                        validation_interval=args.validation_interval)
    trainer.model.to("cpu", torch.float32).eval().save_pretrained(args.out / EXPORT_DIR)
    print(f"wrote {args.out}/g_{trainer.steps:08d} and {args.out / EXPORT_DIR} (f0_vqvae(weights=...))")
    return 0
