"""Speech resynthesis: discrete units (plus F0 and speaker where the vocoder takes them) to speech with a unit
HiFi-GAN (:mod:`zoo.models.hifigan`), as speech-resynthesis' ``inference.py`` and fairseq's unit vocoders run it.

:func:`vocode` turns :class:`Utterance` s into waveforms in batches of similar length; :func:`read_units_file` reads
GSLM / speech-resynthesis units files. For each vocoder kind it does what the originals' inference does:

* fairseq S2ST vocoders with ``dur_prediction``: the units are run-length-reduced (:func:`deduplicate`) and the
  duration predictor restores their lengths;
* F0 vocoders (speech-resynthesis): F0 comes with the utterance (Hz, 200 frames/s) or is tracked from its audio
  with YAAPT (:mod:`zoo.f0`), is normalised with the speaker's statistics when the vocoder was trained that way, and
  units and F0 are cut to a common length the vocoder accepts (:func:`trim_to_f0`); one utterance per forward pass;
* voice conversion (``inference.py --vc``): the units and F0 of an utterance with another speaker
  (:func:`voice_convert`).

``speechzoo vocode`` (:mod:`zoo.cli.vocode`) is this module behind argument parsing.

Example (a tiny random vocoder; released ones come from ``hubconf.hifigan_unit_vocoder``)::

    >>> import torch
    >>> from zoo.models.hifigan import CodeHiFiGAN, CodeHiFiGANConfig
    >>> config = CodeHiFiGANConfig(upsample_rates=(5, 4, 2), upsample_kernel_sizes=(11, 8, 4),
    ...                            upsample_initial_channel=32, resblock_kernel_sizes=(3, 7, 11),
    ...                            resblock_dilation_sizes=((1, 3, 5),) * 3, num_embeddings=20, embedding_dim=16,
    ...                            model_in_dim=16, code_hop_size=40)
    >>> vocoder = CodeHiFiGAN(config).eval()
    >>> utterances = [Utterance("a", [3, 3, 7, 1]), Utterance("b", [5, 9])]
    >>> [(u.name, tuple(wav.shape)) for u, wav in vocode(vocoder, utterances)]    # shortest first
    [('b', (80,)), ('a', (160,))]
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import audio
from .. import units as units_file
from ..errors import InputError
from ..f0 import (
    F0Stats,
    normalize_f0,
    peak_normalize,
    rescale_f0,
    samples_per_frame,
    yaapt_f0,
)
from ..models.hifigan import CodeHiFiGAN, CodeHiFiGANConfig
from ..nn.ragged import PAD_UNIT

#: Utterances per forward pass of a vocoder without F0 (F0 vocoders take one at a time).
DEFAULT_BATCH_SIZE = 8


@dataclass
class Utterance:
    """One utterance to vocode: its ``name`` (its id, which names its output file), frame-level unit ids, and
    optionally a speaker id, F0 in Hz at 200 frames/s (0 = unvoiced) or an audio file to track F0 from (for F0
    vocoders)."""

    name: str
    units: list[int]
    speaker: int | None = None
    f0_hz: list[float] | None = None
    audio: Path | None = None


# ------------------------------------------------------------------------------------------ vocoding
def vocode(vocoder: CodeHiFiGAN, utterances: Sequence[Utterance], *, speaker: int | None = None,
           dur_prediction: bool = False, target_speaker: int | None = None, f0_stats: F0Stats | None = None,
           batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = False) -> Iterator[tuple[Utterance, torch.Tensor]]:
    """Each utterance's waveform ``(samples,)`` at ``vocoder.sample_rate`` (float, as the vocoder outputs it),
    yielded as ``(utterance, waveform)`` batch by batch, shortest utterances first.

    ``speaker`` is the speaker id of utterances that name none; ``dur_prediction`` run-length-reduces the units and
    predicts their durations; ``target_speaker`` synthesises every utterance as that speaker (voice conversion);
    ``f0_stats`` (speech-resynthesis ``f0_stats.th``) normalises F0 per speaker for vocoders trained on normalised
    F0. Utterances go ``batch_size`` at a time (one at a time for F0 vocoders); each waveform equals its
    one-by-one result.
    """
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    ordered = sorted(utterances, key=lambda u: len(u.units))
    size = 1 if vocoder.config.f0 else batch_size
    batches = [ordered[i: i + size] for i in range(0, len(ordered), size)]
    options = dict(speaker=speaker, dur_prediction=dur_prediction, target_speaker=target_speaker, f0_stats=f0_stats)
    return _vocode_batches(vocoder, batches, options, progress)


@torch.no_grad()
def _vocode_batches(vocoder: CodeHiFiGAN, batches: list[list[Utterance]], options: dict,
                    progress: bool) -> Iterator[tuple[Utterance, torch.Tensor]]:
    with tqdm(total=sum(map(len, batches)), desc="vocode", unit="utt", disable=not progress) as bar:
        for batch in batches:
            yield from zip(batch, vocode_batch(vocoder, batch, **options))
            bar.update(len(batch))


def vocode_batch(vocoder: CodeHiFiGAN, batch: Sequence[Utterance], *, speaker: int | None = None,
                 dur_prediction: bool = False, target_speaker: int | None = None,
                 f0_stats: F0Stats | None = None) -> list[torch.Tensor]:
    """Waveforms ``(samples,)`` of one batch of utterances (a single utterance for F0 vocoders); the options are
    :func:`vocode`'s."""
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
        if len(batch) != 1:
            raise InputError(f"an F0 vocoder takes one utterance at a time, got {len(batch)}")
        (utterance,), (units_row,) = batch, rows
        f0 = utterance_f0(vocoder, utterance, utterance.speaker if utterance.speaker is not None else speaker,
                          f0_stats)
        if not dur_prediction:  # with duration prediction the frame count is only known afterwards: F0 as given
            units_row, f0 = trim_to_f0(units_row, f0, vocoder.config, samples_per_frame(vocoder.sample_rate))
        units, f0 = units_row[None].to(device), f0[None, None].to(device)
        if target_speaker is not None:
            if dur_prediction:
                raise InputError("voice conversion with an F0 vocoder keeps the source durations: "
                                 "drop dur_prediction (--dur-prediction)")
            return [voice_convert(vocoder, units, f0, target_speaker, f0_stats=f0_stats)[0, 0].cpu()]
    if all(s is None for s in speakers):
        speaker_ids = None
    elif any(s is None for s in speakers):
        raise InputError("some utterances name a speaker and others do not: give every one a speaker, or pass "
                         "a default speaker (--speaker)")
    else:
        speaker_ids = torch.tensor(speakers)
    wav, lengths = vocoder.synthesize(units, dur_prediction=dur_prediction, speaker=speaker_ids, f0=f0)
    return [w[0, :n].cpu() for w, n in zip(wav, lengths)]


