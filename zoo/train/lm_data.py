"""The data side of fairseq's unit-LM training (GSLM's ``language_modeling`` task, dGSLM's ``speech_dlm_task``),
without fairseq: ``fairseq-preprocess --only-source`` (:func:`prepare_units`), fairseq's binarised splits, the
``TokenBlockDataset`` blocks, the SpeechDLM targets, and ``batch_by_size`` batching in fairseq's order.

A split is one token stream: every line's units (dictionary ids) then ``</s>``. Blocks ``[s, e)`` of that stream
are the samples (:func:`token_blocks`; ``none``: fixed ``tokens_per_sample`` slices across lines, ``eos``: one line
each, ``complete``: whole lines packed up to ``tokens_per_sample``, ``complete_doc``: the same without crossing an
empty line, which ends a document); a sample's target is ``stream[s:e]`` and its
source the same shifted right by one, ``</s>`` first (:meth:`Split.sample`). SpeechDLM adds per channel the edge
units (the first unit of every run of the target), their positions and durations (:func:`speech_dlm_targets`).

Batches: the samples ordered by ``np.lexsort([permutation, sizes])`` under ``np.random.seed(seed + 1)`` (size
ascending, ties in a seeded random order), grown while ``rows · longest ≤ max_tokens`` with sizes kept multiples
of ``required_batch_size_multiple`` (:func:`batch_by_size`; fairseq drops a last batch that is not such a
multiple), then shuffled each epoch under ``np.random.seed(seed + epoch)`` (:func:`epoch_batches`).

Example::

    >>> token_blocks(np.array([3, 5, 2]), 4, "none").tolist()     # 10 tokens in blocks of 4
    [[0, 4], [4, 8], [8, 10]]
    >>> token_blocks(np.array([3, 5, 2]), 4, "eos").tolist()
    [[0, 3], [3, 8], [8, 10]]
    >>> t = speech_dlm_targets(torch.tensor([7, 7, 5, 9, 9, 9]), torch.tensor([9, 9, 4]), max_duration=256)
    >>> t["edge"].tolist(), t["edge_indices"].tolist(), t["duration"].tolist()   # the last run goes on
    ([7, 5, 9], [0, 2, 3], [2, 1, 5])
"""
from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..formats.fairseq import load_dictionary, read_indexed_dataset, write_indexed_dataset
from ..nn.dictionary import FairseqDictionary

BREAK_MODES = ("none", "eos", "complete", "complete_doc")
EOS, PAD = FairseqDictionary.eos_index, FairseqDictionary.pad_index


# ------------------------------------------------------------------------------------------ preprocessing
def prepare_units(destdir: str | Path, trainpref: str | Path | None, validpref: str | Path | None = None,
                  testpref: str | Path | None = None, source_lang: str | None = None,
                  srcdict: str | Path | None = None, thresholdsrc: int = 0, nwordssrc: int = -1,
                  padding_factor: int = 8) -> FairseqDictionary:
    """``fairseq-preprocess --only-source``: the dictionary of ``TRAINPREF[.LANG]`` (or ``srcdict``) written to
    ``DESTDIR/dict[.LANG].txt``, and every given split binarised to ``DESTDIR/{train,valid,test}[.LANG].{bin,idx}``
    (fairseq writes ``{split}.{lang}-None.{lang}.*``; these are the names dGSLM's README renames them to and what
    the trainers read). Units missing from the dictionary become ``<unk>``. Returns the dictionary."""
    destdir = Path(destdir)
    suffix = f".{source_lang}" if source_lang else ""
    splits = {name: Path(f"{pref}{suffix}") for name, pref in
              (("train", trainpref), ("valid", validpref), ("test", testpref)) if pref is not None}
    for name, path in splits.items():
        if not path.is_file():
            raise InputError(f"--{name}pref: {path} does not exist")
    if srcdict is not None:
        dictionary = load_dictionary(srcdict)
    elif "train" in splits:
        with open(splits["train"], encoding="utf-8") as lines:
            dictionary = FairseqDictionary.build(lines, thresholdsrc, nwordssrc, padding_factor)
    else:
        raise InputError("give --trainpref (the dictionary is built from the training text) or --srcdict")
    destdir.mkdir(parents=True, exist_ok=True)
    (destdir / f"dict{suffix}.txt").write_text(dictionary.text(), encoding="utf-8")
    for name, path in splits.items():
        with open(path, encoding="utf-8") as lines:
            items = [dictionary.encode_line(line).numpy() for line in lines]
        write_indexed_dataset(destdir / f"{name}{suffix}", items, len(dictionary))
    return dictionary


