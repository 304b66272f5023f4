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
status 2) and the others are encoded. ``--plot FILE.png`` draws the first file encoded in this run (under torchrun:
by rank 0): its spectrogram with the unit boundaries and ids (:func:`zoo.plot.spectrogram`).

Corpora (:mod:`zoo.cli.corpus`): ``--manifest FILE`` lists the inputs; ``--num-workers`` processes read and resample
the audio while the model computes; each ``--window`` of files is batched by length and written in input order.
Under ``torchrun --nproc-per-node N`` each rank encodes a contiguous slice of the inputs into its own shard file
``OUT.shardIIIII-of-NNNNN`` (a units file whose header records the shard and a hash of the input list), and rank 0
merges them into ``OUT`` once all are done — the same bytes as one process writes — and removes them. ``--shard
I/N`` encodes slice I alone (job arrays); ``--merge`` makes the last shard to finish merge them, or run ``speechzoo
merge-shards -o OUT``. A shard resumes like a whole run (same settings, same input list).
"""
from __future__ import annotations

import argparse
import functools
import glob
import json
import os
import re
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
from ..train.distributed import teardown
from .corpus import (
    InOrder,
    Shard,
    add_corpus_options,
    bucketed,
    corpus_inputs,
    count_over_ranks,
    file_sizes,
    inputs_digest,
    process_env,
    read_batches,
    this_shard,
)
from .inputs import Failures, each_good, item_ids
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
    p.add_argument("inputs", nargs="*", type=Path, metavar="AUDIO_OR_DIR",
                   help="audio files or folders of them (or --manifest)")
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
    add_corpus_options(p, merge=True)
    for name in COMPONENTS:  # the spellings before --weights NAME=DIR (--dense-weights, --quantizer-weights too)
        p.add_argument(f"--{name}-weights", dest="weights", action=WeightsAlias, component=name)
    p.set_defaults(func=run)
    register_merge(subparsers)


#: What Ctrl-C prints (exit code 130, as a shell reports SIGINT): every finished line is already in the output.
INTERRUPTED = "interrupted — run the same command again to resume"


def run(args: argparse.Namespace) -> int:
    try:
        return _encode(args)
    except KeyboardInterrupt:
        print(f"speechzoo encode: {INTERRUPTED}", file=sys.stderr)
        return 130
    finally:
        teardown()


def _encode(args: argparse.Namespace) -> int:
    if args.dense is None and (args.k is None or args.lmbda is None):
        raise InputError("give --k and --lmbda (DP-SLM units) or --dense NAME (GSLM units)")
    if args.plot:
        plot.check_path(args.plot)
    if args.merge and args.shard is None:
        raise InputError("--merge merges the shards of a --shard I/N run; give --shard too (or run `speechzoo "
                         "merge-shards -o OUT` once every shard is done)")
    files, known_sizes = corpus_inputs(args)
    ids = item_ids(files)
    settings = _settings(args)
    env = process_env(args.device)
    shard = this_shard(args.shard, env)
    if shard is None:
        return _encode_files(args, files, ids, settings, args.out, args.format, args.device, known_sizes,
                             args.plot)
    done = _names_in(args.out, args.format)
    if done is not None:  # an earlier run's merged output: the same settings, and nothing left to do?
        units_file.check_settings(args.out, _settings_in(args.out, args.format), settings)
        if all(_key(f, ids, args.format) in done for f in files):
            print(f"{args.out}: all {len(files)} files already encoded")
            return 0
    error, status = None, 0
    try:
        mine = shard.of(files)
        shard_settings = {**settings, "shard": {"index": shard.index, "count": shard.count, "files": len(mine),
                                                "inputs": inputs_digest(files), "format": args.format}}
        status = _encode_files(args, mine, ids, shard_settings, shard_path(args.out, shard), "jsonl", env.device,
                               known_sizes, args.plot if env.is_main else None)
    except SpeechZooError as e:  # every rank still meets the others below, then this one fails
        error, status = e, 2
    failed = count_over_ranks(int(status != 0))
    if error is not None:
        raise error
    if env.is_main and (args.merge or args.shard is None):
        if args.shard is not None and not _shards_done(args.out):
            print(f"{args.out}: not merged yet: some shards are not done (or lack files that failed); the last shard "
                  "run with --merge merges them, or run `speechzoo merge-shards -o OUT [--skip-errors]`")
            return status
        if failed and not args.skip_errors:
            print(f"{args.out}: not merged: {failed} of {env.world_size} processes failed; their finished files "
                  "are written: run the same command again to resume", file=sys.stderr)
            return 2
        return max(status, merge_shards(args.out, settings, args.skip_errors))
    return status


def _encode_files(args: argparse.Namespace, files: list[Path], ids: dict[Path, str], settings: dict, out: Path,
                  output_format: str, device: str | torch.device, known_sizes: dict[Path, int],
                  plot_path: Path | None) -> int:
    """Encode ``files`` into ``out`` (resumed when it exists, with the same ``settings``), drawing the first one
    encoded to ``plot_path``; the exit status."""
    done = _names_in(out, output_format)
    if done is not None:
        units_file.check_settings(out, _settings_in(out, output_format), settings)
    todo = [f for f in files if _key(f, ids, output_format) not in (done or set())]
    if not todo:
        if done is None:  # a shard with no files (more shards than files) is still a shard
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(units_file.header_line(settings))
        print(f"{out}: all {len(files)} files already encoded")
        return 0
    encode, frame_rate = _gslm_encoder(args, device) if args.dense else _dpslm_encoder(args, device)
    out.parent.mkdir(parents=True, exist_ok=True)
    failures, written, results, first = Failures(args), 0, InOrder(), None
    plan = bucketed(file_sizes(todo, known_sizes), args.batch_size, args.window)
    read = functools.partial(_read, sample_rate=WAVLM_RATE)
    with open(out, "a") as f, tqdm(total=len(todo), desc="encoding", unit="file") as bar:
        if done is None:  # a new file: the settings first
            if output_format == "gslm":
                _settings_file(out).write_text(json.dumps(settings, indent=2) + "\n")
            else:
                f.write(units_file.header_line(settings))
        for batch in read_batches(todo, plan, read, args.num_workers):
            loaded = []
            for index, wav, error in batch:
                if error is None:
                    loaded.append((index, wav))
                else:
                    failures.add(todo[index], error)
            encoded = {index: result for (index, _), result in each_good(
                loaded, lambda items: encode([w for _, w in items]), failures, lambda item: todo[item[0]])}
            for index, wav, _ in batch:
                results.add(index, encoded.get(index))
                if index in encoded and (first is None or index < first[0]):  # the first in input order
                    first = (index, wav, *encoded[index])
            # in input order; a run that stops on a bad file first writes whatever is finished
            stopping = bool(failures.errors) and not args.skip_errors
            for index, (units, durations) in (results.rest() if stopping else results.ready()):
                f.write(_line(output_format, ids[todo[index]], todo[index], units, durations))
                written += 1
            f.flush()  # what is finished stays written whatever comes next
            failures.check()
            bar.update(len(batch))
    print(f"wrote {written} files to {out}" + (f" ({len(done)} were already there)" if done else ""))
    if plot_path and first:
        index, wav, units, durations = first
        path = todo[index]
        plot.save(plot.spectrogram(wav, WAVLM_RATE, units=units, durations=durations, frame_rate=frame_rate,
                                   title=ids[path]), plot_path)
        print(f"drew {ids[path]} to {plot_path}")
    return failures.report()


def _read(path: Path, sample_rate: int) -> torch.Tensor:
    """The mono audio of ``path`` at ``sample_rate`` (in a DataLoader worker)."""
    return audio.load(path, sample_rate=sample_rate)[0][0]


def _line(output_format: str, item_id: str, path: Path, units: list[int], durations: list[int]) -> str:
    if output_format == "gslm":
        return f"{item_id}|{' '.join(map(str, units))}\n"
    return units_file.UnitsRecord(item_id, units, durations, str(path.resolve())).to_line()


# ------------------------------------------------------------------------------------------ shards
def shard_path(out: Path, shard: Shard) -> Path:
    """Where shard ``shard`` of the output ``out`` is written (a units file, beside ``out``)."""
    return out.with_name(f"{out.name}.shard{shard.index:05d}-of-{shard.count:05d}")


def _shard_files(out: Path) -> dict[int, tuple[int, Path]]:
    """The shard files of ``out``: shard index -> (shard count, path)."""
    found = {}
    for path in out.parent.glob(glob.escape(out.name) + ".shard*-of-*"):
        match = re.fullmatch(r"\.shard(\d+)-of-(\d+)", path.name[len(out.name):])
        if match:
            found[int(match[1])] = (int(match[2]), path)
    return found


def _shard_headers(out: Path) -> list[tuple[Path, dict]]:
    """Each shard file of ``out`` with its settings, in shard order; an :class:`InputError` unless they are every
    shard of one run."""
    found = _shard_files(out)
    if not found:
        raise InputError(f"no shards of {out} ({out.name}.shardIIIII-of-NNNNN files) found; run `speechzoo encode "
                         "... --shard I/N` (or under torchrun) first")
    counts = {count for count, _ in found.values()}
    if len(counts) > 1:
        raise InputError(f"shards of {out} from runs with {sorted(counts)} shards are mixed; remove the stale ones")
    count = counts.pop()
    missing = sorted(set(range(count)) - set(found))
    if missing:
        raise InputError(f"shards {missing} of {count} of {out} are missing; run them (--shard I/{count}) first")
    headers = []
    for index in range(count):
        path = found[index][1]
        _cut_partial_line(path)
        settings = units_file.read_settings(path)
        if not isinstance(settings, dict) or not isinstance(settings.get("shard"), dict):
            raise InputError(f"{path} is not a shard written by `speechzoo encode --shard` (no shard header)")
        headers.append((path, settings))
    base = {k: v for k, v in headers[0][1].items() if k != "shard"}
    for path, settings in headers[1:]:
        units_file.check_settings(path, {k: v for k, v in settings.items() if k != "shard"}, base)
        if settings["shard"]["inputs"] != headers[0][1]["shard"]["inputs"]:
            raise InputError(f"{path} and {headers[0][0]} are shards of different input lists; remove the stale one")
    return headers


def _records(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f) - 1


def _shards_done(out: Path) -> bool:
    """Whether every shard of ``out`` is there and holds all its files."""
    try:
        return all(_records(path) == settings["shard"]["files"] for path, settings in _shard_headers(out))
    except InputError:
        return False


def merge_shards(out: Path, settings: dict | None = None, skip_errors: bool = False) -> int:
    """Write ``out`` from its shard files, as one process would have written it (the shards' records in shard
    order, under the header of the settings they share), then remove the shards if none lacks a file. A shard that
    lacks files (they failed) is an :class:`InputError` unless ``skip_errors`` (then it is merged as it is, and the
    exit status is 2)."""
    headers = _shard_headers(out)
    shared = {k: v for k, v in headers[0][1].items() if k != "shard"}
    if settings is not None:
        units_file.check_settings(headers[0][0], shared, settings)
    output_format = headers[0][1]["shard"]["format"]
    short = [f"{path.name} holds {n} of {s['shard']['files']} files" for path, s in headers
             if (n := _records(path)) != s["shard"]["files"]]
    if short and not skip_errors:
        raise InputError(f"not merged: {'; '.join(short)} (run those shards again to resume; --skip-errors merges "
                         "what is there)")
    merging = out.with_name(out.name + ".merging")
    with open(merging, "w") as f:
        if output_format == "gslm":
            _settings_file(out).write_text(json.dumps(shared, indent=2) + "\n")
        else:
            f.write(units_file.header_line(shared))
        for path, _ in headers:
            with open(path) as shard:
                shard.readline()
                if output_format == "gslm":
                    f.writelines(f"{record.id}|{' '.join(map(str, record.units))}\n"
                                 for record in units_file.read(path, allow_empty=True).records)
                else:
                    f.writelines(shard)
    os.replace(merging, out)  # whole or not at all
    records = sum(_records(path) for path, _ in headers)
    if short:
        print(f"merged {records} files into {out}; {'; '.join(short)}", file=sys.stderr)
        return 2
    for path, _ in headers:
        path.unlink()
    print(f"merged {len(headers)} shards ({records} files) into {out}")
    return 0


def register_merge(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("merge-shards", help="merge the shards of a sharded `speechzoo encode` run",
                              description="Merge the shard files (OUT.shardIIIII-of-NNNNN) of `speechzoo encode "
                                          "--shard I/N` runs into OUT, as one process would have written it.")
    add_out(p, "the output that the shards were encoded for (the -o of `speechzoo encode`)")
    add_skip_errors(p)
    p.set_defaults(func=lambda args: merge_shards(args.out, skip_errors=args.skip_errors))


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


#: Speech (16 kHz mono waveforms) to (units, durations) per item.
Encoder = Callable[[list[torch.Tensor]], list[tuple[list[int], list[int]]]]


def _dpslm_encoder(args: argparse.Namespace, device: str | torch.device) -> tuple[Encoder, float]:
    """The encoder on ``device`` and its unit frame rate (frames per second)."""
    weights = {k: v for k, v in weights_by_name(args.weights, COMPONENTS).items() if k in ("wavlm", "codebook")}
    speech_to_units = SpeechToUnits.from_pretrained(args.k, args.lmbda, num_neighbors=args.num_neighbors,
                                                    layer=WAVLM_LAYER if args.layer is None else args.layer,
                                                    map_location=device, weights=weights)
    return (lambda wavs: [(u.units, u.durations)
                          for u in speech_to_units(wavs, WAVLM_RATE, batch_size=args.batch_size)]), UNIT_RATE


def _gslm_encoder(args: argparse.Namespace, device: str | torch.device) -> tuple[Encoder, float]:
    """The encoder on ``device`` and its unit frame rate (frames per second)."""
    weights = weights_by_name(args.weights, COMPONENTS)
    encoder = SpeechEncoder.by_name(args.dense, args.quantizer, args.vocab_size, args.deduplicate, need_f0=False,
                                    layer=args.layer, map_location=device, dense_weights=weights.get("dense"),
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
