"""SpeechDLM training throughput on CPU at the released dGSLM configuration, and ``speech_dlm_big``'s memory per
token: tokens per second of one update, float32 and bfloat16 autocast, beside fairseq's algorithm in the same run.

    python -m benchmarks.bench_train_lm [--tokens 512] [--rows 2] [--bf16-tokens 32] [--big-tokens 256 1024]
        [--attention-dropout 0.1] [--parts 1234]

1. The recipe's update (``speechzoo train speech_dlm``, ``LMTrainer.train_step``) at the released architecture
   (``speech_dlm`` base: 6 layers, the last 4 cross-channel, 512 wide, FFN 2048, 8 heads, 504 symbols, duration
   head, tied output; random weights) with the README command's settings: edge-unit + delayed-duration targets,
   dropout 0.1, attention dropout 0.1, Adam (0.9, 0.98), clip 1.0. Blocks: ``--rows`` × ``--tokens`` random units
   per channel (the recipe trains on 6144-token blocks, 18432 tokens per batch: minutes per update on 2 CPU cores;
   tokens/s falls slowly with the block, attention being quadratic).
2. The same forward + next-unit loss + backward + Adam through (a) the trainer's op graph
   (:func:`zoo.train.lm.speech_dlm_output`, fairseq's own ops: what ``train_step`` runs), (b) an independent
   transcription of fairseq's ``CrossChannelTransformerDecoder`` (``benchmarks.bench_speech_dlm.fairseq_forward``,
   the honest reference), (c) the model's batched inference forward (channels batched, SDPA on batch-first
   tensors): what fairseq's exact rounding costs over the fastest forward.
3. bf16 autocast. This CPU may lack bf16 units (``get_cpu_capability`` is printed; on AVX2 a bf16 matmul is
   ~250× slower than float32): bf16 runs ``--bf16-rows`` × ``--bf16-tokens`` (reduced so that it finishes) beside
   float32 at the same size, and the header prints the measured bf16/float32 matmul slowdown.
4. ``speech_dlm_big`` (12 layers, all cross-channel, 1024 wide, FFN 4096, 16 heads; no released checkpoint): one
   float32 update per block size of ``--big-tokens`` (1 row, 2 channels), each in a fresh process: its activations
   (peak RSS − RSS before the update − 12 bytes per parameter for the gradients and Adam's moments) per token, and
   tokens/s. With attention dropout (the recipe's) the CPU keeps every (T, T) attention matrix, so memory per token
   grows with T (``--attention-dropout 0`` shows the linear part); the 6144-token block is extrapolated unless run.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.bench_speech_dlm import fairseq_forward
from benchmarks.timing import bf16_matmul_slowdown, timed, timings
from zoo.formats.fairseq import write_indexed_dataset
from zoo.models.speech_dlm import SpeechDLM, SpeechDLMConfig
from zoo.nn.dictionary import FairseqDictionary
from zoo.train.fairseq_optim import FairseqAdam
from zoo.train.lm import LMTrainConfig, LMTrainer, speech_dlm_output

#: ``speech_dlm_big`` (fairseq ``speech_dlm.py``): every layer cross-channel.
BIG = {"embed_dim": 1024, "ffn_embed_dim": 4096, "attention_heads": 16, "layers": 12, "cross_layers": 12}


def synthetic_data(folder: Path, symbols: tuple[str, ...], rows: int, tokens: int) -> None:
    """``rows`` lines of ``tokens - 1`` units (runs of 1-6 frames, as deduplication-free HuBERT units) per channel."""
    rng = np.random.default_rng(0)
    dictionary = FairseqDictionary(symbols, [0] * 4 + [1] * (len(symbols) - 4))
    for ch in ("unitA", "unitB"):
        (folder / f"dict.{ch}.txt").write_text(dictionary.text())
        for split in ("train", "valid"):
            lines = [np.repeat(rng.integers(4, len(symbols), tokens), rng.integers(1, 7, tokens))[:tokens - 1]
                     for _ in range(rows)]
            write_indexed_dataset(folder / f"{split}.{ch}", [np.append(line, 2) for line in lines], len(symbols))


def recipe(tokens: int, rows: int, precision: str = "fp32", attention_dropout: float = 0.1) -> LMTrainConfig:
    """The dGSLM README's training settings for ``rows`` blocks of ``tokens`` per batch (on CPU, SDPA with attention
    dropout runs its math path, which keeps every (T, T) attention matrix for the backward pass)."""
    return LMTrainConfig(task="speech_dlm_task", lr=5e-4, warmup_updates=20000, warmup_init_lr=1e-7,
                         adam_betas=(0.9, 0.98), clip_norm=1.0, max_tokens=rows * tokens, tokens_per_sample=tokens,
                         required_batch_size_multiple=1, dropout=0.1, attention_dropout=attention_dropout,
                         seed=100501, bf16=precision == "bf16")


def update(model: SpeechDLM, folder: str, tokens: int, rows: int, precision: str = "fp32",
           attention_dropout: float = 0.1):
    """One ``train_step`` of the recipe on ``folder``'s synthetic data, as a callable."""
    trainer = LMTrainer(model, recipe(tokens, rows, precision, attention_dropout), folder, subsets=("train",))
    group = trainer.epoch_groups()[0]
    return lambda: trainer.train_step(group)


