"""CPU speed of GSLM unit-to-speech (Tacotron2 + WaveGlow + denoiser) for 10 s of speech, float32 and bfloat16:
speechzoo vs a plain re-implementation of the original fairseq/textlesslib modules, with real-time factors.

The reference (:mod:`benchmarks.references.gslm_u2s`: ``Tacotron2``, ``WaveGlow``, ``Denoiser``) runs as the
originals run: original module tree and state-dict names, Tacotron2's step-by-step decoder with the prenet dropout
drawn by ``F.dropout(training=True)``, WaveGlow with ``weight_norm`` hooks recomputed at every call, the whole
``cond_layer`` output per flow and a scripted fused tanh·sigmoid (the original's own optimisation), the denoiser's
STFT as convolutions with the windowed DFT basis. Both sides get the same random weights (speechzoo's through its
converter) at the released sizes (upstream Tacotron2 hyper-parameters with a 100-unit code_dict; the 256-channel
WaveGlow), the same ids, and replay the same prenet masks and WaveGlow latent, and must agree. The gate is disabled
so both decode exactly 861 steps = 10 s at 22.05 kHz. Prints a markdown table.

    python -m benchmarks.bench_u2s                 # released sizes, 10 s, float32 and bfloat16, 2 threads
    python -m benchmarks.bench_u2s --quick         # tiny sizes, to check that it runs

The reference classes double as the independent reference of ``tests/test_gslm_u2s.py`` (variants the fixture does
not show, and the legacy module pickle of WaveGlow).
"""
from __future__ import annotations

import argparse
import math
import statistics
import tempfile
from argparse import Namespace
from pathlib import Path

import torch

from benchmarks.references.gslm_u2s import (
    QUICK_TACOTRON2,
    QUICK_WAVEGLOW,
    TACOTRON2_HPARAMS,
    WAVEGLOW_HPARAMS,
    Denoiser,
    Tacotron2,
    WaveGlow,
    converted_tacotron2,
    converted_waveglow,
    randomise,
)
from benchmarks.timing import timings
from zoo.models.waveglow import WaveGlowDenoiser

HOP, SAMPLE_RATE = 256, 22050
#: GSLM HuBERT units run at 50 Hz; after collapsing repeats about half remain.
IDS_PER_SECOND = 25


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and 1 s: check that it runs")
    parser.add_argument("--seconds", type=float, default=10.0, help="speech to synthesise")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per cell, after one warm-up")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seconds = 1.0 if args.quick else args.seconds
    taco_h = Namespace(**(QUICK_TACOTRON2 if args.quick else TACOTRON2_HPARAMS))
    wg_h = QUICK_WAVEGLOW if args.quick else WAVEGLOW_HPARAMS
    steps = math.ceil(seconds * SAMPLE_RATE / HOP)
    taco_h.max_decoder_steps = steps
    torch.manual_seed(0)
    ref_taco = randomise(Tacotron2(taco_h))
    with torch.no_grad():
        ref_taco.decoder.gate_layer.linear_layer.bias.fill_(-1e4)   # never stop early: exactly `steps` frames
    ref_wg = randomise(WaveGlow(**wg_h), seed=1, scale=0.05)
    with tempfile.TemporaryDirectory() as tmp:
        codes = [str(u) for u in range(taco_h.n_symbols - 3)]
        taco = converted_tacotron2(ref_taco, Path(tmp), codes)
        wg = converted_waveglow(ref_wg, wg_h, Path(tmp))
    taco.max_decoder_steps = steps
    g = torch.Generator().manual_seed(0)
    units = " ".join(codes[i] for i in torch.randint(len(codes), (int(seconds * IDS_PER_SECOND),), generator=g))
    ids = taco.encode(units)[None]
    masks = torch.rand(steps, 2, 1, taco_h.prenet_dim, generator=g) < 0.5
    noise = torch.randn(1, wg_h["n_group"], steps * HOP // wg_h["n_group"], generator=g)
    print(f"GSLM unit-to-speech, {seconds:g} s of speech ({steps} mel frames, {ids.shape[1]} ids), "
          f"{torch.get_num_threads()} threads, median of {args.repeats} after a warm-up\n")
    print("| stage | dtype | reference (original algorithm) | speechzoo | speed-up | max abs diff |")
    print("|---|---|---|---|---|---|")
    for dtype in [getattr(torch, d) for d in args.dtypes.split(",")]:
        ref_taco.to(dtype), taco.to(dtype), ref_wg.to(dtype), wg.to(dtype)
        ref_den, den = Denoiser(ref_wg), WaveGlowDenoiser(wg)
        with torch.inference_mode():  # each stage runs once untimed (the warm-up; its outputs feed the next stage)
            ref_out, out = ref_taco.inference(ids, masks=masks), taco.inference(ids, prenet_dropout_masks=masks)
            mel = ref_out[1]
            ref_audio, audio = ref_wg.infer(mel, sigma=0.666, noise=noise), wg.infer(mel, sigma=0.666, noise=noise)
            ref_clean, clean = ref_den(ref_audio, 0.1), den(ref_audio, 0.1)
            stages = [
                ("Tacotron2", lambda: ref_taco.inference(ids, masks=masks),
                 lambda: taco.inference(ids, prenet_dropout_masks=masks), out[1].float() - mel.float()),
                ("WaveGlow", lambda: ref_wg.infer(mel, sigma=0.666, noise=noise),
                 lambda: wg.infer(mel, sigma=0.666, noise=noise), audio.float() - ref_audio.float()),
                ("denoiser", lambda: ref_den(ref_audio, 0.1), lambda: den(ref_audio, 0.1), clean - ref_clean),
            ]
            rows = [(name, *map(statistics.median, timings(ref_fn, our_fn, repeats=args.repeats, warmup=False)),
                     diff.abs().max().item()) for name, ref_fn, our_fn, diff in stages]
        total_ref, total_ours = sum(r[1] for r in rows), sum(r[2] for r in rows)
        rows.append(("**total (RTF)**", total_ref, total_ours, None))
        for name, t_ref, t_ours, diff in rows:
            rtf = f" (RTF {t_ref / seconds:.2f})", f" (RTF {t_ours / seconds:.2f})"
            diff_text = "" if diff is None else f"{diff:.1e}"
            print(f"| {name} | {str(dtype).removeprefix('torch.')} | {t_ref:.2f} s{rtf[0]} | {t_ours:.2f} s{rtf[1]} "
                  f"| {t_ref / t_ours:.2f}× | {diff_text} |")


if __name__ == "__main__":
    main()
