"""SpeechTokenizer on CPU at the released config (random weights): encode and decode of 10 s of 16 kHz audio, and
8 files of different lengths, ours vs a straightforward re-implementation of the original.

The reference is the same architecture run the way the original runs it: weight norm recomputed from g and v at
every forward (torch's weight-norm parametrization on every conv) and a batch of files done one file at a time.
Ours has weight norm folded at conversion and encodes/decodes the 8 files in one call with ``lengths`` (on CPUs
each item then runs alone, ``BATCH_ON_CPU``; on GPUs in buckets of similar length, ``MAX_PADDING``). The last rows
separate batching from the rest: ours one file at a time vs ours in one call, in the same run.

    python -m benchmarks.bench_speechtokenizer            # full size, 2 threads (run on an idle machine)
    python -m benchmarks.bench_speechtokenizer --seconds 1    # short files (0.6-1.4 s)
    python -m benchmarks.bench_speechtokenizer --quick    # a smoke run: 0.5 s of audio, 2 files, 1 repeat
"""
from __future__ import annotations

import argparse
import copy
import statistics

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from benchmarks.timing import timings
from zoo.models.speechtokenizer import SpeechTokenizer, SpeechTokenizerConfig

SAMPLE_RATE = 16000
THREADS = 2


def released_model() -> SpeechTokenizer:
    """The released architecture (speechtokenizer_hubert_avg) with random weights and codebooks."""
    torch.manual_seed(0)
    model = SpeechTokenizer(SpeechTokenizerConfig())
    with torch.no_grad():
        model.quantizer.codebooks.normal_()
    return model.eval()


def weight_normed(model: SpeechTokenizer) -> SpeechTokenizer:
    """A copy computing every conv weight as g * v / ||v|| at each forward, as the original does."""
    reference = copy.deepcopy(model)
    for module in reference.modules():
        if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
            weight_norm(module, dim=0)
    return reference.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="the single file's length; the 8 files are 0.6-1.4 times it (default 10)")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    duration, n_files, repeats = (0.5, 2, 1) if args.quick else (args.seconds, 8, 3)

    ours = released_model()
    reference = weight_normed(ours)
    wav = torch.randn(1, 1, int(duration * SAMPLE_RATE)) * 0.1
    # Files of different lengths, from 0.6x to 1.4x the single-file duration.
    lengths = [int(duration * SAMPLE_RATE * (0.6 + 0.8 * i / max(n_files - 1, 1))) for i in range(n_files)]
    files = [torch.randn(1, 1, n) * 0.1 for n in lengths]
    batch = torch.zeros(n_files, 1, max(lengths))
    for b, f in enumerate(files):
        batch[b, :, : f.shape[-1]] = f

    with torch.inference_mode():
        codes = ours.encode(wav)
        assert torch.equal(reference.encode(wav), codes), "reference and ours disagree on codes"
        max_diff = (reference.decode(codes) - ours.decode(codes)).abs().max().item()
        file_codes = [ours.encode(f) for f in files]
        batch_codes, frames = ours.encode(batch, lengths=lengths)

        def reference_files_roundtrip():
            for f in files:
                reference.decode(reference.encode(f))

        def ours_batch_roundtrip():
            c, t = ours.encode(batch, lengths=lengths)
            ours.decode(c, lengths=t)

        steps = [
            (f"encode {duration:g} s", lambda: reference.encode(wav), lambda: ours.encode(wav)),
            (f"decode {duration:g} s", lambda: reference.decode(codes), lambda: ours.decode(codes)),
            (f"encode {n_files} files (one by one / batched)", lambda: [reference.encode(f) for f in files],
             lambda: ours.encode(batch, lengths=lengths)),
            (f"decode {n_files} files (one by one / batched)", lambda: [reference.decode(c) for c in file_codes],
             lambda: ours.decode(batch_codes, lengths=frames)),
            (f"encode + decode {n_files} files", reference_files_roundtrip, ours_batch_roundtrip),
        ]
        rows = [(name, *map(statistics.median, timings(ref_fn, our_fn, repeats=repeats)))
                for name, ref_fn, our_fn in steps]

        def ours_files_roundtrip():
            for f in files:
                ours.decode(ours.encode(f))

        alone_s, batched_s = map(statistics.median, timings(ours_files_roundtrip, ours_batch_roundtrip,
                                                            repeats=repeats))

    audio_seconds = sum(lengths) / SAMPLE_RATE
    print(f"SpeechTokenizer, released config (random weights), CPU, {THREADS} threads, median of {repeats}; "
          f"{n_files} files = {audio_seconds:.1f} s of audio. Max |wav diff| ours vs reference: {max_diff:.2g}\n")
    print("| step | reference (weight norm per forward, unbatched) | ours (folded, batched) | speed-up |")
    print("|---|---:|---:|---:|")
    for name, ref_s, our_s in rows:
        print(f"| {name} | {ref_s:.3f} s | {our_s:.3f} s | {ref_s / our_s:.2f}x |")
    ref_rt, our_rt = rows[-1][1], rows[-1][2]
    print(f"| throughput, {n_files} files encode + decode | {audio_seconds / ref_rt:.1f} audio s/s | "
          f"{audio_seconds / our_rt:.1f} audio s/s | |")
    print(f"\nBatching alone, {n_files} files encode + decode, both ours: one by one {alone_s:.3f} s, batched "
          f"{batched_s:.3f} s: {alone_s / batched_s:.2f}x")


if __name__ == "__main__":
    main()