def utterance_f0(vocoder: CodeHiFiGAN, utterance: Utterance, speaker: int | None,
                 f0_stats: F0Stats | None) -> torch.Tensor:
    """The F0 ``(frames,)`` an F0 vocoder takes for ``utterance``: given or YAAPT-tracked from its peak-normalised
    audio (as speech-resynthesis' dataset does), normalised with ``speaker``'s statistics (speaker 0 when None)
    if the vocoder was trained on normalised F0."""
    if utterance.f0_hz is not None:
        f0 = torch.tensor(utterance.f0_hz, dtype=torch.float32)
    elif utterance.audio is not None:
        wav, _ = audio.load(utterance.audio, sample_rate=vocoder.sample_rate)
        f0 = yaapt_f0(peak_normalize(wav[0]), vocoder.sample_rate)
    else:
        raise InputError(f"{utterance.name}: this vocoder needs F0; give the utterance F0 values (\"f0\") or an "
                         "audio file (\"audio\")")
    if not vocoder.config.f0_normalize:
        return f0
    if f0_stats is None:
        raise InputError("this vocoder takes speaker-normalised F0: pass the speaker statistics "
                         "(f0_stats, --f0-stats f0_stats.th)")
    return normalize_f0(f0, *f0_stats.of(speaker if speaker is not None else 0))


