"""CPU speed of DPDP quantisation: speechzoo's O(T·K) recursion vs the original O(T²·K) one.

The reference is a re-implementation of the original ``nicolvisser/dpdp`` ``dpdp`` (TorchScript, float32, for every
prefix length a flip/cumsum/flip over all earlier frames, as the original does) wrapped like its
quantizer's forward. Both sides get the same features and codebook and include the same distance computation
(``torch.cdist(...) ** 2``) and the straight-through output. The features are DP-SLM-sized (K=500 codes, D=1024,
λ=4500) and structured: noisy codebook rows held for 1-12 frames, like speech units. Prints a markdown table with
min / median wall times, the speed-up of the medians and how many frames' units differ. Where they differ, it
prints what each labelling costs in float64: at T in the thousands the original's float32 sums (≈ 1e7, spaced
≈ 1 apart) can pick a labelling that is not the exact optimum, which ours finds.

    python -m benchmarks.bench_dpdp                  # T = 500, 2000, 8000 (the original takes minutes at 8000)
    python -m benchmarks.bench_dpdp --sizes 500 2000 # a subset
    python -m benchmarks.bench_dpdp --quick          # tiny sizes, to check that it runs
"""
from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from typing import Optional

import torch

from benchmarks.timing import timed
from zoo.models.dpdp import DPDPQuantizer

THREADS = 2
NUM_CODES, DIM, LMBDA = 500, 1024, 4500.0   # DP-SLM's k=500 codebook over WavLM-Large layer 11, its λ
SIZES = (500, 2000, 8000)                   # frames (50 Hz: 10 s, 40 s, 160 s)
#: Timed calls per size (the original at T=8000 runs for minutes, so once).
ORIGINAL_REPEATS = {500: 5, 2000: 3, 8000: 1}
OURS_REPEATS = 10
MAX_SEGMENT_FRAMES = 12
NOISE = 1.0
REQUIRED_SPEEDUP = {2000: 30.0, 8000: 100.0}
QUICK = dict(sizes=(50, 200), num_codes=20, dim=16, lmbda=20.0)


# ------------------------------------------------------------------------------------------ the original
@torch.jit.script
def original_dpdp(features: torch.Tensor, codebook: torch.Tensor, lmbda: float,
                  num_neighbors: Optional[int] = None) -> torch.Tensor:
    """The original recursion: for every prefix length t, the best cost over every start s of the last segment
    (each with its best code) — O(T) work per (t, code), all in float32."""
    num_frames, num_codes = features.shape[0], codebook.shape[0]
    distances = torch.cdist(features, codebook, p=2.0) ** 2
    if num_neighbors is not None:
        farthest = distances.topk(num_codes - num_neighbors, dim=1, largest=True, sorted=True).indices
        distances.scatter_(1, farthest, float("inf"))
    penalties = lmbda * (1.0 - torch.arange(1, num_frames + 1, dtype=torch.float32, device=features.device))
    best = torch.zeros(num_frames + 1, dtype=torch.float32, device=features.device)
    segment_start = torch.zeros(num_frames + 1, dtype=torch.int64, device=features.device)
    segment_code = torch.zeros(num_frames + 1, dtype=torch.int64, device=features.device)
    for t in range(1, num_frames + 1):
        sums = torch.cumsum(distances[:t].flip(0), dim=0).flip(0)  # [s, k]: distances of frames s..t-1 to k
        sum_per_start, code_per_start = torch.min(sums, dim=1)
        costs = best[:t] + sum_per_start + penalties[:t].flip(0)
        best_cost, start = torch.min(costs, dim=0)
        best[t] = best_cost
        segment_start[t] = start
        segment_code[t] = code_per_start[start]
    units = torch.zeros(num_frames, dtype=torch.int64, device=features.device)
    end = num_frames
    while end > 0:
        start = int(segment_start[end])
        units[start:end] = segment_code[end]
        end = start
    return units


