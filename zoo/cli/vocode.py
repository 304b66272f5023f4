"""``speechzoo vocode UNITS_FILE -o OUTDIR --vocoder VARIANT``: discrete units to .wav files with a unit HiFi-GAN,
in batches, with a progress bar.

UNITS_FILE is a units file (:mod:`zoo.units`): ``speechzoo encode``'s JSON lines ``{"id", "source", "units",
"durations"}`` (units are repeated by their durations), JSON lines written by hand, optionally with ``"speaker"``
(id), ``"f0"`` (Hz, 200 frames/s, 0 = unvoiced) or ``"audio"`` (a file to track F0 from with YAAPT, see
:mod:`zoo.f0`) for vocoders conditioned on F0, or GSLM / speech-resynthesis text ``name|u1 u2 u3 ...``. Each
utterance is written to ``OUTDIR/ID.wav`` (ids such as ``spk1/0001`` make folders; none leaves OUTDIR).

F0 is normalised with ``--f0-stats`` (speech-resynthesis ``f0_stats.th``) for the utterance's speaker, as in
training. ``--dur-prediction`` run-length-reduces the units and lets the duration predictor restore their lengths
(fairseq S2ST vocoders). ``--vc ID`` is voice conversion (speech-resynthesis ``inference.py --vc``): each utterance's
units and F0 with speaker ``ID``'s embedding; files are then named ``NAME_ID.wav``. Audio is written as the vocoder
outputs it (32-bit float unless ``--subtype``, no peak normalisation). A bad line costs only itself with
``--skip-errors``. ``--plot FILE.png`` draws the first utterance written (its waveform, :func:`zoo.plot.waveform`).
The work is :func:`zoo.pipelines.resynthesis.vocode_batch`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import audio, plot
from ..download import load
from ..errors import SpeechZooError
from ..f0 import F0Stats
from ..models.hifigan import CodeHiFiGAN
from ..pipelines.resynthesis import (
    DEFAULT_BATCH_SIZE,
    Utterance,
    read_units_file,
    vocode_batch,
)
from .inputs import Failures, batches, each_good, output_path
from .options import (
    add_batch_size,
    add_device,
    add_out,
    add_plot,
    add_skip_errors,
    add_subtype,
    add_weights,
)

DEFAULT_VARIANT = "s2st_mhubert_km1000_lj"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("vocode", help="turn discrete units into audio with a unit HiFi-GAN vocoder",
                              description=__doc__.splitlines()[0])
    p.add_argument("units_file", type=Path, help="a units file: encode's JSON lines, or 'name|u1 u2 ...' lines")
    add_out(p, "directory for the .wav files")
    p.add_argument("--vocoder", default=DEFAULT_VARIANT, help=f"released variant (default {DEFAULT_VARIANT}; "
                                                               "`speechzoo list hifigan` shows them)")
    add_weights(p, "the vocoder (overrides --vocoder)")
    p.add_argument("--speaker", type=int, help="speaker id for every line (multi-speaker vocoders)")
    p.add_argument("--dur-prediction", action="store_true",
                   help="deduplicate the units and predict their durations")
    p.add_argument("--vc", type=int, metavar="ID", help="voice conversion: synthesise every line as speaker ID")
    p.add_argument("--f0-stats", type=Path, help="speech-resynthesis f0_stats.th to normalise F0 per speaker")
    add_batch_size(p, DEFAULT_BATCH_SIZE, "utterances per forward pass")
    add_device(p)
    add_subtype(p)
    add_skip_errors(p)
    add_plot(p, "the first utterance's waveform")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.plot:
        plot.check_path(args.plot)
    vocoder = load(CodeHiFiGAN, "hifigan_unit_vocoder", args.weights, map_location=args.device,
                   variant=args.vocoder)
    utterances = read_units_file(args.units_file, vocoder)
    stats = F0Stats.load(args.f0_stats) if args.f0_stats else None
    suffix = "" if args.vc is None else f"_{args.vc}"
    failures, paths = Failures(args), {}
    for utterance in utterances:  # every id is checked before any synthesis
        try:
            paths[utterance.name] = output_path(args.out, utterance.name + suffix, ".wav")
        except SpeechZooError as e:
            failures.add(f"{args.units_file}: {utterance.name!r}", e)
    failures.check()
    good = sorted((u for u in utterances if u.name in paths), key=lambda u: len(u.units))
    size = 1 if vocoder.config.f0 else args.batch_size  # F0 vocoders take one utterance at a time

    def synthesize(batch: list[Utterance]) -> list:
        return vocode_batch(vocoder, batch, speaker=args.speaker, dur_prediction=args.dur_prediction,
                            target_speaker=args.vc, f0_stats=stats)

    written, first = 0, None
    with torch.inference_mode(), tqdm(total=len(good), desc="vocode", unit="utt") as bar:
        for batch in batches(good, size):
            for utterance, wav in each_good(batch, synthesize, failures, lambda u: f"{args.units_file}: {u.name}"):
                audio.save(paths[utterance.name], wav, vocoder.sample_rate, args.subtype)
                written += 1
                first = first or (utterance.name + suffix, wav)
            failures.check()
            bar.update(len(batch))
    print(f"wrote {written} files to {args.out}")
    if args.plot and first:
        plot.save(plot.waveform(first[1], vocoder.sample_rate, title=first[0]), args.plot)
        print(f"drew {first[0]} to {args.plot}")
    return failures.report()
