"""``speechzoo vocode UNITS_FILE -o OUTDIR --vocoder VARIANT``: discrete units to .wav files with a unit HiFi-GAN,
in batches, with a progress bar.

UNITS_FILE holds one utterance per line, either
* GSLM / speech-resynthesis text: ``name|u1 u2 u3 ...`` (a line of bare units is named by its line number), or
* JSON lines: ``{"name": ..., "units": [u1, u2, ...]}`` (or a space-separated string), optionally with
  ``"speaker"`` (id), ``"f0"`` (Hz, 200 frames/s, 0 = unvoiced) or ``"audio"`` (a file to track F0 from with YAAPT,
  see :mod:`zoo.f0`) for vocoders conditioned on F0.

F0 is normalised with ``--f0-stats`` (speech-resynthesis ``f0_stats.th``) for the utterance's speaker, as in
training. ``--dur-prediction`` run-length-reduces the units and lets the duration predictor restore their lengths
(fairseq S2ST vocoders). ``--vc ID`` is voice conversion (speech-resynthesis ``inference.py --vc``): each utterance's
units and F0 with speaker ``ID``'s embedding; files are then named ``NAME_ID.wav``. Audio is written as the vocoder
outputs it (float, no peak normalisation). The work is :func:`zoo.pipelines.resynthesis.vocode`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .. import audio
from ..download import load
from ..f0 import F0Stats
from ..models.hifigan import CodeHiFiGAN
from ..pipelines.resynthesis import DEFAULT_BATCH_SIZE, read_units_file, vocode
from .inputs import positive_int

DEFAULT_VARIANT = "s2st_mhubert_km1000_lj"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("vocode", help="turn discrete units into audio with a unit HiFi-GAN vocoder")
    p.add_argument("units_file", type=Path, help="'name|u1 u2 ...' lines or JSON lines {name, units, ...}")
    p.add_argument("-o", "--out", required=True, type=Path, help="directory for the .wav files")
    p.add_argument("--vocoder", default=DEFAULT_VARIANT, help=f"released variant (default {DEFAULT_VARIANT}; "
                                                               "`speechzoo list` shows them)")
    p.add_argument("--weights", help="converted vocoder: a directory with config.json + model.safetensors or a "
                                     "Hub repo id (overrides --vocoder)")
    p.add_argument("--speaker", type=int, help="speaker id for every line (multi-speaker vocoders)")
    p.add_argument("--dur-prediction", action="store_true",
                   help="deduplicate the units and predict their durations")
    p.add_argument("--vc", type=int, metavar="ID", help="voice conversion: synthesise every line as speaker ID")
    p.add_argument("--f0-stats", type=Path, help="speech-resynthesis f0_stats.th to normalise F0 per speaker")
    p.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE, help="utterances per forward pass")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    utterances = read_units_file(args.units_file)
    vocoder = load(CodeHiFiGAN, "hifigan_unit_vocoder", args.weights, map_location=args.device,
                   variant=args.vocoder)
    stats = F0Stats.load(args.f0_stats) if args.f0_stats else None
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.vc is None else f"_{args.vc}"
    for utterance, wav in vocode(vocoder, utterances, speaker=args.speaker, dur_prediction=args.dur_prediction,
                                 target_speaker=args.vc, f0_stats=stats, batch_size=args.batch_size, progress=True):
        audio.save(args.out / f"{utterance.name}{suffix}.wav", wav, vocoder.sample_rate)
    return 0