# ------------------------------------------------------------------------------------------ splits and blocks
def token_blocks(sizes: np.ndarray, tokens_per_sample: int, break_mode: str) -> np.ndarray:
    """``TokenBlockDataset``'s ``[start, end)`` slices of the stream of items of ``sizes`` tokens: ``(blocks, 2)``."""
    sizes = np.asarray(sizes, dtype=np.int64)
    ends = np.cumsum(sizes)
    total = int(ends[-1]) if len(ends) else 0
    if break_mode == "none":
        starts = np.arange(0, total, tokens_per_sample, dtype=np.int64)
        return np.stack([starts, np.minimum(starts + tokens_per_sample, total)], 1)
    if break_mode == "eos":
        return np.stack([ends - sizes, ends], 1)
    if break_mode == "complete":  # whole lines, greedily, a line longer than a block on its own
        blocks, start, current = [], 0, 0
        for size in sizes.tolist():
            if current and current + size > tokens_per_sample:
                blocks.append((start, start + current))
                start, current = start + current, 0
            current += size
        if current:
            blocks.append((start, start + current))
        return np.array(blocks, dtype=np.int64).reshape(-1, 2)
    if break_mode == "complete_doc":  # the same within documents; an empty line (its </s> alone) ends one
        blocks, start, current = [], 0, 0
        for size in sizes.tolist():
            if size != 1 and (current == 0 or current + size <= tokens_per_sample):
                current += size
                continue
            if current > 1:  # fairseq keeps only blocks of more than one token
                blocks.append((start, start + current))
            start, current = start + current, 0
            if size == 1:
                start += 1
            else:
                current = size
        if current > 1:
            blocks.append((start, start + current))
        return np.array(blocks, dtype=np.int64).reshape(-1, 2)
    raise InputError(f"sample_break_mode {break_mode!r} is not one of {BREAK_MODES}")


