"""Corpus-scale runs of ``speechzoo encode`` and ``speechzoo tokenize``: inputs listed in a manifest, audio read
by DataLoader workers while the model computes, length-bucketed batches, and shards (torchrun ranks and
``--shard I/N`` job arrays), each resumable.

Sharding: the inputs (in the order given, folders expanded sorted) are cut into ``N`` contiguous slices; shard ``I``
encodes slice ``I``. Under ``torchrun --nproc-per-node P`` each rank is one shard (with ``--shard I/N`` as well: rank
``r`` is shard ``I·P + r`` of ``N·P``). A shard's ids are those of the whole corpus (:func:`zoo.cli.inputs.item_ids`
over every input), so shards write what one process would have written. Batches: the inputs of each window of
``--window`` files are sorted by length (the manifest's sample counts, else file sizes) and cut into batches of
``--batch-size``, so that little of a batch is padding; results are still written in input order. The models'
batched results equal their one-by-one results (tested per model), so sharding and bucketing do not change them.

    torchrun --nproc-per-node 8 -m zoo.cli encode --manifest train.tsv --k 500 --lmbda 4500 -o units.jsonl
    sbatch --array 0-99 --wrap 'speechzoo encode --manifest train.tsv ... --shard $SLURM_ARRAY_TASK_ID/100 --merge \\
        -o units.jsonl'
"""
from __future__ import annotations

import argparse
import ctypes
import functools
import hashlib
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import InputError, SpeechZooError
from ..train.distributed import ProcessEnv, all_reduce_sum_, barrier, setup
from .inputs import expand, positive_int, read_manifest

