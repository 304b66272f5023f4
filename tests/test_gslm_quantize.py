"""``speechzoo quantize``: quantize_with_kmeans.py's flags and its quantized file, byte for byte."""
from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pytest
import torch
from harness import load_case

from zoo.cli import main
from zoo.models.codebook import Codebook
from zoo.registry import find

CASE = load_case("gslm/kmeans_k32_d16")
KM_BIN = CASE.original / "km.bin"
ORIGINAL_FLAGS = ["--feature_type", "hubert", "--features_path", str(CASE.path / "features.npy"),
                  "--manifest_path", str(CASE.path / "manifest.tsv"), "--extension", ".flac"]


@pytest.fixture(scope="module")
def kmeans_dir(convert) -> Path:
    return convert("kmeans", KM_BIN)


@pytest.mark.cases("gslm/kmeans*")
@pytest.mark.parametrize("spelling", ["underscores", "hyphens"])
def test_quantized_file_is_the_originals_byte_for_byte(case, convert, tmp_path, spelling):
    """The check's command (the original's flags, or speechzoo's hyphenated ones) writes expected_quantized.txt."""
    flags = {"feature_type": "hubert", "kmeans_model_path": convert("kmeans", case.original / "km.bin"),
             "features_path": case.path / "features.npy", "manifest_path": case.path / "manifest.tsv",
             "out_quantized_file_path": tmp_path / "new" / "folder" / "quantized.txt", "extension": ".flac"}
    argv = ["quantize"]
    for name, value in flags.items():
        argv += ["--" + (name if spelling == "underscores" else name.replace("_", "-")), str(value)]
    assert main(argv) == 0
    assert flags["out_quantized_file_path"].read_bytes() == (case.path / "expected_quantized.txt").read_bytes()


@pytest.fixture
def three_utterances(tmp_path):
    """Three utterances whose names the original's rstrip("." + extension) mangles differently."""
    features = np.random.default_rng(3).normal(size=(3, 40, 16)).astype(np.float32) * 2
    np.save(tmp_path / "feats.npy", features)
    (tmp_path / "train.tsv").write_text("/data/audio\nspk/speaker_a.flac\t16000\n"
                                        "other/1272-128104-0000.flac\t32000\n\nlac.flac\t400\n")
    units = [" ".join(map(str, row)) for row in map(joblib.load(KM_BIN).predict, features)]
    return tmp_path, units


def _quantize(kmeans_dir, folder, *extra):
    out = folder / "out.txt"
    code = main(["quantize", "--feature_type", "hubert", "--kmeans_model_path", str(kmeans_dir), "--features_path",
                 str(folder / "feats.npy"), "--manifest_path", str(folder / "train.tsv"),
                 "--out_quantized_file_path", str(out), *extra])
    return code, out


def test_names_keep_the_rstrip_quirk(kmeans_dir, three_utterances):
    """spec §4: rstrip removes a character set, so 'speaker_a.flac' becomes 'speaker_' (and 'lac.flac' nothing)."""
    folder, units = three_utterances
    code, out = _quantize(kmeans_dir, folder)
    assert code == 0
    assert out.read_text().splitlines() == [f"speaker_|{units[0]}", f"1272-128104-0000|{units[1]}", f"|{units[2]}"]


def test_channel_id_and_hide_fname(kmeans_dir, three_utterances):
    folder, units = three_utterances
    assert _quantize(kmeans_dir, folder, "--channel_id", "2")[0] == 0
    assert (folder / "out.txt").read_text().splitlines()[:2] == [f"speaker_-channel2|{units[0]}",
                                                                 f"1272-128104-0000-channel2|{units[1]}"]
    assert _quantize(kmeans_dir, folder, "--hide-fname")[0] == 0
    assert (folder / "out.txt").read_text() == "".join(f"{u}\n" for u in units)
    assert _quantize(kmeans_dir, folder, "--hide_fname", "--channel-id", "1")[0] == 0
    assert (folder / "out.txt").read_text() == "".join(f"{u}\n" for u in units)


def test_extension_without_dot(kmeans_dir, three_utterances):
    folder, units = three_utterances
    assert _quantize(kmeans_dir, folder, "--extension", "flac")[0] == 0
    assert (folder / "out.txt").read_text().splitlines()[0] == f"speaker_|{units[0]}"


def test_registered_name_from_the_hub(kmeans_dir, tmp_path, loopback_hub):
    entry = find("gslm_kmeans", dense_model="hubert-base-ls960", vocab_size=100)
    loopback_hub.add_repo(entry.repo_id, kmeans_dir)
    out = tmp_path / "q.txt"
    assert main(["quantize", *ORIGINAL_FLAGS, "--kmeans_model_path", entry.name,
                 "--out_quantized_file_path", str(out)]) == 0
    assert out.read_bytes() == (CASE.path / "expected_quantized.txt").read_bytes()


