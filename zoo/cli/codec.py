"""``speechzoo tokenize IN... -o codes/`` and ``speechzoo detokenize codes/ -o wavs/``: audio files to codec codes
and back, in batches, with a progress bar.

Each codes file holds one item's codes ``(rows, frames)`` (int64) plus what decoding needs: the codec and its
variant or weights, the sample rate, ``st`` (the quantizer of row 0), the number of rows and the input's length in
samples (detokenize trims to it). ``--format safetensors`` (default) keeps that in the file's header;
``--format npy`` writes ``NAME.npy`` and a ``NAME.json`` beside it.

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
import json
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from .. import audio
from ..download import load
from ..errors import InputError
from ..modeling import PretrainedModel
from ..models.speechtokenizer import SpeechTokenizer
from .inputs import batches, expand, output_names
from .options import add_batch_size, add_device, add_out, add_weights

#: codec name -> (model class, hubconf entry point whose ``variant`` selects a release, default variant)
CODECS: dict[str, tuple[type[PretrainedModel], str, str]] = {
    "speechtokenizer": (SpeechTokenizer, "speechtokenizer", "speechtokenizer_hubert_avg"),
}
FORMATS = ("safetensors", "npy")
CODES_SUFFIXES = tuple(f".{f}" for f in FORMATS)
#: Audio file extensions picked up when a directory is given.
DEFAULT_BATCH_SIZE = 8


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("tokenize", help="encode audio files into codec codes")
    p.add_argument("inputs", nargs="+", type=Path, metavar="IN", help="audio files, or directories of them")
    add_out(p, "directory for the codes files")
    p.add_argument("--format", choices=FORMATS, default="safetensors", help="codes file format")
    _add_model_arguments(p)
    p.set_defaults(func=run_tokenize)

    p = subparsers.add_parser("detokenize", help="decode codec codes back into audio files")
    p.add_argument("inputs", nargs="+", type=Path, metavar="CODES", help="codes files, or directories of them")
    add_out(p, "directory for the .wav files")
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


# ------------------------------------------------------------------------------------------ tokenize
def run_tokenize(args: argparse.Namespace) -> int:
    files = expand(args.inputs)
    names = output_names(files)
    name = args.model or "speechtokenizer"
    variant = args.variant or CODECS[name][2]
    model = load_codec(name, variant, args.weights, args.device)
    st = args.st or 0
    weights = str(Path(args.weights).resolve()) if args.weights and Path(args.weights).is_dir() else args.weights
    args.out.mkdir(parents=True, exist_ok=True)
    # Batch files of similar size together so that little of each batch is padding.
    by_size = sorted(files, key=lambda p: p.stat().st_size)
    with torch.inference_mode(), tqdm(total=len(files), desc="tokenize", unit="file") as bar:
        for batch in batches(by_size, args.batch_size):
            waves = [_read_audio(p, model.sample_rate) for p in batch]
            lengths = [w.shape[-1] for w in waves]
            wav = torch.zeros(len(batch), 1, max(lengths))
            for b, w in enumerate(waves):
                wav[b, :, : lengths[b]] = w
            codes, frames = model.encode(wav.to(args.device), n_q=args.n_q, st=st, lengths=lengths)
            for b, p in enumerate(batch):
                meta = {"model": name, "variant": variant, "weights": weights, "sample_rate": model.sample_rate,
                        "st": st, "n_q": codes.shape[0], "num_samples": lengths[b], "source": str(p)}
                _write_codes(args.out, names[p], codes[:, b, : int(frames[b])].cpu(), meta, args.format)
            bar.update(len(batch))
    print(f"wrote codes of {len(files)} files to {args.out}")
    return 0


# ------------------------------------------------------------------------------------------ detokenize
def run_detokenize(args: argparse.Namespace) -> int:
    files = expand(args.inputs, CODES_SUFFIXES, "codes")
    items = {path: _read_codes(path) for path in files}
    origins = sorted({(m["model"], m["variant"], m["weights"]) for _, m in items.values()}, key=str)
    if len(origins) > 1 and not args.weights:
        raise InputError(f"the codes come from different codecs {[str(o) for o in origins]}; "
                         "detokenize them in separate runs")
    name, variant, weights = origins[0]
    name, variant, weights = args.model or name, args.variant or variant, args.weights or weights
    model = load_codec(name, variant, weights, args.device)
    names = output_names(files)
    selected = {path: _select_rows(codes, meta, args.st, args.n_q, path) for path, (codes, meta) in items.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    # Items decoded together must start at the same quantizer and use as many.
    groups: dict[tuple[int, int], list[Path]] = {}
    for path, (codes, st) in selected.items():
        groups.setdefault((st, codes.shape[0]), []).append(path)
    with torch.inference_mode(), tqdm(total=len(files), desc="detokenize", unit="file") as bar:
        for (st, _), paths in groups.items():
            for batch in batches(sorted(paths, key=lambda p: selected[p][0].shape[-1]), args.batch_size):
                frames = [selected[p][0].shape[-1] for p in batch]
                codes = torch.zeros(selected[batch[0]][0].shape[0], len(batch), max(frames), dtype=torch.int64)
                for b, p in enumerate(batch):
                    codes[:, b, : frames[b]] = selected[p][0]
                wav, samples = model.decode(codes.to(args.device), st=st, lengths=frames)
                for b, p in enumerate(batch):
                    keep = min(int(samples[b]), items[p][1]["num_samples"])  # the input's length
                    audio.save(args.out / f"{names[p]}.wav", wav[b, :, :keep].cpu(), model.sample_rate)
                bar.update(len(batch))
    print(f"wrote {len(files)} wav files to {args.out}")
    return 0


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


def _write_codes(directory: Path, name: str, codes: torch.Tensor, meta: dict, fmt: str) -> None:
    codes = codes.to(torch.int64).contiguous()
    if fmt == "safetensors":
        save_file({"codes": codes}, str(directory / f"{name}.safetensors"),
                  metadata={k: json.dumps(v) for k, v in meta.items()})
    else:
        np.save(directory / f"{name}.npy", codes.numpy())
        (directory / f"{name}.json").write_text(json.dumps(meta, indent=2) + "\n")


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
