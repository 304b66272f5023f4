"""``speechzoo quantize``: GSLM's ``quantize_with_kmeans.py``, with its flags and its output byte for byte.

Writes one ``name|u1 u2 ...`` line per manifest entry, in manifest order (``--hide-fname``: the units alone), each
as soon as its file is done: a file that cannot be read stops the run with the lines before it written, or with
``--skip-errors`` is left out and reported at the end (exit status 2).
``name`` is the original's: the file's base name with ``str.rstrip("." + extension)``, which strips a SET of
characters (``speaker_a.flac`` becomes ``speaker_``), then ``-channel{c}`` with ``--channel_id c``. Keeping the
quirk keeps the names that GSLM's later steps (and existing unit files) use.

Features come from ``--features_path F.npy`` (``np.save`` of ``(utterances, frames, dim)``, one row per manifest
entry, as GSLM's dumps), or are read from the manifest's audio (the root folder + each relative path) by the
``--feature_type`` reader over ``--acoustic_model_path`` (a directory from ``python -m conversion hubert|wav2vec2|
cpc``, a Hub repo id, or a registered name such as ``hubert-base-ls960``; log-mel needs none) at ``--layer`` (each
reader's own indexing, default -1). The original's underscore flags work as they are; each also has a hyphenated
spelling.

    speechzoo quantize --feature_type hubert --kmeans_model_path hubert-base-ls960-kmeans-100 \\
        --features_path feats.npy --manifest_path train.tsv --out_quantized_file_path units/train.txt
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..download import load_release
from ..errors import InputError, SpeechZooError
from ..models.codebook import Codebook
from ..models.cpc import CPC, CpcFeatureReader
from ..models.feature_reader import FeatureReader
from ..models.hubert import Hubert, HubertFeatureReader, Wav2Vec2, Wav2VecFeatureReader
from ..models.logmel import LogMelFeatureReader
from ..registry import all_weights
from .inputs import Failures, read_manifest
from .options import add_device, add_skip_errors

FEATURE_TYPES = ("logmel", "hubert", "w2v2", "cpc")
#: feature type -> (dense model class, the hubconf entry point whose releases it loads)
_DENSE = {"hubert": (Hubert, "hubert_feature_reader"), "w2v2": (Wav2Vec2, "w2v2_feature_reader"),
          "cpc": (CPC, "cpc_feature_reader")}


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
    p.add_argument("--acoustic_model_path", "--acoustic-model-path",
                   help="dense model to read the audio with: a converted directory, a Hub repo id or a registered "
                        "name (hubert-base-ls960, w2v2-large-vox-new, cpc-big-ll6k, ...)")
    p.add_argument("--layer", type=int, default=-1, help="the dense model's layer, in its reader's own indexing")
    p.add_argument("--manifest_path", "--manifest-path", required=True, type=Path,
                   help="manifest: the audio root folder, then 'relative_path<TAB>num_samples' lines")
    p.add_argument("--out_quantized_file_path", "--out-quantized-file-path", required=True, type=Path,
                   help="the text file to write (its folder is created)")
    p.add_argument("--extension", default=".flac", help="audio extension stripped from the names (default .flac)")
    p.add_argument("--channel_id", "--channel-id", choices=["1", "2"],
                   help="the audio channel of stereo files (1-based); appends -channel{c} to the names")
    p.add_argument("--hide-fname", "--hide_fname", dest="hide_fname", action="store_true",
                   help="write the units only, without names")
    add_device(p)
    add_skip_errors(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    root, files = read_manifest(args.manifest_path)
    kmeans = load_kmeans(args.kmeans_model_path, map_location=args.device)
    if args.features_path is not None:
        dump = load_features(args.features_path, len(files))
    else:
        reader = load_reader(args.feature_type, args.acoustic_model_path, args.layer, map_location=args.device)
        channel = int(args.channel_id) if args.channel_id else None

    def features(index: int, name: str) -> torch.Tensor:
        if args.features_path is not None:
            return torch.from_numpy(dump[index])
        return reader.get_feats(os.path.join(root, name), channel_id=channel)

    failures, lines = Failures(args), 0
    out = None  # opened with the first line: a run that fails from the start leaves no file
    try:
        with torch.inference_mode():
            for index, name in enumerate(tqdm(files, desc="quantizing", unit="file",
                                              disable=args.features_path is not None)):
                try:
                    units = kmeans(features(index, name)).tolist()
                except SpeechZooError as e:
                    failures.add(name, e)
                    failures.check()
                    continue
                if out is None:
                    args.out_quantized_file_path.parent.mkdir(parents=True, exist_ok=True)
                    out = open(args.out_quantized_file_path, "w", encoding="utf-8", newline="\n")  # noqa: SIM115
                # each line is written as its file is done: a later bad file costs none of them
                out.write(quantized_line(name, units, args.extension, args.channel_id, args.hide_fname))
                out.flush()
                lines += 1
    finally:
        if out is not None:
            out.close()
    print(f"wrote {lines} lines to {args.out_quantized_file_path}")
    return failures.report()


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


def load_reader(feature_type: str, model: str | None, layer: int, *,
                map_location: str | torch.device = "cpu") -> FeatureReader:
    """GSLM's ``get_feature_reader(feature_type)(checkpoint_path=model, layer=layer)`` over a converted model."""
    if feature_type == "logmel":
        return LogMelFeatureReader().to(map_location)
    if model is None:
        raise InputError(f"reading audio with the {feature_type} reader needs --acoustic_model_path (or give "
                         "--features_path)")
    model_class, entry_point = _DENSE[feature_type]
    registered = {w.kwargs.get("checkpoint"): w for w in all_weights() if w.entry_point == entry_point}
    if not Path(model).exists() and model in registered:
        dense = load_release(model_class, registered[model], map_location=map_location)
    else:
        dense = model_class.from_pretrained(model, map_location=map_location)
    if feature_type == "hubert":
        return HubertFeatureReader(dense, layer)
    if feature_type == "w2v2":
        return Wav2VecFeatureReader(dense, layer)
    return CpcFeatureReader(dense, layer)


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
