"""``speechzoo train speechtokenizer``: the official SpeechTokenizer trainer (``scripts/train_example.py``) —
one process, or many with torchrun (DDP; gloo on CPUs).

``--config`` is the original's JSON (``config/spt_base_cfg.json``); ``--files`` (``audio<TAB>feature`` lines,
made by ``speechzoo train speechtokenizer-teacher``) replaces its ``train_files``, ``--valid-files`` its
``valid_files``. ``--resume`` continues an original ``SpeechTokenizerTrainer_XXXXXXXX`` (as ``--continue_train``
does, discriminators included) or a zoo ``training_state_XXXXXXXX.safetensors`` (exactly: data position and RNG
too); ``--init-from`` takes weights only. ``--out`` receives both checkpoint kinds every ``save_model_steps`` and
after the last step, TensorBoard logs in ``logs/`` and the trained generator as a zoo model in ``model/``
(``speechtokenizer(weights="OUT/model")``).

    speechzoo train speechtokenizer --config spt_base_cfg.json --files train.txt --out run/
    torchrun --nproc-per-node 8 -m zoo.cli train speechtokenizer --config spt_base_cfg.json --files train.txt --out run/
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import InputError
from ..train import distributed
from ..train.logger import TrainLogger
from ..train.loop import PRECISIONS
from ..train.speechtokenizer import TENSORBOARD_TAGS, SpeechTokenizerTrainer, check_files, read_config, read_file_list
from .inputs import positive_int
from .options import add_device, add_out


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("speechtokenizer", help="the official SpeechTokenizer trainer (torchrun for DDP)",
                              description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, required=True, help="the original trainer's config.json")
    p.add_argument("--files", type=Path, help="training list, 'audio<TAB>feature' per line (default: the config's "
                                              "train_files)")
    p.add_argument("--valid-files", "--valid_files", dest="valid_files", type=Path,
                   help="validation list (default: the config's valid_files, else --files)")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--resume", "--continue_train", dest="resume", type=Path,
                       help="SpeechTokenizerTrainer_XXXXXXXX or training_state_XXXXXXXX.safetensors to continue")
    start.add_argument("--init-from", "--init_from", dest="init_from", type=Path,
                       help="weights to start from: a trainer checkpoint, SpeechTokenizer.pt, or a training state")
    p.add_argument("--max-steps", "--max_steps", dest="max_steps", type=positive_int,
                   help="stop after this many optimisation steps (default: the config's epochs)")
    p.add_argument("--seed", type=int, help="random seed (default: the config's seed)")
    p.add_argument("--log-jsonl", "--log_jsonl", dest="log_jsonl", type=Path,
                   help="append one JSON object per optimisation step (losses, lr, step)")
    p.add_argument("--tensorboard", type=Path, help="TensorBoard folder (default OUT/logs when tensorboard is "
                                                    "installed: pip install 'speechzoo[train]')")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="fp32 (the original's), or bf16/fp16 autocast (fp16 with gradient scaling)")
    p.add_argument("--clip-grad-norm", "--clip_grad_norm", dest="clip_grad_norm", type=float,
                   help="clip each side's gradient norm to this (the original does not clip)")
    p.add_argument("--resample", action="store_true",
                   help="resample files at another rate while reading (the original does; default: refuse them)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    add_device(p)
    add_out(p, "folder for checkpoints, logs and the exported model")
    p.set_defaults(func=run, device=None)


def run(args: argparse.Namespace) -> int:
    model_config, config, raw = read_config(args.config)
    if args.seed is not None:
        config = type(config)(**{**config.__dict__, "seed": args.seed})
        raw = {**raw, "seed": args.seed}
    train_list = args.files or _config_path(args.config, raw, "train_files")
    train_items = read_file_list(train_list)
    valid_list = args.valid_files or (_config_path(args.config, raw, "valid_files", required=False)
                                      if args.files is None else None)
    valid_items = read_file_list(valid_list) if valid_list else train_items
    hop = model_config.seanet(bidirectional=False).hop_length
    for items, segment in ((train_items, config.segment_size), (valid_items, None)):
        check_files(items, sample_rate=config.sample_rate, segment_size=segment, hop=hop,
                    dim=model_config.semantic_dimension, resample_audio=args.resample)

    env = distributed.setup(args.device)
    try:
        distributed.seed_all(config.seed)
        trainer = SpeechTokenizerTrainer(model_config, config, env, raw_config=raw, precision=args.precision,
                                         clip_grad_norm=args.clip_grad_norm)
        trainer.set_dataset_size(len(train_items))
        if args.resume is not None:
            trainer.resume(args.resume)
        elif args.init_from is not None:
            trainer.init_from(args.init_from)
        args.out.mkdir(parents=True, exist_ok=True)
        if env.is_main:
            (args.out / "config.json").write_text(json.dumps(raw, indent=4, ensure_ascii=False))
        tensorboard = args.tensorboard or (args.out / "logs" if _has_tensorboard() else None)
        with TrainLogger(jsonl=args.log_jsonl, tensorboard=tensorboard, names=TENSORBOARD_TAGS, total=args.max_steps,
                         show=("loss_generator_all", "loss_mel", "mel_error"), progress=args.progress,
                         enabled=env.is_main) as logger:
            summary = trainer.fit(train_items, valid_items, args.out, max_steps=args.max_steps, logger=logger,
                                  export_dir=args.out / "model")
        if env.is_main:
            print(f"trained {summary['steps']} steps (last step {summary['last_step']}) in {summary['seconds']:.1f} s; "
                  f"checkpoints and the model (speechtokenizer(weights='{args.out / 'model'}')) in {args.out}")
    finally:
        distributed.teardown()
    return 0


def _config_path(config: Path, raw: dict, key: str, required: bool = True) -> Path | None:
    value = raw.get(key)
    if not value:
        if required:
            raise InputError(f"give --files: {config} names no {key}")
        return None
    path = Path(value)
    return path if path.is_absolute() else config.parent / path


def _has_tensorboard() -> bool:
    try:
        import tensorboard  # noqa: F401, PLC0415 -- optional (train extra)
    except ImportError:
        return False
    return True

