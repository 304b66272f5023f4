"""HuBERT Base feature extraction on CPU: speechzoo's GSLM reader vs transformers' ``HubertModel`` on the same
weights.

The real HuBERT Base configuration (GroupNorm conv stack, 12 post-LN blocks of 768) with random weights, saved by
transformers and converted with ``zoo.formats.hubert`` so both models hold the same numbers; 10 s of audio,
float32, 2 threads, one utterance (GSLM's reader encodes one file at a time). transformers is the honest
reference: it is the maintained implementation of the same architecture, and the spec's cross-check of the
original fairseq reader against it agrees to 7e-7. Rows:

* layer 6 (GSLM's), as users run each: speechzoo stops after block 6; transformers has no early exit, so it runs
  all 12 blocks and we take ``hidden_states[6]``;
* layer 6 at equal depth: transformers with its encoder cut to 6 blocks (the same work);
* all 12 blocks: ``layer=12`` vs ``last_hidden_state``.

Each row prints min / median of ``--runs`` runs after one warm-up and the largest difference of the outputs.

    python -m benchmarks.bench_hubert            # full size, for an idle machine
    python -m benchmarks.bench_hubert --quick    # a tiny config, to check that it runs
"""
from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
from collections.abc import Callable

import torch
import transformers

from benchmarks.timing import timings
from zoo.formats import hubert as hubert_format
from zoo.models.hubert import HubertFeatureReader

THREADS = 2
LAYER = 6                       # GSLM's HuBERT layer
AUDIO_SECONDS = 10.0
SAMPLE_RATE = 16_000
AMPLITUDE = 0.1                 # of the random test audio
BASE = {}                       # transformers' HubertConfig defaults are HuBERT Base
QUICK = {"hidden_size": 64, "num_hidden_layers": 12, "num_attention_heads": 4, "intermediate_size": 128,
         "conv_dim": (32,) * 7, "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4}


def same_weights(fields: dict) -> tuple[transformers.HubertModel, HubertFeatureReader]:
    torch.manual_seed(0)
    reference = transformers.HubertModel(transformers.HubertConfig(**fields)).eval()
    with tempfile.TemporaryDirectory() as directory:
        reference.save_pretrained(directory)
        ours = hubert_format.convert([directory])
    return reference, ours


def truncated(reference: transformers.HubertModel, blocks: int) -> transformers.HubertModel:
    """The reference with its encoder cut to its first ``blocks`` blocks (equal depth)."""
    cut = copy.deepcopy(reference)
    cut.encoder.layers = cut.encoder.layers[:blocks]
    cut.config.num_hidden_layers = blocks
    return cut


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="tiny model, to check that the script runs")
    args = parser.parse_args(argv)
    torch.set_num_threads(THREADS)
    reference, model = same_weights(QUICK if args.quick else BASE)
    wav = (torch.rand(int(AUDIO_SECONDS * SAMPLE_RATE), generator=torch.Generator().manual_seed(1)) * 2 - 1)
    wav = wav * AMPLITUDE
    at_layer = HubertFeatureReader(model, LAYER)
    full = HubertFeatureReader(model, model.num_layers)
    shallow = truncated(reference, LAYER)

    def hf(net: transformers.HubertModel, layer: int) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            with torch.inference_mode():
                return net(wav[None], output_hidden_states=True).hidden_states[layer][0]
        return run

    def ours(reader: HubertFeatureReader) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            with torch.inference_mode():
                return reader(wav)
        return run

    rows = [(f"layer {LAYER}: ours stops, transformers runs all {model.num_layers}", hf(reference, LAYER),
             ours(at_layer)),
            (f"layer {LAYER} at equal depth (transformers cut to {LAYER} blocks)", hf(shallow, LAYER), ours(at_layer)),
            (f"all {model.num_layers} blocks", hf(reference, model.num_layers), ours(full))]
    print(f"HuBERT {'quick' if args.quick else 'Base'}, {AUDIO_SECONDS:g} s of audio, float32, {THREADS} threads, "
          f"{args.runs} runs (min / median, s)")
    print(f"| {'case':<58} | {'transformers':>13} | {'speechzoo':>13} | {'speed-up':>8} | {'max |diff|':>10} |")
    print(f"|{'-' * 60}|{'-' * 15}|{'-' * 15}|{'-' * 10}|{'-' * 12}|")
    for name, reference_fn, ours_fn in rows:
        ref_out, our_out = reference_fn(), ours_fn()  # also the warm-up
        ref_times, our_times = timings(reference_fn, ours_fn, repeats=args.runs, warmup=False)
        diff = (ref_out - our_out).abs().max().item()
        speedup = statistics.median(ref_times) / statistics.median(our_times)
        print(f"| {name:<58} | {min(ref_times):5.3f} / {statistics.median(ref_times):5.3f} | "
              f"{min(our_times):5.3f} / {statistics.median(our_times):5.3f} | {speedup:7.2f}x | {diff:10.2e} |")


if __name__ == "__main__":
    main()
