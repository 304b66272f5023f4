"""Input handling shared by the subcommands: expanding files and folders, naming outputs, batching, and the
bad inputs of a batch.

Every command that writes one file per item names it with :func:`output_path`: the item's id (the input's path
relative to the folder that holds all inputs, :func:`item_ids`, or an utterance id read from a units file) under
the output folder, which mirrors the input tree (``corpus/spk1/0001.wav`` → ``OUT/spk1/0001.wav``). No id writes
outside the output folder: an absolute id, or one with ``..``, is refused.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import TypeVar

import torch
from tqdm.auto import tqdm

from .. import audio
from ..errors import InputError, SpeechZooError

#: Audio file extensions picked up when a folder is given.
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif")

T = TypeVar("T")


def expand(inputs: Sequence[Path], suffixes: tuple[str, ...] = AUDIO_SUFFIXES, what: str = "audio") -> list[Path]:
    """Files as given, and every file with one of ``suffixes`` under each folder (sorted)."""
    files: list[Path] = []
    for path in map(Path, inputs):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in suffixes)
            if not found:
                raise InputError(f"{path} holds no {what} files ({', '.join(suffixes)})")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(f"{path} does not exist")
    return files


def item_ids(files: Sequence[Path]) -> dict[Path, str]:
    """Each file's id, which names its outputs: its path relative to the deepest folder holding every file, without
    the suffix, ``/``-separated. Two files that differ only by their suffix are an error.

    >>> item_ids([Path("corpus/spk1/0001.wav"), Path("corpus/spk2/0001.flac")])
    {PosixPath('corpus/spk1/0001.wav'): 'spk1/0001', PosixPath('corpus/spk2/0001.flac'): 'spk2/0001'}
    >>> item_ids([Path("corpus/spk1/0001.wav")])
    {PosixPath('corpus/spk1/0001.wav'): '0001'}
    """
    resolved = [Path(p).resolve() for p in files]
    if not resolved:
        return {}
    root = Path(os.path.commonpath([p.parent for p in resolved]))
    ids: dict[Path, str] = {}
    seen: dict[str, Path] = {}
    for path, full in zip(files, resolved):
        item = full.relative_to(root).with_suffix("").as_posix()
        if item in seen:
            raise InputError(f"{seen[item]} and {path} would both be written as {item}.*; rename one")
        seen[item], ids[path] = path, item
    return ids


def output_path(directory: Path, item_id: str, suffix: str) -> Path:
    """Where the output of item ``item_id`` goes: ``directory/item_id`` + ``suffix``, its folders created.

    Ids are relative ``/``-separated paths (``spk1/0001``); an empty or absolute id, a part that is empty, ``.`` or
    ``..``, a backslash or a NUL — anything that could land elsewhere than inside ``directory`` — is an
    :class:`InputError`, as is a folder inside ``directory`` that links outside it.

    >>> output_path(Path("out"), "spk1/0001", ".wav")  # doctest: +SKIP
    PosixPath('out/spk1/0001.wav')
    >>> output_path(Path("out"), "../escaped", ".wav")
    Traceback (most recent call last):
    ...
    zoo.errors.InputError: the id '../escaped' would be written outside the output folder out: ids are relative paths such as 'spk1/0001' without '..', '.', empty parts, backslashes or a leading '/'
    """
    text = str(item_id)
    parts = PurePosixPath(text).parts
    if (not parts or "\\" in text or "\0" in text or text.startswith("/") or text.endswith("/")
            or "//" in text or any(part in (".", "..") for part in parts) or ":" in parts[0]):
        raise InputError(f"the id {text!r} would be written outside the output folder {directory}: ids are "
                         "relative paths such as 'spk1/0001' without '..', '.', empty parts, backslashes or a "
                         "leading '/'")
    path = Path(directory, *parts[:-1], parts[-1] + suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.resolve().is_relative_to(Path(directory).resolve()):
        raise InputError(f"{path} leads outside the output folder {directory} (a link inside it points "
                         "elsewhere); remove the link or choose another output folder")
    return path


def positive_int(text: str) -> int:
    """argparse type of counts such as ``--batch-size``: rejected when parsing, before any model is loaded."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of ``size`` (≥ 1) items."""
    for start in range(0, len(items), size):
        yield items[start: start + size]