#: Files whose lengths are sorted together to form batches (``--window``).
DEFAULT_WINDOW = 1024


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``: the ``index``-th of ``count`` contiguous slices of the inputs.

    >>> Shard(1, 3).of(list(range(8)))
    [2, 3, 4]
    """

    index: int
    count: int

    def of(self, items: Sequence) -> list:
        n = len(items)
        return list(items[n * self.index // self.count: n * (self.index + 1) // self.count])

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_spec(text: str) -> Shard:
    """argparse type of ``--shard I/N`` (0 ≤ I < N).

    >>> shard_spec("3/8")
    Shard(index=3, count=8)
    """
    index, sep, count = text.partition("/")
    try:
        shard = Shard(int(index), int(count))
    except ValueError:
        shard = None
    if not sep or shard is None or not 0 <= shard.index < shard.count:
        raise argparse.ArgumentTypeError(f"want I/N with 0 <= I < N (e.g. 0/4), got {text!r}")
    return shard


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def add_corpus_options(parser: argparse.ArgumentParser, merge: bool = False) -> None:
    """``--manifest``, ``--num-workers``, ``--window``, ``--shard`` (and ``--merge`` for commands whose shards
    write one output file each)."""
    parser.add_argument("--manifest", type=Path, action="append", default=[], metavar="FILE",
                        help="a list of audio files, one path per line, or a fairseq manifest (the root folder, "
                             "then 'relative_path<TAB>num_samples' lines); repeatable, with or without AUDIO_OR_DIR")
    parser.add_argument("--num-workers", type=non_negative_int, default=2,
                        help="processes reading and resampling audio while the model computes (0: read in this "
                             "process; default 2)")
    parser.add_argument("--window", type=positive_int, default=DEFAULT_WINDOW,
                        help=f"files sorted by length together to make batches (default {DEFAULT_WINDOW})")
    parser.add_argument("--shard", type=shard_spec, metavar="I/N",
                        help="encode only the I-th of N contiguous slices of the inputs (job arrays); under "
                             "torchrun each rank takes one slice of it")
    if merge:
        parser.add_argument("--merge", action="store_true",
                            help="with --shard: once this shard is done, merge every shard into -o if all are done")


def corpus_inputs(args: argparse.Namespace) -> tuple[list[Path], dict[Path, int]]:
    """The inputs (``args.inputs`` files and folders, then each ``--manifest``'s entries) and the sizes used to
    bucket them by length: the manifest's sample counts where it gives them, else the file sizes in bytes."""
    files = expand(args.inputs) if args.inputs else []
    sizes: dict[Path, int] = {}
    for manifest in args.manifest:
        for path, size in read_list(manifest):
            files.append(path)
            if size is not None:
                sizes[path] = size
    if not files:
        raise InputError("no inputs: give audio files or folders, or --manifest FILE")
    return files, sizes


def read_list(path: Path) -> list[tuple[Path, int | None]]:
    """The entries of a manifest: a fairseq/GSLM one (:func:`zoo.cli.inputs.read_manifest`: the root folder on the
    first line, then ``relative_path<TAB>num_samples``), or a plain list of paths, one per line (relative to the
    current folder)."""
    if not Path(path).is_file():
        raise InputError(f"manifest {path} does not exist")
    lines = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    if not lines:
        raise InputError(f"manifest {path} is empty")
    if len(lines) > 1 and "\t" in lines[1] and "\t" not in lines[0]:
        root, names, samples = read_manifest(path, with_samples=True)
        return [(Path(root, name), n) for name, n in zip(names, samples)]
    return [(Path(line), None) for line in lines]


def inputs_digest(files: Sequence[Path]) -> str:
    """A short hash of the inputs in order (resolved paths): shards record it, so that shards of different input
    lists are never resumed or merged together."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.resolve()).encode() + b"\0")
    return digest.hexdigest()[:16]


def process_env(device: str) -> ProcessEnv:
    """This process's place among the torchrun ranks (one process without torchrun); ``--device cuda`` is each
    rank's own GPU (``cuda:LOCAL_RANK``)."""
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        device = f"cuda:{os.environ['LOCAL_RANK']}"
    return setup(device)


def this_shard(given: Shard | None, env: ProcessEnv) -> Shard | None:
    """The shard this process encodes: ``--shard``'s, split again over the torchrun ranks (None: everything)."""
    if not env.distributed:
        return given
    given = given or Shard(0, 1)
    return Shard(given.index * env.world_size + env.rank, given.count * env.world_size)


def count_over_ranks(value: int) -> int:
    """The sum of ``value`` over the torchrun ranks, once every rank has got here (``value`` in one process)."""
    total = all_reduce_sum_(torch.tensor([value], dtype=torch.int64))
    barrier()
    return int(total)


def bucketed(sizes: Sequence[int], batch_size: int, window: int) -> list[list[int]]:
    """Batches of indices into ``sizes``: each window of ``window`` consecutive items sorted by size (stably) and
    cut into batches of ``batch_size``.

    >>> bucketed([5, 1, 4, 2, 3], batch_size=2, window=4)
    [[1, 3], [2, 0], [4]]
    """
    found = []
    for start in range(0, len(sizes), window):
        order = sorted(range(start, min(start + window, len(sizes))), key=lambda i: sizes[i])
        found += [order[b: b + batch_size] for b in range(0, len(order), batch_size)]
    return found


def file_sizes(files: Sequence[Path], known: dict[Path, int]) -> list[int]:
    """Each file's length for bucketing: ``known`` (a manifest's sample counts), else its size in bytes (0 for a
    file that cannot be stat-ed: reading it reports the error)."""
    sizes = []
    for path in files:
        if path in known:
            sizes.append(known[path])
            continue
        try:
            sizes.append(path.stat().st_size)
        except OSError:
            sizes.append(0)
    return sizes


#: One read item: (its index into the files, the audio or None, the error that reading it raised or None).
Read = tuple[int, torch.Tensor | None, SpeechZooError | None]


class _Batches(Dataset):
    """Item ``i``: the files of batch ``i`` read by ``read`` (in a DataLoader worker)."""

    def __init__(self, files: Sequence[Path], batches: Sequence[Sequence[int]],
                 read: Callable[[Path], torch.Tensor]) -> None:
        self.files, self.batches, self.read = files, batches, read

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> list[Read]:
        items = []
        for index in self.batches[i]:
            try:
                items.append((index, self.read(self.files[index]), None))
            except SpeechZooError as e:
                items.append((index, None, e))
        return items


def _as_is(batch: list[Read]) -> list[Read]:
    return batch


def _end_with(parent: int, worker_id: int) -> None:
    """A worker's ``worker_init_fn``: the worker ends when ``parent``, the process it reads for, dies, even by
    SIGKILL while the worker starts (torch's own check compares with the parent it finds at start, which is already
    init then, and the orphan would wait forever)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(0)


_PR_SET_PDEATHSIG = 1


def read_batches(files: Sequence[Path], batches: Sequence[Sequence[int]], read: Callable[[Path], torch.Tensor],
                 num_workers: int) -> Iterator[list[Read]]:
    """The batches in order, each file read by ``read`` (a picklable function) in ``num_workers`` DataLoader
    workers ahead of the model (in this process when 0). A file that cannot be read comes with its error."""
    loader = DataLoader(_Batches(files, batches, read), batch_size=None, num_workers=num_workers,
                        collate_fn=_as_is, prefetch_factor=4 if num_workers else None,
                        worker_init_fn=functools.partial(_end_with, os.getpid()))
    return iter(loader)


class InOrder:
    """Results that arrive in batch order, released in input order: :meth:`add` a result (or None for a failed
    item) by its index; :meth:`ready` yields the results whose predecessors are all in."""

    def __init__(self) -> None:
        self.pending: dict[int, object] = {}
        self.next = 0

    def add(self, index: int, result: object) -> None:
        self.pending[index] = result

    def ready(self) -> Iterator[tuple[int, object]]:
        while self.next in self.pending:
            result = self.pending.pop(self.next)
            if result is not None:
                yield self.next, result
            self.next += 1

    def rest(self) -> Iterator[tuple[int, object]]:
        """Every finished result still held, in index order, whatever is missing before it (a run that stops)."""
        for index in sorted(self.pending):
            result = self.pending.pop(index)
            if result is not None:
                yield index, result
