"""speech-resynthesis' training data (``dataset.py``): manifests, speakers, and the ``CodeDataset`` /
``F0Dataset`` items that ``train.py`` and ``train_f0_vq.py`` train on.

A manifest line is a Python dict literal (``parse_hubert_codes.py`` writes them) with the audio path under
``'audio'`` and the units as a space-separated string under ``'cpc_km100'``, ``'vqvae256'``, ``'hubert'`` or
``'codes'`` (the first present, in that order); a line that is not a dict is a bare audio path (F0 VQ-VAE
manifests). Lines are read with :func:`ast.literal_eval`, never executed.

An item, as the original builds it:

1. the file is read as int16 and scaled by 1/32768, then peak-normalised to 0.95 (in float64);
2. audio is cut to ``min(len // code_hop_size, len(units))`` units, and audio and units are repeated until they
   cover ``segment_size`` samples;
3. one random segment start, in steps of the least common multiple of the streams' hops (Python ``random``, one
   generator seeded 1234 shared by the training and validation sets, as the original's module-level ``random``);
4. the target log-mel of the segment (``mel``: :meth:`~zoo.train.resynthesis.ResynthesisConfig.log_mel`);
5. YAAPT F0 of the segment (zeros if YAAPT fails), normalised with the speaker's statistics
   (:mod:`zoo.f0`), ``f0_median`` / ``f0_feats`` as in the original;
6. the speaker index in the sorted set of speaker names parsed from the paths (``multispkr``).

Unlike the original, the files are checked before training starts: a missing, unreadable, multi-channel file or one
at another sample rate is a clear error (the original resamples with resampy on every read; resample once with
``speechzoo prepare resample``).

Example::

    >>> parse_speaker("VCTK/wav/p225_001.wav", "_"), parse_speaker("LibriSpeech/1272/128104/a.flac", "parent_parent_name")
    ('p225', '1272')
"""
from __future__ import annotations

import ast
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import torch
import torch.utils.data

from .. import audio
from ..errors import AudioError, ConfigError, InputError
from ..f0 import F0Stats, normalize_f0, samples_per_frame, yaapt_f0

#: Where the original looks for units in a manifest line, in this order.
UNIT_KEYS = ("cpc_km100", "vqvae256", "hubert", "codes")
#: ``multispkr`` values: how a speaker name is parsed from an audio path.
SPEAKER_METHODS = ("_", "single", "parent_name", "parent_parent_name")
#: The seed of the original datasets' ``random.seed(1234)``.
DATASET_SEED = 1234
MAX_WAV_VALUE = 32768.0
PEAK = 0.95


@dataclass(frozen=True)
class ManifestEntry:
    """One manifest line: the audio file and its units (None in F0-only manifests)."""

    audio: Path
    units: np.ndarray | None = None


def read_manifest(path: str | os.PathLike) -> list[ManifestEntry]:
    """The entries of a speech-resynthesis manifest (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no manifest at {path}")
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        where = f"{path}:{number}"
        if not line.startswith("{"):
            entries.append(ManifestEntry(Path(line)))
            continue
        try:
            sample = ast.literal_eval(line)
        except (ValueError, SyntaxError) as e:
            raise InputError(f"{where}: not a dict literal like {{'audio': PATH, 'hubert': 'u1 u2 ...'}} ({e})") from e
        if not isinstance(sample, dict) or "audio" not in sample:
            raise InputError(f"{where}: a manifest line needs an 'audio' path")
        key = next((k for k in UNIT_KEYS if k in sample), None)
        units = None
        if key is not None:
            try:
                units = np.array([int(u) for u in str(sample[key]).split(" ")], dtype=np.int64)
            except ValueError as e:
                raise InputError(f"{where}: the '{key}' units must be integers separated by spaces ({e})") from e
        entries.append(ManifestEntry(Path(sample["audio"]), units))
    if not entries:
        raise InputError(f"{path} holds no manifest lines")
    return entries


def parse_speaker(path: str | os.PathLike, method: str) -> str:
    """The speaker name of an audio path, by the original's ``multispkr`` method."""
    path = Path(path)
    if method == "parent_name":
        return path.parent.name
    if method == "parent_parent_name":
        return path.parent.parent.name
    if method == "_":
        return path.name.split("_")[0]
    if method == "single":
        return "A"
    raise ConfigError(f"multispkr must be one of {SPEAKER_METHODS}, got {method!r}")


