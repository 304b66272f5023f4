"""``speechzoo resynthesize IN... -o OUTDIR --k 500 --lmbda 4500`` and ``speechzoo continue IN -o OUT.wav
--seconds 5``: DP-SLM speech → units → speech, and speech continuation with the unit LM (see
:mod:`zoo.pipelines.dpslm`). Output is 24 kHz WavTokenizer speech, 32-bit float unless ``--subtype``;
``resynthesize`` mirrors the input tree under OUTDIR (``spk1/0001.wav`` → ``OUTDIR/spk1/0001.wav``) and, with
``--skip-errors``, goes on past bad files.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .. import audio
from ..models.wavlm import SAMPLE_RATE as WAVLM_RATE
from ..pipelines.dpslm import DPSLM, ELLAV_TEMPERATURE, ELLAV_TOP_P
from .inputs import expand, resynthesize_files
from .options import (
    add_batch_size,
    add_device,
    add_out,
    add_skip_errors,
    add_subtype,
    add_weights,
    weights_by_name,
)

#: Models of the DP-SLM system that ``--weights NAME=DIR`` can replace.
COMPONENTS = ("wavlm", "codebook", "ulm", "ellav", "wavtokenizer")


def register(subparsers: argparse._SubParsersAction) -> None:
    r = subparsers.add_parser("resynthesize", help="DP-SLM: speech → units → speech")
    r.add_argument("inputs", nargs="+", type=Path, metavar="IN", help="audio files or folders of them")
    add_out(r, "folder for the .wav files (mirroring the input tree)")
    add_batch_size(r, 8, "files per batch")
    add_skip_errors(r)
    r.add_argument("--temperature", type=float, default=ELLAV_TEMPERATURE, help="ELLA-V sampling temperature")
    r.add_argument("--top-p", type=float, default=ELLAV_TOP_P, help="ELLA-V nucleus (0: greedy)")
    r.set_defaults(func=run_resynthesize)

    c = subparsers.add_parser("continue", help="DP-SLM: continue speech with the unit LM")
    c.add_argument("input", type=Path, metavar="IN", help="the prompt, an audio file")
    add_out(c, "the .wav to write: prompt + continuation")
    c.add_argument("--seconds", type=float, default=5.0, help="about how much speech to add")
    c.add_argument("--temperature", type=float, default=1.0, help="unit LM sampling temperature (0: greedy)")
    c.add_argument("--top-p", type=float, default=1.0, help="unit LM nucleus")
    c.set_defaults(func=run_continue)

    for p in (r, c):
        p.add_argument("--k", type=int, default=500, help="codebook size (100, 200, 500 or 1000)")
        p.add_argument("--lmbda", type=int, default=4500, help="DPDP duration penalty of the released models")
        add_device(p)
        add_subtype(p)
        add_weights(p, components=COMPONENTS)


def _system(args: argparse.Namespace, with_ulm: bool) -> DPSLM:
    return DPSLM.from_pretrained(args.k, args.lmbda, with_ulm=with_ulm, map_location=args.device,
                                 weights=weights_by_name(args.weights, COMPONENTS))


def run_resynthesize(args: argparse.Namespace) -> int:
    files = expand(args.inputs)
    dpslm = _system(args, with_ulm=False)
    return resynthesize_files(args, files, WAVLM_RATE, dpslm.sample_rate,
                              lambda wavs: dpslm.resynthesize(wavs, WAVLM_RATE, batch_size=args.batch_size,
                                                              temperature=args.temperature, top_p=args.top_p),
                              "resynthesizing")


def run_continue(args: argparse.Namespace) -> int:
    dpslm = _system(args, with_ulm=True)
    wav, sr = audio.load(args.input)
    speech = dpslm.continue_speech(wav[0], sr, args.seconds, temperature=args.temperature, top_p=args.top_p,
                                   progress=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    audio.save(args.out, speech, dpslm.sample_rate, args.subtype)
    print(f"wrote {args.out} ({len(speech) / dpslm.sample_rate:.1f} s)")
    return 0
