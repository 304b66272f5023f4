"""``speechzoo resynthesize IN... -o OUTDIR --k 500 --lmbda 4500`` and ``speechzoo continue IN -o OUT.wav
--seconds 5``: DP-SLM speech → units → speech, and speech continuation with the unit LM (see
:mod:`zoo.pipelines.dpslm`). Output is 24 kHz WavTokenizer speech.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from tqdm.auto import tqdm

from .. import audio
from ..errors import InputError
from ..models.wavlm import SAMPLE_RATE as WAVLM_RATE
from ..pipelines.dpslm import DPSLM, ELLAV_TEMPERATURE, ELLAV_TOP_P
from .inputs import batches, expand, output_names, positive_int

#: Models of the DP-SLM system that ``--weights NAME=DIR`` can replace.
COMPONENTS = ("wavlm", "codebook", "ulm", "ellav", "wavtokenizer")


def register(subparsers: argparse._SubParsersAction) -> None:
    r = subparsers.add_parser("resynthesize", help="DP-SLM: speech → units → speech")
    r.add_argument("inputs", nargs="+", type=Path, metavar="IN", help="audio files or folders of them")
    r.add_argument("-o", "--out", required=True, type=Path, help="folder for NAME.wav")
    r.add_argument("--batch-size", type=positive_int, default=8, help="files per batch")
    r.add_argument("--temperature", type=float, default=ELLAV_TEMPERATURE, help="ELLA-V sampling temperature")
    r.add_argument("--top-p", type=float, default=ELLAV_TOP_P, help="ELLA-V nucleus (0: greedy)")
    r.set_defaults(func=run_resynthesize)

    c = subparsers.add_parser("continue", help="DP-SLM: continue speech with the unit LM")
    c.add_argument("input", type=Path, metavar="IN", help="the prompt, an audio file")
    c.add_argument("-o", "--out", required=True, type=Path, help="the .wav to write: prompt + continuation")
    c.add_argument("--seconds", type=float, default=5.0, help="about how much speech to add")
    c.add_argument("--temperature", type=float, default=1.0, help="unit LM sampling temperature (0: greedy)")
    c.add_argument("--top-p", type=float, default=1.0, help="unit LM nucleus")
    c.set_defaults(func=run_continue)

    for p in (r, c):
        p.add_argument("--k", type=int, default=500, help="codebook size (100, 200, 500 or 1000)")
        p.add_argument("--lmbda", type=int, default=4500, help="DPDP duration penalty of the released models")
        p.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
        p.add_argument("--weights", action="append", default=[], metavar="NAME=DIR",
                       help=f"use a local or Hub copy of one model ({', '.join(COMPONENTS)}); repeatable")


def _system(args: argparse.Namespace, with_ulm: bool) -> DPSLM:
    weights = {}
    for item in args.weights:
        name, sep, location = item.partition("=")
        if not sep or name not in COMPONENTS:
            raise InputError(f"--weights {item!r}: give NAME=DIR with NAME one of {', '.join(COMPONENTS)}")
        weights[name] = location
    return DPSLM.from_pretrained(args.k, args.lmbda, with_ulm=with_ulm, map_location=args.device, weights=weights)


def run_resynthesize(args: argparse.Namespace) -> int:
    files = expand(args.inputs)
    names = output_names(files)
    dpslm = _system(args, with_ulm=False)
    args.out.mkdir(parents=True, exist_ok=True)
    with tqdm(total=len(files), desc="resynthesizing", unit="file") as bar:
        for batch in batches(files, args.batch_size):
            wavs = [audio.load(f, sample_rate=WAVLM_RATE)[0][0] for f in batch]
            speech = dpslm.resynthesize(wavs, WAVLM_RATE, batch_size=args.batch_size, temperature=args.temperature,
                                        top_p=args.top_p)
            for path, wav in zip(batch, speech):
                audio.save(args.out / f"{names[path]}.wav", wav, dpslm.sample_rate)
            bar.update(len(batch))
    print(f"wrote {len(files)} files to {args.out}")
    return 0


def run_continue(args: argparse.Namespace) -> int:
    dpslm = _system(args, with_ulm=True)
    wav, sr = audio.load(args.input)
    speech = dpslm.continue_speech(wav[0], sr, args.seconds, temperature=args.temperature, top_p=args.top_p,
                                   progress=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    audio.save(args.out, speech, dpslm.sample_rate)
    print(f"wrote {args.out} ({len(speech) / dpslm.sample_rate:.1f} s)")
    return 0
