"""``speechzoo validate MODEL --data DIR --path CKPT``: ``fairseq-validate`` — the training criterion summed over a
split in eval mode, logged under fairseq's names (one record).

``--path`` is an original fairseq checkpoint (converted with the data's dictionaries), a converted zoo directory,
or a speechzoo training state (``checkpoint_last.safetensors``). The criterion and batching options come from
``--config`` (fairseq cfg sections) and the flags, as for ``speechzoo train``::

    speechzoo validate speech_dlm --data fisher_bin --path speech_dlm_base.pt --subset valid --max-tokens 18432
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError
from ..train.distributed import setup, teardown
from ..train.lm import LMTrainer, initial_model, resume_trainer
from .train_lm import MODELS, _logs, add_common, build_config, config_sections


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("validate", help="fairseq-validate: a unit LM's loss on a split",
                              description=__doc__.splitlines()[0])
    p.add_argument("model", choices=sorted(MODELS), metavar="MODEL", help=f"one of {', '.join(sorted(MODELS))}")
    p.add_argument("--path", type=Path, required=True,
                   help="fairseq checkpoint, converted zoo directory or speechzoo training state")
    p.add_argument("--subset", "--valid-subset", dest="subset", default="valid", help="split to score")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    args.task, args.model_name = MODELS[args.model], args.model
    if not args.path.exists():
        raise InputError(f"--path {args.path} does not exist")
    env = setup(args.device)
    try:
        sections = config_sections(args)
        if args.path.suffix == ".safetensors":
            trainer = resume_trainer(args.path, args.data, env=env, subsets=(args.subset,))
        else:
            first = build_config(sections, args)
            model, model_args = initial_model(first, args.data, args.path)
            trainer = LMTrainer(model, build_config(sections, args, model_args), args.data, env=env,
                                subsets=(args.subset,))
        record = trainer.validate(args.subset)
        log, loggers = _logs(args, env.is_main, None)
        log(record)
        for logger in loggers:
            logger.close()
        if env.is_main:
            print(f"{args.subset}: loss {record['loss']:.4f} over {record['bsz']:.0f} samples")
    finally:
        teardown()
    return 0