def read_manifest(path: Path, with_samples: bool = False) -> tuple[str, list[str]] | tuple[str, list[str], list[int]]:
    """A fairseq/GSLM audio manifest (``wav2vec_manifest.py``): the root folder on the first line, then one
    ``relative_path<TAB>num_samples`` line per file. Returns ``(root, relative paths)`` (and the sample counts with
    ``with_samples``); blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"manifest {path} does not exist")
    lines = path.read_text().splitlines()
    if not lines:
        raise InputError(f"manifest {path} is empty; its first line must be the audio root folder")
    names, samples = [], []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        items = line.strip().split("\t")
        if len(items) != 2 or not items[1].isdigit():
            raise InputError(f"{path}, line {number}: want 'relative_path<TAB>num_samples', got {line!r:.80}")
        names.append(items[0])
        samples.append(int(items[1]))
    return (lines[0].strip(), names, samples) if with_samples else (lines[0].strip(), names)


class Failures:
    """The inputs a batch command could not process, and what to do about them.

    Without ``--skip-errors`` the first bad input stops the command once the finished items are written (call
    :meth:`check` after writing each batch); with it, the command goes on, :meth:`report` lists every bad input on
    stderr at the end, and the command exits with status 2.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.prog = getattr(args, "prog", "speechzoo")
        self.skip = args.skip_errors
        self.errors: list[tuple[str, SpeechZooError]] = []

    def add(self, what: object, error: SpeechZooError) -> None:
        self.errors.append((str(what), error))

    def check(self) -> None:
        """Raise the first failure unless ``--skip-errors`` (call once the finished items are written)."""
        if self.errors and not self.skip:
            what, error = self.errors[0]
            raise InputError(f"{what}: {error} (the finished items are written; --skip-errors goes on past bad "
                             "inputs)")

    def report(self) -> int:
        """One line per bad input on stderr; the exit status: 2 if there was any, else 0."""
        for what, error in self.errors:
            print(f"{self.prog}: error: {what}: {error}", file=sys.stderr)
        if self.errors:
            print(f"{self.prog}: {len(self.errors)} inputs failed; the others are written", file=sys.stderr)
        return 2 if self.errors else 0


R = TypeVar("R")


def each_good(items: Sequence[T], work: Callable[[Sequence[T]], Sequence[R]], failures: Failures,
              name: Callable[[T], object] = str) -> list[tuple[T, R]]:
    """``(item, result)`` of ``work(items)``, a batch; if the batch fails, each item alone, so that a bad item costs
    only itself (it goes to ``failures``, named by ``name(item)``)."""
    if not items:
        return []
    try:
        return list(zip(items, work(items)))
    except SpeechZooError as e:
        if len(items) == 1:
            failures.add(name(items[0]), e)
            return []
    return [pair for item in items for pair in each_good([item], work, failures, name)]


def resynthesize_files(args: argparse.Namespace, files: Sequence[Path], read_rate: int, write_rate: int,
                       resynthesize: Callable[[list[torch.Tensor]], Sequence[torch.Tensor]], desc: str) -> int:
    """The resynthesis commands' loop: each of ``files`` read at ``read_rate`` (mono), ``resynthesize``-d in
    batches of ``args.batch_size``, written at ``write_rate`` to ``args.out`` under its :func:`item_ids` id. A bad
    file costs only itself (:class:`Failures`); returns the exit status."""
    ids = item_ids(files)
    failures, written = Failures(args), 0
    with tqdm(total=len(files), desc=desc, unit="file") as bar:
        for batch in batches(files, args.batch_size):
            loaded = []
            for path in batch:
                try:
                    loaded.append((path, output_path(args.out, ids[path], ".wav"),
                                   audio.load(path, sample_rate=read_rate)[0][0]))
                except SpeechZooError as e:
                    failures.add(path, e)
            done = each_good(loaded, lambda items: resynthesize([wav for _, _, wav in items]), failures,
                             lambda item: item[0])
            for (_, out, _), speech in done:
                audio.save(out, speech, write_rate, args.subtype)
                written += 1
            failures.check()
            bar.update(len(batch))
    print(f"wrote {written} files to {args.out}")
    return failures.report()