def deduplicate(units: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Run-length-reduce a unit sequence (what ``dur_prediction=True`` expects): ``[3, 3, 7, 7, 7, 1] -> [3, 7, 1]``."""
    return torch.unique_consecutive(torch.as_tensor(units))


def trim_to_f0(units: torch.Tensor, f0: torch.Tensor, config: CodeHiFiGANConfig,
               f0_hop_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut units ``(T,)`` and F0 ``(F,)`` of one utterance to a common duration the vocoder accepts, as
    speech-resynthesis' ``inference.py`` cuts audio, codes and F0 (to whole F0 VQ-VAE frames when it has one).

    ``f0_hop_length`` is the F0 frame shift in samples (:func:`zoo.f0.samples_per_frame`, 80 at 16 kHz).
    """
    block = math.lcm(config.code_hop_size, f0_hop_length)
    if config.f0_quantizer is not None:
        block = math.lcm(block, f0_hop_length * config.f0_quantizer.hop_length)
    samples = min(units.shape[-1] * config.code_hop_size, f0.shape[-1] * f0_hop_length) // block * block
    if samples == 0:
        raise InputError(f"units and F0 cover less than the {block} samples the vocoder needs at least")
    return units[..., : samples // config.code_hop_size], f0[..., : samples // f0_hop_length]


def voice_convert(vocoder: CodeHiFiGAN, units: torch.Tensor, f0: torch.Tensor | None, target_speaker: int, *,
                  f0_stats: F0Stats | None = None) -> torch.Tensor:
    """The units (and F0) of one utterance spoken by ``target_speaker``: speech-resynthesis ``inference.py --vc``.

    With speaker-normalised F0 (``f0_normalize``) only the speaker id changes. A vocoder trained on raw F0 gets the
    utterance's voiced F0 moved to the target speaker's mean and std from ``f0_stats``, and ``f0_feats`` vocoders
    get that pair as input. Returns ``(B, 1, samples)``.
    """
    stats = f0_stats.of(target_speaker) if f0_stats is not None else None
    if f0 is not None and stats is not None and not vocoder.config.f0_normalize:
        f0 = rescale_f0(f0, *stats)
    extra = None
    if vocoder.config.f0_feats:
        if stats is None:
            raise InputError("this vocoder takes the target speaker's F0 statistics: pass f0_stats")
        extra = torch.tensor([stats])
    return vocoder(units, speaker=target_speaker, f0=f0, f0_stats=extra)


# ------------------------------------------------------------------------------------------ units files
def read_units_file(path: str | Path, vocoder: CodeHiFiGAN | None = None) -> list[Utterance]:
    """The utterances of a units file (:mod:`zoo.units`: ``speechzoo encode``'s JSON lines, JSON lines written by
    hand with optional ``"speaker"``, ``"f0"`` and ``"audio"``, or GSLM's ``name|u1 u2 ...`` text), named by their
    ids, with their frame-level units (units repeated by their ``"durations"`` where the file gives them).

    With ``vocoder``, a file whose header says its quantizer has another number of units than the vocoder reads is
    an :class:`InputError` (its unit ids would mean other sounds, or fall outside the vocoder's table)."""
    read = units_file.read(path)
    count = units_file.unit_count(read.settings)
    if vocoder is not None and count is not None and count != vocoder.config.num_embeddings:
        raise InputError(f"{path} holds units of a {count}-unit quantizer ({read.settings.get('system')}), but "
                         f"the vocoder reads {vocoder.config.num_embeddings} units: choose a vocoder trained on "
                         "these units (`speechzoo list hifigan`)")
    return [Utterance(r.id, r.frames(), speaker=r.extra.get("speaker"), f0_hz=r.extra.get("f0"),
                      audio=Path(r.extra["audio"]) if "audio" in r.extra else None)
            for r in read.records]
