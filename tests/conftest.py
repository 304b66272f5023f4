"""The test harness: reference cases made by the ORIGINAL code, conversion run as users run it, no internet.

A reference case (:class:`harness.Case`: case.json, io tensors, ``original/`` files, the tolerance of each output)
is the ``case`` fixture, parametrised by name::

    @pytest.mark.parametrize("case", ["ulm/k20_gqa_ragged_batch3"], indirect=True)
    def test_logits(case, convert):
        model, _ = hubconf.ulm(k=19, weights=convert("ulm", case.original / "checkpoint.pt"))
        case.assert_close("logits", model(case.io["input_ids"], case.io["seqlens"].tolist()))

or over every case of a component with ``@pytest.mark.cases("dpdp/*")``; module-scoped fixtures call
``harness.load_case(name)``. ``convert(kind, *sources)`` runs ``python -m conversion KIND SOURCE... --out DIR`` in a
subprocess (once per session for the same arguments) and returns ``DIR``, read-only.
"""
from __future__ import annotations

import os
import socket
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# tests import their helpers (harness, hub_server, references) as top-level modules
sys.path.insert(0, str(Path(__file__).parent))

from harness import Case, case_names, conversion_cli, load_case  # noqa: E402
from hub_server import FakeHub, loopback_hub as serve_hub  # noqa: E402

#: Scripts that made fixtures from the originals (they need the original code) are data, not tests.
collect_ignore_glob = ["fixtures/*/*.py"]

_LOOPBACK = ("localhost", "127.", "::1")


@pytest.fixture(autouse=True)
def no_internet(monkeypatch):
    """Tests reach loopback servers only: a lookup of any other host fails loudly instead of downloading."""
    resolve = socket.getaddrinfo

    def loopback_only(host, *args, **kwargs):
        if isinstance(host, bytes):
            host = host.decode()
        if host is None or not str(host).startswith(_LOOPBACK):
            raise OSError(f"tests may not reach the internet (tried {host!r}): serve the files from a loopback server")
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)


@pytest.fixture
def loopback_hub(monkeypatch, tmp_path) -> FakeHub:
    """A loopback Hugging Face Hub (tests/hub_server.py) that ``HF_ENDPOINT`` points at, with a fresh ``HF_HOME``;
    add what it serves with ``add_models`` / ``add_repo`` / ``add_raw``."""
    with serve_hub(monkeypatch, tmp_path / "hf_home") as hub:
        yield hub


@pytest.fixture
def case(request) -> Case:
    """The reference case named by the test's parameter (``indirect=True`` or ``@pytest.mark.cases``)."""
    return load_case(request.param)


def pytest_generate_tests(metafunc):
    """``@pytest.mark.cases("component/*", ...)`` parametrises ``case`` over every matching fixture case."""
    marker = metafunc.definition.get_closest_marker("cases")
    if marker is not None:
        names = [name for pattern in marker.args for name in case_names(pattern)]
        assert names, f"no fixture case matches {marker.args}"
        metafunc.parametrize("case", names, indirect=True, ids=names)


def pytest_configure(config):
    config.addinivalue_line("markers", "cases(*patterns): run the test once per fixture case matching a pattern")


# ------------------------------------------------------------------------------------------ conversion
@pytest.fixture(scope="session")
def convert(tmp_path_factory) -> Callable[..., Path]:
    """``convert(kind, *sources_and_options) -> DIR``: ``python -m conversion KIND ... --out DIR`` as users run it.

    The same arguments are converted once per session; the returned directory is read-only (copy it to alter it).
    """
    done: dict[tuple[str, ...], Path] = {}

    def run(kind: str, *args: str | os.PathLike) -> Path:
        key = (kind, *map(str, args))
        if key not in done:
            out = tmp_path_factory.mktemp(f"converted-{kind}") / "model"
            result = conversion_cli(kind, *args, "--out", out)
            assert result.returncode == 0, f"python -m conversion {' '.join(key)} failed:\n{result.stderr}"
            _set_writable(out, False)  # tests share it: one that alters it must fail, not spoil the others
            done[key] = out
        return done[key]

    yield run
    for out in done.values():  # so that pytest can delete its temporary folders
        _set_writable(out, True)


def _set_writable(directory: Path, writable: bool) -> None:
    for path in [directory, *directory.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode | stat.S_IWUSR if writable else mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
