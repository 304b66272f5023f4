"""Wall-clock timing shared by every benchmark.

:func:`timings` interleaves the implementations being compared (one call of each per round), so that background
load on a shared machine slows them alike; report ``min / median`` of the seconds it returns.

Example::

    >>> from benchmarks.timing import timed, timings
    >>> seconds, value = timed(lambda: sum(range(1000)))
    >>> value, seconds >= 0
    (499500, True)
    >>> ours, reference = timings(lambda: sorted(range(100)), lambda: list(range(100)), repeats=3)
    >>> len(ours), len(reference)
    (3, 3)
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    """Seconds one call of ``fn`` takes, and what it returned."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def timings(*fns: Callable[[], object], repeats: int, warmup: bool = True) -> list[list[float]]:
    """Seconds of ``repeats`` calls of each of ``fns``, one list per function, the calls interleaved round by round.

    ``warmup`` first calls each once untimed (allocator, kernel selection, TorchScript profiling, caches).
    """
    if warmup:
        for fn in fns:
            fn()
    seconds: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, times in zip(fns, seconds):
            times.append(timed(fn)[0])
    return seconds
