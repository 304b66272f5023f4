"""The `speechzoo` command line: `list`, `convert` (and `python -m conversion`), and their errors."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from zoo import __version__
from zoo.cli import listing, main
from zoo.cli.convert import SOURCES, kinds
from zoo.cli.inputs import item_ids, output_path
from zoo.errors import InputError, MissingDependencyError
from zoo.f0 import yaapt_f0
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


def test_list_table_fits_100_columns_with_checksum_converter_and_licence(capsys):
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "converter", "sha256", "license"]
    assert max(map(len, lines)) <= 100
    weights = all_weights()
    groups = {w.entry_point for w in weights}
    assert len(lines) == 1 + len(groups) + len(weights)
    k500 = next(line for line in lines if line.split()[:1] == ["wavlm-large-layer11-kmeans500"])
    assert k500.split()[1:3] == ["codebook", "2c2dee95"]


def test_list_filter(capsys):
    assert main(["list", "hifigan"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in lines[1:] if line.startswith("  ")]
    expected = [w.name for w in all_weights() if "hifigan" in f"{w.name} {w.entry_point} {w.converter}"]
    assert names == expected and len(names) > 10
    assert main(["list", "speech-dlm", "--json"]) == 0
    assert [e["entry_point"] for e in json.loads(capsys.readouterr().out)] == ["speech_dlm"]
    assert main(["list", "no-such-model"]) == 2
    assert "no released weight set matches 'no-such-model'" in capsys.readouterr().err


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


# ------------------------------------------------------------------------------------------ output names
@pytest.mark.parametrize("bad", ["../escaped", "/abs/path", "", "a/../../b", "a\\b", "a//b", ".", "x/", "C:x"])
def test_output_path_refuses_ids_that_leave_the_folder(tmp_path, bad):
    with pytest.raises(InputError, match="outside the output folder"):
        output_path(tmp_path / "out", bad, ".wav")
    assert sorted(tmp_path.rglob("*")) == []


def test_output_path_mirrors_ids_and_refuses_links_leading_outside(tmp_path):
    assert output_path(tmp_path / "out", "spk1/0001", ".wav") == tmp_path / "out" / "spk1" / "0001.wav"
    assert (tmp_path / "out" / "spk1").is_dir()
    (tmp_path / "out" / "link").symlink_to(tmp_path)
    with pytest.raises(InputError, match="leads outside the output folder"):
        output_path(tmp_path / "out", "link/x", ".wav")


def test_item_ids_mirror_the_input_tree_and_refuse_collisions(tmp_path):
    files = [tmp_path / "c" / "spk1" / "0001.wav", tmp_path / "c" / "spk2" / "0001.flac"]
    assert list(item_ids(files).values()) == ["spk1/0001", "spk2/0001"]
    with pytest.raises(InputError, match="would both be written as spk1/0001"):
        item_ids([*files, tmp_path / "c" / "spk1" / "0001.flac"])


# ------------------------------------------------------------------------------------------ one-line errors
def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(listing, "run", interrupted)
    assert main(["list"]) == 130
    assert capsys.readouterr().err == "speechzoo list: interrupted\n"


@pytest.mark.parametrize("device, message", [("gpu", "'gpu' is not a torch device"),
                                             ("cuda", "use --device cpu")])
def test_bad_device_is_one_line_and_exit_2(device, message, capsys):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA: --device cuda is valid here")
    with pytest.raises(SystemExit) as exit_:
        main(["vocode", "u.jsonl", "-o", "out", "--device", device])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and len(err.splitlines()) == 1


def test_a_missing_optional_package_says_what_installs_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "amfm_decompy", None)  # import fails as if not installed
    monkeypatch.delitem(sys.modules, "amfm_decompy.basic_tools", raising=False)
    monkeypatch.delitem(sys.modules, "amfm_decompy.pYAAPT", raising=False)
    with pytest.raises(MissingDependencyError, match=r"pip install amfm_decompy \(in a speechzoo checkout: "
                                                     r"pip install -e '\.\[f0\]'\)"):
        yaapt_f0(torch.zeros(1600), 16000)


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out == f"speechzoo {__version__}\n"


def test_convert_help_is_whole_and_says_the_files_of_every_kind():
    result = conversion_cli("--help")
    assert result.returncode == 0
    assert "write config.json + model.safetensors that weights=DIR loads." in result.stdout  # not cut mid-sentence
    assert set(SOURCES) == set(kinds())
    for kind in kinds():
        assert f"  {kind:<16} {SOURCES[kind]}" in result.stdout
