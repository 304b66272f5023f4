"""Reference cases and the conversion command, shared by the tests (conftest.py wraps them as fixtures).

A case is a folder ``tests/fixtures/<component>/<name>/`` made by running the ORIGINAL code: ``case.json`` (what
was called, the tolerance of each output), ``io.safetensors`` (inputs and the original's outputs) and ``original/``
(the original checkpoint files).
"""
from __future__ import annotations

import fnmatch
import functools
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"


# ------------------------------------------------------------------------------------------ reference cases
@dataclass(frozen=True)
class Case:
    """One reference case: ``meta`` (case.json), ``io`` (tensors by name) and the ``original/`` folder."""

    path: Path
    meta: dict
    io: dict[str, torch.Tensor]

    @property
    def name(self) -> str:
        return f"{self.path.parent.name}/{self.path.name}"

    @property
    def original(self) -> Path:
        return self.path / "original"

    def tolerance(self, output: str) -> dict[str, float]:
        """``{"atol", "rtol"}`` that case.json gives ``output``: one pair for every output, or an entry whose key
        names it (keys may list several names and ``*`` patterns: ``"wav_decoded_*, forward_wav"``)."""
        tolerance = self.meta["tolerance"]
        if "atol" in tolerance or "rtol" in tolerance:
            return {"atol": tolerance.get("atol", 0.0), "rtol": tolerance.get("rtol", 0.0)}
        for key, value in tolerance.items():
            if isinstance(value, dict) and ("atol" in value or "rtol" in value) and any(
                    fnmatch.fnmatchcase(output, pattern.strip()) for pattern in key.split(",")):
                return {"atol": value.get("atol", 0.0), "rtol": value.get("rtol", 0.0)}
        raise KeyError(f"{self.name}/case.json gives no tolerance for {output!r}")

    def assert_close(self, output: str, got: torch.Tensor, **overrides) -> None:
        """``got`` equals the original's ``io[output]`` within the case's tolerance for it (``overrides``, e.g.
        ``rtol=0``, only ever tighten it or set other ``torch.testing.assert_close`` options)."""
        tolerance = self.tolerance(output)
        looser = [k for k in ("atol", "rtol") if overrides.get(k, tolerance[k]) > tolerance[k]]
        assert not looser, f"{looser} would loosen {self.name}'s tolerance for {output} ({tolerance})"
        options = {**tolerance, **overrides}
        torch.testing.assert_close(got, self.io[output], msg=lambda m: f"{self.name} {output}: {m}", **options)

    def keys(self, prefix: str) -> list[str]:
        """The io names starting with ``prefix``; fails when there are none, so a loop over them cannot run zero
        times unnoticed."""
        found = [k for k in self.io if k.startswith(prefix)]
        assert found, f"{self.name} has no output named {prefix}*"
        return found


@functools.cache
def load_case(name: str) -> Case:
    """The case ``"component/case"`` under tests/fixtures (read once per session; treat ``io`` as read-only)."""
    path = FIXTURES / name
    if not (path / "case.json").is_file():
        raise FileNotFoundError(f"no reference case {name!r}: copy ../shared/reference/{name} to {path}")
    return Case(path, json.loads((path / "case.json").read_text()), load_file(str(path / "io.safetensors")))


def case_names(pattern: str) -> list[str]:
    """The names ``"component/case"`` of the fixture cases matching ``pattern`` (e.g. ``"dpdp/*"``)."""
    return sorted(f"{p.parent.name}/{p.name}" for p in FIXTURES.glob(pattern) if (p / "case.json").is_file())


def conversion_cli(*args: str | os.PathLike, cwd: str | os.PathLike = ROOT) -> subprocess.CompletedProcess:
    """``python -m conversion ARGS...`` in a subprocess running this checkout's code; its exit code and output."""
    return command([sys.executable, "-m", "conversion", *args], cwd=cwd)


def command(argv: list[str | os.PathLike], *, env: dict[str, str] | None = None, cwd: str | os.PathLike = ROOT,
            ) -> subprocess.CompletedProcess:
    """``argv`` (the ``speechzoo`` console script, ``python -c``, pip...) in a subprocess, its exit code and output.
    ``env`` replaces the environment; by default it is this one with this checkout first on PYTHONPATH."""
    if env is None:
        path = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    return subprocess.run(list(map(str, argv)), cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
                          check=False)


def speechzoo_cli(*args: str | os.PathLike, nproc: int = 1, master_port: int = 29533,
                  cwd: str | os.PathLike = ROOT) -> subprocess.CompletedProcess:
    """``python -m zoo.cli ARGS...`` in a subprocess running this checkout's code, or with ``nproc`` > 1 under
    ``torchrun --nproc-per-node NPROC`` (DDP, gloo on CPUs), as users launch the trainers."""
    path = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "OMP_NUM_THREADS": "1"}
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-port",
                 str(master_port)] if nproc > 1 else [sys.executable])
    return subprocess.run([*launcher, "-m", "zoo.cli", *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900, check=False)


def python_process(code: str, *args: str | os.PathLike, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``python -c CODE ARGS...`` started in a subprocess running this checkout's code (text pipes for its output),
    for tests that kill, interrupt or race processes; ``env`` is added to the environment."""
    path = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