def check_audio_files(files: Sequence[Path], sample_rate: int) -> None:
    """Refuse, before any training, a missing or unreadable file, or one that is not mono at ``sample_rate``."""
    for f in files:
        if not Path(f).is_file():
            raise InputError(f"the manifest names {f}, which does not exist")
        try:
            info = soundfile.info(str(f))
        except (soundfile.LibsndfileError, RuntimeError) as e:
            raise AudioError(f"cannot read {f} as audio ({e})") from e
        if info.samplerate != sample_rate:
            raise AudioError(f"{f} is at {info.samplerate} Hz but the config's sampling_rate is {sample_rate} Hz: "
                             f"resample the data first (speechzoo prepare resample --srcdir IN -o OUT)")
        if info.channels != 1:
            raise AudioError(f"{f} has {info.channels} channels; training takes mono files "
                             "(speechzoo prepare resample writes mono)")


def load_training_audio(path: Path) -> np.ndarray:
    """The original's ``load_audio`` + scaling: int16 samples / 32768, peak-normalised to 0.95, float64."""
    data, _ = soundfile.read(str(path), dtype="int16")
    audio = data / MAX_WAV_VALUE
    peak = np.max(np.abs(audio)) if audio.size else 0.0
    return audio / peak * PEAK if peak > np.finfo(audio.dtype).tiny else audio * PEAK


