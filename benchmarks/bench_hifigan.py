"""CPU speed of the unit HiFi-GAN vocoder: speechzoo (weight norm folded at conversion) vs a straightforward
re-implementation of the original fairseq/speech-resynthesis ``CodeGenerator`` (weight norm kept as torch's
``weight_norm`` parametrization, recomputed at every call, one utterance at a time).

Both run the configuration of the released fairseq S2ST mHuBERT km1000 vocoder (upsample [5,4,4,2,2] /
[11,8,8,4,4], 512 channels, kernels [3,7,11], dilations [1,3,5] x 3, 128-dim embeddings, duration predictor) with
the same random weights, on 500 units = 10 s of 16 kHz audio, and must agree to float rounding. Prints a markdown
table.

    python -m benchmarks.bench_hifigan            # full size (idle machine), 2 threads
    python -m benchmarks.bench_hifigan --quick    # a tiny config, to check that it runs

The reference is :mod:`benchmarks.references.hifigan`, also the independent reference of ``tests/test_hifigan.py``.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from benchmarks.references.hifigan import ReferenceCodeGenerator, randomise, write_original
from benchmarks.timing import timings
from zoo.formats.hifigan import convert

#: The config of the released fairseq S2ST mHuBERT km1000 vocoder (variant ``s2st_mhubert_km1000_lj``).
MHUBERT_KM1000 = {
    "resblock": "1", "upsample_rates": [5, 4, 4, 2, 2], "upsample_kernel_sizes": [11, 8, 8, 4, 4],
    "upsample_initial_channel": 512, "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]], "num_embeddings": 1000, "embedding_dim": 128,
    "model_in_dim": 128, "code_hop_size": 320, "sampling_rate": 16000,
    "dur_predictor_params": {"encoder_embed_dim": 128, "var_pred_hidden_dim": 128, "var_pred_kernel_size": 3,
                             "var_pred_dropout": 0.5},
}
QUICK = {**MHUBERT_KM1000, "upsample_initial_channel": 32, "num_embeddings": 50, "embedding_dim": 16,
         "model_in_dim": 16, "dur_predictor_params": {**MHUBERT_KM1000["dur_predictor_params"],
                                                      "encoder_embed_dim": 16, "var_pred_hidden_dim": 16}}
UNITS_PER_SECOND = 50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny config and 1 s of units: check that it runs")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio duration to synthesise")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    config = QUICK if args.quick else MHUBERT_KM1000
    seconds = 1.0 if args.quick else args.seconds
    torch.manual_seed(0)
    reference = randomise(ReferenceCodeGenerator(config))
    with tempfile.TemporaryDirectory() as tmp:
        ours = convert(list(write_original(reference, Path(tmp))))
    units = torch.randint(0, config["num_embeddings"], (1, int(seconds * UNITS_PER_SECOND)))
    with torch.inference_mode():
        want, got = reference(units), ours(units)
        agreement = (want - got).abs().max().item()
        times = timings(lambda: reference(units), lambda: ours(units), repeats=args.repeats)
    rows = list(zip(("original module (weight norm unfolded)", "speechzoo (weight norm folded)"), times))
    print(f"unit HiFi-GAN, {'quick' if args.quick else 'mHuBERT km1000'} config, {units.shape[1]} units = "
          f"{got.shape[-1] / 16000:.1f} s of audio, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"max |diff| {agreement:.2g}\n")
    print("| implementation | min s | median s | RTF (median) |")
    print("|---|---|---|---|")
    for name, times in rows:
        print(f"| {name} | {min(times):.3f} | {statistics.median(times):.3f} | "
              f"{statistics.median(times) / seconds:.3f} |")
    speedup = statistics.median(rows[0][1]) / statistics.median(rows[1][1])
    print(f"\nspeechzoo is {speedup:.2f}x the original module's speed")


if __name__ == "__main__":
    main()
