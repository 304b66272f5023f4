"""``speechzoo encode AUDIO_OR_DIR... --k 500 --lmbda 4500 -o units.jsonl``: speech to DP-SLM units, or with
``--dense hubert-base-ls960 --vocab-size 100``, to GSLM units (textlesslib's ``SpeechEncoder``).

The output is a units file (:mod:`zoo.units`, which ``vocode`` and ``gslm synthesize`` read): a header line with
the settings (system, k, λ, layer, models...), then one JSON line per file ``{"id", "source", "units",
"durations"}``: its id (its path under the folder holding all inputs, without suffix: ``spk1/0001``), its resolved
path, its units (deduplicated unless ``--no-deduplicate``) and how many frames each lasted — DP-SLM: WavLM-Large
layer-11 features quantised by DPDP over the released k-means codebook; GSLM: the dense model's features quantised
by its k-means. ``--format gslm`` writes GSLM's quantized-file lines ``id|u1 u2 ...`` instead (the settings go to
``OUT.settings.json`` beside it). Files are read in order, encoded in batches, and appended as they finish, so an
interrupted run resumes where it stopped: files already in the output (by resolved path) are skipped, and
resuming with other settings is refused; a half-written last line (a killed run) is cut off by truncating the file
at its last newline, never by rewriting it, so a second kill loses nothing already encoded; Ctrl-C stops with exit
code 130. A file that cannot be read or
encoded stops the run after the finished ones are written; with ``--skip-errors`` it is reported at the end (exit
status 2) and the others are encoded. ``--plot FILE.png`` draws the first file encoded in this run: its
spectrogram with the unit boundaries and ids (:func:`zoo.plot.spectrogram`).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import audio, plot
from .. import units as units_file
from ..errors import InputError, SpeechZooError
from ..models.wavlm import SAMPLE_RATE as WAVLM_RATE
from ..pipelines.dpslm import UNIT_RATE, WAVLM_LAYER, SpeechToUnits
from ..pipelines.gslm import SpeechEncoder
from ..registry import find
from .inputs import Failures, batches, each_good, expand, item_ids
from .options import (
    WeightsAlias,
    add_batch_size,
    add_device,
    add_out,
    add_plot,
    add_skip_errors,
    add_weights,
    weights_by_name,
)

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
                   help="jsonl (default: the units file schema) or GSLM's id|units lines")
    p.add_argument("--num-neighbors", type=int, help="codes each frame may take (default: 5%% of k, as DP-SLM)")
    add_plot(p, "the first file's spectrogram with its unit boundaries")
    add_device(p)
    add_batch_size(p, 8, "files per WavLM batch")
    add_weights(p, components=COMPONENTS)
    add_skip_errors(p)
    for name in COMPONENTS:  # the spellings before --weights NAME=DIR (--dense-weights, --quantizer-weights too)
        p.add_argument(f"--{name}-weights", dest="weights", action=WeightsAlias, component=name)
    p.set_defaults(func=run)


#: What Ctrl-C prints (exit code 130, as a shell reports SIGINT): every finished line is already in the output.
INTERRUPTED = "interrupted — run the same command again to resume"


def run(args: argparse.Namespace) -> int:
    try:
        return _encode(args)
    except KeyboardInterrupt:
        print(f"speechzoo encode: {INTERRUPTED}", file=sys.stderr)
        return 130


def _encode(args: argparse.Namespace) -> int:
    if args.dense is None and (args.k is None or args.lmbda is None):
        raise InputError("give --k and --lmbda (DP-SLM units) or --dense NAME (GSLM units)")
    if args.plot:
        plot.check_path(args.plot)
    files = expand(args.inputs)
    ids = item_ids(files)
    settings = _settings(args)
    done = _names_in(args.out, args.format)
    if done is not None:
        units_file.check_settings(args.out, _settings_in(args.out, args.format), settings)
    todo = [f for f in files if _key(f, ids, args.format) not in (done or set())]
    if not todo:
        print(f"{args.out}: all {len(files)} files already encoded")
        return 0
    encode, frame_rate = _gslm_encoder(args) if args.dense else _dpslm_encoder(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    failures, written, first = Failures(args), 0, None
    with open(args.out, "a") as out, tqdm(total=len(todo), desc="encoding", unit="file") as bar:
        if done is None:  # a new file: the settings first
            if args.format == "gslm":
                _settings_file(args.out).write_text(json.dumps(settings, indent=2) + "\n")
            else:
                out.write(units_file.header_line(settings))
        for batch in batches(todo, args.batch_size):
            loaded = []
            for path in batch:
                try:
                    loaded.append((path, audio.load(path, sample_rate=WAVLM_RATE)[0][0]))
                except SpeechZooError as e:
                    failures.add(path, e)
            for (path, wav), (units, durations) in each_good(loaded, lambda items: encode([w for _, w in items]),
                                                             failures, lambda item: item[0]):
                first = first or (path, wav, units, durations)
                if args.format == "gslm":
                    out.write(f"{ids[path]}|{' '.join(map(str, units))}\n")
                else:
                    out.write(units_file.UnitsRecord(ids[path], units, durations, str(path.resolve())).to_line())
                written += 1
            out.flush()  # what is finished stays written whatever comes next
            failures.check()
            bar.update(len(batch))
    print(f"wrote {written} files to {args.out}" + (f" ({len(done)} were already there)" if done else ""))
    if args.plot and first:
        path, wav, units, durations = first
        plot.save(plot.spectrogram(wav, WAVLM_RATE, units=units, durations=durations, frame_rate=frame_rate,
                                   title=ids[path]), args.plot)
        print(f"drew {ids[path]} to {args.plot}")
    return failures.report()


def _settings(args: argparse.Namespace) -> dict:
    """What decides the units: resuming with anything else is refused. Models given by ``--weights`` are
    recorded by resolved folder (or repo id), the others by their registered Hub repo and revision."""
    weights = weights_by_name(args.weights, COMPONENTS)
    models = {name: str(Path(w).resolve()) if Path(w).exists() else w for name, w in weights.items()}
    if args.dense is None:
        layer = WAVLM_LAYER if args.layer is None else args.layer
        releases = {"wavlm": ("wavlm_large", {}), "codebook": ("codebook", {"layer": layer, "k": args.k})}
        settings = {"system": "dpslm", "k": args.k, "lmbda": args.lmbda, "layer": layer,
                    "num_neighbors": args.num_neighbors}
    else:
        selection = {"dense_model": args.dense, "vocab_size": args.vocab_size}
        if args.quantizer != "kmeans":
            selection["quantizer_model"] = args.quantizer
        releases = {"quantizer": ("gslm_kmeans", selection)}
        settings = {"system": "gslm", "dense": args.dense, "quantizer": args.quantizer,
                    "vocab_size": args.vocab_size, "layer": args.layer, "deduplicate": args.deduplicate}
    for name, (entry_point, selection) in releases.items():
        if name not in models:
            try:
                release = find(entry_point, **selection)
                models[name] = f"{release.repo_id}@{release.revision}"
            except SpeechZooError:
                pass  # an unknown selection: loading the model says so, listing the released ones
    return {**settings, "models": dict(sorted(models.items()))}


def _key(path: Path, ids: dict[Path, str], output_format: str) -> str:
    """How a file is matched against the output: its resolved path (JSON lines) or its id (GSLM's lines)."""
    return ids[path] if output_format == "gslm" else str(path.resolve())


def _settings_file(path: Path) -> Path:
    return path.with_name(path.name + ".settings.json")


def _settings_in(path: Path, output_format: str) -> dict | None:
    if output_format == "gslm":
        return json.loads(_settings_file(path).read_text()) if _settings_file(path).is_file() else None
    return units_file.read(path, allow_empty=True).settings


Encoder = Callable[[list[torch.Tensor]], list[tuple[list[int], list[int]]]]


def _dpslm_encoder(args: argparse.Namespace) -> tuple[Encoder, float]:
    """The encoder and its unit frame rate (frames per second)."""
    weights = {k: v for k, v in weights_by_name(args.weights, COMPONENTS).items() if k in ("wavlm", "codebook")}
    speech_to_units = SpeechToUnits.from_pretrained(args.k, args.lmbda, num_neighbors=args.num_neighbors,
                                                    layer=WAVLM_LAYER if args.layer is None else args.layer,
                                                    map_location=args.device, weights=weights)
    return (lambda wavs: [(u.units, u.durations)
                          for u in speech_to_units(wavs, WAVLM_RATE, batch_size=args.batch_size)]), UNIT_RATE


def _gslm_encoder(args: argparse.Namespace) -> tuple[Encoder, float]:
    """The encoder and its unit frame rate (frames per second)."""
    weights = weights_by_name(args.weights, COMPONENTS)
    encoder = SpeechEncoder.by_name(args.dense, args.quantizer, args.vocab_size, args.deduplicate, need_f0=False,
                                    layer=args.layer, map_location=args.device, dense_weights=weights.get("dense"),
                                    quantizer_weights=weights.get("quantizer"))
    return (lambda wavs: [(e["units"].tolist(), e["durations"].tolist())
                          for e in encoder.encode(wavs, batch_size=args.batch_size)]), \
        encoder.expected_sample_rate / encoder.code_hop_size


def _names_in(path: Path, output_format: str = "jsonl") -> set[str] | None:
    """Files already encoded in an existing output (resolved paths, or ids in GSLM's lines; None when there is no
    output yet); a half-written last line (a killed run) is dropped."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    _cut_partial_line(path)
    lines = path.read_text().splitlines()
    if output_format == "gslm":
        return {line.split("|", 1)[0] for line in lines if line.strip()}
    return {r.source for r in units_file.read(path, allow_empty=True).records}


def _cut_partial_line(path: Path, block: int = 1 << 16) -> None:
    """Truncate ``path`` just after its last newline, in place: only a half-written last line is removed, and a kill
    at any moment leaves either the file as it was or the file without that line (rewriting the whole file instead
    would leave it empty for as long as the rewrite takes)."""
    with open(path, "rb+") as f:
        end = f.seek(0, os.SEEK_END)
        position = end
        while position > 0:
            start = max(0, position - block)
            f.seek(start)
            newline = f.read(position - start).rfind(b"\n")
            if newline >= 0:
                cut = start + newline + 1
                break
            position = start
        else:
            cut = 0
        if cut < end:
            f.truncate(cut)
