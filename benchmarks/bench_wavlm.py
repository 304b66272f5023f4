"""WavLM feature extraction on CPU: speechzoo vs transformers' ``WavLMModel`` on the same weights, and the peak
memory of encoding a 10-minute file.

(a) 10 s of audio, float32, 2 threads, the real WavLM Large configuration with random weights, saved in the
    transformers layout and converted with ``zoo.formats.wavlm`` so both models hold the same numbers. Both get the
    same input (the 40 + 40 zero samples ``extract_features`` pads). Rows: layer 11 (DP-SLM's; speechzoo stops after
    block 11, transformers has no early exit, so it runs all 24 blocks and we take ``hidden_states[11]``); layer 11
    at EQUAL DEPTH (transformers' model cut to its first 11 blocks and its final LayerNorm removed, so its
    ``last_hidden_state`` is block 11's output: the same work as speechzoo's, the honest comparison of the two
    implementations); and the full model (``layer=None`` vs ``last_hidden_state``). min / median of ``--runs``
    runs after one warm-up, the rows' calls interleaved.
(b) A fresh process builds WavLM Large (random weights) and encodes ``--minutes`` of audio to layer-11 features with
    ``extract_features`` (chunks of ``CHUNK_SECONDS``); its peak resident memory (``ru_maxrss``) must stay under 4 GB.

    python -m benchmarks.bench_wavlm            # full size, for an idle machine
    python -m benchmarks.bench_wavlm --quick    # a tiny config, to check that it runs
"""
from __future__ import annotations

import argparse
import copy
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.timing import timed, timings
from zoo.formats import wavlm as wavlm_format
from zoo.models.wavlm import (
    CHUNK_SECONDS,
    EDGE_PADDING,
    SAMPLE_RATE,
    WavLM,
    WavLMConfig,
    extract_features,
)

THREADS = 2
LAYER = 11                      # DP-SLM's layer
AUDIO_SECONDS = 10.0
MEMORY_MINUTES = 10.0
MEMORY_LIMIT_GB = 4.0
AMPLITUDE = 0.1                 # of the random test audio
#: WavLM Large (the defaults), and a tiny model with its conv pattern (so frames stay 20 ms) for --quick.
LARGE = WavLMConfig()
QUICK = WavLMConfig(conv_layers=((32, 10, 5),) + ((32, 3, 2),) * 4 + ((32, 2, 2),) * 2, embed_dim=64,
                    num_layers=LAYER + 1, num_heads=4, ffn_dim=128, pos_conv_kernel=16, pos_conv_groups=4)


def same_weights(config: WavLMConfig):
    """A random transformers WavLMModel of ``config`` (layer-norm extractor, pre-LN) and speechzoo's conversion."""
    import transformers

    channels, kernels, strides = zip(*config.conv_layers)
    reference_config = transformers.WavLMConfig(
        feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=False, conv_dim=channels,
        conv_kernel=kernels, conv_stride=strides, hidden_size=config.embed_dim, num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads, intermediate_size=config.ffn_dim,
        num_conv_pos_embeddings=config.pos_conv_kernel, num_conv_pos_embedding_groups=config.pos_conv_groups,
        num_buckets=config.num_buckets, max_bucket_distance=config.max_distance)
    torch.manual_seed(0)
    reference = transformers.WavLMModel(reference_config).eval()
    with tempfile.TemporaryDirectory() as directory:
        reference.save_pretrained(directory)
        ours = wavlm_format.convert([directory])
    return reference, ours


def truncated(reference, blocks: int):
    """transformers' model cut to its first ``blocks`` blocks, without the final LayerNorm that pre-LN WavLM applies
    after the last block: ``last_hidden_state`` is then block ``blocks``'s output, as ``hidden_states[blocks]`` of
    the whole model."""
    cut = copy.deepcopy(reference)
    cut.encoder.layers = cut.encoder.layers[:blocks]
    cut.encoder.layer_norm = torch.nn.Identity()
    cut.config.num_hidden_layers = blocks
    return cut.eval()


