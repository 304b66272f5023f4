"""The `speechzoo` command line: `list`, `convert` (and `python -m conversion`), and their errors."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from zoo.cli import main
from zoo.models.codebook import Codebook
from zoo.registry import all_weights

from harness import FIXTURES, conversion_cli

CODEBOOK_PT = next((FIXTURES / "wavlm/codebook_argmin/original").glob("codebook-*.pt"))


def test_list_json_describes_every_registered_weight(capsys):
    assert main(["list", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in entries] == [w.name for w in all_weights()]
    for e in entries:
        assert {"name", "entry_point", "kwargs", "repo_id", "revision", "license", "source_url"} <= set(e)
    k500 = next(e for e in entries if e["entry_point"] == "codebook" and e["kwargs"] == {"layer": 11, "k": 500})
    assert k500["source_url"].endswith("codebook-layer-11-k-500-2c2dee95.pt")


def test_list_table_has_a_row_per_weight(capsys):
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["name", "entry_point"]
    assert len(lines) == 2 + len(all_weights())


def test_python_m_conversion_writes_a_loadable_model(tmp_path):
    out = tmp_path / "cb"
    result = conversion_cli("codebook", CODEBOOK_PT, "--out", out)
    assert result.returncode == 0, result.stderr
    assert torch.equal(Codebook.from_pretrained(out).codebook, torch.load(CODEBOOK_PT, weights_only=True)["codebook"])


def test_convert_wrong_container_is_a_clear_error(tmp_path, capsys):
    wrong = tmp_path / "not-a-codebook.pt"
    torch.save({"model": {"w": torch.zeros(1)}}, wrong)
    assert main(["convert", "codebook", str(wrong), "--out", str(tmp_path / "out")]) == 2
    assert "lacks ['codebook']" in capsys.readouterr().err


def test_convert_refuses_pickled_code(tmp_path, capsys):
    evil = tmp_path / "evil.pt"
    torch.save({"codebook": torch.zeros(2, 2), "hook": Path("/tmp")}, evil)  # a non-tensor object in the pickle
    assert main(["convert", "codebook", str(evil), "--out", str(tmp_path / "out")]) == 2
    assert "allowlist" in capsys.readouterr().err
