"""Input handling shared by the subcommands: expanding files and folders, naming outputs, batching."""
from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from ..errors import InputError

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


def output_names(files: Sequence[Path]) -> dict[Path, str]:
    """Each file's stem, which names its outputs; two files with one stem are an error."""
    seen: dict[str, Path] = {}
    for path in files:
        if path.stem in seen:
            raise InputError(f"{seen[path.stem]} and {path} would both be written as {path.stem}.*; rename one")
        seen[path.stem] = path
    return {path: stem for stem, path in seen.items()}


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


def read_manifest(path: Path) -> tuple[str, list[str]]:
    """A fairseq/GSLM audio manifest (``wav2vec_manifest.py``): the root folder on the first line, then one
    ``relative_path<TAB>num_samples`` line per file. Returns ``(root, relative paths)``; blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"manifest {path} does not exist")
    lines = path.read_text().splitlines()
    if not lines:
        raise InputError(f"manifest {path} is empty; its first line must be the audio root folder")
    names = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        items = line.strip().split("\t")
        if len(items) != 2 or not items[1].isdigit():
            raise InputError(f"{path}, line {number}: want 'relative_path<TAB>num_samples', got {line!r:.80}")
        names.append(items[0])
    return lines[0].strip(), names
