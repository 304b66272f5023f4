"""``speechzoo train kmeans``: GSLM's ``cluster_kmeans.py`` — fit the k-means that turns dense features into units.

The original's flags work as they are (``--num_clusters``, ``--max_iter``, ``--in_features_path``,
``--out_kmeans_model_path``...); each also has a hyphenated spelling. The defaults are the original's:
MiniBatchKMeans, k-means++, max_iter 150, batch 10000, n_init 20, max_no_improvement 100, reassignment_ratio
0.5, tol 0, seed 1369.

``--out DIR`` writes the k-means as config.json + model.safetensors (``gslm_kmeans(weights=DIR)``, ``speechzoo
quantize --kmeans_model_path DIR``); ``--km-bin`` adds the original's ``km.bin`` (joblib) to DIR.
``--out_kmeans_model_path PATH/km.bin`` (the original's flag) writes that km.bin and the directory in PATH.

    speechzoo train kmeans --features feats.npy --num-clusters 100 --out km100/
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..train.kmeans import KMeansParams, fit_sklearn, fit_torch, save_km_bin
from .inputs import positive_int

_DEFAULTS = KMeansParams()


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("kmeans", help="GSLM's k-means (cluster_kmeans.py) on dense features",
                              description=__doc__.splitlines()[0])
    p.add_argument("--features", "--in_features_path", "--in-features-path", dest="features", type=Path,
                   required=True, help="np.save of the training frames (frames, dim) or (utterances, frames, dim)")
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
    features = _load(args.features, memory_map=args.backend == "torch")
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
