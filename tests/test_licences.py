"""Licences and citations: speechzoo's own MIT LICENSE ships in the wheel, CITATION.cff is valid, every released
weight set states its licence as its authors published it, and every model card says what it is for, what it
cannot do and how to load it without torch.hub's prompt."""
from __future__ import annotations

import re
import shutil
import sys
import zipfile

import pytest
import yaml

from conversion import model_cards
from zoo.registry import NO_LICENCE, all_weights

from harness import ROOT, command

#: The licences the releases' authors published (SPDX ids), or none.
PUBLISHED = {"MIT", "Apache-2.0", "BSD-3-Clause", "CC-BY-NC-4.0", NO_LICENCE}


def test_every_release_states_its_licence():
    licences = {w.name: w.license for w in all_weights()}
    assert {name: lic for name, lic in licences.items() if lic not in PUBLISHED} == {}
    # the repos of DP-SLM's codebooks, unit LMs and ELLA-V hold no licence: not "MIT", not "unknown"
    assert {licences[n] for n in licences if n.startswith(("wavlm-large-layer11-kmeans", "ulm-", "ellav-"))} == {
        NO_LICENCE}


def test_citation_file_and_licence_file():
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["license"] == "MIT" and citation["title"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert re.search(r'^license-files = \["LICENSE"\]$', (ROOT / "pyproject.toml").read_text(), re.M)


def test_every_card_says_intended_use_limitations_and_loads_without_a_prompt():
    for path, card in model_cards.cards().items():
        assert "\n## Intended use\n" in card and "\n## Limitations\n" in card, path.name
        calls = re.findall(r"torch\.hub\.load\((?:[^()]|\([^()]*\))*\)", card)
        assert calls and all("trust_repo=True" in call for call in calls), path.name
    readme = (ROOT / "README.md").read_text()
    calls = re.findall(r"torch\.hub\.load\((?:[^()]|\([^()]*\))*\)", readme)
    assert calls and all("trust_repo=True" in call for call in calls)
    assert "from zoo" not in readme[readme.index("## Quickstart"): readme.index("or, with speechzoo installed")]


@pytest.mark.slow
def test_the_wheel_ships_the_licence(tmp_path):
    source = tmp_path / "src"  # a copy, so that the build leaves nothing in the checkout
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        (source / name).parent.mkdir(exist_ok=True)
        shutil.copy(ROOT / name, source / name)
    for package in ("zoo", "conversion"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    result = command([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                      tmp_path / "dist", source])
    assert result.returncode == 0, result.stderr
    (wheel,) = (tmp_path / "dist").glob("speechzoo-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(re.fullmatch(r"speechzoo-[^/]+\.dist-info/licenses/LICENSE", n) for n in names), names[-10:]