def row(label: str, seconds: list[float], tokens: int) -> str:
    median = statistics.median(seconds)
    return f"  {label:<52} {min(seconds):8.3f} {median:9.3f} {tokens / median:11.1f}"


def big_one(tokens: int, attention_dropout: float) -> None:
    """Child process: one float32 update of speech_dlm_big on a block of ``tokens``; prints JSON."""
    torch.manual_seed(0)
    model = SpeechDLM(SpeechDLMConfig(max_target_positions=tokens, **BIG))
    with tempfile.TemporaryDirectory() as tmp:
        synthetic_data(Path(tmp), model.config.symbols, 1, tokens)
        step = update(model, tmp, tokens, 1, attention_dropout=attention_dropout)
        before = _rss_kib()
        seconds, _ = timed(step)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"tokens": tokens, "seconds": seconds, "rss_before_kib": before, "peak_kib": peak,
                      "parameters": sum(p.numel() for p in set(model.parameters()))}))


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=512, help="tokens per block (tokens_per_sample), float32")
    parser.add_argument("--rows", type=int, default=2, help="blocks per batch, float32")
    parser.add_argument("--bf16-tokens", type=int, default=32, help="tokens per block for the bf16 comparison")
    parser.add_argument("--bf16-rows", type=int, default=1)
    parser.add_argument("--big-tokens", type=int, nargs="*", default=[256, 1024],
                        help="speech_dlm_big block sizes (one fresh process each)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parts", default="1234", help="which parts to run (of the docstring's 1-4)")
    parser.add_argument("--attention-dropout", type=float, default=0.1, help="the recipe's 0.1 by default")
    parser.add_argument("--big-one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.big_one:
        big_one(args.big_one, args.attention_dropout)
        return
    torch.manual_seed(0)
    config = SpeechDLMConfig(max_target_positions=max(args.tokens, args.bf16_tokens))
    model = SpeechDLM(config)
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{torch.get_num_threads()} threads; bf16/float32 time of a 256x1024x1024 matmul here: "
          f"{bf16_matmul_slowdown():.0f}x")
    print(f"SpeechDLM base (released dGSLM architecture), {sum(p.numel() for p in set(model.parameters())):,} "
          f"parameters; recipe settings (edge + delayed duration, dropout 0.1, attention dropout "
          f"{args.attention_dropout:g}, clip 1.0)\n")
    header = f"  {'':<52} {'min s':>8} {'median s':>9} {'tokens/s':>11}"
    if "1" in args.parts or "2" in args.parts:
        with tempfile.TemporaryDirectory() as tmp:
            synthetic_data(Path(tmp), config.symbols, args.rows, args.tokens)
            base_parts(args, model, tmp, header)
    if "3" in args.parts:
        with tempfile.TemporaryDirectory() as tmp:
            synthetic_data(Path(tmp), config.symbols, args.bf16_rows, args.bf16_tokens)
            small = 2 * args.bf16_rows * args.bf16_tokens
            print(f"\n3. One update, {args.bf16_rows} x {args.bf16_tokens} tokens x 2 channels (reduced so that bf16 "
                  f"finishes on this CPU)")
            print(header)
            steps = [update(model, tmp, args.bf16_tokens, args.bf16_rows, p, args.attention_dropout)
                     for p in ("fp32", "bf16")]
            fp32, bf16 = timings(*steps, repeats=1)
            print(row("float32", fp32, small))
            print(row("bf16 autocast", bf16, small))
            print(f"  bf16 / float32: {statistics.median(bf16) / statistics.median(fp32):.1f}x")
    if "4" in args.parts and args.big_tokens:
        big_part(args)


