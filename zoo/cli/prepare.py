"""``speechzoo prepare``: data preparation for speech-resynthesis training (its ``scripts/``) and for the unit LMs
(``fairseq-preprocess``).

    speechzoo prepare resample --srcdir LJSpeech/wavs -o data/wavs_16khz --trim --pad       (= preprocess.py)
    speechzoo quantize ... --manifest_path train.tsv --out_quantized_file_path units.txt     (the units)
    speechzoo prepare manifest --codes units.txt --manifest train.tsv -o datasets/LJSpeech   (= parse_hubert_codes.py)

``resample`` converts every ``*.{postfix}`` file under ``--srcdir`` to 16 kHz mono, optionally trims leading and
trailing silence (``--trim``, 20 dB) and zero-pads to a multiple of 1280 samples (``--pad``); outputs mirror the
input tree inside ``-o`` (the original flattens it, so files of the same name overwrite each other). A file that
fails is reported and the others are still written. ``manifest`` writes ``train.txt``, ``val.txt`` and ``test.txt``
(one ``{'audio', 'hubert', 'duration'}`` dict per line) from a fairseq audio manifest and its units. The originals'
flag spellings (``--outdir``, ``--min-dur``, ``--ref-train``...) work too.

``units`` is ``fairseq-preprocess --only-source`` for unit text: the dictionary (by count, ties in string order,
``madeupword`` fillers up to a multiple of ``--padding-factor``) and the binarised splits the unit-LM trainers read,
byte for byte as fairseq writes them. dGSLM shares one dictionary across both channels::

    speechzoo prepare units --source-lang unitA --trainpref data/train --validpref data/valid -o bin
    speechzoo prepare units --source-lang unitB --srcdict bin/dict.unitA.txt --trainpref data/train \\
        --validpref data/valid -o bin

writes ``bin/dict.unitA.txt``, ``bin/dict.unitB.txt`` and ``bin/{train,valid}.{unitA,unitB}.{bin,idx}`` (the names the
dGSLM README renames fairseq's to). Without ``--source-lang``: ``dict.txt`` and ``{train,valid}.{bin,idx}`` from
``TRAINPREF``/``VALIDPREF`` as they are (GSLM's unit LM).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import InputError, SpeechZooError
from ..train.lm_data import prepare_units
from ..train.resynthesis_data import manifest_samples, prepare_file, split_samples, write_manifests


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("prepare", help="prepare training data (speech-resynthesis' scripts)",
                              description=__doc__.splitlines()[0])
    steps = p.add_subparsers(dest="step", required=True, metavar="STEP")

    r = steps.add_parser("resample", help="audio to 16 kHz mono, trimmed and padded (scripts/preprocess.py)")
    r.add_argument("--srcdir", type=Path, required=True, help="folder searched recursively for audio")
    r.add_argument("-o", "--out", "--outdir", dest="out", type=Path, required=True, help="output folder")
    r.add_argument("--trim", action="store_true", help="cut leading and trailing silence (20 dB below the peak)")
    r.add_argument("--pad", action="store_true", help="zero-pad to a multiple of 1280 samples")
    r.add_argument("--postfix", default="wav", help="file name ending of the inputs (default wav)")
    r.add_argument("--sample-rate", "--sample_rate", dest="sample_rate", type=int, default=16000,
                   help="output rate (default 16000, the original's only rate)")
    r.set_defaults(func=run_resample)

    m = steps.add_parser("manifest", help="train/val/test manifests from units (scripts/parse_hubert_codes.py)")
    m.add_argument("--codes", type=Path, required=True, help="units, one line per manifest entry (name|units ok)")
    m.add_argument("--manifest", type=Path, required=True, help="fairseq audio manifest (root, then path<TAB>len)")
    m.add_argument("-o", "--out", "--outdir", dest="out", type=Path, required=True, help="output folder")
    m.add_argument("--min-dur", "--min_dur", dest="min_dur", type=float, help="drop files shorter (seconds)")
    m.add_argument("--seed", type=int, default=42, help="shuffle seed (default 42)")
    m.add_argument("--tt", type=float, default=0.05, help="test fraction (default 0.05)")
    m.add_argument("--cv", type=float, default=0.05, help="validation fraction (default 0.05)")
    for split in ("train", "val", "test"):
        m.add_argument(f"--ref-{split}", f"--ref_{split}", dest=f"ref_{split}", type=Path,
                       help=f"split like this reference {split} manifest (by file name)")
    m.set_defaults(func=run_manifest)

    u = steps.add_parser("units", help="fairseq-preprocess --only-source for unit text (the unit LMs' data)")
    u.add_argument("--trainpref", type=Path, help="training text prefix (file TRAINPREF[.LANG])")
    u.add_argument("--validpref", type=Path, help="validation text prefix")
    u.add_argument("--testpref", type=Path, help="test text prefix")
    u.add_argument("-o", "--out", "--destdir", dest="out", type=Path, required=True,
                   help="output folder (fairseq's --destdir)")
    u.add_argument("--source-lang", "-s", dest="source_lang", help="file suffix (a dGSLM channel, e.g. unitA)")
    u.add_argument("--srcdict", type=Path, help="reuse this dict.txt instead of building one")
    u.add_argument("--only-source", action="store_true", help="accepted for fairseq's command lines (always so)")
    u.add_argument("--thresholdsrc", type=int, default=0, help="drop symbols seen fewer times (default 0)")
    u.add_argument("--nwordssrc", type=int, default=-1, help="keep at most this many symbols (-1: all)")
    u.add_argument("--padding-factor", type=int, default=8, help="pad the dictionary to a multiple of this")
    u.set_defaults(func=run_units)


def run_units(args: argparse.Namespace) -> int:
    d = prepare_units(args.out, args.trainpref, args.validpref, args.testpref, args.source_lang, args.srcdict,
                      args.thresholdsrc, args.nwordssrc, args.padding_factor)
    print(f"dictionary of {len(d)} symbols; wrote {args.out}")
    return 0


def run_resample(args: argparse.Namespace) -> int:
    if not args.srcdir.is_dir():
        raise InputError(f"--srcdir {args.srcdir} is not a folder")
    src_root = args.srcdir.resolve()
    files = sorted(p for p in src_root.glob(f"**/*{args.postfix}") if p.is_file())
    if not files:
        raise InputError(f"no *{args.postfix} files under {args.srcdir}")
    failed = []
    for src in files:
        relative = src.relative_to(src_root)  # under -o whatever the name: glob never leaves the source root
        try:
            prepare_file(src, args.out / relative, sample_rate=args.sample_rate, trim=args.trim, pad=args.pad)
        except (SpeechZooError, OSError, RuntimeError) as e:
            failed.append(f"{relative}: {e}")
    print(f"wrote {len(files) - len(failed)} of {len(files)} files into {args.out}")
    for line in failed:
        print(f"speechzoo prepare resample: skipped {line}", file=sys.stderr)
    return 2 if failed else 0


def run_manifest(args: argparse.Namespace) -> int:
    samples = manifest_samples(args.codes, args.manifest, min_dur=args.min_dur)
    refs = (args.ref_train, args.ref_val, args.ref_test)
    if any(refs) and not all(refs):
        raise InputError("give all three of --ref-train, --ref-val and --ref-test, or none")
    splits = split_samples(samples, seed=args.seed, tt=args.tt, cv=args.cv, reference=refs if all(refs) else None)
    paths = write_manifests(args.out, splits)
    print(", ".join(f"{p} ({len(s)})" for p, s in zip(paths, splits)))
    return 0
