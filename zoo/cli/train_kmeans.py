"""``speechzoo train kmeans``: GSLM's ``cluster_kmeans.py`` — fit the k-means that turns dense features into units.

The original's flags work as they are (``--num_clusters``, ``--max_iter``, ``--in_features_path``,
``--out_kmeans_model_path``...); each also has a hyphenated spelling. The defaults are the original's:
MiniBatchKMeans, k-means++, max_iter 150, batch 10000, n_init 20, max_no_improvement 100, reassignment_ratio
0.5, tol 0, seed 1369.

Features come from a dump (``--features F.npy``, the original's ``--in_features_path``) or, as the original
does without one, from the audio of a ``--sample_pct`` (default 10 %) random subset of a manifest read by a GSLM
reader (``--manifest_path M.tsv --feature_type hubert --acoustic_model_path hubert-base-ls960 --layer 6``; the
original's ``--checkpoint_path`` spelling works too), concatenated frame by frame. The subset is drawn with
Python's ``random.sample`` seeded by ``--seed`` (the original draws from an unseeded generator).

``--out DIR`` writes the k-means as config.json + model.safetensors (``gslm_kmeans(weights=DIR)``, ``speechzoo
quantize --kmeans_model_path DIR``); ``--km-bin`` adds the original's ``km.bin`` (joblib) to DIR.
``--out_kmeans_model_path PATH/km.bin`` (the original's flag) writes that km.bin and the directory in PATH.

    speechzoo train kmeans --features feats.npy --num-clusters 100 --out km100/
"""
from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import InputError
from ..train.kmeans import KMeansParams, fit_sklearn, fit_torch, save_km_bin
from .inputs import positive_int, read_manifest
from .quantize import FEATURE_TYPES, load_reader

_DEFAULTS = KMeansParams()


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("kmeans", help="GSLM's k-means (cluster_kmeans.py) on dense features",
                              description=__doc__.splitlines()[0])
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--features", "--in_features_path", "--in-features-path", dest="features", type=Path,
                        help="np.save of the training frames (frames, dim) or (utterances, frames, dim)")
    source.add_argument("--manifest_path", "--manifest-path", type=Path,
                        help="read features from this manifest's audio instead (root folder, then "
                             "'relative_path<TAB>num_samples' lines)")
    p.add_argument("--feature_type", "--feature-type", choices=FEATURE_TYPES, help="reader of --manifest_path")
    p.add_argument("--acoustic_model_path", "--acoustic-model-path", "--checkpoint_path", "--checkpoint-path",
                   dest="acoustic_model_path",
                   help="dense model of the reader: a converted directory, a Hub repo id or a registered name")
    p.add_argument("--layer", type=int, default=-1, help="the dense model's layer, in its reader's own indexing")
    p.add_argument("--sample_pct", "--sample-pct", type=float, default=0.1,
                   help="fraction of the manifest's files read (default 0.1, as the original)")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("-o", "--out", type=Path, help="directory to write config.json + model.safetensors")
    out.add_argument("--out_kmeans_model_path", "--out-kmeans-model-path", type=Path,
                     help="the original's output: a km.bin path; the directory is written beside it")
    p.add_argument("--km-bin", "--km_bin", dest="km_bin", action="store_true",
                   help="also write the original's km.bin (joblib pickle of MiniBatchKMeans) into --out")
    for flag, kind, help_text in (
            ("num_clusters", positive_int, "K, the number of units"),
            ("max_iter", positive_int, "epochs of mini-batches at most"),
            ("batch_size", positive_int, "frames per mini-batch"),
            ("max_no_improvement", positive_int, "stop after this many steps without a better smoothed inertia"),
            ("n_init", positive_int, "seedings tried; the best is kept"),
            ("tol", float, "stop when the centres move less than this (squared); 0: never"),
            ("reassignment_ratio", float, "centres with fewer frames than this × the largest count move"),
            ("seed", int, "random seed")):
        p.add_argument(f"--{flag.replace('_', '-')}", f"--{flag}", dest=flag, type=kind,
                       default=getattr(_DEFAULTS, flag), help=f"{help_text} (default {getattr(_DEFAULTS, flag)})")
    p.add_argument("--init", choices=["k-means++", "random"], default=_DEFAULTS.init, help="seeding method")
    p.add_argument("--backend", choices=["sklearn", "torch"], default="sklearn",
                   help="sklearn: scikit-learn's MiniBatchKMeans, the original's results (default); torch: the "
                        "same algorithm on --device, reading the features batch by batch (not bitwise sklearn's)")
    p.add_argument("--device", default="cpu", help="torch device of --backend torch, e.g. cuda")
    p.add_argument("--log-jsonl", "--log_jsonl", dest="log_jsonl", type=Path,
                   help="append a JSON line with inertia (sklearn's inertia_), mean_inertia and the run's size")
    p.add_argument("--verbose", action="store_true", help="print each seeding and mini-batch step")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    params = KMeansParams(**{name: getattr(args, name) for name in KMeansParams.__dataclass_fields__})
    out_dir, km_bin = _outputs(args)
    if args.features is not None:
        features = _load(args.features, memory_map=args.backend == "torch")
    else:
        features = manifest_features(args)
    start = time.perf_counter()
    if args.backend == "sklearn":
        if args.device != "cpu":
            raise InputError("--backend sklearn runs on the CPU; use --backend torch for --device "
                             f"{args.device}")
        result = fit_sklearn(features, params, verbose=args.verbose)
    else:
        result = fit_torch(features, params, device=args.device, verbose=args.verbose)
    seconds = time.perf_counter() - start
    frames = len(features.reshape(-1, features.shape[-1]))
    result.codebook.save_pretrained(out_dir)
    if km_bin is not None:
        save_km_bin(result, str(km_bin), params)
    record = {**result.log_record(frames), "backend": args.backend, "seconds": seconds}
    if args.log_jsonl is not None:
        args.log_jsonl.parent.mkdir(parents=True, exist_ok=True)
        with open(args.log_jsonl, "a") as log:
            log.write(json.dumps(record) + "\n")
    print(f"k-means K={params.num_clusters} on {frames} frames of dim {result.codebook.config.dim}: inertia "
          f"{result.inertia:.6g} ({record['mean_inertia']:.2f} per frame), {result.n_steps} steps, {seconds:.1f} s; "
          f"wrote {out_dir}" + (f" and {km_bin}" if km_bin else ""))
    return 0


