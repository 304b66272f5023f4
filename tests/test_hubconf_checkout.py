"""torch.hub runs the checkout's code: ``torch.hub.load(checkout, ..., source="local")`` imports the checkout's
``zoo``, even with another copy (an installed speechzoo) earlier on ``sys.path``; if that other copy was already
imported, loading stops with an error that names both instead of silently running the other code."""
from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import pytest

from harness import ROOT, command

pytestmark = pytest.mark.slow  # two fresh interpreters import torch and every model module

LOAD = textwrap.dedent("""
    import sys, torch
    {before}
    codebook = torch.hub.load({root!r}, "dpdp_quantizer_from_codebook", codebook=torch.randn(8, 4), lmbda=0.0,
                              source="local", trust_repo=True)
    print(sys.modules["zoo"].__file__)
""")


def run(code: str, installed) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter whose path puts ``installed`` (another zoo) first, as site-packages would."""
    return command([sys.executable, "-c", code], cwd=installed,
                   env={"PYTHONPATH": str(installed), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})


def test_hub_load_runs_the_checkouts_zoo_or_refuses_another_imported_one(tmp_path):
    installed = tmp_path / "site-packages"
    shutil.copytree(ROOT / "zoo", installed / "zoo", ignore=shutil.ignore_patterns("__pycache__"))
    (installed / "zoo" / "__init__.py").write_text('__version__ = "0.0.1"\n')

    result = run(LOAD.format(before="", root=str(ROOT)), installed)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(ROOT / "zoo" / "__init__.py")

    result = run(LOAD.format(before="import zoo", root=str(ROOT)), installed)
    assert result.returncode != 0
    assert "ImportError" in result.stderr and "zoo 0.0.1" in result.stderr and str(installed / "zoo") in result.stderr
