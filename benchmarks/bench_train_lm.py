"""SpeechDLM training throughput on CPU at the released dGSLM architecture: tokens per second of one update, float32
and bfloat16 autocast, beside fairseq's algorithm in the same run.

    python -m benchmarks.bench_train_lm [--tokens 512] [--rows 4] [--threads 2] [--repeats 3]

Model: ``speech_dlm`` base as released (6 layers, the last 4 cross-channel, 512 wide, FFN 2048, 8 heads, 504
symbols, duration head, tied output), random weights. Data: ``--rows`` blocks of ``--tokens`` random units per
channel (the recipe trains on blocks of 6144 with 18432 tokens per batch; that is minutes per update on 2 CPU
cores, so the default is smaller; tokens/s falls slowly with the block length, attention being quadratic).

1. ``LMTrainer.train_step``: the whole update as ``speechzoo train speech_dlm`` runs it (edge-unit + delayed-duration
   criterion, fairseq's Adam, clipping), float32 and bf16 autocast.
2. Forward + next-unit loss + backward + Adam with the model's forward vs with a faithful re-implementation of
   fairseq's ``CrossChannelTransformerDecoder`` forward (per-channel T×B×C loops, ``F.multi_head_attention_forward``
   with fairseq's additive ``-inf`` mask: ``benchmarks.bench_speech_dlm.fairseq_forward``), the same weights, loss and
   optimiser: the difference is the model's batched channels and attention.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.bench_speech_dlm import fairseq_forward
from benchmarks.timing import timings
from zoo.formats.fairseq import write_indexed_dataset
from zoo.models.speech_dlm import SpeechDLM, SpeechDLMConfig
from zoo.nn.dictionary import FairseqDictionary
from zoo.train.fairseq_optim import FairseqAdam
from zoo.train.lm import LMTrainConfig, LMTrainer


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=512, help="tokens per block (tokens_per_sample)")
    parser.add_argument("--rows", type=int, default=4, help="blocks per batch")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = SpeechDLMConfig(max_target_positions=args.tokens)
    model = SpeechDLM(config)
    with tempfile.TemporaryDirectory() as tmp:
        synthetic_data(Path(tmp), config.symbols, args.rows, args.tokens)
        batch_tokens = 2 * args.rows * args.tokens
        print(f"SpeechDLM base, {sum(p.numel() for p in set(model.parameters())):,} parameters; {args.rows} x "
              f"{args.tokens} tokens x 2 channels per update; {torch.get_num_threads()} threads, torch "
              f"{torch.__version__}\n")
        print("One update (speechzoo train speech_dlm)              min s   median s   tokens/s (median)")
        steps = {}
        for precision in ("fp32", "bf16"):
            cfg = LMTrainConfig(task="speech_dlm_task", lr=5e-4, warmup_updates=20000, warmup_init_lr=1e-7,
                                adam_betas=(0.9, 0.98), clip_norm=1.0, max_tokens=batch_tokens,
                                tokens_per_sample=args.tokens, required_batch_size_multiple=1, dropout=0.0,
                                bf16=precision == "bf16")
            trainer = LMTrainer(model, cfg, tmp, subsets=("train",))
            group = trainer.epoch_groups()[0]
            steps[precision] = (lambda t=trainer, g=group: t.train_step(g))
        for precision, seconds in zip(steps, timings(*steps.values(), repeats=args.repeats)):
            median = statistics.median(seconds)
            print(f"  {precision:<6}                                          {min(seconds):6.3f}   {median:7.3f}"
                  f"   {batch_tokens / median:9.0f}")

        tokens = {ch: torch.cat([torch.full((args.rows, 1), 2), torch.randint(4, config.vocab_size,
                                                                             (args.rows, args.tokens - 1))], 1)
                  for ch in config.channels}
        optimizer = FairseqAdam(model.parameters(), lr=1e-7, betas=(0.9, 0.98))

        def step(logits_of):
            logits = logits_of()
            loss = sum(F.nll_loss(F.log_softmax(logits[ch].float(), -1).flatten(0, 1), tokens[ch].flatten(),
                                  reduction="sum") for ch in config.channels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        def ours_logits():
            out = model(tokens)[0]
            return {ch: out[ch][ch]["pred_token"] for ch in config.channels}

        ours = lambda: step(ours_logits)  # noqa: E731
        reference = lambda: step(lambda: fairseq_forward(model, tokens))  # noqa: E731
        ours_s, ref_s = timings(ours, reference, repeats=args.repeats)
        print("\nForward + next-unit loss + backward + Adam, float32   min s   median s   tokens/s (median)")
        for label, seconds in (("speechzoo model", ours_s), ("fairseq's algorithm (same run)", ref_s)):
            median = statistics.median(seconds)
            print(f"  {label:<32}                {min(seconds):6.3f}   {median:7.3f}   {batch_tokens / median:9.0f}")


if __name__ == "__main__":
    main()
