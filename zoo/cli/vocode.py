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
outputs it (float, no peak normalisation).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import audio
from ..download import load
from ..errors import InputError
from ..f0 import F0Stats, normalize_f0, peak_normalize, samples_per_frame, yaapt_f0
from ..models.hifigan import CodeHiFiGAN, deduplicate, trim_to_f0, voice_convert
from ..nn.ragged import PAD_UNIT
from .inputs import batches, positive_int

DEFAULT_VARIANT = "s2st_mhubert_km1000_lj"
DEFAULT_BATCH_SIZE = 8


@dataclass
class Utterance:
    name: str
    units: list[int]
    speaker: int | None = None
    f0_hz: list[float] | None = None
    audio: Path | None = None


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
    # F0 vocoders and duration prediction with F0 go one utterance at a time; the others are batched by length.
    batch_size = 1 if vocoder.config.f0 else args.batch_size
    ordered = sorted(utterances, key=lambda u: len(u.units))
    with tqdm(total=len(ordered), desc="vocode", unit="utt") as bar:
        for batch in batches(ordered, batch_size):
            wavs = vocode_batch(vocoder, batch, speaker=args.speaker, dur_prediction=args.dur_prediction,
                                target_speaker=args.vc, f0_stats=stats)
            for utterance, wav in zip(batch, wavs):
                audio.save(args.out / f"{utterance.name}{suffix}.wav", wav, vocoder.sample_rate)
            bar.update(len(batch))
    return 0


def vocode_batch(vocoder, batch: list[Utterance], *, speaker: int | None = None, dur_prediction: bool = False,
                 target_speaker: int | None = None, f0_stats=None) -> list[torch.Tensor]:
    """Waveforms ``(samples,)`` of a batch of utterances (one utterance per batch for F0 vocoders)."""
    device = vocoder.unit_embedding.weight.device
    rows = [torch.tensor(u.units) for u in batch]
    if dur_prediction:
        rows = [deduplicate(r) for r in rows]
    units = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=PAD_UNIT).to(device)
    speakers = [u.speaker if u.speaker is not None else speaker for u in batch]
    if target_speaker is not None:
        speakers = [target_speaker] * len(batch)
    f0 = None
    if vocoder.config.f0:
        (utterance,), (units_row,) = batch, rows
        f0 = _f0_for(vocoder, utterance, utterance.speaker if utterance.speaker is not None else speaker, f0_stats)
        units_row, f0 = _trim(vocoder, units_row, f0, dur_prediction)
        units, f0 = units_row[None].to(device), f0[None, None].to(device)
        if target_speaker is not None:
            if dur_prediction:
                raise InputError("voice conversion with an F0 vocoder keeps the source durations: "
                                 "drop --dur-prediction")
            return [voice_convert(vocoder, units, f0, target_speaker, f0_stats=f0_stats)[0, 0].cpu()]
    if all(s is None for s in speakers):
        speaker_ids = None
    elif any(s is None for s in speakers):
        raise InputError("some lines name a speaker and others do not: give every line one, or pass --speaker")
    else:
        speaker_ids = torch.tensor(speakers)
    wav, lengths = vocoder.synthesize(units, dur_prediction=dur_prediction, speaker=speaker_ids, f0=f0)
    return [w[0, :n].cpu() for w, n in zip(wav, lengths)]


def _f0_for(vocoder, utterance: Utterance, speaker: int | None, f0_stats) -> torch.Tensor:
    if utterance.f0_hz is not None:
        f0 = torch.tensor(utterance.f0_hz, dtype=torch.float32)
    elif utterance.audio is not None:
        wav, _ = audio.load(utterance.audio, sample_rate=vocoder.sample_rate)
        f0 = yaapt_f0(peak_normalize(wav[0]), vocoder.sample_rate)
    else:
        raise InputError(f"{utterance.name}: this vocoder needs F0; give the line an \"f0\" list or an \"audio\" file")
    if not vocoder.config.f0_normalize:
        return f0
    if f0_stats is None:
        raise InputError("this vocoder takes speaker-normalised F0: pass --f0-stats f0_stats.th")
    return normalize_f0(f0, *f0_stats.of(speaker if speaker is not None else 0))


def _trim(vocoder, units: torch.Tensor, f0: torch.Tensor, dur_prediction: bool):
    if dur_prediction:  # the frame count is only known after duration prediction: pass F0 as given
        return units, f0
    return trim_to_f0(units, f0, vocoder.config, samples_per_frame(vocoder.sample_rate))


# ------------------------------------------------------------------------------------------ units files
def read_units_file(path: Path) -> list[Utterance]:
    """Parse a units file (see the module docstring); names must be unique."""
    if not path.is_file():
        raise InputError(f"no units file at {path}")
    utterances = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if line:
            utterances.append(_parse_line(line, number, path))
    if not utterances:
        raise InputError(f"{path} holds no utterances")
    names = [u.name for u in utterances]
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise InputError(f"{path}: the name {duplicate!r} appears twice; output files would overwrite each other")
    return utterances


def _parse_line(line: str, number: int, path: Path) -> Utterance:
    where = f"{path}:{number}"
    if line.startswith("{"):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{where}: not valid JSON ({e})") from e
        if "units" not in record:
            raise InputError(f"{where}: a JSON line needs \"units\"")
        return Utterance(name=str(record.get("name", number)), units=_units(record["units"], where),
                         speaker=record.get("speaker"), f0_hz=record.get("f0"),
                         audio=Path(record["audio"]) if record.get("audio") else None)
    name, _, units = line.rpartition("|")
    return Utterance(name=name or str(number), units=_units(units, where))


def _units(value, where: str) -> list[int]:
    tokens = value.split() if isinstance(value, str) else value
    try:
        units = [int(t) for t in tokens]
    except (TypeError, ValueError) as e:
        raise InputError(f"{where}: units must be integers ({e})") from e
    if not units:
        raise InputError(f"{where}: empty unit sequence")
    return units
