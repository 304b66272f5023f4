"""dGSLM's commands.

* ``speechzoo dialogue A_B.wav -o OUT.wav --seconds 20`` (or ``speechzoo dialogue A.wav B.wav -o OUT.wav``):
  a two-speaker conversation continued end to end (:mod:`zoo.pipelines.dgslm`), written as a stereo 16 kHz file of
  the resynthesised prompt followed by the continuation (32-bit float unless ``--subtype``).
* ``speechzoo dialogue-sample --in-file CODES --out-file OUT``: continue two-channel unit dialogues with dGSLM's
  SpeechDLM, reading and writing the files of fairseq's ``examples/textless_nlp/dgslm/sample_speech_dlm.py`` (same
  flags and defaults: sampling with 5 samples per prompt, the best one kept, ``max_len_b`` 500, seed 123).

Each input line is ``{'audio': NAME, 'unitA': '7 376 ...', 'unitB': '...'}``; each output line is
``{'audio': NAME + '-generated', 'unitA': ..., 'unitB': ...}`` holding prompt + continuation. Units outside the
model's dictionary become ``<unk>`` (generated freely), as in fairseq. Every prompt is checked before any
generation: a bad line stops the command, or with ``--skip-errors`` is reported at the end (exit status 2) and the
others are continued.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from .. import audio
from ..download import load
from ..errors import InputError
from ..models.speech_dlm import (
    SpeechDLM,
    SpeechDLMHubInterface,
    limit_prefix,
    read_code_file,
    write_code_file,
)
from ..pipelines.dgslm import COMPONENTS, SAMPLES_PER_PROMPT, DialogueGSLM
from .inputs import Failures, positive_int
from .options import add_device, add_out, add_skip_errors, add_subtype, add_weights, weights_by_name


def register(subparsers: argparse._SubParsersAction) -> None:
    add_dialogue(subparsers)
    add_dialogue_sample(subparsers)


def add_dialogue(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("dialogue", help="continue a two-speaker conversation (dGSLM, end to end)",
                              description="Continue a two-speaker conversation with dGSLM: a stereo file (one "
                                          "speaker per channel) or two mono files, A then B.")
    p.add_argument("inputs", nargs="+", type=Path, metavar="AUDIO",
                   help="a stereo file (channel 1 = speaker A), or two mono files of the same length")
    add_out(p, "the stereo wav to write (prompt resynthesised + continuation)", metavar="OUT.wav")
    p.add_argument("--seconds", type=float, default=10.0, help="seconds of new dialogue (default: 10)")
    p.add_argument("--beam", type=positive_int, default=SAMPLES_PER_PROMPT,
                   help="samples drawn, the best-scoring kept (default: 5, as sample_speech_dlm.py)")
    p.add_argument("--temperature", type=float, default=1.0, help="temperature of the unit distributions")
    p.add_argument("--dur-temperature", type=float, default=1.0, help="durations are divided by this")
    p.add_argument("--sampling-topk", type=int, default=-1, help="sample among the k most likely units")
    p.add_argument("--seed", type=int, default=123, help="seed of the sampling (default: 123)")
    add_weights(p, components=COMPONENTS)
    add_device(p)
    add_subtype(p)
    p.set_defaults(func=run_dialogue)


def run_dialogue(args: argparse.Namespace) -> int:
    if not args.seconds > 0:
        raise InputError(f"--seconds must be positive, got {args.seconds}")
    wav = _conversation(args.inputs)
    model = DialogueGSLM.from_pretrained(map_location=args.device,
                                         weights=weights_by_name(args.weights, COMPONENTS))
    stereo = model.continue_dialogue(wav.to(args.device), args.seconds, seed=args.seed, beam=args.beam,
                                     temperature=args.temperature, duration_temperature=args.dur_temperature,
                                     sampling_topk=args.sampling_topk, progress=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    audio.save(args.out, stereo, model.sample_rate, args.subtype)
    print(f"wrote {args.out} ({stereo.shape[-1] / model.sample_rate:.1f} s, 2 channels)")
    return 0


def _conversation(paths: list[Path]) -> torch.Tensor:
    """``(2, samples)`` at 16 kHz from one stereo file or two mono files."""
    if len(paths) > 2:
        raise InputError(f"got {len(paths)} files; pass one stereo file or two mono files (speaker A, speaker B)")
    channels = [audio.load(p, sample_rate=16000, mono=False)[0] for p in paths]
    if len(paths) == 1:
        if channels[0].shape[0] != 2:
            raise InputError(f"{paths[0]} has {channels[0].shape[0]} channel(s); dGSLM needs one speaker per "
                             "channel: pass a stereo file, or two mono files: speechzoo dialogue A.wav B.wav -o OUT.wav")
        return channels[0]
    for path, wav in zip(paths, channels):
        if wav.shape[0] != 1:
            raise InputError(f"{path} has {wav.shape[0]} channels; with two files, each is one speaker (mono)")
    frames = min(wav.shape[-1] for wav in channels)
    return torch.cat([wav[:, :frames] for wav in channels])


def add_dialogue_sample(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("dialogue-sample", help="continue two-channel unit dialogues (dGSLM SpeechDLM)",
                              description=__doc__.splitlines()[0])
    p.add_argument("--in-file", required=True, type=Path, help="code file: one {'audio', 'unitA', 'unitB'} per line")
    p.add_argument("--out-file", required=True, type=Path, help="file to write the continued codes to")
    p.add_argument("--weights", help="converted SpeechDLM directory or Hub repo id (default: the released model)")
    p.add_argument("--variant", default="speech_dlm_base", help="released SpeechDLM (default: speech_dlm_base)")
    add_device(p)
    p.add_argument("--prefix-size", type=positive_int, help="keep only the first N units of each prompt")
    p.add_argument("--batch-max-tokens", dest="max_tokens", type=positive_int, default=9216,
                   help="padded prompt tokens per batch")
    p.add_argument("--batch-max-positions", dest="max_positions", type=positive_int, default=6144,
                   help="longest prompt accepted (units + 1)")
    p.add_argument("--batch-max-sentences", dest="max_sentences", type=positive_int, help="prompts per batch")
    p.add_argument("--skip-invalid-size-batch", dest="skip_too_long", action="store_true",
                   help="skip prompts over --batch-max-positions")
    p.add_argument("--beam-search", action="store_true", help="beam search instead of sampling")
    p.add_argument("--beam-size", type=positive_int, default=5, help="beams, or samples per prompt (default: 5)")
    p.add_argument("--sampling-topk", type=int, default=-1, help="sample among the k most likely units")
    p.add_argument("--sampling-topp", type=float, default=-1.0, help="sample in the smallest set of mass >= p")
    p.add_argument("--max-len-a", type=int, default=0, help="max length a·x + b, x = prompt length + 1")
    p.add_argument("--max-len-b", type=int, default=500, help="max length a·x + b (prompt included; 500 ≈ 10 s)")
    p.add_argument("--min-len", type=int, default=1, help="minimum length")
    p.add_argument("--temperature", type=float, default=1.0, help="temperature of the unit distributions")
    p.add_argument("--dur-temperature", type=float, default=1.0, help="durations are divided by this")
    p.add_argument("--verbose", action="store_true", help="log the scores of each hypothesis")
    p.add_argument("--seed", type=int, default=123, help="seed of the sampling")
    add_skip_errors(p)
    p.set_defaults(func=run_sample)


def run_sample(args: argparse.Namespace) -> int:
    hub = SpeechDLMHubInterface(load(SpeechDLM, "speech_dlm", args.weights, map_location=args.device,
                                     variant=args.variant))
    hub.eval()
    failures = Failures(args)
    skip = failures.add if args.skip_errors else None
    records = read_code_file(args.in_file, hub.channels, on_error=skip)
    if args.prefix_size is not None:
        records = [{**r, **limit_prefix({ch: r[ch] for ch in hub.channels}, args.prefix_size)} for r in records]
    hub.max_tokens, hub.max_positions, hub.max_sentences = args.max_tokens, args.max_positions, args.max_sentences
    if args.skip_too_long:  # dropped here, so that every output line keeps its own name
        kept = [r for r in records if len(r[hub.channels[0]].split()) + 1 <= hub.max_positions]
        if len(kept) < len(records):
            print(f"skipped {len(records) - len(kept)} prompts longer than --batch-max-positions")
        records = kept
    good = []
    for i, record in enumerate(records):  # every prompt is checked before any generation
        try:
            hub.check({ch: record[ch] for ch in hub.channels}, i)
            good.append(record)
        except InputError as e:
            failures.add(f"{args.in_file}: {record['audio']}", e)
    failures.check()
    records = good
    prompts = [{ch: record[ch] for ch in hub.channels} for record in records]
    torch.manual_seed(args.seed)
    generated = hub.sample(prompts, beam=args.beam_size, sampling=not args.beam_search,
                           sampling_topk=args.sampling_topk, sampling_topp=args.sampling_topp,
                           max_len_a=args.max_len_a, max_len_b=args.max_len_b, min_len=args.min_len,
                           temperature=args.temperature, duration_temperature=args.dur_temperature,
                           verbose=args.verbose, progress=True)
    write_code_file(args.out_file, [{"audio": r["audio"] + "-generated", **units}
                                    for r, units in zip(records, generated)])
    print(f"wrote {len(generated)} continued dialogues to {args.out_file}")
    return failures.report()