class Split:
    """One binarised split of one channel as its token stream, cut into samples (blocks)."""

    def __init__(self, tokens: np.ndarray, sizes: np.ndarray, tokens_per_sample: int, break_mode: str) -> None:
        self.tokens = tokens
        self.blocks = token_blocks(sizes, tokens_per_sample, break_mode)
        self.sizes = self.blocks[:, 1] - self.blocks[:, 0]

    def __len__(self) -> int:
        return len(self.blocks)

    def target(self, index: int) -> torch.Tensor:
        """``stream[s:e]`` (int64)."""
        s, e = self.blocks[index]
        return torch.from_numpy(np.asarray(self.tokens[s:e], dtype=np.int64))

    def sample(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(source, target)``: the target and the same shifted right by one, ``</s>`` before the stream."""
        s, e = self.blocks[index]
        source = np.asarray(self.tokens[max(s - 1, 0):e - 1], dtype=np.int64)
        if s == 0:
            source = np.concatenate([[EOS], source])
        return torch.from_numpy(source), self.target(index)


def read_split(data: str | Path, split: str, channel: str | None, dictionary: FairseqDictionary
               ) -> tuple[np.ndarray, np.ndarray]:
    """``(tokens, sizes)`` of ``DATA/SPLIT[.CHANNEL]``: fairseq's ``.bin/.idx`` when present (what fairseq-train
    reads), else the raw unit text ``SPLIT.CHANNEL`` / ``SPLIT.txt`` encoded with ``dictionary``."""
    data = Path(data)
    prefix = data / (f"{split}.{channel}" if channel else split)
    if Path(f"{prefix}.idx").is_file():
        tokens, sizes = read_indexed_dataset(prefix)
        if len(tokens) and int(tokens.max()) >= len(dictionary):
            raise InputError(f"{prefix}.bin holds id {int(tokens.max())}, beyond the {len(dictionary)} symbols of "
                             "the dictionary: binarised with another dictionary?")
        return tokens, sizes
    raw = data / (f"{split}.{channel}" if channel else f"{split}.txt")
    if not raw.is_file():
        raise InputError(f"no {split} split in {data}: neither {prefix.name}.bin/.idx nor the unit text {raw.name}")
    with open(raw, encoding="utf-8") as lines:
        items = [dictionary.encode_line(line).numpy() for line in lines]
    sizes = np.array([len(i) for i in items], dtype=np.int64)
    return (np.concatenate(items) if items else np.zeros(0, np.int64)), sizes


# ------------------------------------------------------------------------------------------ SpeechDLM targets
def speech_dlm_targets(target: torch.Tensor, next_target: torch.Tensor | None, max_duration: float
                       ) -> dict[str, torch.Tensor]:
    """``SpeechDLMDataset._get_target`` for one channel of one sample: ``edge`` units (first unit of each run of
    ``target``), ``edge_indices`` (their positions) and ``duration`` (run lengths, int64). The last run continues
    into ``next_target`` (the next block of the split, None for the last) while the count stays below
    ``max_duration``; every duration is then capped at ``max_duration`` (``inf``: no cap)."""
    units, counts = torch.unique_consecutive(target, return_counts=True)
    padding_end = bool(units[-1] == PAD)
    if padding_end:
        units, counts = units[:-1], counts[:-1]
    indices = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(counts, 0)[:-1]])
    if not padding_end and next_target is not None:
        i = 0
        while i < len(next_target) and next_target[i] == units[-1] and counts[-1] + i < max_duration:
            i += 1
        counts[-1] += i
    if math.isfinite(max_duration):
        counts = counts.clamp(max=int(max_duration))
    return {"edge": units, "edge_indices": indices, "duration": counts}


# ------------------------------------------------------------------------------------------ batches
def ordered_indices(sizes: np.ndarray, seed: int) -> np.ndarray:
    """fairseq's ``ordered_indices`` under ``numpy_seed(seed + 1)`` (epoch 1): size ascending, ties by a seeded
    permutation."""
    permutation = np.random.RandomState(seed + 1).permutation(len(sizes))
    return np.lexsort([permutation, sizes])


def batch_by_size(indices: np.ndarray, num_tokens: np.ndarray, max_tokens: int | None, max_sentences: int | None,
                  multiple: int = 1) -> list[np.ndarray]:
    """``data_utils.batch_by_size`` (its ``batch_by_size_vec``): consecutive runs of ``indices`` whose ``rows ·
    longest`` stays within ``max_tokens`` and rows within ``max_sentences`` (None/≤0: no limit), each batch's row
    count kept below ``multiple`` or a multiple of it (the rows beyond start the next batch); a last batch whose
    size is not a multiple of ``multiple`` (> 1) is dropped, as fairseq does."""
    max_tokens = int(max_tokens) if max_tokens else -1
    max_sentences = int(max_sentences) if max_sentences else -1
    lengths = np.asarray(num_tokens, dtype=np.int64)[indices] if len(indices) else np.zeros(0, np.int64)
    if max_tokens > 0 and len(lengths) and lengths.max() > max_tokens:
        raise InputError(f"a sample of {lengths.max()} tokens exceeds max_tokens={max_tokens}")
    # the batch being built is [start, end); rows end..pos form the tail not yet committed to it
    ends = [0]
    start, batch_longest, tail_longest = 0, 0, 0
    for pos, length in enumerate(lengths.tolist()):
        tail_longest = max(tail_longest, length)
        rows = pos + 1 - start
        longest = max(batch_longest, tail_longest)
        overflow = (max_sentences > 0 and rows > max_sentences) or (max_tokens > 0 and rows * longest > max_tokens)
        if overflow:
            if max_tokens > 0 and tail_longest * (pos + 1 - ends[-1]) > max_tokens:
                ends.append(pos)  # the tail cannot join either: it becomes a batch of its own without pos
                tail_longest = length
            start = ends[-1]
            ends.append(ends[-1])
            longest = tail_longest
        if overflow or rows < multiple or rows % multiple == 0:
            ends[-1] = pos + 1
            batch_longest, tail_longest = longest, 0
    if not len(indices):
        return []
    batches = np.split(np.asarray(indices, dtype=np.int64), ends if ends[-1] != len(indices) else ends[:-1])
    if multiple > 1 and len(batches[-1]) % multiple:
        batches = batches[:-1]
    return batches


def epoch_batches(batches: Sequence[np.ndarray], seed: int, epoch: int, shuffle: bool = True) -> list[np.ndarray]:
    """The batches of ``epoch`` (1-based) in fairseq's order: shuffled under ``numpy_seed(seed + epoch)``."""
    batches = list(batches)
    if shuffle:
        np.random.RandomState(seed + epoch).shuffle(batches)
    return batches