def manifest_features(args: argparse.Namespace) -> np.ndarray:
    """cluster_kmeans.py's ``get_features``: the reader's features of a ``--sample_pct`` subset of the manifest,
    concatenated into one float32 ``(frames, dim)`` array."""
    if args.feature_type is None:
        raise InputError("--manifest_path needs --feature_type (logmel, hubert, w2v2 or cpc) to read the audio")
    if not 0 < args.sample_pct <= 1:
        raise InputError(f"--sample_pct must be in (0, 1], got {args.sample_pct}")
    root, files = read_manifest(args.manifest_path)
    if args.sample_pct < 1.0:
        files = random.Random(args.seed).sample(files, int(args.sample_pct * len(files)))
    if not files:
        raise InputError(f"--sample_pct {args.sample_pct} of the {args.manifest_path} manifest selects no file; "
                         "raise it (1.0 reads every file)")
    reader = load_reader(args.feature_type, args.acoustic_model_path, args.layer, map_location=args.device)
    with torch.inference_mode():
        chunks = [reader.get_feats(os.path.join(root, name)).float().cpu().numpy()
                  for name in tqdm(files, desc="reading features", unit="file")]
    return np.concatenate(chunks)


def _outputs(args: argparse.Namespace) -> tuple[Path, Path | None]:
    if args.out_kmeans_model_path is not None:
        if args.out_kmeans_model_path.is_dir():
            raise InputError(f"--out_kmeans_model_path {args.out_kmeans_model_path} is a folder; give the km.bin "
                             "file to write (or use --out DIR)")
        return args.out_kmeans_model_path.parent, args.out_kmeans_model_path
    return args.out, (args.out / "km.bin" if args.km_bin else None)


def _load(path: Path, *, memory_map: bool) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"features file {path} does not exist")
    try:
        return np.load(path, mmap_mode="r" if memory_map else None)
    except ValueError as e:  # object arrays would need pickle, which is refused
        raise InputError(f"{path}: {e}; save the frames as one float (frames, dim) array") from e
    except OSError as e:
        raise InputError(f"{path} is not a .npy file ({e})") from e
