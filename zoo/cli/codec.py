"""``speechzoo tokenize IN... -o codes/`` and ``speechzoo detokenize codes/ -o wavs/``: audio files to codec codes
and back, in batches, with a progress bar.

Each codes file holds one item's codes ``(rows, frames)`` (int64) plus what decoding needs: the codec and its
variant or weights, the sample rate, ``st`` (the quantizer of row 0), the number of rows and the input's length in
samples (detokenize trims to it). ``--format safetensors`` (default) keeps that in the file's header;
``--format npy`` writes ``ID.npy`` and an ``ID.json`` beside it. The metadata also holds the item's ``id`` and its
``source`` (resolved input path), as units files do (:mod:`zoo.units`). Codes files and decoded audio mirror the
input tree under ``-o`` (``spk1/0001.wav`` → ``codes/spk1/0001.safetensors`` → ``wavs/spk1/0001.wav``); the audio
is 32-bit float unless ``--subtype``. A bad input stops the command once the finished items are written; with
``--skip-errors`` it is reported at the end (exit status 2) and the others are done.

``tokenize`` resumes: a codes file already there (each is written whole or not at all) for the same input and
settings is kept, one of another input or other settings is refused. Corpora (:mod:`zoo.cli.corpus`):
``--manifest``, ``--num-workers`` audio readers, length-bucketed batches (``--window``), and ``torchrun
--nproc-per-node N`` or ``--shard I/N``, each rank or shard tokenizing a contiguous slice of the inputs into the same
``-o`` (one file per item: nothing to merge).

``--st S`` / ``--n-q N`` select quantizers ``S .. N-1`` as the original ``encode(n_q=N, st=S)`` does (``N`` is an
end index): ``tokenize --n-q 1`` keeps SpeechTokenizer's semantic tokens only, ``detokenize --st 1`` resynthesises
from the acoustic codebooks alone. Note that the original's ``encode`` with ``st > 0`` restarts the residual at
quantizer S; to decode a subset of full codes, tokenize with all quantizers and select at detokenize.

A codec plugs in through :data:`CODECS`: a model class (loaded by :func:`zoo.download.load`) with ``sample_rate``,
``n_q``, ``encode(wav (B, 1, N), n_q, st, lengths) -> (codes (rows, B, T), frame_lengths)`` and
``decode(codes, st, lengths) -> (wav (B, 1, N'), sample_lengths)``.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from .. import audio, plot
from ..download import load
from ..errors import InputError, SpeechZooError
from ..modeling import PretrainedModel
from ..models.speechtokenizer import SpeechTokenizer
from ..train.distributed import teardown
from .corpus import (
    add_corpus_options,
    bucketed,
    corpus_inputs,
    file_sizes,
    process_env,
    read_batches,
    this_shard,
)
from .inputs import Failures, batches, each_good, expand, item_ids, output_path
from .options import (
    add_batch_size,
    add_device,
    add_out,
    add_plot,
    add_skip_errors,
    add_subtype,
    add_weights,
)

#: codec name -> (model class, hubconf entry point whose ``variant`` selects a release, default variant)
CODECS: dict[str, tuple[type[PretrainedModel], str, str]] = {
    "speechtokenizer": (SpeechTokenizer, "speechtokenizer", "speechtokenizer_hubert_avg"),
}
FORMATS = ("safetensors", "npy")
CODES_SUFFIXES = tuple(f".{f}" for f in FORMATS)
DEFAULT_BATCH_SIZE = 8


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("tokenize", help="encode audio files into codec codes")
    p.add_argument("inputs", nargs="*", type=Path, metavar="IN", help="audio files, or directories of them (or "
                                                                      "--manifest)")
    add_out(p, "directory for the codes files")
    p.add_argument("--format", choices=FORMATS, default="safetensors", help="codes file format")
    add_plot(p, "the first file's codes, one image row per RVQ layer")
    _add_model_arguments(p)
    add_corpus_options(p)
    p.set_defaults(func=run_tokenize)

    p = subparsers.add_parser("detokenize", help="decode codec codes back into audio files")
    p.add_argument("inputs", nargs="+", type=Path, metavar="CODES", help="codes files, or directories of them")
    add_out(p, "directory for the .wav files")
    add_subtype(p)
    _add_model_arguments(p)
    p.set_defaults(func=run_detokenize)


def _add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", choices=sorted(CODECS), default=None,
                   help="codec (tokenize default: speechtokenizer; detokenize: the one the codes name)")
    p.add_argument("--variant", help="released variant of the codec (default: the codec's main release)")
    add_weights(p, "the codec")
    p.add_argument("--st", type=int, default=None, help="first quantizer to use (0-based; default 0)")
    p.add_argument("--n-q", type=int, default=None, help="END index of the quantizers to use (default: all)")
    add_batch_size(p, DEFAULT_BATCH_SIZE, "items per forward pass")
    add_device(p)
    add_skip_errors(p)


# ------------------------------------------------------------------------------------------ tokenize
def run_tokenize(args: argparse.Namespace) -> int:
    try:
        return _tokenize(args)
    finally:
        teardown()


def _tokenize(args: argparse.Namespace) -> int:
    if args.plot:
        plot.check_path(args.plot)
    files, known_sizes = corpus_inputs(args)
    ids = item_ids(files)
    name = args.model or "speechtokenizer"
    variant = args.variant or CODECS[name][2]
    env = process_env(args.device)
    shard = this_shard(args.shard, env)
    files = shard.of(files) if shard else files
    model = load_codec(name, variant, args.weights, env.device)
    st = args.st or 0
    weights = str(Path(args.weights).resolve()) if args.weights and Path(args.weights).is_dir() else args.weights
    settings = {"model": name, "variant": variant, "weights": weights, "st": st,
                "n_q": (model.n_q if args.n_q is None else args.n_q) - st}
    todo = [p for p in files if not _tokenized(output_path(args.out, ids[p], f".{args.format}"), p, settings)]
    if not todo:
        print(f"{args.out}: all {len(files)} files already tokenized")
        return 0
    failures, written, first = Failures(args), 0, None

    def encode(items: list[tuple[int, torch.Tensor]]) -> list[torch.Tensor]:
        lengths = [w.shape[-1] for _, w in items]
        wav = torch.zeros(len(items), 1, max(lengths))
        for b, (_, w) in enumerate(items):
            wav[b, :, : lengths[b]] = w
        codes, frames = model.encode(wav.to(env.device), n_q=args.n_q, st=st, lengths=lengths)
        return [codes[:, b, : int(frames[b])].cpu() for b in range(len(items))]

    # Files of similar size are batched together so that little of each batch is padding.
    plan = bucketed(file_sizes(todo, known_sizes), args.batch_size, args.window)
    read = functools.partial(_read_audio, sample_rate=model.sample_rate)
    with torch.inference_mode(), tqdm(total=len(todo), desc="tokenize", unit="file") as bar:
        for batch in read_batches(todo, plan, read, args.num_workers):
            loaded = []
            for index, wav, error in batch:
                if error is None:
                    loaded.append((index, wav))
                else:
                    failures.add(todo[index], error)
            for (index, wav), codes in each_good(loaded, encode, failures, lambda item: todo[item[0]]):
                path = todo[index]
                meta = {"model": name, "variant": variant, "weights": weights, "sample_rate": model.sample_rate,
                        "st": st, "n_q": codes.shape[0], "num_samples": wav.shape[-1], "id": ids[path],
                        "source": str(path.resolve())}
                try:
                    _write_codes(output_path(args.out, ids[path], f".{args.format}"), codes, meta)
                    written += 1
                    first = first or (ids[path], codes)
                except SpeechZooError as e:
                    failures.add(path, e)
            failures.check()
            bar.update(len(batch))
    done = len(files) - len(todo)
    print(f"wrote codes of {written} files to {args.out}" + (f" ({done} were already there)" if done else ""))
    if args.plot and first and env.is_main:
        name, codes = first
        plot.save(plot.codes(codes, names=[f"RVQ-{st + q}" for q in range(len(codes))], title=name), args.plot)
        print(f"drew the codes of {name} to {args.plot}")
    return failures.report()


def _tokenized(path: Path, source: Path, settings: dict) -> bool:
    """Whether ``path`` holds the codes of ``source`` made with ``settings`` (a resumed run skips it); codes of
    another input, or made with other settings, are an :class:`InputError` (they are never overwritten)."""
    if not (path.with_suffix(".json") if path.suffix == ".npy" else path).is_file():
        return False
    _, meta = _read_codes(path)
    if meta.get("source") != str(source.resolve()):
        raise InputError(f"{path} holds the codes of {meta.get('source')}, not of {source}; use another output "
                         "folder")
    differ = [f"{k}: {meta.get(k)!r} there, {v!r} here" for k, v in settings.items() if meta.get(k) != v]
    if differ:
        raise InputError(f"{path} was made with other settings ({'; '.join(differ)}); use the same settings or "
                         "another output folder")
    return True


# ------------------------------------------------------------------------------------------ detokenize
def run_detokenize(args: argparse.Namespace) -> int:
    files = expand(args.inputs, CODES_SUFFIXES, "codes")
    ids = item_ids(files)
    failures, items, selected = Failures(args), {}, {}
    for path in files:  # every file is read and checked before the codec is loaded
        try:
            items[path] = _read_codes(path)
            selected[path] = _select_rows(*items[path], args.st, args.n_q, path)
        except SpeechZooError as e:
            items.pop(path, None)
            failures.add(path, e)
    failures.check()
    if not items:
        return failures.report()
    origins = sorted({(m["model"], m["variant"], m["weights"]) for _, m in items.values()}, key=str)
    if len(origins) > 1 and not args.weights:
        raise InputError(f"the codes come from different codecs {[str(o) for o in origins]}; "
                         "detokenize them in separate runs")
    name, variant, weights = origins[0]
    name, variant, weights = args.model or name, args.variant or variant, args.weights or weights
    model = load_codec(name, variant, weights, args.device)
    # Items decoded together must start at the same quantizer and use as many.
    groups: dict[tuple[int, int], list[Path]] = {}
    for path, (codes, st) in selected.items():
        groups.setdefault((st, codes.shape[0]), []).append(path)
    written = 0

    def decode(paths: list[Path]) -> list[torch.Tensor]:
        frames = [selected[p][0].shape[-1] for p in paths]
        codes = torch.zeros(selected[paths[0]][0].shape[0], len(paths), max(frames), dtype=torch.int64)
        for b, p in enumerate(paths):
            codes[:, b, : frames[b]] = selected[p][0]
        wav, samples = model.decode(codes.to(args.device), st=selected[paths[0]][1], lengths=frames)
        # each item is cut to its input's length
        return [wav[b, :, : min(int(samples[b]), items[p][1]["num_samples"])].cpu() for b, p in enumerate(paths)]

    with torch.inference_mode(), tqdm(total=len(items), desc="detokenize", unit="file") as bar:
        for paths in groups.values():
            for batch in batches(sorted(paths, key=lambda p: selected[p][0].shape[-1]), args.batch_size):
                for path, wav in each_good(batch, decode, failures):
                    try:
                        audio.save(output_path(args.out, ids[path], ".wav"), wav, model.sample_rate, args.subtype)
                        written += 1
                    except SpeechZooError as e:
                        failures.add(path, e)
                failures.check()
                bar.update(len(batch))
    print(f"wrote {written} wav files to {args.out}")
    return failures.report()


# ------------------------------------------------------------------------------------------ helpers
def _read_audio(path: Path, sample_rate: int) -> torch.Tensor:
    """Channel 0 of ``path`` (as the original README does) at ``sample_rate``, shaped ``(1, samples)``."""
    wav, rate = audio.load(path, mono=False)
    return audio.resample(wav[:1], rate, sample_rate)


def load_codec(name: str, variant: str, weights: str | None, device: str) -> PretrainedModel:
    """The codec ``name`` (a key of :data:`CODECS`) in eval mode on ``device``."""
    if name not in CODECS:
        raise InputError(f"unknown codec {name!r}; available: {', '.join(sorted(CODECS))}")
    cls, entry_point, _ = CODECS[name]
    return load(cls, entry_point, weights, map_location=device, progress=True, variant=variant)


def _write_codes(path: Path, codes: torch.Tensor, meta: dict) -> None:
    """Codes ``(rows, frames)`` and their metadata to ``path`` (.safetensors, or .npy with a .json beside it,
    written last), each file whole or not at all (written beside, then renamed): a resumed run trusts what it finds."""
    codes = codes.to(torch.int64).contiguous()
    partial = path.with_name(path.name + ".partial")
    if path.suffix == ".safetensors":
        save_file({"codes": codes}, str(partial), metadata={k: json.dumps(v) for k, v in meta.items()})
        os.replace(partial, path)
        return
    with open(partial, "wb") as f:
        np.save(f, codes.numpy())
    os.replace(partial, path)
    sidecar = path.with_suffix(".json")
    partial.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(partial, sidecar)


def _read_codes(path: Path) -> tuple[torch.Tensor, dict]:
    """Codes ``(rows, frames)`` and their metadata from a file :func:`_write_codes` wrote."""
    try:
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as f:
                meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
                codes = f.get_tensor("codes")
        else:
            codes = torch.from_numpy(np.load(path, allow_pickle=False))
            meta = json.loads(path.with_suffix(".json").read_text())
    except Exception as e:  # missing sidecar, bad header, no "codes" tensor...: all "not a codes file"
        raise InputError(f"{path} is not a codes file written by `speechzoo tokenize` ({type(e).__name__}: {e})")
    missing = {"model", "variant", "weights", "st", "n_q", "num_samples"} - set(meta)
    if missing or codes.ndim != 2:
        raise InputError(f"{path} is not a codes file written by `speechzoo tokenize` (metadata lacks "
                         f"{sorted(missing)} or codes are not (rows, frames))")
    return codes.to(torch.int64), meta


def _select_rows(codes: torch.Tensor, meta: dict, st: int | None, n_q: int | None,
                 path: Path) -> tuple[torch.Tensor, int]:
    """The rows of quantizers ``st .. n_q - 1`` (default: all stored) and the quantizer of the first one."""
    first, stored = meta["st"], codes.shape[0]
    st = first if st is None else st
    n_q = first + stored if n_q is None else n_q
    if not first <= st < n_q <= first + stored:
        raise InputError(f"{path} holds quantizers {first}..{first + stored - 1}; --st {st} --n-q {n_q} asks "
                         f"for {st}..{n_q - 1}")
    return codes[st - first: n_q - first], st
