"""The notebooks in notebooks/, executed top to bottom as a user runs them (nbclient, a real IPython kernel), against
tiny models served by the loopback Hub under the registry's real names (tests/tiny_models.py); an error in any cell
fails the test. The kernel gets the environment :func:`hub_server.loopback_hub` sets plus ``SPEECHZOO_DEMO_HUB``,
which makes the install cell a no-op (this checkout is already importable: PYTHONPATH), and runs in a temporary
folder holding the bundled LibriSpeech utterance at the path a checkout has it.

Also: the notebooks are committed without outputs, open in Colab from their badge, install speechzoo as the
README's Set-up says, and the DP-SLM notebook's figure is a spectrogram carrying the unit boundaries.
"""
from __future__ import annotations

import json
import os

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell

from conversion import model_cards
from conversion.cards import NOTEBOOKS as CARD_NOTEBOOKS
from zoo.registry import all_weights

import tiny_models as tiny
from harness import ROOT
from hub_server import DEMO_VARIABLE
from test_plot import assert_drawn, pixels

NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
SPEECH = "tests/data/librispeech-1272-128104-0000.flac"
#: Run after the DP-SLM notebook's cells, in its kernel: what the spectrogram it saved was drawn from.
DPSLM_CHECK = """import json
print(json.dumps({"boundaries": plot.boundaries(units_figure).tolist(), "durations": units.durations}))"""


def test_every_system_has_a_notebook():
    assert NOTEBOOKS == ["dgslm", "dpslm", "gslm", "speechtokenizer", "train_speechtokenizer", "voice_conversion"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_stripped_opens_in_colab_and_installs_as_the_readme(name):
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")
    badge = f"https://colab.research.google.com/github/speechzoo/speechzoo/blob/main/notebooks/{name}.ipynb"
    assert nb.cells[0].cell_type == "markdown" and badge in nb.cells[0].source
    install = nb.cells[1].source
    assert f'if "{DEMO_VARIABLE}" not in os.environ' in install
    readme = (ROOT / "README.md").read_text()
    for step in ("git clone --quiet --depth 1 https://github.com/speechzoo/speechzoo", "%cd speechzoo",
                 'pip install --quiet -e ".[plot'):
        assert step in install and step.replace("--quiet ", "") in readme, step
    assert f"notebooks/{name}.ipynb" in readme


def test_model_cards_link_their_familys_notebook():
    assert sorted(CARD_NOTEBOOKS) == NOTEBOOKS
    unlinked = []
    for weights in all_weights():
        card = (model_cards.CARDS / f"{weights.name}.md").read_text()
        links = [name for name in NOTEBOOKS if f"colab.research.google.com/github/speechzoo/speechzoo/blob/main/"
                                               f"notebooks/{name}.ipynb" in card]
        if not links:
            unlinked.append(weights.name)
    assert unlinked == ["ellav-phones-us-arpa-wavtokenizer"]   # phones → speech: no notebook shows it yet
    card = (model_cards.CARDS / "hubert-fisher-kmeans-500.md").read_text()
    assert "notebooks/dgslm.ipynb" in card and "notebooks/gslm.ipynb" not in card


@pytest.fixture(scope="module")
def released(convert, tmp_path_factory) -> tiny.Models:
    """Every system's tiny models (one HuBERT serves GSLM and the voice conversion as HuBERT Base)."""
    root = tmp_path_factory.mktemp("demo-models")
    builders = {"dpslm": lambda: tiny.dpslm(convert, root / "dpslm"), "gslm": lambda: tiny.gslm(convert, root / "gslm"),
                "dgslm": lambda: tiny.dgslm(convert, root / "dgslm"), "st": lambda: tiny.speechtokenizer(convert),
                "expresso": lambda: tiny.expresso(convert, root / "expresso")}
    return {f"{system}/{name}": model for system, build in builders.items() for name, model in build().items()}


def execute(name: str, workdir, extra: str | None = None) -> nbformat.NotebookNode:
    """The notebook run top to bottom in ``workdir`` (an error in a cell raises), with ``extra`` as a last cell."""
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    if extra:
        nb.cells.append(new_code_cell(extra))
    NotebookClient(nb, timeout=600, startup_timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(workdir)}}).execute()
    return nb


def outputs(nb: nbformat.NotebookNode) -> list[dict]:
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]


@pytest.mark.slow   # a kernel, torch and several tiny models per notebook
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom(name, released, loopback_hub, monkeypatch, tmp_path):
    loopback_hub.add_models(released)
    monkeypatch.setenv(DEMO_VARIABLE, loopback_hub.url)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    workdir = tmp_path / "work"
    (workdir / "tests").mkdir(parents=True)
    (workdir / "tests" / "data").symlink_to(ROOT / "tests" / "data")

    nb = execute(name, workdir, DPSLM_CHECK if name == "dpslm" else None)

    shown = outputs(nb)
    assert any("image/png" in out.get("data", {}) for out in shown), "no figure shown"
    assert name == "train_speechtokenizer" or any("<audio" in out.get("data", {}).get("text/html", "")
                                                  for out in shown), "no audio player"
    assert not [out for out in shown if out.output_type == "error"]
    assert any("/resolve/" in r for r in loopback_hub.requests), "the models came from the loopback Hub"
    pngs = sorted((workdir / "outputs").rglob("*.png"))
    assert pngs
    for png in pngs:
        image = pixels(png)
        assert_drawn(image, image.shape[1::-1])
    if name == "dpslm":
        check = json.loads(nb.cells[-1].outputs[0]["text"])
        ends = np.cumsum(check["durations"]) / 50
        assert len(check["durations"]) > 1
        np.testing.assert_allclose(check["boundaries"], ends[:-1])
        assert_drawn(pixels(workdir / "outputs/dpslm_units.png"), (1000, 320))
