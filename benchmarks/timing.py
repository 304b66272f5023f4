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

import torch

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


def bf16_matmul_slowdown() -> float:
    """How many times longer a 256×1024 @ 1024×1024 matmul takes in bfloat16 than in float32 on this CPU (~1 with
    bf16 units, AVX512_BF16/AMX; ~100-250 on AVX2, where bf16 is emulated): benchmarks print it beside bf16 rows."""
    a, b = torch.randn(256, 1024), torch.randn(1024, 1024)
    seconds = []
    for dtype in (torch.float32, torch.bfloat16):
        x, y = a.to(dtype), b.to(dtype)
        seconds.append(min(timed(lambda: x @ y)[0] for _ in range(3)))
    return seconds[1] / seconds[0]
