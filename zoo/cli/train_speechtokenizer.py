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
import dataclasses
import json
import random
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..audio import load as load_audio
from ..download import load
from ..errors import InputError
from ..models.hubert import Hubert
from ..train import distributed
from ..train.logger import TrainLogger
from ..train.loop import PRECISIONS
from ..train.speechtokenizer import (
    TENSORBOARD_TAGS,
    SpeechTokenizerTrainer,
    check_files,
    read_config,
    read_file_list,
    teacher_features,
)
from .inputs import positive_int
from .options import add_device, add_out, add_weights

_TEACHER_DOC = """``speechzoo train speechtokenizer-teacher``: ``scripts/hubert_rep_extract.py`` — HuBERT features of every
file under ``--audio-dir`` (``semantic_model_layer`` of the config: "avg" = mean of the 13 hidden states), saved as
``OUT/<path>/<name>.hubert.npy`` ``(frames, 768)``, with ``OUT/train_files.txt`` and ``OUT/valid_files.txt``
(``audio<TAB>feature``; a seeded shuffle puts the first ``--valid-set-size`` files in validation). The original's
flags work as they are (``--audio_dir``, ``--rep_dir``, ``--split_seed``...)."""


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

    t = subparsers.add_parser("speechtokenizer-teacher", help="HuBERT teacher features for the SpeechTokenizer "
                                                               "trainer (scripts/hubert_rep_extract.py)",
                              description=_TEACHER_DOC.splitlines()[0])
    t.add_argument("--config", "-c", type=Path, required=True, help="the trainer's config.json (sample_rate, "
                                                                   "segment_size, semantic_model_layer)")
    t.add_argument("--audio-dir", "--audio_dir", dest="audio_dir", type=Path, required=True,
                   help="folder searched recursively for audio")
    t.add_argument("--exts", default="flac", help="audio extensions, comma-separated (default flac)")
    t.add_argument("--split-seed", "--split_seed", dest="split_seed", type=int, default=0,
                   help="seed of the train/valid shuffle (default 0)")
    t.add_argument("--valid-set-size", "--valid_set_size", dest="valid_set_size", type=float, default=1000,
                   help="files for validation: a count, or a fraction below 1 (default 1000)")
    t.add_argument("--no-normalize", dest="normalize", action="store_false",
                   help="skip Wav2Vec2FeatureExtractor's standardisation (do_normalize of the teacher's "
                        "preprocessor config; facebook/hubert-base-ls960 is assumed to set it)")
    add_weights(t, "the HuBERT teacher (default: the hubert-base-ls960 release)")
    add_device(t)
    add_out(t, "folder for <name>.hubert.npy features and train_files.txt / valid_files.txt", "--rep_dir",
            "--rep-dir")
    t.set_defaults(func=run_teacher, device="cpu")


def run(args: argparse.Namespace) -> int:
    model_config, config, raw = read_config(args.config)
    if args.seed is not None:
        config = dataclasses.replace(config, seed=args.seed)
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


def run_teacher(args: argparse.Namespace) -> int:
    _, config, raw = read_config(args.config)
    if not args.audio_dir.is_dir():
        raise InputError(f"--audio-dir {args.audio_dir} is not a folder")
    files = sorted(str(f) for ext in args.exts.split(",") for f in args.audio_dir.glob(f"**/*.{ext.strip('.')}"))
    if not files:
        raise InputError(f"no *.{args.exts} files under {args.audio_dir}")
    size = args.valid_set_size
    valid_size = int(len(files) * size) if 0 < size < 1 else int(size)
    random.Random(args.split_seed).shuffle(files)
    layer = raw.get("semantic_model_layer", "avg")
    hubert = load(Hubert, "hubert_feature_reader", args.weights, map_location=args.device,
                  checkpoint="hubert-base-ls960").eval()
    args.out.mkdir(parents=True, exist_ok=True)
    lists = {"train": [], "valid": []}
    for i, audio in enumerate(tqdm(files, unit="file")):
        wav, _ = load_audio(audio, sample_rate=config.sample_rate)
        feature = teacher_features(hubert, wav[0], layer, segment_size=config.segment_size,
                                   normalize=args.normalize)
        relative = Path(audio).relative_to(args.audio_dir)
        target = args.out / relative.parent / f"{relative.name.split('.')[0]}.hubert.npy"
        target.parent.mkdir(parents=True, exist_ok=True)
        np.save(target, feature.numpy())
        lists["valid" if i < valid_size else "train"].append(f"{Path(audio).resolve()}\t{target.resolve()}")
    for name, lines in lists.items():
        (args.out / f"{name}_files.txt").write_text("".join(line + "\n" for line in lines))
    print(f"{len(files)} files: {len(lists['train'])} for training, {len(lists['valid'])} for validation; "
          f"features (frames, {hubert.config.embed_dim}) and the lists in {args.out}")
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
        import tensorboard  # noqa: F401 -- optional (train extra)
    except ImportError:
        return False
    return True

