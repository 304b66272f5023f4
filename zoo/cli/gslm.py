"""``speechzoo gslm COMMAND``: GSLM's scripts. ``speechzoo gslm sample PROMPTS.txt -o OUT.txt`` is
``ulm/sample.py``: prompt lines ``id|u1 u2 ...`` in, one ``id__k|units`` line per prompt and hypothesis out (see
:meth:`zoo.models.gslm_ulm.GSLMUnitLM.sample_prompts`).

Each subcommand is a function ``add_<name>(commands)`` listed in :data:`SUBCOMMANDS`; it adds its parser to the
``gslm`` group and sets ``func``.
"""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

from ..download import load
from ..errors import InputError
from ..models.gslm_ulm import DENSE_MODELS, VOCAB_SIZES, GSLMUnitLM
from .inputs import positive_int
from .options import add_batch_size, add_device, add_out, add_weights


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """The release selection every GSLM subcommand shares."""
    p.add_argument("--dense", default="hubert", choices=sorted(DENSE_MODELS),
                   help="dense features the units quantize (selects the released models)")
    p.add_argument("--vocab-size", type=int, default=100, choices=VOCAB_SIZES, help="k-means K of the units")
    add_device(p)
    p.add_argument("--fp16", action="store_true", help="run the models in half precision")


def add_sample(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("sample", help="ulm/sample.py: continue (or sample without) unit prompts with the ULM",
                            description=__doc__.splitlines()[0])
    p.add_argument("prompts", type=Path, metavar="PROMPTS.txt", help="lines 'id|u1 u2 ...'")
    add_out(p, "the file to write", "--output", metavar="OUT.txt")
    add_weights(p, "the unit LM (instead of the release that --dense/--vocab-size select)")
    add_model_arguments(p)
    p.add_argument("--beam", type=positive_int, default=5, help="beam size (1: greedy)")
    p.add_argument("--sampling", action="store_true", help="sample instead of beam search")
    p.add_argument("--sampling-topk", type=int, default=-1, help="sample from the k most likely units only")
    p.add_argument("--sampling-topp", type=float, default=-1.0, help="sample from the nucleus of mass p only")
    p.add_argument("--temperature", type=float, default=1.0, help="divides the logits")
    p.add_argument("--max-len-a", type=float, default=0, help="max length = a * prompt batch width + b")
    p.add_argument("--max-len-b", type=int, default=200, help="max length = a * prompt batch width + b")
    p.add_argument("--min-len", type=int, default=1, help="</s> is forbidden before this many free steps")
    p.add_argument("--prefix-size", type=int, default=0,
                   help="prompt units kept: 0 = unconditional (the default), -1 = the whole prompt")
    add_batch_size(p, None, "prompts per batch (default: all)")
    p.add_argument("--samples-per-prompt", type=positive_int, default=1, help="samples per prompt with --sampling")
    p.add_argument("--seed", type=int, default=1, help="seeds the sampling")
    p.add_argument("--lenpen", type=float, default=1.0, help="length penalty of beam scores")
    p.add_argument("--unkpen", type=float, default=0.0, help="penalty subtracted from <unk>'s log-prob")
    p.set_defaults(func=run_sample)


#: The subcommands of ``speechzoo gslm``, in the order ``--help`` lists them.
SUBCOMMANDS = (add_sample,)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("gslm", help="GSLM: sample unit continuations (ulm/sample.py)")
    commands = p.add_subparsers(dest="gslm_command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(commands)


def load_ulm(args: argparse.Namespace) -> GSLMUnitLM:
    lm = load(GSLMUnitLM, "gslm_ulm", args.weights, map_location=args.device, dense=args.dense,
              vocab_size=args.vocab_size)
    return lm.half() if args.fp16 else lm


def run_sample(args: argparse.Namespace) -> int:
    if not args.prompts.is_file():
        raise InputError(f"{args.prompts} does not exist")
    lines = args.prompts.read_text(encoding="utf-8").splitlines()
    lm = load_ulm(args)
    samples = lm.iter_samples(
        lines, beam=args.beam, sampling=args.sampling, temperature=args.temperature, max_len_a=args.max_len_a,
        max_len_b=args.max_len_b, prefix_size=args.prefix_size, batch_size=args.batch_size,
        samples_per_prompt=args.samples_per_prompt, seed=args.seed, sampling_topk=args.sampling_topk,
        sampling_topp=args.sampling_topp, min_len=args.min_len, lenpen=args.lenpen, unkpen=args.unkpen,
        progress=True)
    first = next(samples, None)  # bad prompts are reported here, before the output is touched
    args.out.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(args.out, "w", encoding="utf-8") as out:
        for line in itertools.chain([first] if first is not None else [], samples):
            out.write(line + "\n")
            out.flush()  # what is done stays written if a later batch fails
            count += 1
    print(f"wrote {count} lines to {args.out}")
    return 0