def _sample_interval(seqs: list[torch.Tensor | np.ndarray], seq_len: int, rng: random.Random) -> list:
    """One random window of ``seq_len`` samples over streams of different rates (the original's
    ``_sample_interval``): the start is drawn in units of the streams' hops' least common multiple."""
    n = max(v.shape[-1] for v in seqs)
    hops = [n // v.shape[-1] for v in seqs]
    lcm = int(np.lcm.reduce(hops))
    start_step = rng.randint(0, n // lcm - seq_len // lcm)
    return [v[..., start_step * (lcm // h):(start_step + seq_len // lcm) * (lcm // h)] for v, h in zip(seqs, hops)]


@dataclass(frozen=True)
class F0Options:
    """How F0 is tracked and normalised (the original config's ``f0_*`` fields)."""

    sampling_rate: int = 16000
    multispkr: str | None = None
    f0_stats: str | None = None
    f0_normalize: bool = False
    f0_feats: bool = False
    f0_median: bool = False
    f0_interp: bool = False

    def __post_init__(self) -> None:
        if self.multispkr is not None and self.multispkr not in SPEAKER_METHODS:
            raise ConfigError(f"multispkr must be one of {SPEAKER_METHODS}, got {self.multispkr!r}")
        if self.f0_normalize and not self.f0_stats:
            raise ConfigError("f0_normalize needs f0_stats (the speakers' F0 statistics file)")


class _SpeechDataset(torch.utils.data.Dataset):
    """What ``CodeDataset`` and ``F0Dataset`` share: files, speaker table, F0 features."""

    def __init__(self, files: Sequence[Path], segment_size: int, options: F0Options, rng: random.Random) -> None:
        self.files = [Path(f) for f in files]
        self.segment_size = segment_size
        self.options = options
        self.rng = rng
        check_audio_files(self.files, options.sampling_rate)
        self.f0_stats = F0Stats.load(options.f0_stats) if options.f0_stats else None
        self.speakers: list[str] = []
        if options.multispkr:
            self.speakers = sorted({parse_speaker(f, options.multispkr) for f in self.files})

    def __len__(self) -> int:
        return len(self.files)

    def speaker(self, index: int) -> int:
        return self.speakers.index(parse_speaker(self.files[index], self.options.multispkr))

    def f0_features(self, audio: torch.Tensor, index: int) -> dict[str, torch.Tensor]:
        """``f0`` ``(1, frames)``, ``spkr`` ``(1,)``, ``f0_stats`` ``(2,)`` of a segment ``(1, samples)``."""
        opts = self.options
        try:
            f0 = yaapt_f0(audio[0].double(), opts.sampling_rate, interpolate=opts.f0_interp)
        except AudioError:  # the original falls back to zeros whenever YAAPT fails
            f0 = torch.zeros(audio.shape[-1] // samples_per_frame(opts.sampling_rate))
        feats: dict[str, torch.Tensor] = {}
        if opts.multispkr:
            feats["spkr"] = torch.tensor([self.speaker(index)])
        if opts.f0_normalize:
            speaker = self.speaker(index) if opts.multispkr else 0
            mean, std = self.f0_stats.of(speaker)
            f0 = normalize_f0(f0, mean, std, fill_median=opts.f0_median)
            if opts.f0_feats:
                feats["f0_stats"] = torch.tensor([mean, std], dtype=torch.float32)
        feats["f0"] = f0.float()[None]
        return feats


class CodeDataset(_SpeechDataset):
    """``(feats, audio (N,), filename, mel (num_mels, frames))`` items of the unit HiFi-GAN recipe;
    ``feats`` = ``{'code' (T,), ['f0' (1, T_f0)], ['spkr' (1,)], ['f0_stats' (2,)]}``."""

    def __init__(self, entries: Sequence[ManifestEntry], *, segment_size: int, code_hop_size: int,
                 mel: Callable[[torch.Tensor], torch.Tensor], f0: bool, options: F0Options, rng: random.Random) -> None:
        missing = [str(e.audio) for e in entries if e.units is None]
        if missing:
            raise InputError(f"manifest lines without units (e.g. {missing[0]}): the unit HiFi-GAN trains on "
                             f"{'/'.join(UNIT_KEYS)} units; write the manifest with speechzoo prepare manifest")
        super().__init__([e.audio for e in entries], segment_size, options, rng)
        self.units = [e.units for e in entries]
        self.code_hop_size = code_hop_size
        self.mel = mel
        self.f0 = f0

    def __getitem__(self, index: int):
        audio = load_training_audio(self.files[index])
        code_length = min(audio.shape[0] // self.code_hop_size, self.units[index].shape[0])
        if code_length == 0:
            raise AudioError(f"{self.files[index]} is shorter than one unit ({self.code_hop_size} samples) or has "
                             "no units")
        code = self.units[index][:code_length]
        audio = audio[:code_length * self.code_hop_size]
        while audio.shape[0] < self.segment_size:
            audio, code = np.hstack([audio, audio]), np.hstack([code, code])
        audio = torch.FloatTensor(audio).unsqueeze(0)
        audio, code = _sample_interval([audio, code], self.segment_size, self.rng)
        mel = self.mel(audio)
        feats = {"code": torch.from_numpy(np.ascontiguousarray(code)).long()}
        if self.f0:
            feats.update(self.f0_features(audio, index))
        elif self.options.multispkr:
            feats["spkr"] = torch.tensor([self.speaker(index)])
        return feats, audio.squeeze(0), str(self.files[index]), mel.squeeze(0)


class F0Dataset(_SpeechDataset):
    """``(feats, f0 (1, T_f0), filename)`` items of the F0 VQ-VAE recipe (``train_f0_vq.py``)."""

    def __getitem__(self, index: int):
        audio = load_training_audio(self.files[index])
        while audio.shape[0] < self.segment_size:
            audio = np.hstack([audio, audio])
        audio = torch.FloatTensor(audio).unsqueeze(0)
        (audio,) = _sample_interval([audio], self.segment_size, self.rng)
        feats = self.f0_features(audio, index)
        return feats, feats["f0"], str(self.files[index])



# ------------------------------------------------------------------------------------------ data preparation
#: ``scripts/preprocess.py --pad`` pads every file to a multiple of this many samples (16 F0-VQ codes of 80 samples).
PAD_MULTIPLE = 1280
#: ``librosa.effects.trim(data, 20)`` in ``scripts/preprocess.py --trim``.
TRIM_TOP_DB = 20.0


def prepare_file(src: Path, dst: Path, *, sample_rate: int = 16000, trim: bool = False, pad: bool = False) -> int:
    """``scripts/preprocess.py`` on one file: mono at ``sample_rate`` (the original resamples with resampy's
    kaiser_best filter; here torchaudio's windowed sinc, :func:`zoo.audio.resample`), optionally trimmed of leading
    and trailing silence (``top_db`` 20) and zero-padded to a multiple of 1280 samples; written with the source's
    format. Returns the number of samples written."""
    waveform, rate = audio.load(src)
    data = audio.resample(waveform.double(), rate, sample_rate)[0].numpy()
    if trim:
        data = audio.trim_silence(data, TRIM_TOP_DB)
    if pad and data.shape[0] % PAD_MULTIPLE:
        data = np.pad(data, (0, PAD_MULTIPLE - data.shape[0] % PAD_MULTIPLE))
    dst.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(dst), data, sample_rate)
    return int(data.shape[0])


def read_units_lines(path: Path) -> list[str]:
    """Unit lines of ``speechzoo quantize`` output: ``name|u1 u2 ...`` or bare ``u1 u2 ...`` (``--hide-fname``)."""
    if not path.is_file():
        raise InputError(f"no units file at {path}")
    return [line.strip().rpartition("|")[2] for line in path.read_text().splitlines() if line.strip()]


def manifest_samples(codes: Path, manifest: Path, *, min_dur: float | None = None,
                     sample_rate: int = 16000) -> list[dict]:
    """``parse_hubert_codes.py``'s samples: ``{'audio', 'hubert', 'duration'}`` for each line of a fairseq/GSLM
    audio manifest (root on the first line, then ``relative_path<TAB>num_samples``) and its units line."""
    lines = [line.strip() for line in manifest.read_text().splitlines()] if manifest.is_file() else None
    if not lines:
        raise InputError(f"{manifest} is not an audio manifest (root folder, then relative_path<TAB>samples lines)")
    root, files = Path(lines[0]), [line for line in lines[1:] if line]
    units = read_units_lines(codes)
    if len(units) != len(files):
        raise InputError(f"{codes} has {len(units)} unit lines but {manifest} lists {len(files)} files: quantize "
                         "the same manifest")
    samples = []
    for number, (entry, code) in enumerate(zip(files, units), start=2):
        name, _, length = entry.partition("\t")
        if not length.strip().isdigit():
            raise InputError(f"{manifest}:{number}: want 'relative_path<TAB>num_samples', got {entry!r:.80}")
        sample = {"audio": str(root / name), "hubert": " ".join(code.split(" ")),
                  "duration": int(length) / sample_rate}
        if min_dur and sample["duration"] < min_dur:
            continue
        samples.append(sample)
    return samples


def split_samples(samples: list[dict], *, seed: int = 42, tt: float = 0.05, cv: float = 0.05,
                  reference: tuple[Path, Path, Path] | None = None) -> tuple[list[dict], list[dict], list[dict]]:
    """train / valid / test as ``parse_hubert_codes.py`` splits: by the file names of reference manifests, or a
    ``random.seed(seed)`` shuffle with fractions ``tt`` (test) and ``cv`` (valid)."""
    if reference is not None:
        names = [{e.audio.name for e in read_manifest(path)} for path in reference]
        tr, cv_split, tt_split = [], [], []
        for sample in samples:
            name = Path(sample["audio"]).name
            if name in names[1]:
                cv_split.append(sample)
            elif name in names[2]:
                tt_split.append(sample)
            elif name in names[0]:
                tr.append(sample)
            else:
                raise InputError(f"{name} is in none of the reference manifests")
        return tr, cv_split, tt_split
    rng = random.Random(seed)
    samples = list(samples)
    rng.shuffle(samples)
    n = len(samples)
    return (samples[int(n * tt + n * cv):], samples[int(n * tt): int(n * tt + n * cv)], samples[: int(n * tt)])


def write_manifests(outdir: Path, splits: tuple[list[dict], list[dict], list[dict]]) -> list[Path]:
    """``train.txt``, ``val.txt``, ``test.txt``: one dict literal per line, as the original writes them."""
    outdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, split in zip(("train", "val", "test"), splits):
        path = outdir / f"{name}.txt"
        path.write_text("\n".join(str(x) for x in split))
        paths.append(path)
    return paths
