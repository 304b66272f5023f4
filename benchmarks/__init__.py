"""Speed and memory benchmarks, each side by side with an honest reference in the same run.

Run them from the repository root as modules, so that they use this checkout's code::

    python -m benchmarks.bench_hifigan --quick

:mod:`benchmarks.timing` is the one timing helper; :mod:`benchmarks.references` holds the plain re-implementations
of the originals that the tests use as independent references too.
"""