# ------------------------------------------------------------------------------------------ bad input
def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_bad_inputs_are_one_line_errors(kmeans_dir, three_utterances, capsys):
    folder, _ = three_utterances
    base = ["quantize", "--feature_type", "hubert", "--manifest_path", str(folder / "train.tsv"),
            "--out_quantized_file_path", str(folder / "out.txt")]
    km = ["--kmeans_model_path", str(kmeans_dir)]

    assert "the manifest lists 3" in _error(capsys, [*base, *km, "--features_path", str(CASE.path / "features.npy")])
    np.save(folder / "flat.npy", np.zeros((40, 16), np.float32))
    assert "want float (utterances, frames, dim)" in _error(capsys, [*base, *km, "--features_path",
                                                                     str(folder / "flat.npy")])
    np.save(folder / "ragged.npy", np.array([np.zeros((2, 16)), np.zeros((3, 16))], dtype=object))
    assert "allow_pickle" in _error(capsys, [*base, *km, "--features_path", str(folder / "ragged.npy")])
    assert "does not exist" in _error(capsys, [*base, *km, "--features_path", str(folder / "missing.npy")])
    np.save(folder / "wide.npy", np.zeros((3, 5, 768), np.float32))
    assert "dimension 768, the codebook 16" in _error(capsys, [*base, *km, "--features_path",
                                                               str(folder / "wide.npy")])
    assert not (folder / "out.txt").exists(), "a failed run must not leave a partial file"
    feats = ["--features_path", str(folder / "feats.npy")]
    assert "conversion kmeans" in _error(capsys, [*base, "--kmeans_model_path", str(KM_BIN), *feats])
    assert "no such directory: no/such/dir/x" in _error(capsys, [*base, "--kmeans_model_path", "no/such/dir/x", *feats])
    (folder / "bad.tsv").write_text("/root\nno-tab-here\n")
    assert "bad.tsv, line 2" in _error(capsys, ["quantize", "--feature_type", "hubert", *km, *feats,
                                                "--manifest_path", str(folder / "bad.tsv"),
                                                "--out_quantized_file_path", str(folder / "o.txt")])
    assert not (folder / "o.txt").exists()


def test_flag_choices_are_checked_by_argparse(kmeans_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["quantize", *ORIGINAL_FLAGS, "--kmeans_model_path", str(kmeans_dir), "--out_quantized_file_path", "x",
              "--channel_id", "3"])
    assert exit_info.value.code == 2 and "invalid choice: '3'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ from audio
@pytest.mark.parametrize("case_name, kind", [("gslm/hubert_tiny_layer2", "hubert"), ("gslm/logmel_80bins_1s", None)])
def test_audio_route_equals_the_originals_features_quantized(case_name, kind, convert, tmp_path):
    """--acoustic_model_path + --layer read the manifest's audio with the GSLM reader: the units are those of the
    original reader's features (the case's), through the same k-means."""
    case = load_case(case_name)
    features = case.io["features"]
    km = Codebook.from_tensor(torch.randn(20, features.shape[-1], generator=torch.Generator().manual_seed(0)))
    km.save_pretrained(tmp_path / "km")
    (tmp_path / "train.tsv").write_text(f"{case.path}\ninput.flac\t{len(case.io['wav'])}\n")
    argv = ["quantize", "--feature_type", kind or "logmel", "--kmeans_model_path", str(tmp_path / "km"),
            "--manifest_path", str(tmp_path / "train.tsv"), "--out_quantized_file_path", str(tmp_path / "q.txt")]
    if kind:
        argv += ["--acoustic_model_path", str(convert(kind, next(case.original.glob("*.pt")))),
                 "--layer", str(case.meta["config"]["reader"]["layer"])]
    assert main(argv) == 0
    units = " ".join(map(str, km(features).tolist()))
    assert (tmp_path / "q.txt").read_text() == f"input|{units}\n"


def test_audio_route_needs_a_dense_model(kmeans_dir, tmp_path, capsys):
    (tmp_path / "m.tsv").write_text(f"{tmp_path}\na.flac\t16000\n")
    assert main(["quantize", "--feature_type", "hubert", "--kmeans_model_path", str(kmeans_dir), "--manifest_path",
                 str(tmp_path / "m.tsv"), "--out_quantized_file_path", str(tmp_path / "q.txt")]) == 2
    assert "needs --acoustic_model_path" in capsys.readouterr().err


def test_a_bad_file_costs_only_itself(tmp_path, capsys):
    """A corrupt file in the manifest: the lines before it stay written; with --skip-errors the ones after it too."""
    case = load_case("gslm/logmel_80bins_1s")
    features = case.io["features"]
    km = Codebook.from_tensor(torch.randn(20, features.shape[-1], generator=torch.Generator().manual_seed(0)))
    km.save_pretrained(tmp_path / "km")
    (tmp_path / "broken.flac").write_bytes(b"fLaC\x00\x00 not audio")
    frames = len(case.io["wav"])
    (tmp_path / "train.tsv").write_text(f"{case.path}\ninput.flac\t{frames}\n{tmp_path}/broken.flac\t{frames}\n"
                                        f"input.flac\t{frames}\n")
    units = " ".join(map(str, km(features).tolist()))
    out = tmp_path / "q.txt"
    argv = ["quantize", "--feature_type", "logmel", "--kmeans_model_path", str(tmp_path / "km"), "--manifest_path",
            str(tmp_path / "train.tsv"), "--out_quantized_file_path", str(out)]
    assert main(argv) == 2
    assert "broken.flac" in capsys.readouterr().err
    assert out.read_text() == f"input|{units}\n"
    assert main([*argv, "--skip-errors"]) == 2
    err = capsys.readouterr().err
    assert "broken.flac" in err and "1 inputs failed" in err
    assert out.read_text() == f"input|{units}\n" * 2
