"""``speechzoo gslm COMMAND``: GSLM's scripts.

* ``speechzoo gslm sample PROMPTS.txt -o OUT.txt`` is ``ulm/sample.py``: prompt lines ``id|u1 u2 ...`` in, one
  ``id__k|units`` line per prompt and hypothesis out (see :meth:`zoo.models.gslm_ulm.GSLMUnitLM.sample_prompts`);
* ``speechzoo gslm synthesize UNITS -o OUTDIR`` is ``unit2speech/synthesize_audio_from_units.py``: each utterance
  of a units file (:mod:`zoo.units`: ``speechzoo encode --dense ...``'s JSON lines, or the ``name|u1 u2 ...`` lines
  of ``quantize_with_kmeans.py``) to ``OUTDIR/ID.wav``;
* ``speechzoo gslm resynthesize IN... -o OUTDIR`` is ``tools/resynthesize_speech.py`` over files and folders;
* ``speechzoo gslm continue IN -o OUT.wav --seconds S`` is GSLM's speech continuation.

Speech is written at 22.05 kHz as the originals write it, or at 16 kHz with ``--16k``
(``unit2speech/convert_to_16k.py``), as 32-bit float (``--subtype PCM_16`` for the originals' 16-bit files).
Outputs mirror the input tree (``spk1/0001.wav`` → ``OUTDIR/spk1/0001.wav``). A file or line that cannot be
processed stops the command once the finished ones are written; with ``--skip-errors`` it is reported on its own
line at the end and costs nothing else (exit status 2). The work is :mod:`zoo.pipelines.gslm`.

Each subcommand is a function ``add_<name>(commands)`` listed in :data:`SUBCOMMANDS`; it adds its parser to the
``gslm`` group and sets ``func``.
"""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import torch

from .. import audio
from .. import units as units_file
from ..download import load
from ..errors import InputError, SpeechZooError
from ..models.gslm_ulm import ULM_ARCHIVES, VOCAB_SIZES, GSLMUnitLM
from ..models.tacotron2 import DEFAULT_MAX_DECODER_STEPS
from ..pipelines.gslm import (
    ASR_SAMPLE_RATE,
    COMPONENTS,
    CONTINUATION_TEMPERATURE,
    DEFAULT_BATCH_SIZE,
    DENOISER_STRENGTH,
    GSLM,
    SAMPLE_RATE,
    SIGMA,
    UnitToSpeech,
)
from .inputs import (
    Failures,
    expand,
    output_path,
    positive_int,
    resynthesize_files,
)
from .options import (
    add_batch_size,
    add_device,
    add_out,
    add_skip_errors,
    add_subtype,
    add_weights,
    weights_by_name,
)


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """The release selection every GSLM subcommand shares."""
    p.add_argument("--dense", default="hubert", choices=sorted(ULM_ARCHIVES),
                   help="dense features the units quantize (selects the released models)")
    p.add_argument("--vocab-size", type=int, default=100, choices=VOCAB_SIZES, help="k-means K of the units")
    add_device(p)
    p.add_argument("--fp16", action="store_true", help="run the models in half precision")