@dataclass(frozen=True)
class Batch:
    """A collated batch: ``source``/``target`` ``{channel: (B, T)}`` right-padded with ``<pad>`` (one channel,
    ``None``, for the unit LM), the SpeechDLM ``edge``/``edge_indices``/``duration`` targets per channel
    (concatenated over rows; ``edge_indices`` index the flattened ``(B·T)`` outputs), and ``ids``."""

    ids: torch.Tensor
    source: dict[str | None, torch.Tensor]
    target: dict[str | None, torch.Tensor]
    edge: dict[str, torch.Tensor] | None = None
    edge_indices: dict[str, torch.Tensor] | None = None
    duration: dict[str, torch.Tensor] | None = None

    @property
    def rows(self) -> int:
        return len(self.ids)

    def to(self, device: torch.device) -> Batch:
        def move(d):
            return None if d is None else {k: v.to(device) for k, v in d.items()}
        return Batch(self.ids, move(self.source), move(self.target), move(self.edge), move(self.edge_indices),
                     move(self.duration))


def _pad(rows: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.nn.utils.rnn.pad_sequence(list(rows), batch_first=True, padding_value=PAD)


class LMDataset:
    """The samples of one split over its channels (``None``: the unit LM's single stream), collated as fairseq's
    ``MonolingualDataset`` / ``SpeechDLMDataset`` do; ``duration_cap`` and ``speech_dlm`` add the SpeechDLM
    targets."""

    def __init__(self, splits: dict[str | None, Split], speech_dlm: bool = False,
                 max_target_durations: int | None = None) -> None:
        first = next(iter(splits.values()))
        for channel, split in splits.items():
            if len(split) != len(first) or not np.array_equal(split.sizes, first.sizes):
                raise InputError(f"channel {channel} has other line lengths than {next(iter(splits))}: every "
                                 "channel of a SpeechDLM split must have the same number of units per line")
        self.splits, self.speech_dlm = splits, speech_dlm
        self.max_duration = (float(max_target_durations) if max_target_durations is not None
                             and max_target_durations > 0 else math.inf)
        self.sizes = first.sizes

    def __len__(self) -> int:
        return len(self.sizes)

    def collate(self, indices: Sequence[int]) -> Batch:
        indices = [int(i) for i in indices]
        source, target = {}, {}
        extra: dict[str, dict[str, torch.Tensor]] = {"edge": {}, "edge_indices": {}, "duration": {}}
        for channel, split in self.splits.items():
            samples = [split.sample(i) for i in indices]
            source[channel] = _pad([s for s, _ in samples])
            target[channel] = _pad([t for _, t in samples])
            if self.speech_dlm:
                width = source[channel].shape[1]
                per_row = [speech_dlm_targets(t, split.target(i + 1) if i + 1 < len(split) else None,
                                              self.max_duration) for i, (_, t) in zip(indices, samples)]
                for key in extra:
                    extra[key][channel] = torch.cat([r[key] + (row * width if key == "edge_indices" else 0)
                                                     for row, r in enumerate(per_row)])
        if not self.speech_dlm:
            return Batch(torch.tensor(indices), source, target)
        return Batch(torch.tensor(indices), source, target, extra["edge"], extra["edge_indices"], extra["duration"])


def copy_dictionary(src: str | Path, dst: str | Path) -> None:
    """Copy a ``dict.txt`` into an output folder (the converter reads it beside the checkpoint)."""
    shutil.copyfile(src, dst)
