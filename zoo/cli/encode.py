"""``speechzoo encode AUDIO_OR_DIR... --k 500 --lmbda 4500 -o units.jsonl``: speech to DP-SLM units, or with
``--dense hubert-base-ls960 --vocab-size 100``, to GSLM units (textlesslib's ``SpeechEncoder``).

Each file becomes one JSON line ``{"name": ..., "units": [...], "durations": [...]}``: its units (deduplicated
unless ``--no-deduplicate``) and how many frames each lasted — DP-SLM: WavLM-Large layer-11 features quantised by
DPDP over the released k-means codebook; GSLM: the dense model's features quantised by its k-means. ``--format
gslm`` writes GSLM's quantized-file lines ``name|u1 u2 ...`` instead (name: the file's stem). Files are read in
order, encoded in batches, and appended as they finish, so an interrupted run resumes where it stopped: names
already in the output are skipped.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import audio
from ..errors import InputError
from ..models.wavlm import SAMPLE_RATE as WAVLM_RATE
from ..pipelines.dpslm import WAVLM_LAYER, SpeechToUnits
from ..pipelines.gslm import SpeechEncoder
from .inputs import batches, expand
from .options import WeightsAlias, add_batch_size, add_device, add_out, add_weights, weights_by_name

#: Models that ``--weights NAME=DIR`` can replace: DP-SLM's WavLM and codebook, GSLM's dense model and k-means.
COMPONENTS = ("wavlm", "codebook", "dense", "quantizer")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("encode", help="encode speech to DP-SLM or GSLM units (JSON lines)",
                              description=__doc__.splitlines()[0])
    p.add_argument("inputs", nargs="+", type=Path, metavar="AUDIO_OR_DIR", help="audio files or folders of them")
    add_out(p, "JSON-lines (or --format gslm text) file to write (or resume)", "--output")
    p.add_argument("--k", type=int, help="DP-SLM codebook size: 100, 200, 500, 1000 or 2000")
    p.add_argument("--lmbda", type=float, help="DP-SLM DPDP duration penalty (0: plain k-means units)")
    p.add_argument("--layer", type=int, help="encoder layer (DP-SLM: WavLM Large, default 11; GSLM: the one the "
                                             "k-means clusters)")
    p.add_argument("--dense", metavar="NAME", help="GSLM: textlesslib's dense model (hubert-base-ls960, "
                                                   "cpc-big-ll6k, logmel, ...); selects GSLM units")
    p.add_argument("--vocab-size", type=int, default=100, help="GSLM: k-means size (default 100)")
    p.add_argument("--quantizer", default="kmeans", help="GSLM: textlesslib's quantizer name (default kmeans)")
    p.add_argument("--no-deduplicate", dest="deduplicate", action="store_false",
                   help="GSLM: one unit per frame instead of runs with durations")
    p.add_argument("--format", choices=("jsonl", "gslm"), default="jsonl",
                   help="jsonl (default) or GSLM's name|units lines")
    p.add_argument("--num-neighbors", type=int, help="codes each frame may take (default: 5%% of k, as DP-SLM)")
    add_device(p)
    add_batch_size(p, 8, "files per WavLM batch")
    add_weights(p, components=COMPONENTS)
    for name in COMPONENTS:  # the spellings before --weights NAME=DIR (--dense-weights, --quantizer-weights too)
        p.add_argument(f"--{name}-weights", dest="weights", action=WeightsAlias, component=name)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.dense is None and (args.k is None or args.lmbda is None):
        raise InputError("give --k and --lmbda (DP-SLM units) or --dense NAME (GSLM units)")
    files = expand(args.inputs)
    done = _names_in(args.out, args.format)
    todo = [f for f in files if _name(f, args.format) not in done]
    if not todo:
        print(f"{args.out}: all {len(files)} files already encoded")
        return 0
    encode = _gslm_encoder(args) if args.dense else _dpslm_encoder(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a") as out, tqdm(total=len(todo), desc="encoding", unit="file") as bar:
        for batch in batches(todo, args.batch_size):
            wavs = [audio.load(f, sample_rate=WAVLM_RATE)[0][0] for f in batch]
            for path, (units, durations) in zip(batch, encode(wavs)):
                if args.format == "gslm":
                    out.write(f"{_name(path, args.format)}|{' '.join(map(str, units))}\n")
                else:
                    out.write(json.dumps({"name": str(path), "units": units, "durations": durations}) + "\n")
            out.flush()
            bar.update(len(batch))
    print(f"wrote {len(todo)} files to {args.out}" + (f" ({len(done)} were already there)" if done else ""))
    return 0


def _dpslm_encoder(args: argparse.Namespace) -> Callable[[list[torch.Tensor]], list[tuple[list[int], list[int]]]]:
    weights = {k: v for k, v in weights_by_name(args.weights, COMPONENTS).items() if k in ("wavlm", "codebook")}
    speech_to_units = SpeechToUnits.from_pretrained(args.k, args.lmbda, num_neighbors=args.num_neighbors,
                                                    layer=WAVLM_LAYER if args.layer is None else args.layer,
                                                    map_location=args.device, weights=weights)
    return lambda wavs: [(u.units, u.durations)
                         for u in speech_to_units(wavs, WAVLM_RATE, batch_size=args.batch_size)]


def _gslm_encoder(args: argparse.Namespace) -> Callable[[list[torch.Tensor]], list[tuple[list[int], list[int]]]]:
    weights = weights_by_name(args.weights, COMPONENTS)
    encoder = SpeechEncoder.by_name(args.dense, args.quantizer, args.vocab_size, args.deduplicate, need_f0=False,
                                    layer=args.layer, map_location=args.device, dense_weights=weights.get("dense"),
                                    quantizer_weights=weights.get("quantizer"))
    return lambda wavs: [(e["units"].tolist(), e["durations"].tolist())
                         for e in encoder.encode(wavs, batch_size=args.batch_size)]


def _name(path: Path, output_format: str) -> str:
    """How a file is named in the output: its path (JSON lines) or its stem (GSLM's lines)."""
    return path.stem if output_format == "gslm" else str(path)


def _names_in(path: Path, output_format: str = "jsonl") -> set[str]:
    """Names already encoded in an existing output; a half-written last line (a killed run) is dropped."""
    if not path.exists():
        return set()
    lines = path.read_text().splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        path.write_text("".join(lines[:-1]))
        lines = lines[:-1]
    if output_format == "gslm":
        return {line.split("|", 1)[0] for line in lines if line.strip()}
    return {json.loads(line)["name"] for line in lines if line.strip()}