def base_parts(args: argparse.Namespace, model: SpeechDLM, folder: str, header: str) -> None:
    """Parts 1 and 2 on ``folder``'s ``rows`` × ``tokens`` blocks."""
    config, batch_tokens = model.config, 2 * args.rows * args.tokens
    if "1" in args.parts:
        print(f"1. One update (speechzoo train speech_dlm), {args.rows} x {args.tokens} tokens x 2 channels")
        print(header)
        (seconds,) = timings(update(model, folder, args.tokens, args.rows, attention_dropout=args.attention_dropout),
                             repeats=args.repeats)
        print(row("float32", seconds, batch_tokens))
    if "2" not in args.parts:
        return
    tokens = {ch: torch.cat([torch.full((args.rows, 1), 2),
                             torch.randint(4, config.vocab_size, (args.rows, args.tokens - 1))], 1)
              for ch in config.channels}
    optimizer = FairseqAdam(model.parameters(), lr=1e-7, betas=(0.9, 0.98))
    cfg = LMTrainConfig(**{**recipe(args.tokens, args.rows).__dict__, "dropout": 0.0, "attention_dropout": 0.0})

    def step(logits_of) -> None:
        logits = logits_of()
        loss = sum(F.nll_loss(F.log_softmax(logits[ch].float(), -1).flatten(0, 1), tokens[ch].flatten(),
                              reduction="sum") for ch in config.channels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    model.train()
    variants = {
        "trainer's op graph (speech_dlm_output, fairseq's ops)":
            lambda: {ch: o[ch]["pred_token"] for ch, o in speech_dlm_output(model, tokens, cfg).items()},
        "fairseq's decoder transcribed (reference)": lambda: fairseq_forward(model, tokens),
        "model's batched inference forward":
            lambda: {ch: o[ch]["pred_token"] for ch, o in model(tokens)[0].items()},
    }
    print("\n2. Forward + next-unit loss + backward + Adam, float32, dropout 0 (the reference has none)")
    print(header)
    results = timings(*(lambda f=f: step(f) for f in variants.values()), repeats=args.repeats)
    for label, seconds in zip(variants, results):
        print(row(label, seconds, batch_tokens))


def big_part(args: argparse.Namespace) -> None:
    """Part 4: speech_dlm_big, one fresh process per block size."""
    print("\n4. speech_dlm_big, one float32 update of 1 x T tokens x 2 channels (a fresh process per T); activations ="
          " peak RSS - RSS before - 12 bytes/parameter (gradients and Adam's two moments)")
    print(f"  {'T':>6} {'s':>8} {'tokens/s':>9} {'before MiB':>11} {'peak MiB':>9} {'activations MiB':>16} "
          f"{'KiB/token':>10}")
    runs = []
    for t in args.big_tokens:
        out = subprocess.run([sys.executable, "-m", "benchmarks.bench_train_lm", "--big-one", str(t), "--threads",
                              str(args.threads), "--attention-dropout", str(args.attention_dropout)],
                             capture_output=True, text=True, check=False)
        if out.returncode:  # e.g. killed for memory: the largest block that finished is the one above
            print(f"  {t:>6} did not finish (exit {out.returncode}): {(out.stderr.strip() or '?').splitlines()[-1]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        r["activations_kib"] = r["peak_kib"] - r["rss_before_kib"] - 12 * r["parameters"] / 1024
        runs.append(r)
        print(f"  {t:>6} {r['seconds']:8.1f} {2 * t / r['seconds']:9.1f} {r['rss_before_kib'] / 1024:11.0f} "
              f"{r['peak_kib'] / 1024:9.0f} {r['activations_kib'] / 1024:16.0f} {r['activations_kib'] / (2 * t):10.0f}")
    if runs:
        print(f"  parameters: {runs[0]['parameters']:,}")
    if len(runs) > 1:  # activations(T) = b·T + c·T² through the two largest sizes
        (t1, m1), (t2, m2) = ((r["tokens"], r["activations_kib"]) for r in runs[-2:])
        c = (m2 / t2 - m1 / t1) / (t2 - t1)
        b = m1 / t1 - c * t1
        print(f"  fitted activations = {b:.0f} KiB x T + {c:.2f} KiB x T^2 (T = block length; the T^2 part is the "
              f"attention matrices); a 6144-token block would need ~{(b * 6144 + c * 6144 ** 2) / 2 ** 20:.0f} GiB "
              f"of activations (extrapolated, not run)")

if __name__ == "__main__":
    main()