def speed_table(quick: bool, runs: int) -> None:
    reference, ours = same_weights(QUICK if quick else LARGE)
    shallow = truncated(reference, LAYER)
    wav = AMPLITUDE * torch.randn(1, int(AUDIO_SECONDS * SAMPLE_RATE), generator=torch.Generator().manual_seed(1))
    padded = F.pad(wav, (EDGE_PADDING, EDGE_PADDING))  # what extract_features feeds the model
    cases = {
        f"layer {LAYER}": (lambda: extract_features(ours, wav, SAMPLE_RATE, layer=LAYER),
                           lambda: reference(padded, output_hidden_states=True).hidden_states[LAYER][0]),
        f"layer {LAYER}, transformers cut to {LAYER} blocks (equal depth)": (
            lambda: extract_features(ours, wav, SAMPLE_RATE, layer=LAYER),
            lambda: shallow(padded).last_hidden_state[0]),
        "all layers": (lambda: extract_features(ours, wav, SAMPLE_RATE),
                       lambda: reference(padded).last_hidden_state[0]),
    }
    size = "tiny config (--quick)" if quick else "WavLM Large"
    print(f"\n### WavLM feature extraction, {AUDIO_SECONDS:g} s of audio, {size}, CPU float32, {THREADS} threads, "
          f"{runs} runs\n")
    print("| output | speechzoo min / median (s) | transformers min / median (s) | speed-up (median) | max abs diff |")
    print("|---|---|---|---|---|")
    with torch.inference_mode():
        for name, (ours_fn, reference_fn) in cases.items():
            ours_out, ref_out = ours_fn(), reference_fn()  # also the warm-up
            ours_s, ref_s = timings(ours_fn, reference_fn, repeats=runs, warmup=False)
            diff = (ours_out - ref_out).abs().max().item()
            print(f"| {name} | {min(ours_s):.3f} / {statistics.median(ours_s):.3f} | {min(ref_s):.3f} / "
                  f"{statistics.median(ref_s):.3f} | {statistics.median(ref_s) / statistics.median(ours_s):.2f}x | "
                  f"{diff:.1e} |")


def peak_rss_gb() -> float:
    """This process's peak resident memory. Linux's ``VmHWM`` belongs to the process's own address space; its
    ``ru_maxrss`` would also count the parent's memory at the fork that started this child."""
    try:
        with open("/proc/self/status") as status:
            kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return kib / 2**20


def memory_child(quick: bool, minutes: float) -> None:
    """Run in a fresh process: build the model, encode, print the peaks as JSON."""
    torch.set_num_threads(THREADS)
    model = WavLM(QUICK if quick else LARGE).eval()
    wav = AMPLITUDE * torch.randn(1, int(minutes * 60 * SAMPLE_RATE), generator=torch.Generator().manual_seed(2))
    loaded = peak_rss_gb()
    seconds, features = timed(lambda: extract_features(model, wav, SAMPLE_RATE, layer=LAYER, progress=True))
    print(json.dumps({"loaded_gb": loaded, "peak_gb": peak_rss_gb(), "seconds": seconds,
                      "frames": features.shape[0]}))


def memory_table(quick: bool, minutes: float) -> None:
    cmd = [sys.executable, "-m", __spec__.name, "--memory-child", "--minutes", str(minutes)] + (["--quick"] * quick)
    result = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    stats = json.loads(result.stdout.strip().splitlines()[-1])
    verdict = "OK" if stats["peak_gb"] < MEMORY_LIMIT_GB else f"OVER {MEMORY_LIMIT_GB:g} GB"
    size = "tiny config (--quick)" if quick else "WavLM Large"
    print(f"\n### Peak memory, {minutes:g} min of audio to layer-{LAYER} features, {size}, chunks of "
          f"{CHUNK_SECONDS:g} s, CPU, {THREADS} threads\n")
    print("| frames | peak RSS after loading (GB) | peak RSS after encoding (GB) | encoding time (s) | < 4 GB |")
    print("|---|---|---|---|---|")
    print(f"| {stats['frames']} | {stats['loaded_gb']:.2f} | {stats['peak_gb']:.2f} | {stats['seconds']:.1f} | "
          f"{verdict} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny config, to check that the script runs")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per row (default 5)")
    parser.add_argument("--minutes", type=float, help=f"audio for the memory run (default {MEMORY_MINUTES:g})")
    parser.add_argument("--skip-speed", action="store_true", help="only the memory run")
    parser.add_argument("--skip-memory", action="store_true", help="only the speed table")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    minutes = args.minutes or (0.5 if args.quick else MEMORY_MINUTES)
    if args.memory_child:
        memory_child(args.quick, minutes)
        return
    torch.set_num_threads(THREADS)
    if not args.skip_speed:
        speed_table(args.quick, 2 if args.quick else args.runs)
    if not args.skip_memory:
        memory_table(args.quick, minutes)


if __name__ == "__main__":
    main()