def original_quantizer(codebook: torch.Tensor, lmbda: float) -> Callable[[torch.Tensor], tuple]:
    def quantize(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        units = original_dpdp(features, codebook, lmbda)
        return features - (features - codebook[units]).detach(), units
    return quantize


# ------------------------------------------------------------------------------------------ benchmark
def speech_like_features(codebook: torch.Tensor, num_frames: int, generator: torch.Generator) -> torch.Tensor:
    """Codebook rows held for 1..MAX_SEGMENT_FRAMES frames each, plus Gaussian noise."""
    durations = torch.randint(1, MAX_SEGMENT_FRAMES + 1, (num_frames,), generator=generator)
    codes = torch.randint(codebook.shape[0], (num_frames,), generator=generator)
    units = codes.repeat_interleave(durations)[:num_frames]
    return codebook[units] + NOISE * torch.randn(num_frames, codebook.shape[1], generator=generator)


def exact_cost(features: torch.Tensor, codebook: torch.Tensor, units: torch.Tensor, lmbda: float) -> float:
    """What DPDP minimises, in float64: squared distances to the chosen codes plus lmbda per segment."""
    distances = (torch.cdist(features, codebook) ** 2).double()
    segments = 1 + int((units[1:] != units[:-1]).sum())
    return float(distances[torch.arange(len(units)), units].sum()) + lmbda * segments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check that the script runs")
    parser.add_argument("--sizes", type=int, nargs="+", help=f"numbers of frames (default {SIZES})")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    settings = QUICK if args.quick else dict(sizes=SIZES, num_codes=NUM_CODES, dim=DIM, lmbda=LMBDA)
    sizes = args.sizes or settings["sizes"]
    generator = torch.Generator().manual_seed(0)
    codebook = torch.randn(settings["num_codes"], settings["dim"], generator=generator)
    original = original_quantizer(codebook, settings["lmbda"])
    ours = DPDPQuantizer.from_codebook(codebook, settings["lmbda"])

    print(f"K={settings['num_codes']}, D={settings['dim']}, lambda={settings['lmbda']}, CPU, "
          f"torch {torch.__version__}, {THREADS} threads\n")
    print("| T (frames) | original min / median (s) | speechzoo min / median (s) | speed-up | frames that differ |")
    print("|---|---|---|---|---|")
    verdicts, notes = [], []
    with torch.inference_mode():
        for _ in range(2):  # TorchScript profiles, then optimises, on its first calls
            original(speech_like_features(codebook, 64, generator))
        ours(speech_like_features(codebook, 64, generator))
        for num_frames in sizes:
            features = speech_like_features(codebook, num_frames, generator)
            # no warm-up at this size: the original at T=8000 runs once, for minutes
            original_runs = [timed(lambda: original(features)) for _ in range(ORIGINAL_REPEATS.get(num_frames, 1))]
            our_runs = [timed(lambda: ours(features)) for _ in range(OURS_REPEATS)]
            original_times, our_times = [t for t, _ in original_runs], [t for t, _ in our_runs]
            original_units, our_units = original_runs[-1][1][1], our_runs[-1][1][1]  # (quantized, units)
            speedup = statistics.median(original_times) / statistics.median(our_times)
            differ = int((original_units != our_units).sum())
            print(f"| {num_frames} | {min(original_times):.4f} / {statistics.median(original_times):.4f} | "
                  f"{min(our_times):.4f} / {statistics.median(our_times):.4f} | {speedup:.0f}x | {differ} |",
                  flush=True)
            if differ:  # which labelling is better? (the original accumulates costs in float32)
                notes.append(f"T={num_frames}: cost in float64 of the original's units "
                             f"{exact_cost(features, codebook, original_units, settings['lmbda']):.3f}, of ours "
                             f"{exact_cost(features, codebook, our_units, settings['lmbda']):.3f}")
            if num_frames in REQUIRED_SPEEDUP and not args.quick:
                ok = speedup >= REQUIRED_SPEEDUP[num_frames]
                verdicts.append(f"T={num_frames}: {speedup:.0f}x, required {REQUIRED_SPEEDUP[num_frames]:.0f}x: "
                                f"{'ok' if ok else 'NOT MET'}")
    print("\n" + "\n".join(verdicts + notes) if verdicts or notes else "")


if __name__ == "__main__":
    main()
