"""CPU speed of k-means unit assignment: speechzoo's ``gslm_kmeans`` vs scikit-learn's ``MiniBatchKMeans.predict``.

The reference is what GSLM's ``quantize_with_kmeans.py`` and textlesslib's ``KMeansQuantizer`` run: ``predict`` of a
fitted scikit-learn MiniBatchKMeans (float32, chunks of 256 frames through BLAS ``sgemm`` plus an OpenMP argmin),
limited to the same 2 threads with threadpoolctl. Both sides get 1 hour of 768-d frames at 50 Hz (180,000 frames,
HuBERT-Base-sized) and K = 500 centres; the frames are drawn near random centres with noise, as speech features
cluster. The estimator is fitted briefly on a sample (its centres are what both sides use); only the assignment
is timed. Prints a markdown table of min / median wall times and the speed-up of the medians, and asserts that
both give the same unit for every frame (where float32 rounding could flip sklearn's choice, speechzoo's is the
float64 argmin: such frames are counted, and checked against float64).

    python -m benchmarks.bench_kmeans            # 180,000 x 768 frames, K = 500
    python -m benchmarks.bench_kmeans --quick    # a small size, to check that it runs
"""
from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch

from benchmarks.timing import timings
from zoo.models.codebook import Codebook

THREADS = 2
FRAMES, DIM, K = 180_000, 768, 500          # 1 h at 50 Hz of HuBERT Base features, GSLM's km500
QUICK = {"frames": 5000, "dim": 64, "k": 50}
REPEATS = 5


def make_data(frames: int, dim: int, k: int, seed: int = 0) -> np.ndarray:
    """Frames near ``k`` random centres (noise of the centres' spread), float32."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(k, dim)).astype(np.float32) * 2
    labels = rng.integers(0, k, frames)
    return means[labels] + rng.normal(size=(frames, dim)).astype(np.float32) * 1.5


def fitted_sklearn(features: np.ndarray, k: int):
    from sklearn.cluster import MiniBatchKMeans

    sample = features[np.random.default_rng(1).choice(len(features), min(len(features), 20 * k), replace=False)]
    return MiniBatchKMeans(n_clusters=k, n_init=1, max_iter=3, batch_size=4096, random_state=1369).fit(sample)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small size, to check that the script runs")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args()
    frames, dim, k = (QUICK["frames"], QUICK["dim"], QUICK["k"]) if args.quick else (FRAMES, DIM, K)
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(THREADS)
    features = make_data(frames, dim, k)
    estimator = fitted_sklearn(features, k)
    codebook = Codebook.from_tensor(torch.from_numpy(estimator.cluster_centers_))
    x = torch.from_numpy(features)

    with threadpool_limits(limits=THREADS):
        sk_units = estimator.predict(features)  # also the warm-up
        (sk_times,) = timings(lambda: estimator.predict(features), repeats=args.repeats, warmup=False)
    with torch.inference_mode():
        zoo_units = codebook(x).numpy()
        (zoo_times,) = timings(lambda: codebook(x), repeats=args.repeats, warmup=False)

    differ = np.flatnonzero(sk_units != zoo_units)
    if len(differ):  # allowed only where float32 rounding decides: ours must be the float64 argmin there
        c = estimator.cluster_centers_.astype(np.float64)
        exact = ((c ** 2).sum(1)[None] - 2 * features[differ].astype(np.float64) @ c.T).argmin(1)
        assert np.array_equal(zoo_units[differ], exact), "speechzoo's units must be the float64 argmin"
    print(f"k-means assignment, {frames:,} frames x {dim} dims, K = {k}, CPU float32, {THREADS} threads "
          f"(min / median of {args.repeats})\n")
    print("| | min (s) | median (s) | frames/s (median) |")
    print("|---|---|---|---|")
    for name, times in (("scikit-learn `MiniBatchKMeans.predict`", sk_times), ("speechzoo `gslm_kmeans`", zoo_times)):
        print(f"| {name} | {min(times):.3f} | {statistics.median(times):.3f} | "
              f"{frames / statistics.median(times):,.0f} |")
    speedup = statistics.median(sk_times) / statistics.median(zoo_times)
    print(f"\nspeed-up of the medians: {speedup:.2f}x; units identical on {frames - len(differ):,} of {frames:,} "
          f"frames" + (f" ({len(differ)} float32 near-ties, where speechzoo's is the float64 argmin)" if len(differ)
                       else ""))


if __name__ == "__main__":
    main()
