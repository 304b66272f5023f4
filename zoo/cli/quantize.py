"""``speechzoo quantize``: GSLM's ``quantize_with_kmeans.py``, with its flags and its output byte for byte.

Writes one ``name|u1 u2 ...`` line per manifest entry, in manifest order (``--hide-fname``: the units alone).
``name`` is the original's: the file's base name with ``str.rstrip("." + extension)``, which strips a SET of
characters (``speaker_a.flac`` becomes ``speaker_``), then ``-channel{c}`` with ``--channel_id c``. Keeping the
quirk keeps the names that GSLM's later steps (and existing unit files) use.

Features come from ``--features_path F.npy`` (``np.save`` of ``(utterances, frames, dim)``, one row per manifest
entry, as GSLM's dumps). The original's underscore flags work as they are; each also has a hyphenated spelling.

    speechzoo quantize --feature_type hubert --kmeans_model_path hubert-base-ls960-kmeans-100 \\
        --features_path feats.npy --manifest_path train.tsv --out_quantized_file_path units/train.txt
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from ..download import load_release
from ..errors import InputError
from ..models.codebook import Codebook
from ..registry import all_weights
from .inputs import read_manifest

FEATURE_TYPES = ("logmel", "hubert", "w2v2", "cpc")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("quantize", help="quantize speech features with a GSLM k-means (quantize_with_kmeans.py)",
                              description=__doc__.splitlines()[0])
    p.add_argument("--feature_type", "--feature-type", required=True, choices=FEATURE_TYPES,
                   help="acoustic feature type")
    p.add_argument("--kmeans_model_path", "--kmeans-model-path", required=True,
                   help="k-means: a directory from `python -m conversion kmeans km.bin` or `speechzoo train "
                        "kmeans`, a Hub repo id, or a registered name (`speechzoo list`)")
    p.add_argument("--features_path", "--features-path", type=Path,
                   help="np.save of (utterances, frames, dim) features, one row per manifest entry")
    p.add_argument("--manifest_path", "--manifest-path", required=True, type=Path,
                   help="manifest: the audio root folder, then 'relative_path<TAB>num_samples' lines")
    p.add_argument("--out_quantized_file_path", "--out-quantized-file-path", required=True, type=Path,
                   help="the text file to write (its folder is created)")
    p.add_argument("--extension", default=".flac", help="audio extension stripped from the names (default .flac)")
    p.add_argument("--channel_id", "--channel-id", choices=["1", "2"],
                   help="the audio channel of stereo files (1-based); appends -channel{c} to the names")
    p.add_argument("--hide-fname", "--hide_fname", dest="hide_fname", action="store_true",
                   help="write the units only, without names")
    p.add_argument("--device", default="cpu", help="torch device for the k-means, e.g. cuda")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    _, files = read_manifest(args.manifest_path)
    if args.features_path is None:
        raise InputError("give --features_path (features dumped as (utterances, frames, dim))")
    features = load_features(args.features_path, len(files))
    kmeans = load_kmeans(args.kmeans_model_path, map_location=args.device)
    with torch.inference_mode():
        lines = [quantized_line(name, kmeans(torch.from_numpy(utterance)).tolist(), args.extension, args.channel_id,
                                args.hide_fname) for name, utterance in zip(files, features)]
    args.out_quantized_file_path.parent.mkdir(parents=True, exist_ok=True)
    args.out_quantized_file_path.write_text("".join(lines), encoding="utf-8", newline="\n")
    print(f"wrote {len(files)} lines to {args.out_quantized_file_path}")
    return 0


def quantized_line(fname: str, units: list[int], extension: str = ".flac", channel_id: str | int | None = None,
                   hide_fname: bool = False) -> str:
    """One line of GSLM's quantized file, newline included.

    >>> quantized_line("LibriSpeech/dev/speaker_a.flac", [3, 1, 4])
    'speaker_|3 1 4\\n'
    >>> quantized_line("a/1272-0000.wav", [7], extension="wav", channel_id=2)
    '1272-0000-channel2|7\\n'
    """
    units_text = " ".join(str(u) for u in units)
    if hide_fname:
        return f"{units_text}\n"
    base = os.path.basename(fname).rstrip("." + extension.lstrip("."))  # a character set, as the original
    if channel_id is not None:
        base += f"-channel{channel_id}"
    return f"{base}|{units_text}\n"


def load_features(path: Path, utterances: int) -> np.ndarray:
    """``np.load`` of a ``(utterances, frames, dim)`` float dump whose rows match the manifest's entries."""
    if not Path(path).is_file():
        raise InputError(f"features file {path} does not exist")
    try:
        features = np.load(path)
    except ValueError as e:  # object arrays (ragged utterances) need pickle, which is refused
        raise InputError(f"{path}: {e}; save equal-length utterances as one (utterances, frames, dim) float "
                         "array") from e
    except OSError as e:
        raise InputError(f"{path} is not a .npy file ({e})") from e
    if features.ndim != 3 or features.dtype.kind != "f":
        raise InputError(f"{path} holds a {features.dtype} array of shape {features.shape}; want float "
                         "(utterances, frames, dim), one row per manifest entry")
    if len(features) != utterances:
        raise InputError(f"{path} holds {len(features)} utterances but the manifest lists {utterances}: they must "
                         "come from the same manifest")
    return features


def load_kmeans(spec: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> Codebook:
    """A k-means from a converted directory, a Hub repo id or a registered name (``hubert-base-ls960-kmeans-100``)."""
    path = Path(spec)
    if path.is_file():
        raise InputError(f"{path} is a file; convert a km.bin once with `python -m conversion kmeans {path} "
                         "--out DIR` and pass DIR")
    registered = {w.name: w for w in all_weights() if w.entry_point == "gslm_kmeans"}
    if not path.exists() and str(spec) in registered:
        return load_release(Codebook, registered[str(spec)], map_location=map_location)
    return Codebook.from_pretrained(spec, map_location=map_location)
