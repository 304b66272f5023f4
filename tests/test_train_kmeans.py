"""``speechzoo train kmeans`` (GSLM's cluster_kmeans.py) against the original's fit, and its torch back end."""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
import soundfile
import torch

import hubconf
from zoo.cli import build_parser, main
from zoo.errors import InputError, MissingDependencyError
from zoo.formats import kmeans as kmeans_format
from zoo.models.logmel import LogMelFeatureReader
from zoo.train.kmeans import KMeansParams, fit_sklearn, fit_torch

from harness import load_case

REFERENCE = load_case("train_kmeans/k12_d16_defaults_small_batch")
CASE = REFERENCE.path
META = REFERENCE.meta
PARAMS = META["kmeans_params"]
CASE_FLAGS = ["--num-clusters", PARAMS["num_clusters"], "--batch-size", PARAMS["batch_size"], "--max-iter",
              PARAMS["max_iter"], "--n-init", PARAMS["n_init"], "--max-no-improvement", PARAMS["max_no_improvement"]]
ORIGINAL_FLAGS = ["--num_clusters", PARAMS["num_clusters"], "--batch_size", PARAMS["batch_size"], "--max_iter",
                  PARAMS["max_iter"], "--n_init", PARAMS["n_init"], "--max_no_improvement",
                  PARAMS["max_no_improvement"]]


@pytest.fixture(scope="module")
def io_tensors():
    return REFERENCE.io


def _train(*flags) -> None:
    assert main(["train", "kmeans", *map(str, flags)]) == 0


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """cluster_kmeans.py's command line as the case ran it, original flag spellings: km.bin + the directory."""
    out = tmp_path_factory.mktemp("trained")
    _train("--in_features_path", CASE / "features.npy", *ORIGINAL_FLAGS, "--seed", PARAMS["seed"],
           "--out_kmeans_model_path", out / "km.bin", "--log-jsonl", out / "log.jsonl")
    return out


def test_cli_reproduces_cluster_kmeans(trained, io_tensors):
    """The same centres and inertia as the original (scikit-learn is the engine), and the same units."""
    km = hubconf.gslm_kmeans(weights=trained)
    torch.testing.assert_close(km.codebook, io_tensors["cluster_centers"], **REFERENCE.tolerance("centers"))
    record = json.loads((trained / "log.jsonl").read_text().splitlines()[-1])
    assert record["inertia"] == pytest.approx(META["expected"]["inertia"], rel=META["tolerance"]["inertia_rtol"])
    assert record["mean_inertia"] == pytest.approx(META["expected"]["mean_inertia"], rel=1e-5)
    assert record["n_steps"] == META["expected"]["n_steps"] and record["num_frames"] == 1800
    features = torch.from_numpy(np.load(CASE / "features.npy"))
    assert torch.equal(km(features), io_tensors["units"])


def test_km_bin_is_the_originals_format(trained, io_tensors):
    original = joblib.load(trained / "km.bin")
    assert np.array_equal(original.predict(np.load(CASE / "features.npy")), io_tensors["units"].numpy())
    assert torch.equal(kmeans_format.convert([trained / "km.bin"]).codebook, hubconf.gslm_kmeans(weights=trained)
                       .codebook)


def test_hyphenated_and_original_spellings_are_the_same_flags():
    parse = build_parser().parse_args
    common = ["train", "kmeans", "--out", "d", "--seed", "3", "--tol", "0.1", "--init", "random"]
    hyphens = parse([*common, "--features", "f.npy", *map(str, CASE_FLAGS), "--reassignment-ratio", "0.2"])
    underscores = parse([*common, "--in_features_path", "f.npy", *map(str, ORIGINAL_FLAGS),
                         "--reassignment_ratio", "0.2"])
    assert vars(hyphens) == vars(underscores)


def test_defaults_are_cluster_kmeans_defaults():
    """gslm.md §4 / train-lms.md §8: MiniBatchKMeans(50, k-means++, max_iter 150, batch 10000, tol 0,
    max_no_improvement 100, n_init 20, reassignment_ratio 0.5, random_state 1369)."""
    args = build_parser().parse_args(["train", "kmeans", "--features", "f.npy", "--out", "d"])
    assert (args.num_clusters, args.init, args.max_iter, args.batch_size, args.tol, args.max_no_improvement,
            args.n_init, args.reassignment_ratio, args.seed, args.backend) == \
        (50, "k-means++", 150, 10000, 0.0, 100, 20, 0.5, 1369, "sklearn")


def test_torch_backend_finds_an_equally_good_clustering(io_tensors):
    """Not sklearn's random draws, so not its centres; on the case's blobs it finds nearly its partition."""
    features = np.load(CASE / "features.npy")
    params = KMeansParams(num_clusters=12, batch_size=256, max_iter=30, n_init=3, max_no_improvement=10)
    result = fit_torch(features, params)
    assert result.inertia == pytest.approx(META["expected"]["inertia"], rel=0.02)
    ours, original = result.codebook(torch.from_numpy(features)), io_tensors["units"]
    matched = sum(torch.bincount(original[ours == label]).max().item() for label in ours.unique())
    assert matched / len(ours) > 0.95, "the partition should be nearly the original's, up to relabelling"


def _blobs(seed: int, n: int = 2000, k: int = 8, dim: int = 16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(k, dim)) * 6
    return (means[rng.integers(0, k, n)] + rng.normal(size=(n, dim))).astype(np.float32)


