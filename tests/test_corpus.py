"""Corpus runs of ``speechzoo encode`` and ``speechzoo tokenize`` (zoo.cli.corpus): a 2-process torchrun (gloo, CPU)
and ``--shard I/N`` job arrays + merge write exactly what one process writes (tiny converted models, a small nested
corpus of mixed lengths, rates and formats); manifests, bucketing, DataLoader workers, resuming shards."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile
import torch
from harness import load_case, speechzoo_cli
from safetensors import safe_open

from zoo import audio
from zoo.cli import main
from zoo.cli.corpus import Shard, bucketed, read_list
from zoo.models.codebook import Codebook

WAVLM_CASE = load_case("wavlm/tiny_large_like_speech")
CODEBOOK_CASE = load_case("wavlm/codebook_argmin")
HUBERT_CASE = load_case("gslm/hubert_tiny_layer2")
SPEECHTOKENIZER_CASE = load_case("speechtokenizer/tiny_hop320_bilstm")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Seven files in nested folders: different lengths, 16 and 24 kHz, flac and wav."""
    root = tmp_path_factory.mktemp("corpus") / "corpus"
    speech = WAVLM_CASE.io["wav"][0]
    spans = [(0, 32000), (4000, 12000), (1000, 30000), (8000, 17000), (0, 6000), (12000, 31000), (2000, 24000)]
    names = ["spk1/a.flac", "spk1/b.wav", "spk2/c.flac", "spk2/deep/d.flac", "spk2/deep/e.wav", "f.flac", "g.wav"]
    for (start, end), name in zip(spans, names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        wav = speech[start:end]
        if name.endswith(".wav") and name != "g.wav":
            audio.save(root / name, audio.resample(wav, 16000, 24000), 24000)
        else:
            audio.save(root / name, wav, 16000)
    return root


@pytest.fixture(scope="module")
def dpslm(convert) -> list[str]:
    """``speechzoo encode`` options for DP-SLM units with the tiny WavLM and codebook (k = 20, DPDP λ = 30)."""
    return ["--k", "20", "--lmbda", "30", "--layer", "3", "--num-neighbors", "5",
            "--weights", f"wavlm={convert('wavlm', *WAVLM_CASE.original.glob('*.pt'))}",
            "--weights", f"codebook={convert('codebook', *CODEBOOK_CASE.original.glob('*.pt'))}"]


@pytest.fixture(scope="module")
def gslm(convert, tmp_path_factory) -> list[str]:
    """``speechzoo encode`` options for GSLM units with the tiny HuBERT and a random 50-means over its layer 2."""
    kmeans = Codebook.from_tensor(torch.randn(50, 48, generator=torch.Generator().manual_seed(0)), layer=2,
                                  dense_model="hubert-base-ls960")
    return ["--dense", "hubert-base-ls960", "--vocab-size", "50", "--layer", "2",
            "--weights", f"dense={convert('hubert', *HUBERT_CASE.original.glob('*.pt'))}",
            "--weights", f"quantizer={kmeans.save_pretrained(tmp_path_factory.mktemp('kmeans'))}"]


def codes_under(directory: Path) -> dict[str, tuple[list, dict]]:
    """Every codes file under ``directory``: its codes and metadata (safetensors writes the metadata in an order of
    its own that differs from process to process, so the files are compared by content, not byte by byte)."""
    found = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            with safe_open(path, framework="pt") as f:
                found[path.relative_to(directory).as_posix()] = (f.get_tensor("codes").tolist(), f.metadata())
    return found


# ------------------------------------------------------------------------------------------ torchrun
@pytest.mark.slow
def test_torchrun_encode_writes_what_one_process_writes(corpus, dpslm, tmp_path):
    common = ["encode", corpus, *dpslm, "--batch-size", "2", "--window", "3", "--num-workers", "1"]
    one = speechzoo_cli(*common, "-o", tmp_path / "one.jsonl")
    assert one.returncode == 0, one.stderr
    two = speechzoo_cli(*common, "-o", tmp_path / "two.jsonl", nproc=2, master_port=29571)
    assert two.returncode == 0, two.stderr
    assert "merged 2 shards (7 files)" in two.stdout
    assert (tmp_path / "two.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.jsonl", "two.jsonl"]  # the shards are gone
    lines = (tmp_path / "one.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines[1:]] == ["f", "g", "spk1/a", "spk1/b", "spk2/c", "spk2/deep/d",
                                                               "spk2/deep/e"]
    again = speechzoo_cli(*common, "-o", tmp_path / "two.jsonl", nproc=2, master_port=29572)
    assert again.returncode == 0 and "all 7 files already encoded" in again.stdout, again.stderr


@pytest.mark.slow
def test_torchrun_tokenize_writes_what_one_process_writes(corpus, convert, tmp_path):
    weights = convert("speechtokenizer", SPEECHTOKENIZER_CASE.original / "config.json",
                      SPEECHTOKENIZER_CASE.original / "SpeechTokenizer.pt")
    common = ["tokenize", corpus, "--weights", weights, "--batch-size", "3", "--window", "4", "--num-workers", "1"]
    one = speechzoo_cli(*common, "-o", tmp_path / "one")
    assert one.returncode == 0, one.stderr
    two = speechzoo_cli(*common, "-o", tmp_path / "two", nproc=2, master_port=29573)
    assert two.returncode == 0, two.stderr
    expected = codes_under(tmp_path / "one")
    assert len(expected) == 7 and codes_under(tmp_path / "two") == expected
    again = speechzoo_cli(*common, "-o", tmp_path / "two", nproc=2, master_port=29574)
    assert again.returncode == 0 and again.stdout.count("files already tokenized") == 2, again.stderr


# ------------------------------------------------------------------------------------------ --shard I/N
@pytest.mark.parametrize("output_format", ["jsonl", "gslm"])
def test_shards_and_merge_equal_the_whole(corpus, gslm, output_format, tmp_path, capsys):
    common = ["encode", str(corpus), *map(str, gslm), "--format", output_format, "--batch-size", "3",
              "--num-workers", "0"]
    assert main([*common, "-o", str(tmp_path / "whole")]) == 0
    out = tmp_path / "sharded"
    assert main([*common, "-o", str(out), "--shard", "1/3", "--merge"]) == 0
    assert "not merged yet" in capsys.readouterr().out and not out.exists()
    assert main([*common, "-o", str(out), "--shard", "0/3"]) == 0
    assert main(["merge-shards", "-o", str(out)]) == 2
    assert "shards [2] of 3" in capsys.readouterr().err
    assert main([*common, "-o", str(out), "--shard", "2/3", "--merge"]) == 0
    assert out.read_bytes() == (tmp_path / "whole").read_bytes()
    if output_format == "gslm":
        settings = Path(f"{out}.settings.json")
        assert settings.read_bytes() == Path(f"{tmp_path / 'whole'}.settings.json").read_bytes()
    assert not list(tmp_path.glob("*.shard*"))


def test_more_shards_than_files(corpus, gslm, tmp_path, capsys):
    common = ["encode", str(corpus / "spk1"), *map(str, gslm), "--num-workers", "0"]
    assert main([*common, "-o", str(tmp_path / "whole.jsonl")]) == 0
    for i in range(3):  # 2 files: shard 0 of 3 has none
        assert main([*common, "-o", str(tmp_path / "u.jsonl"), "--shard", f"{i}/3"]) == 0
    assert main(["merge-shards", "-o", str(tmp_path / "u.jsonl")]) == 0
    assert "merged 3 shards (2 files)" in capsys.readouterr().out
    assert (tmp_path / "u.jsonl").read_bytes() == (tmp_path / "whole.jsonl").read_bytes()


def test_a_shard_resumes_and_merge_refuses_what_does_not_fit(corpus, gslm, tmp_path, capsys):
    common = ["encode", str(corpus), *map(str, gslm), "--batch-size", "2", "--num-workers", "1"]
    out = tmp_path / "units.jsonl"
    assert main([*common, "-o", str(out), "--shard", "0/2"]) == 0
    shard = tmp_path / "units.jsonl.shard00000-of-00002"
    lines = shard.read_text().splitlines(keepends=True)
    assert len(lines) == 1 + 3 and json.loads(lines[0])["settings"]["shard"]["files"] == 3
    shard.write_text("".join(lines[:2]) + '{"id": "sp')  # killed while writing its second file
    assert main([*common, "-o", str(out), "--shard", "0/2"]) == 0
    assert "(1 were already there)" in capsys.readouterr().out and shard.read_text() == "".join(lines)

    # the other shard made with other settings: merging refuses, naming the difference
    other = [*common[:common.index("--vocab-size") + 1], "50", "--no-deduplicate", *common[common.index("--vocab-size") + 2:]]
    assert main([*other, "-o", str(out), "--shard", "1/2"]) == 0
    assert main(["merge-shards", "-o", str(out)]) == 2
    assert "deduplicate: False there, True here" in capsys.readouterr().err
    # resuming a shard with another shard count or other inputs is refused too
    assert main([*common, "-o", str(out), "--shard", "1/2"]) == 2
    assert "deduplicate" in capsys.readouterr().err
    assert main([*common[:1], str(corpus / "spk1"), *common[2:], "-o", str(out), "--shard", "0/2"]) == 2
    assert "inputs" in capsys.readouterr().err


def test_a_bad_file_costs_only_itself_in_a_shard(corpus, gslm, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a.flac", "b.wav", "c.flac"):
        (inputs / name).write_bytes((corpus / "spk1" / "a.flac").read_bytes())
    (inputs / "b.wav").write_bytes(b"not audio")
    common = ["encode", str(inputs), *map(str, gslm), "--num-workers", "1", "--skip-errors"]
    out = tmp_path / "u.jsonl"
    assert main([*common, "-o", str(out), "--shard", "1/2"]) == 2       # b.wav (bad), c.flac
    assert "b.wav" in capsys.readouterr().err
    assert main([*common, "-o", str(out), "--shard", "0/2", "--merge"]) == 0  # a.flac
    assert "not merged yet" in capsys.readouterr().out and not out.exists()
    assert main(["merge-shards", "-o", str(out)]) == 2
    assert "holds 1 of 2 files" in capsys.readouterr().err and not out.exists()
    assert main(["merge-shards", "-o", str(out), "--skip-errors"]) == 2
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()[1:]] == ["a", "c"]
    assert len(list(tmp_path.glob("u.jsonl.shard*"))) == 2  # kept: a rerun retries b.wav


def test_merge_without_shards_and_merge_without_shard_are_clear_errors(corpus, gslm, tmp_path, capsys):
    assert main(["merge-shards", "-o", str(tmp_path / "u.jsonl")]) == 2
    assert "no shards of" in capsys.readouterr().err
    assert main(["encode", str(corpus), *map(str, gslm), "-o", str(tmp_path / "u.jsonl"), "--merge"]) == 2
    assert "give --shard too" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ manifests, batches
def test_manifest_inputs_equal_the_folder(corpus, gslm, tmp_path):
    files = sorted(p for p in corpus.rglob("*") if p.is_file())
    listing = tmp_path / "files.txt"
    listing.write_text("".join(f"{p}\n" for p in files))
    tsv = tmp_path / "train.tsv"
    tsv.write_text(f"{corpus}\n" + "".join(f"{p.relative_to(corpus)}\t{soundfile.info(p).frames}\n" for p in files))
    common = ["encode", *map(str, gslm), "--batch-size", "4", "--num-workers", "0"]
    assert main([*common, str(corpus), "-o", str(tmp_path / "folder.jsonl")]) == 0
    assert main([*common, "--manifest", str(listing), "-o", str(tmp_path / "list.jsonl")]) == 0
    assert main([*common, "--manifest", str(tsv), "-o", str(tmp_path / "tsv.jsonl")]) == 0
    expected = (tmp_path / "folder.jsonl").read_bytes()
    assert (tmp_path / "list.jsonl").read_bytes() == expected and (tmp_path / "tsv.jsonl").read_bytes() == expected
    assert [n for _, n in read_list(tsv)] == [soundfile.info(p).frames for p in files]


def test_bucketing_sorts_each_window_and_shards_are_contiguous():
    sizes = [9, 1, 8, 2, 7, 3, 6]
    assert bucketed(sizes, batch_size=2, window=4) == [[1, 3], [2, 0], [5, 6], [4]]
    assert [i for batch in bucketed(sizes, 3, 100) for i in batch] == sorted(range(7), key=sizes.__getitem__)
    assert [Shard(i, 3).of(list("abcdefg")) for i in range(3)] == [["a", "b"], ["c", "d"], ["e", "f", "g"]]
    assert [i for k in range(10) for i in Shard(k, 10).of(list(range(7)))] == list(range(7))