def add_sample(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("sample", help="ulm/sample.py: continue (or sample without) unit prompts with the ULM",
                            description=__doc__.splitlines()[0])
    p.add_argument("prompts", type=Path, metavar="PROMPTS.txt", help="lines 'id|u1 u2 ...'")
    add_out(p, "the file to write", "--output", metavar="OUT.txt")
    add_weights(p, "the unit LM (instead of the release that --dense/--vocab-size select)")
    add_model_arguments(p)
    p.add_argument("--beam", type=positive_int, default=5, help="beam size (1: greedy)")
    p.add_argument("--sampling", action="store_true", help="sample instead of beam search")
    p.add_argument("--sampling-topk", type=int, default=-1, help="sample from the k most likely units only")
    p.add_argument("--sampling-topp", type=float, default=-1.0, help="sample from the nucleus of mass p only")
    p.add_argument("--temperature", type=float, default=1.0, help="divides the logits")
    p.add_argument("--max-len-a", type=float, default=0, help="max length = a * prompt batch width + b")
    p.add_argument("--max-len-b", type=int, default=200, help="max length = a * prompt batch width + b")
    p.add_argument("--min-len", type=int, default=1, help="</s> is forbidden before this many free steps")
    p.add_argument("--prefix-size", type=int, default=0,
                   help="prompt units kept: 0 = unconditional (the default), -1 = the whole prompt")
    add_batch_size(p, None, "prompts per batch (default: all)")
    p.add_argument("--samples-per-prompt", type=positive_int, default=1, help="samples per prompt with --sampling")
    p.add_argument("--seed", type=int, default=1, help="seeds the sampling")
    p.add_argument("--lenpen", type=float, default=1.0, help="length penalty of beam scores")
    p.add_argument("--unkpen", type=float, default=0.0, help="penalty subtracted from <unk>'s log-prob")
    add_skip_errors(p)
    p.set_defaults(func=run_sample)


def add_speech_arguments(p: argparse.ArgumentParser) -> None:
    """The unit-to-speech settings (``synthesize_audio_from_units.py``'s flags and textlesslib's defaults)."""
    p.add_argument("--max-decoder-steps", type=positive_int, default=DEFAULT_MAX_DECODER_STEPS,
                   help="Tacotron2 mel frames per utterance at most (256 samples each)")
    p.add_argument("--denoiser-strength", type=float, default=DENOISER_STRENGTH, help="WaveGlow bias removed")
    p.add_argument("--sigma", type=float, default=SIGMA, help="scale of WaveGlow's latent")
    p.add_argument("--16k", dest="to_16k", action="store_true",
                   help="write 16 kHz speech (unit2speech/convert_to_16k.py) instead of 22.05 kHz")
    p.add_argument("--seed", type=int, default=None,
                   help="seeds the prenet dropout, WaveGlow's latent and the unit LM (default: fresh draws)")
    add_subtype(p)


def add_synthesize(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("synthesize", help="synthesize_audio_from_units.py: units file → NAME.wav files")
    p.add_argument("units_file", type=Path, metavar="UNITS",
                   help="a units file: encode's JSON lines or 'name|u1 u2 ...' lines (quantize_with_kmeans.py)")
    add_out(p, "folder for ID.wav")
    add_skip_errors(p)
    add_model_arguments(p)
    add_batch_size(p, DEFAULT_BATCH_SIZE, "utterances per Tacotron2 batch")
    add_weights(p, components=("tacotron2", "waveglow"))
    add_speech_arguments(p)
    p.set_defaults(func=run_synthesize)


def add_resynthesize(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("resynthesize", help="tools/resynthesize_speech.py: speech → units → speech")
    p.add_argument("inputs", nargs="+", type=Path, metavar="IN", help="audio files or folders of them")
    add_out(p, "folder for the .wav files (mirroring the input tree)")
    add_skip_errors(p)
    add_model_arguments(p)
    p.add_argument("--layer", type=int, help="dense model layer (default: the one the k-means clusters)")
    add_batch_size(p, DEFAULT_BATCH_SIZE, "files per batch")
    add_weights(p, components=COMPONENTS)
    add_speech_arguments(p)
    p.set_defaults(func=run_resynthesize)


def add_continue(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("continue", help="GSLM speech continuation: the prompt and what the unit LM adds")
    p.add_argument("input", type=Path, metavar="IN", help="the prompt, an audio file")
    add_out(p, "the .wav to write: prompt + continuation", metavar="OUT.wav")
    p.add_argument("--seconds", type=float, default=5.0, help="speech to add after the prompt")
    p.add_argument("--temperature", type=float, default=CONTINUATION_TEMPERATURE, help="unit LM sampling temperature")
    add_model_arguments(p)
    p.add_argument("--layer", type=int, help="dense model layer (default: the one the k-means clusters)")
    add_weights(p, components=COMPONENTS)
    add_speech_arguments(p)
    p.set_defaults(func=run_continue)


#: The subcommands of ``speechzoo gslm``, in the order ``--help`` lists them.
SUBCOMMANDS = (add_sample, add_synthesize, add_resynthesize, add_continue)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("gslm", help="GSLM: sample unit continuations, synthesize units, resynthesize "
                                           "and continue speech")
    commands = p.add_subparsers(dest="gslm_command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(commands)


def load_ulm(args: argparse.Namespace) -> GSLMUnitLM:
    lm = load(GSLMUnitLM, "gslm_ulm", args.weights, map_location=args.device, dense=args.dense,
              vocab_size=args.vocab_size)
    return lm.half() if args.fp16 else lm


def run_sample(args: argparse.Namespace) -> int:
    if not args.prompts.is_file():
        raise InputError(f"{args.prompts} does not exist")
    lines = args.prompts.read_text(encoding="utf-8").splitlines()
    lm = load_ulm(args)
    failures = Failures(args)
    skip = (lambda where, e: failures.add(f"{args.prompts}: {where}", e)) if args.skip_errors else None
    samples = lm.iter_samples(
        lines, beam=args.beam, sampling=args.sampling, temperature=args.temperature, max_len_a=args.max_len_a,
        max_len_b=args.max_len_b, prefix_size=args.prefix_size, batch_size=args.batch_size,
        samples_per_prompt=args.samples_per_prompt, seed=args.seed, sampling_topk=args.sampling_topk,
        sampling_topp=args.sampling_topp, min_len=args.min_len, lenpen=args.lenpen, unkpen=args.unkpen,
        progress=True, on_error=skip)
    first = next(samples, None)  # bad prompts are reported here, before the output is touched
    args.out.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(args.out, "w", encoding="utf-8") as out:
        for line in itertools.chain([first] if first is not None else [], samples):
            out.write(line + "\n")
            out.flush()  # what is done stays written if a later batch fails
            count += 1
    print(f"wrote {count} lines to {args.out}")
    return failures.report()


# ------------------------------------------------------------------------------------------ speech
def _options(args: argparse.Namespace) -> dict:
    return {"max_decoder_steps": args.max_decoder_steps, "map_location": args.device,
            "dtype": torch.float16 if args.fp16 else None, "sigma": args.sigma,
            "denoiser_strength": args.denoiser_strength}


def run_synthesize(args: argparse.Namespace) -> int:
    units = units_file.read(args.units_file)
    if units.settings is not None:
        if units.settings.get("system") != "gslm":
            raise InputError(f"{args.units_file} holds {units.settings.get('system')} units; GSLM's Tacotron2 "
                             "reads GSLM units (speechzoo encode --dense ...)")
        units_file.check_settings(args.units_file, units.settings, {"vocab_size": args.vocab_size})
    u2s = UnitToSpeech.from_pretrained(args.dense, args.vocab_size, **_options(args),
                                       weights=weights_by_name(args.weights, ("tacotron2", "waveglow")))
    rate = ASR_SAMPLE_RATE if args.to_16k else u2s.sample_rate
    failures, good = Failures(args), []
    for record in units.records:   # bad ids and units of another quantizer are reported before any synthesis
        try:
            u2s.tacotron2.encode(record.frames())
            good.append((record, output_path(args.out, record.id, ".wav")))
        except SpeechZooError as e:
            failures.add(f"{args.units_file}: {record.id}", e)
    failures.check()
    for i, wav in u2s.iter_synthesize([r.frames() for r, _ in good], seed=args.seed, sample_rate=rate,
                                      batch_size=args.batch_size, progress=True):
        audio.save(good[i][1], wav, rate, args.subtype)
    print(f"wrote {len(good)} files to {args.out}")
    return failures.report()


def _gslm(args: argparse.Namespace, with_unit_lm: bool) -> GSLM:
    return GSLM.from_pretrained(args.dense, args.vocab_size, layer=args.layer, with_unit_lm=with_unit_lm,
                                weights=weights_by_name(args.weights, COMPONENTS), **_options(args))


def run_resynthesize(args: argparse.Namespace) -> int:
    files = expand(args.inputs)
    gslm = _gslm(args, with_unit_lm=False)
    rate = ASR_SAMPLE_RATE if args.to_16k else gslm.sample_rate
    return resynthesize_files(args, files, SAMPLE_RATE, rate,
                              lambda wavs: gslm.resynthesize(wavs, output_sample_rate=rate, seed=args.seed,
                                                             batch_size=args.batch_size),
                              "resynthesize")


def run_continue(args: argparse.Namespace) -> int:
    gslm = _gslm(args, with_unit_lm=True)
    rate = ASR_SAMPLE_RATE if args.to_16k else gslm.sample_rate
    wav, sr = audio.load(args.input)
    speech = gslm.continue_speech(wav[0], args.seconds, args.temperature, sample_rate=sr, output_sample_rate=rate,
                                  seed=args.seed, progress=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    audio.save(args.out, speech, rate, args.subtype)
    print(f"wrote {args.out} ({len(speech) / rate:.1f} s)")
    return 0