def test_torch_backend_is_seeded_and_reads_memory_mapped_features(tmp_path):
    np.save(tmp_path / "f.npy", _blobs(1))
    params = KMeansParams(num_clusters=8, batch_size=200, max_iter=2, n_init=2, seed=7)
    in_memory = fit_torch(np.load(tmp_path / "f.npy"), params)
    mapped = fit_torch(np.load(tmp_path / "f.npy", mmap_mode="r"), params)
    assert torch.equal(in_memory.codebook.codebook, mapped.codebook.codebook)
    assert in_memory.inertia == mapped.inertia
    other_seed = fit_torch(np.load(tmp_path / "f.npy"), KMeansParams(**{**vars(params), "seed": 8}))
    assert not torch.equal(other_seed.codebook.codebook, in_memory.codebook.codebook)


def test_torch_backend_cli_and_its_km_bin(tmp_path):
    np.save(tmp_path / "f.npy", _blobs(2).reshape(2, 1000, 16))  # an (utterances, frames, dim) dump
    _train("--features", tmp_path / "f.npy", "--num-clusters", 8, "--batch-size", 300, "--max-iter", 3,
           "--n-init", 2, "--init", "random", "--backend", "torch", "--out", tmp_path / "km", "--km-bin")
    km = hubconf.gslm_kmeans(weights=tmp_path / "km")
    features = np.load(tmp_path / "f.npy").reshape(-1, 16)
    assert np.array_equal(joblib.load(tmp_path / "km" / "km.bin").predict(features),
                          km(torch.from_numpy(features)).numpy())


# ------------------------------------------------------------------------------------------ bad input
def test_bad_inputs(tmp_path, capsys):
    def error(*flags) -> str:
        assert main(["train", "kmeans", *map(str, flags)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        return err

    np.save(tmp_path / "few.npy", np.zeros((5, 4), np.float32))
    assert "5 frames cannot make 50 clusters" in error("--features", tmp_path / "few.npy", "--out", tmp_path / "o")
    np.save(tmp_path / "ints.npy", np.zeros((100, 4), np.int64))
    assert "must be floats" in error("--features", tmp_path / "ints.npy", "--out", tmp_path / "o")
    assert "does not exist" in error("--features", tmp_path / "none.npy", "--out", tmp_path / "o")
    assert "--backend torch" in error("--features", CASE / "features.npy", "--device", "cuda", "--out", tmp_path)
    assert "is a folder" in error("--features", CASE / "features.npy", "--out_kmeans_model_path", tmp_path)
    assert not (tmp_path / "o").exists()
    with pytest.raises(InputError, match="init must be"):
        KMeansParams(init="kmeans||")


def test_missing_sklearn_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.cluster", None)
    with pytest.raises(MissingDependencyError, match=r"--backend torch.*pip install scikit-learn.*-e '\.\[kmeans\]'"):
        fit_sklearn(_blobs(0), KMeansParams(num_clusters=3))


# ------------------------------------------------------------------------------------------ from a manifest
SPEECH = Path(__file__).parent / "data" / "librispeech-1272-128104-0000.flac"


def test_manifest_features_are_the_readers_features_of_a_seeded_sample(tmp_path):
    """cluster_kmeans.py without --in_features_path: a --sample_pct subset of the manifest read by the reader,
    concatenated — the same fit as on a dump of those features."""
    speech = soundfile.read(SPEECH, dtype="float32")[0]
    (tmp_path / "spk").mkdir()
    names = []
    for i in range(4):
        name = f"spk/{i:04d}.wav"
        soundfile.write(tmp_path / name, speech[i * 16_000: (i + 1) * 16_000], 16_000)
        names.append(name)
    (tmp_path / "train.tsv").write_text(f"{tmp_path}\n" + "".join(f"{n}\t16000\n" for n in names))
    flags = ["--num-clusters", 5, "--n-init", 2, "--max-iter", 5, "--batch-size", 100, "--seed", 3]
    _train("--manifest_path", tmp_path / "train.tsv", "--feature_type", "logmel", "--sample_pct", 0.5, *flags,
           "--out", tmp_path / "from_manifest")

    chosen = random.Random(3).sample(names, 2)
    reader = LogMelFeatureReader()
    dump = np.concatenate([reader.get_feats(str(tmp_path / n)).numpy() for n in chosen])
    np.save(tmp_path / "dump.npy", dump)
    _train("--features", tmp_path / "dump.npy", *flags, "--out", tmp_path / "from_dump")
    from_manifest = hubconf.gslm_kmeans(weights=tmp_path / "from_manifest").codebook
    assert torch.equal(from_manifest, hubconf.gslm_kmeans(weights=tmp_path / "from_dump").codebook)


def test_manifest_needs_a_feature_type_and_a_sample(tmp_path, capsys):
    (tmp_path / "m.tsv").write_text(f"{tmp_path}\na.wav\t16000\n")
    assert main(["train", "kmeans", "--manifest_path", str(tmp_path / "m.tsv"), "--out", str(tmp_path / "o")]) == 2
    assert "needs --feature_type" in capsys.readouterr().err
    assert main(["train", "kmeans", "--manifest_path", str(tmp_path / "m.tsv"), "--feature_type", "logmel",
                 "--out", str(tmp_path / "o")]) == 2
    assert "selects no file" in capsys.readouterr().err
