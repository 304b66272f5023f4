"""``speechzoo train speech_dlm|gslm_ulm``: ``fairseq-train`` for dGSLM's SpeechDLM and GSLM's unit LM, the same
updates without fairseq (see :mod:`zoo.train.lm`).

Options are fairseq's names and defaults; ``--config CFG.json`` holds fairseq cfg sections (``{"optimization":
{"lr": [0.0005], ...}, "task": {...}, ...}``, e.g. a checkpoint's ``cfg``); flags given on the command line win.
The model: ``--init-from`` an original fairseq checkpoint (weights and architecture; fresh optimiser and schedule,
as ``--restore-file`` with every ``--reset-*`` flag) or a converted zoo directory; else a new model of ``--arch``
and the ``model`` section. ``--resume STATE`` continues a speechzoo run exactly. Several processes: launch with
``torchrun`` (gloo on CPUs, NCCL on GPUs). The dGSLM recipe::

    speechzoo train speech_dlm --data fisher_bin --out run/ --arch speech_dlm --decoder-cross-layers 4 \\
        --next-unit-prediction False --edge-unit-prediction True --duration-prediction True \\
        --delayed-duration-target True --max-target-durations 256 --tokens-per-sample 6144 --max-tokens 18432 \\
        --update-freq 16 --lr 5e-4 --warmup-updates 20000 --warmup-init-lr 1e-7 --adam-betas '(0.9, 0.98)' \\
        --clip-norm 1.0 --seed 100501 --max-update 250000 --bf16 --dropout 0.1 --attention-dropout 0.1 \\
        --share-decoder-input-output-embed

``--out DIR`` receives the trained model (``speech_dlm(weights=DIR)``) and, under ``DIR/checkpoints``, the training
states; ``--log-jsonl`` one JSON line per update and per validation with fairseq's logged names.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..train.distributed import setup, teardown
from ..train.lm import LMTrainConfig, LMTrainer, export, initial_model, resume_trainer
from ..train.logger import TrainLogger
from .inputs import positive_int

#: ``speechzoo train MODEL``: the fairseq task it runs.
MODELS = {"speech_dlm": "speech_dlm_task", "gslm_ulm": "language_modeling"}

#: fairseq options (flag, type, help) that override the config; the dest is fairseq's field name.
TRAIN_OPTIONS: tuple[tuple[str, Any, str], ...] = (
    ("--seed", int, "random seed (common.seed)"),
    ("--lr", float, "peak learning rate"),
    ("--update-freq", positive_int, "batches per update and process"),
    ("--clip-norm", float, "clip gradients to this L2 norm (0: no clipping)"),
    ("--max-tokens", positive_int, "tokens per batch at most (rows × longest row)"),
    ("--batch-size", positive_int, "rows per batch at most"),
    ("--required-batch-size-multiple", positive_int, "batch sizes are multiples of this (fairseq: 8)"),
    ("--max-tokens-valid", positive_int, "max tokens per validation batch (default --max-tokens)"),
    ("--batch-size-valid", positive_int, "rows per validation batch at most"),
    ("--max-epoch", int, "stop after this many epochs (0: no limit)"),
    ("--warmup-updates", int, "inverse_sqrt warm-up updates"),
    ("--warmup-init-lr", float, "learning rate of the first update"),
    ("--adam-betas", str, "Adam betas, e.g. '(0.9, 0.98)'"),
    ("--adam-eps", float, "Adam epsilon"),
    ("--weight-decay", float, "decoupled weight decay"),
    ("--tokens-per-sample", positive_int, "tokens per sample (block)"),
    ("--sample-break-mode", str, "none (fixed blocks), eos (one line) or complete (whole lines)"),
    ("--channels", str, "SpeechDLM channels, comma-separated (default: every dict.<channel>.txt)"),
    ("--channel-weights", str, "SpeechDLM per-channel loss weights, comma-separated"),
    ("--next-unit-prediction", str, "SpeechDLM 'True'/'False'"),
    ("--edge-unit-prediction", str, "SpeechDLM 'True'/'False'"),
    ("--duration-prediction", str, "SpeechDLM 'True'/'False'"),
    ("--delayed-duration-target", str, "SpeechDLM 'True'/'False'"),
    ("--max-target-durations", int, "SpeechDLM duration cap"),
    ("--main-and-cross-weights", str, "SpeechDLM 'main,cross' loss weights"),
    ("--general-unit-loss-weight", float, "SpeechDLM next-unit loss weight"),
    ("--edge-unit-loss-weight", float, "SpeechDLM edge-unit loss weight"),
    ("--duration-loss-weight", float, "SpeechDLM duration loss weight"),
    ("--dropout", float, "dropout"),
    ("--attention-dropout", float, "attention dropout"),
    ("--activation-dropout", float, "activation dropout"),
    ("--validate-interval", positive_int, "validate every N epochs"),
    ("--validate-interval-updates", int, "also validate every N updates"),
    ("--save-interval-updates", int, "also save a training state every N updates"),
)
TRAIN_SWITCHES = (("--sentence-avg", "normalise by sentences, not tokens"),
                  ("--skip-invalid-size-inputs-valid-test", "skip validation samples longer than the model"),
                  ("--disable-validation", "never validate"),
                  ("--fp16", "float16 autocast with fairseq's dynamic loss scale"),
                  ("--bf16", "bfloat16 autocast"))
#: Architecture options for a model trained from scratch (fairseq's ``model`` fields).
ARCH_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("--decoder-layers", positive_int), ("--decoder-cross-layers", int), ("--decoder-embed-dim", positive_int),
    ("--decoder-ffn-embed-dim", positive_int), ("--decoder-attention-heads", positive_int),
    ("--activation-fn", str), ("--max-target-positions", positive_int))
ARCH_SWITCHES = ("--decoder-learned-pos", "--share-decoder-input-output-embed", "--no-scale-embedding")


#: Options whose fairseq field names would read as the zoo's shared ``--batch-size``/``--weights``: stored
#: under fairseq's older names (batch_size was max_sentences), given to the config under the current ones.
DESTS = {"--batch-size-valid": "max_sentences_valid", "--required-batch-size-multiple": "required_rows_multiple",
         "--channel-weights": "channel_loss_factors", "--main-and-cross-weights": "main_and_cross_factors"}
FIELDS = {"max_sentences_valid": "batch_size_valid", "required_rows_multiple": "required_batch_size_multiple",
          "channel_loss_factors": "channel_weights", "main_and_cross_factors": "main_and_cross_weights"}


def _dest(flag: str) -> str:
    return DESTS.get(flag, flag[2:].replace("-", "_"))


def add_common(p: argparse.ArgumentParser) -> None:
    """The options ``train`` and ``validate`` share: data, config, the fairseq overrides."""
    p.add_argument("--data", type=Path, required=True,
                   help="fairseq-preprocess output: dict*.txt and {train,valid}[.CHANNEL].{bin,idx} (or raw text)")
    p.add_argument("--config", type=Path, help="JSON of fairseq cfg sections (common, optimization, task, ...)")
    for flag, kind, text in TRAIN_OPTIONS:
        p.add_argument(flag, dest=_dest(flag), type=kind, default=None, help=text)
    for flag, text in TRAIN_SWITCHES:
        p.add_argument(flag, dest=_dest(flag), action="store_true", default=None, help=text)
    p.add_argument("--device", default=None, help="torch device (default: this process's GPU, else the CPU)")
    p.add_argument("--log-jsonl", "--log_jsonl", dest="log_jsonl", type=Path,
                   help="append one JSON line per update and per validation (fairseq's logged names)")


def register(subparsers: argparse._SubParsersAction) -> None:
    for model, task in MODELS.items():
        p = subparsers.add_parser(model, help=f"fairseq-train --task {task} (the original recipe, without fairseq)",
                                  description=__doc__.splitlines()[0],
                                  formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
        add_common(p)
        p.add_argument("--init-from", type=Path,
                       help="start from this original fairseq checkpoint (or converted zoo directory): weights "
                            "only, fresh optimiser, schedule and counters")
        p.add_argument("--resume", type=Path, help="continue this speechzoo training state (*.safetensors) exactly")
        p.add_argument("--max-updates", "--max-update", dest="max_update", type=int, default=None,
                       help="stop after this many updates")
        p.add_argument("-o", "--out", type=Path, help="write the trained model here (and training states under "
                                                      "OUT/checkpoints)")
        p.add_argument("--save-dir", type=Path, help="folder of the training states (default OUT/checkpoints)")
        p.add_argument("--tensorboard-logdir", "--tensorboard", dest="tensorboard", type=Path,
                       help="TensorBoard logs (train_inner/ and valid/ inside)")
        p.add_argument("--arch", help="architecture of a model trained from scratch (speech_dlm, speech_dlm_big, "
                                      "transformer_lm, transformer_lm_big)")
        for flag, kind in ARCH_OPTIONS:
            p.add_argument(flag, dest=_dest(flag), type=kind, default=None, help="fairseq model option")
        for flag in ARCH_SWITCHES:
            p.add_argument(flag, dest=_dest(flag), action="store_true", default=None, help="fairseq model option")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        p.set_defaults(func=run, task=task, model_name=model)


def config_sections(args: argparse.Namespace) -> dict[str, Any]:
    if args.config is None:
        return {}
    try:
        sections = json.loads(args.config.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"--config {args.config}: not a readable JSON file of fairseq cfg sections ({e})") from e
    if not isinstance(sections, dict):
        raise InputError(f"--config {args.config}: expected a JSON object of cfg sections")
    task = (sections.get("task") or {}).get("_name")
    if task is not None and task != args.task:
        raise InputError(f"--config {args.config} is a {task} config; speechzoo {args.command} {args.model_name} "
                         f"trains {args.task}")
    return sections


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    names = [_dest(f) for f, *_ in TRAIN_OPTIONS] + [_dest(f) for f, _ in TRAIN_SWITCHES] + ["max_update"]
    return {"task": args.task, **{FIELDS.get(n, n): getattr(args, n, None) for n in names}}


def build_config(sections: dict[str, Any], args: argparse.Namespace,
                 model_args: dict[str, Any] | None = None) -> LMTrainConfig:
    """fairseq's precedence: defaults < the checkpoint's training-time model fields < ``--config`` < flags."""
    if model_args:
        kept = {k: model_args[k] for k in ("dropout", "attention_dropout", "activation_dropout", "relu_dropout")
                if k in model_args}
        sections = {**sections, "model": {**kept, **(sections.get("model") or {})}}
    return LMTrainConfig.from_sections(sections, **overrides(args))


def _logs(args: argparse.Namespace, is_main: bool, total: int | None):
    jsonl = TrainLogger(jsonl=args.log_jsonl, progress=False, enabled=is_main)
    tb = getattr(args, "tensorboard", None)
    train = TrainLogger(tensorboard=tb / "train_inner" if tb else None, total=total, enabled=is_main,
                        progress=not getattr(args, "no_progress", True), show=("loss", "lr"))
    valid = TrainLogger(tensorboard=tb / "valid" if tb else None, progress=False, enabled=is_main)

    def log(record: dict[str, Any]) -> None:
        jsonl.step(record)
        numbers = {k: v for k, v in record.items() if isinstance(v, (int, float)) and k != "num_updates"}
        if record["split"] == "train":
            train.step({"step": record["num_updates"], **numbers})
        else:
            valid.scalars({f"{record['split']}/{k}": v for k, v in numbers.items()}, record["num_updates"])

    return log, (jsonl, train, valid)


def run(args: argparse.Namespace) -> int:
    env = setup(args.device)
    try:
        sections = config_sections(args)
        if args.resume is not None:
            if args.init_from is not None:
                raise InputError("--resume continues a run; --init-from starts one: give one of them")
            trainer = resume_trainer(args.resume, args.data, env=env,
                                     **{k: v for k, v in overrides(args).items() if k in ("max_update", "max_epoch")})
        else:
            model_section = dict(sections.get("model") or {})
            if args.arch:
                model_section["_name"] = args.arch
            model_section.update({_dest(f): getattr(args, _dest(f)) for f, *_ in (*ARCH_OPTIONS,
                                  *((s, None) for s in ARCH_SWITCHES)) if getattr(args, _dest(f)) is not None})
            first = build_config(sections, args)
            model, model_args = initial_model(first, args.data, args.init_from, model_section, seed=first.seed)
            trainer = LMTrainer(model, build_config(sections, args, model_args), args.data, env=env)
        save_dir = args.save_dir or (args.out / "checkpoints" if args.out else None)
        log, loggers = _logs(args, env.is_main, trainer.cfg.max_update or None)
        try:
            records = trainer.run(log=log, save_dir=save_dir)
        finally:
            for logger in loggers:
                logger.close()
        if args.out is not None and env.is_main:
            export(trainer.model, args.out)
        last = [r for r in records if r["split"] == "train"][-1:] or [{}]
        if env.is_main:
            print(f"trained {trainer.num_updates} updates (epoch {trainer.epoch}); last train loss "
                  f"{last[0].get('loss', float('nan')):.4f}" + (f"; wrote {args.out}" if args.out else ""))
    finally:
        teardown()
    return 0
