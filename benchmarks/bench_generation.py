"""Generation speed of the unit LM and ELLA-V on CPU, with the KV cache vs re-running the whole sequence each step.

Real released configurations (12 layers, 1024 wide, 16 heads, SwiGLU 4096; ULM vocab 501 = k 500 + BOS, ELLA-V
vocab 4 + 500 + 4096) with random weights. "without cache" is the loop the originals imply (Mistral-ULM has no
cache): every step re-runs the forward over the whole growing sequence. ELLA-V uses the
DP-SLM settings (100 distinct units, max_codec_tokens_per_phone=10, temperature 1, top_p 0.8); its random weights
never finish, so every step runs. Times include the prompt's prefill.

    python -m benchmarks.bench_generation            # 500 generated tokens, the acceptance check (>= 5x)
    python -m benchmarks.bench_generation --quick    # 2 layers, 16 tokens: only to see that it runs
"""
from __future__ import annotations

import argparse
from collections.abc import Callable

import torch

from benchmarks.timing import timed
from zoo.models.ellav import ELLAV, ELLAVConfig, ELLAVTokenizerConfig
from zoo.models.ulm import UnitLanguageModel
from zoo.nn.transformer import TransformerConfig

THREADS = 2
NUM_UNITS = 500               # k of the benchmarked ULM / ELLA-V
NUM_CODEC_TYPES = 4096        # WavTokenizer small_600_24k_4096
ULM_PROMPT_UNITS = 10
ELLAV_PROMPT_UNITS = 100      # distinct units: 102 prompt ids with BOS and the forced first unit
MAX_CODEC_TOKENS_PER_PHONE = 10
TEMPERATURE, TOP_P = 1.0, 0.8
REQUIRED_SPEEDUP = 5.0
RELEASED_LAYERS = 12
WARMUP_TOKENS = 4

#: generate(tokens, use_cache) -> steps run
Run = Callable[[int, bool], int]


def released_transformer(vocab_size: int, output_bias: bool, n_layers: int) -> TransformerConfig:
    return TransformerConfig(dim=1024, n_layers=n_layers, head_dim=64, hidden_dim=4096, n_heads=16, n_kv_heads=16,
                             vocab_size=vocab_size, norm_eps=1e-6, rope_theta=10000.0, output_bias=output_bias)


def ulm_run(n_layers: int) -> Run:
    model = UnitLanguageModel(released_transformer(NUM_UNITS + 1, output_bias=False, n_layers=n_layers)).eval()
    prompt = torch.randint(0, NUM_UNITS, (ULM_PROMPT_UNITS,), generator=torch.Generator().manual_seed(0))

    def run(tokens: int, use_cache: bool) -> int:
        return model.generate(prompt, tokens, TEMPERATURE, TOP_P, use_cache=use_cache).shape[-1]
    return run


def ellav_run(n_layers: int) -> Run:
    tokenizer = ELLAVTokenizerConfig(phones=tuple(sorted(f"u{n}" for n in range(NUM_UNITS))), phone_token_rate=50.0,
                                     num_codec_types=NUM_CODEC_TYPES, codec_token_rate=40.0)
    transformer = released_transformer(4 + NUM_UNITS + NUM_CODEC_TYPES, output_bias=True, n_layers=n_layers)
    model = ELLAV(ELLAVConfig(transformer, tokenizer)).eval()
    prompt = model.tokenizer.encode_infer([f"u{n}" for n in range(ELLAV_PROMPT_UNITS)])

    def run(tokens: int, use_cache: bool) -> int:
        raw, _ = model.generate_raw([prompt], tokens, MAX_CODEC_TOKENS_PER_PHONE, TEMPERATURE, TOP_P,
                                    use_cache=use_cache)
        return raw.shape[1]
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 layers and 16 generated tokens: a smoke run")
    parser.add_argument("--tokens", type=int, help="generated tokens (default 500, 16 with --quick)")
    args = parser.parse_args()
    tokens = args.tokens or (16 if args.quick else 500)
    n_layers = 2 if args.quick else RELEASED_LAYERS
    torch.set_num_threads(THREADS)

    print(f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}, {n_layers} layers, "
          f"{tokens} generated tokens\n")
    print("| model | steps | with KV cache (tok/s) | without cache (tok/s) | speed-up |")
    print("|---|---|---|---|---|")
    with torch.inference_mode():
        for name, build in (("ULM k=500", ulm_run), ("ELLA-V k=500", ellav_run)):
            run = build(n_layers)
            run(WARMUP_TOKENS, True)  # allocator, kernels
            torch.manual_seed(0)
            cached, steps = timed(lambda: run(tokens, True))
            torch.manual_seed(0)
            uncached, steps_too = timed(lambda: run(tokens, False))
            assert steps == steps_too, "both loops must run the same number of steps"
            speedup = uncached / cached
            acceptance = tokens >= 500 and n_layers == RELEASED_LAYERS
            verdict = "" if not acceptance else (" ✓" if speedup >= REQUIRED_SPEEDUP else f" ✗ (< {REQUIRED_SPEEDUP}x)")
            print(f"| {name} | {steps} | {steps / cached:.1f} | {steps / uncached:.1f} | {speedup:.1f}x{verdict} |",
                  flush=True)


if __name__ == "__main__":
    main()
