"""Generation speed of DP-SLM's Mistral-style LMs (the ULM and ELLA-V) on CPU: batches of prompts through the KV
cache, against the ORIGINAL's own cached generation, re-implemented, in the same run.

Protocol (issue 16): the released sizes (12 layers, 1024 wide, 16 heads, SwiGLU 4096; ULM vocabulary 501 = k 500 +
BOS, ELLA-V 4 + 500 + 4096) with random weights, 200 new tokens per prompt, sampling at temperature 1 with top-p
0.8 (the DP-SLM settings; ELLA-V with ``max_codec_tokens_per_phone=10``). ULM prompts are 10 units; ELLA-V prompts
100 distinct units (102 ids, as perf-anchors row 6c); random ELLA-V weights never finish, so all 200 steps run.
B = 8 is eight different prompts of that length. Tokens/s are aggregate (B × steps / seconds), prefill included.

Reference: ``benchmarks/references/ellav_cached.py``, ELLA-V's ``generate`` with its ``BufferCache``, its xformers
masks (by a CPU stand-in that reads no more keys than the kernel) and its per-step logits processing — see its
docstring for why it is faithful; the fixtures' tests check that it draws what the original drew. The ULM original
has no generation code; its rows run the ULM through that same cached loop (BOS masked), its author's cached
generation for this architecture. Both sides get the same weights.

bfloat16: this CPU (AVX2, see the header) has no bfloat16 units — torch emulates them, so bfloat16 matrix products
are far slower than float32 here. The bfloat16 path (``.to(torch.bfloat16)`` end to end, cache included) is timed
only where it finishes in reasonable time: B = 1 over all tokens, B = 8 over ``--bf16-batch-tokens``.

    python -m benchmarks.bench_generation            # the table (about 6 minutes on an idle 2-core machine)
    python -m benchmarks.bench_generation --quick    # 2 layers, 16 tokens: only to see that it runs
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

import torch

from benchmarks.references import ellav_cached as reference
from benchmarks.timing import timings
from zoo.models.ellav import ELLAV, EOP_ID, EOS_ID, ELLAVConfig, ELLAVTokenizerConfig
from zoo.models.ulm import UnitLanguageModel
from zoo.nn.linear import ONEDNN_LINEAR
from zoo.nn.transformer import TransformerConfig

THREADS = 2
NUM_UNITS = 500               # k of the benchmarked ULM / ELLA-V
NUM_CODEC_TYPES = 4096        # WavTokenizer small_600_24k_4096
ULM_PROMPT_UNITS = 10
ELLAV_PROMPT_UNITS = 100      # distinct units: 102 prompt ids with BOS and the forced first unit
MAX_CODEC_TOKENS_PER_PHONE = 10
TEMPERATURE, TOP_P = 1.0, 0.8
RELEASED_LAYERS = 12
WARMUP_TOKENS = 4
BATCH = 8
#: Targets of issue 16: float32 B=8 aggregate vs B=1, and speechzoo vs the original's cached loop (ELLA-V, B=1).
BATCH_TARGET, REFERENCE_TARGET = 5.0, 1.3

#: generate(prompts, tokens) -> steps run
Run = Callable[[list, int], int]


@dataclass
class Family:
    name: str
    ours: Run            # speechzoo
    original: Run        # the original's cached loop, same weights
    prompts: list        # BATCH prompts
    to: Callable[[torch.dtype], None]


def released_transformer(vocab_size: int, output_bias: bool, n_layers: int) -> TransformerConfig:
    return TransformerConfig(dim=1024, n_layers=n_layers, head_dim=64, hidden_dim=4096, n_heads=16, n_kv_heads=16,
                             vocab_size=vocab_size, norm_eps=1e-6, rope_theta=10000.0, output_bias=output_bias)


def with_original(model: torch.nn.Module) -> reference.ReferenceTransformer:
    original = reference.ReferenceTransformer(model.transformer.config).eval()
    original.load_state_dict(model.transformer.state_dict())
    return original


def ulm(n_layers: int) -> Family:
    model = UnitLanguageModel(released_transformer(NUM_UNITS + 1, output_bias=False, n_layers=n_layers)).eval()
    original = with_original(model)
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, NUM_UNITS, (ULM_PROMPT_UNITS,), generator=g) for _ in range(BATCH)]

    def ours(batch: list, tokens: int) -> int:
        return model.generate(batch, tokens, TEMPERATURE, TOP_P).shape[-1]

    def theirs(batch: list, tokens: int) -> int:
        ids = [model.tokenizer.encode(p).tolist() for p in batch]
        return reference.generate_ulm(original, ids, tokens, TEMPERATURE, TOP_P).shape[-1]

    return Family(f"ULM k={NUM_UNITS}", ours, theirs, prompts, lambda dtype: model.to(dtype))


def ellav(n_layers: int) -> Family:
    tokenizer = ELLAVTokenizerConfig(phones=tuple(sorted(f"u{n}" for n in range(NUM_UNITS))), phone_token_rate=50.0,
                                     num_codec_types=NUM_CODEC_TYPES, codec_token_rate=40.0)
    transformer = released_transformer(4 + NUM_UNITS + NUM_CODEC_TYPES, output_bias=True, n_layers=n_layers)
    model = ELLAV(ELLAVConfig(transformer, tokenizer)).eval()
    original = with_original(model)
    g = torch.Generator().manual_seed(0)
    prompts = [model.tokenizer.encode_infer([f"u{n}" for n in torch.randperm(NUM_UNITS, generator=g)[
        :ELLAV_PROMPT_UNITS].tolist()]) for _ in range(BATCH)]

    def ours(batch: list, tokens: int) -> int:
        raw, _ = model.generate_raw(batch, tokens, MAX_CODEC_TOKENS_PER_PHONE, TEMPERATURE, TOP_P)
        return raw.shape[1]

    def theirs(batch: list, tokens: int) -> int:
        raw, _ = reference.generate(original, batch, tokens, MAX_CODEC_TOKENS_PER_PHONE, TEMPERATURE, TOP_P,
                                    EOP_ID, EOS_ID)
        return len(raw[0]) if raw else 0

    return Family(f"ELLA-V k={NUM_UNITS}", ours, theirs, prompts, lambda dtype: model.to(dtype))


def measure(run: Run, batch: list, tokens: int, repeats: int) -> float:
    """Aggregate tokens/s of ``run`` (the fastest of ``repeats`` runs)."""
    run(batch, WARMUP_TOKENS)
    steps = []
    seconds = timings(lambda: steps.append(run(batch, tokens)), repeats=repeats, warmup=False)[0]
    assert set(steps) == {tokens}, f"every run must take all {tokens} steps, took {steps}"
    return len(batch) * tokens / min(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 layers and 16 generated tokens: a smoke run")
    parser.add_argument("--tokens", type=int, help="new tokens per prompt (default 200, 16 with --quick)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each timing; the fastest counts")
    parser.add_argument("--bf16-batch-tokens", type=int, default=10,
                        help=f"new tokens for bfloat16 at B={BATCH} (slow without bf16 units; 0 skips it)")
    args = parser.parse_args()
    tokens = args.tokens or (16 if args.quick else 200)
    n_layers = 2 if args.quick else RELEASED_LAYERS
    bf16_batch_tokens = min(args.bf16_batch_tokens, tokens)
    torch.set_num_threads(THREADS)
    acceptance = n_layers == RELEASED_LAYERS and tokens >= 200

    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()} (no bfloat16 units), {torch.get_num_threads()} "
          f"threads, torch {torch.__version__}, oneDNN linear {'on' if ONEDNN_LINEAR else 'off'}; {n_layers} layers, "
          f"{tokens} new tokens per prompt, random weights\n")
    print("| model | B | dtype | new tokens | original's cached loop (tok/s) | speechzoo (tok/s) | vs original | "
          "vs speechzoo float32 B=1 |")
    print("|---|---|---|---|---|---|---|---|")
    verdicts = []
    with torch.inference_mode():
        for build in (ulm, ellav):
            family = build(n_layers)
            base = None
            for batch_size in (1, BATCH):
                batch = family.prompts[:batch_size]
                ours = measure(family.ours, batch, tokens, args.repeats)
                theirs = measure(family.original, batch, tokens, args.repeats)
                base = base or ours
                print(f"| {family.name} | {batch_size} | float32 | {tokens} | {theirs:.1f} | {ours:.1f} | "
                      f"{ours / theirs:.2f}× | {ours / base:.2f}× |", flush=True)
                if batch_size == 1 and family.name.startswith("ELLA-V"):
                    verdicts.append((f"{family.name} B=1 vs the original's cached loop", ours / theirs,
                                     REFERENCE_TARGET))
                if batch_size == BATCH:
                    verdicts.append((f"{family.name} float32 B={BATCH} vs B=1", ours / base, BATCH_TARGET))
            family.to(torch.bfloat16)
            for batch_size, bf16_tokens in ((1, tokens), (BATCH, bf16_batch_tokens)):
                if bf16_tokens:
                    ours = measure(family.ours, family.prompts[:batch_size], bf16_tokens, 1)
                    print(f"| {family.name} | {batch_size} | bfloat16 | {bf16_tokens} | — | {ours:.1f} | — | "
                          f"{ours / base:.2f}× |", flush=True)
    if acceptance:
        print()
        for what, value, target in verdicts:
            print(f"{what}: {value:.2f}× (target ≥ {target}×) {'✓' if value >= target else '✗'}")


if __name__ == "__main__":
    main()
