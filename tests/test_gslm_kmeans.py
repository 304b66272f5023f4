"""GSLM k-means: km.bin (joblib pickle of sklearn's MiniBatchKMeans) through the restricted reader, ``gslm_kmeans``
against the original's units, exact nearest-centroid assignment, refused pickles, registry and cards."""
from __future__ import annotations

import importlib
import os
import pickle
import subprocess
import sys
import types
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch

import hubconf
import zoo.download
from conversion import model_cards
from zoo.errors import ConversionError, InputError
from zoo.formats import kmeans as kmeans_format
from zoo.models.codebook import DENSE_MODELS, GSLM_KMEANS, Codebook, nearest_code
from zoo.registry import SourceFile, Weights, find

from harness import ROOT, conversion_cli, load_case

CASE = load_case("gslm/kmeans_k32_d16")
KM_BIN = CASE.original / "km.bin"


@pytest.fixture(scope="module")
def io_tensors():
    return CASE.io


@pytest.fixture(scope="module")
def converted(convert) -> Path:
    """``python -m conversion kmeans km.bin --out DIR``."""
    return convert("kmeans", KM_BIN)


@pytest.fixture(scope="module")
def sklearn_km():
    """The original estimator, unpickled by joblib itself (the test extra installs scikit-learn)."""
    return joblib.load(KM_BIN)


# ------------------------------------------------------------------------------------------ the fixtures
@pytest.mark.cases("gslm/kmeans*")
def test_codebook_and_units_equal_the_originals(case, convert):
    """``python -m conversion kmeans km.bin``: ``cluster_centers_`` bit for bit, and quantize_with_kmeans.py's units."""
    km = hubconf.gslm_kmeans(weights=convert("kmeans", case.original / "km.bin"))
    assert isinstance(km, torch.nn.Module) and km.vocab_size == len(case.io["cluster_centers"])
    assert km.codebook.dtype == torch.float32 and torch.equal(km.codebook, case.io["cluster_centers"])
    for features, want in zip(case.io["features"], case.io["units"]):
        got = km(features)
        assert got.dtype == torch.int64 and torch.equal(got, want)


def test_codebook_bytes_are_joblibs(converted, sklearn_km):
    km = hubconf.gslm_kmeans(weights=converted)
    assert km.codebook.numpy().tobytes() == sklearn_km.cluster_centers_.tobytes()


def test_units_equal_sklearn_predict_on_other_frames(converted, sklearn_km):
    km = hubconf.gslm_kmeans(weights=converted)
    features = np.random.default_rng(0).normal(size=(4000, 16)).astype(np.float32) * 2
    assert np.array_equal(km(torch.from_numpy(features)).numpy(), sklearn_km.predict(features))


def test_batched_features_equal_each_utterance(converted, io_tensors):
    km = hubconf.gslm_kmeans(weights=converted)
    features = io_tensors["features"][0]
    batch = torch.stack([features, features.flip(0), features * 0.5])
    assert torch.equal(km(batch), torch.stack([km(row) for row in batch]))


def test_conversion_does_not_import_sklearn_or_joblib(tmp_path, monkeypatch, io_tensors):
    for name in [m for m in sys.modules if m.split(".")[0] in ("sklearn", "joblib")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "sklearn", None)  # any import of them now fails
    monkeypatch.setitem(sys.modules, "joblib", None)
    reader = importlib.reload(kmeans_format)
    assert torch.equal(reader.convert([KM_BIN]).codebook, io_tensors["cluster_centers"])


@pytest.mark.parametrize("protocol", [0, 2, 3, 4, 5])
@pytest.mark.parametrize("compress", [0, 3, ("gzip", 3), ("bz2", 3), ("xz", 3), ("lzma", 3)])
def test_every_joblib_protocol_and_compressor(tmp_path, sklearn_km, protocol, compress):
    path = tmp_path / "km.bin"
    joblib.dump(sklearn_km, path, protocol=protocol, compress=compress)
    centers = kmeans_format.cluster_centers(path)
    assert centers.dtype == np.float32 and centers.tobytes() == sklearn_km.cluster_centers_.tobytes()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_plain_pickle_fortran_big_endian_object_arrays_and_random_state(tmp_path, sklearn_km, protocol):
    """What other writers put in a km.bin: plain pickle, F-ordered or big-endian centres, an object array, a
    RandomState as random_state."""
    km = pickle.loads(pickle.dumps(sklearn_km))
    km.cluster_centers_ = np.asfortranarray(sklearn_km.cluster_centers_.astype(">f4"))
    km.feature_names_in_ = np.array([f"f{i}" for i in range(16)], dtype=object)
    km.random_state = np.random.RandomState(0)
    for dump in (lambda p: joblib.dump(km, p, protocol=protocol), lambda p: p.write_bytes(pickle.dumps(km, protocol))):
        path = tmp_path / "km.bin"
        dump(path)
        model = kmeans_format.convert([path])
        assert torch.equal(model.codebook, torch.from_numpy(sklearn_km.cluster_centers_))


def test_pre_0_22_module_path(tmp_path, sklearn_km, monkeypatch):
    """sklearn < 0.22 pickled ``sklearn.cluster.k_means_.MiniBatchKMeans`` (the CPC km.bin files are that old)."""
    module = types.ModuleType("sklearn.cluster.k_means_")

    class MiniBatchKMeans:  # what the old class pickles as: its __dict__
        pass

    MiniBatchKMeans.__module__, MiniBatchKMeans.__qualname__ = module.__name__, "MiniBatchKMeans"
    module.MiniBatchKMeans = MiniBatchKMeans
    monkeypatch.setitem(sys.modules, module.__name__, module)
    old = MiniBatchKMeans()
    old.__dict__.update(n_clusters=32, cluster_centers_=sklearn_km.cluster_centers_, counts_=sklearn_km._counts)
    joblib.dump(old, tmp_path / "km.bin", protocol=2)
    assert b"sklearn.cluster.k_means_" in (tmp_path / "km.bin").read_bytes()
    assert torch.equal(kmeans_format.convert([tmp_path / "km.bin"]).codebook,
                       torch.from_numpy(sklearn_km.cluster_centers_))


# ------------------------------------------------------------------------------------------ refused files
class _Payload:
    """Pickles as a call of ``function(*args)``: what a malicious km.bin carries."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def _payloads(marker: Path):
    command = f"touch {marker}"
    return {
        "os.system": _Payload(os.system, command),
        "subprocess.call": _Payload(subprocess.call, ["touch", str(marker)]),
        "builtins.exec": _Payload(exec, f"open({str(marker)!r}, 'w').close()"),
        "builtins.eval": _Payload(eval, f"open({str(marker)!r}, 'w')"),
        "builtins.open": _Payload(open, str(marker), "w"),
        "pathlib.Path.touch": _Payload(Path.touch, Path(marker)),
    }


@pytest.mark.parametrize("name", list(_payloads(Path("x"))))
@pytest.mark.parametrize("where", ["top level", "estimator attribute", "inside an object array"])
def test_malicious_km_bin_runs_nothing(tmp_path, sklearn_km, name, where):
    marker = tmp_path / "pwned"
    payload = _payloads(marker)[name]
    path = tmp_path / "km.bin"
    if where == "top level":
        path.write_bytes(pickle.dumps(payload))
    else:
        km = pickle.loads(pickle.dumps(sklearn_km))
        km.extra_ = payload if where == "estimator attribute" else np.array([payload], dtype=object)
        joblib.dump(km, path)
    with pytest.raises(ConversionError, match="refused without running anything"):
        kmeans_format.convert([path])
    assert not marker.exists(), "the payload ran"


def test_malicious_km_bin_through_the_cli(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "km.bin").write_bytes(pickle.dumps(_Payload(os.system, f"touch {marker}")))
    result = conversion_cli("kmeans", tmp_path / "km.bin", "--out", tmp_path / "out")
    assert result.returncode == 2
    err = result.stderr
    assert "posix.system" in err and "refused" in err and len(err.strip().splitlines()) == 1
    assert not marker.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("cut", [0.3, 0.7, 0.98])
def test_truncated_km_bin(tmp_path, cut):
    data = KM_BIN.read_bytes()
    (tmp_path / "km.bin").write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(ConversionError, match="truncated"):
        kmeans_format.convert([tmp_path / "km.bin"])


def test_wrong_pickles(tmp_path, sklearn_km):
    from sklearn.cluster import MiniBatchKMeans

    cases = {
        "dict.bin": (lambda p: p.write_bytes(pickle.dumps({"cluster_centers_": [1.0]})), "holds a dict"),
        "array.bin": (lambda p: joblib.dump(np.zeros((3, 2), np.float32), p), "holds a ndarray"),
        "unfitted.bin": (lambda p: joblib.dump(MiniBatchKMeans(3), p), "never fitted"),
        "torch.pt": (lambda p: torch.save({"codebook": torch.zeros(3, 2)}, p), "cannot read"),
        "text.bin": (lambda p: p.write_text("not a pickle"), "cannot read"),
        "empty.bin": (lambda p: p.write_bytes(b""), "cannot read"),
    }
    for filename, (write, match) in cases.items():
        write(tmp_path / filename)
        with pytest.raises(ConversionError, match=match):
            kmeans_format.convert([tmp_path / filename])
    with pytest.raises(ConversionError, match="does not exist"):
        kmeans_format.convert([tmp_path / "missing.bin"])
    with pytest.raises(ConversionError, match="takes one file"):
        kmeans_format.convert([KM_BIN, KM_BIN])


def test_nan_centres_are_refused(tmp_path, sklearn_km):
    km = pickle.loads(pickle.dumps(sklearn_km))
    km.cluster_centers_ = km.cluster_centers_.copy()
    km.cluster_centers_[3, 2] = np.nan
    joblib.dump(km, tmp_path / "km.bin")
    with pytest.raises(ConversionError, match="NaN"):
        kmeans_format.convert([tmp_path / "km.bin"])


# ------------------------------------------------------------------------------------------ bad features
def test_feature_dimension_mismatch_is_a_clear_error(converted):
    km = hubconf.gslm_kmeans(weights=converted)
    with pytest.raises(InputError, match=r"dimension 768, the codebook 16"):
        km(torch.zeros(5, 768))
    named = Codebook.from_tensor(km.codebook, layer=6, dense_model="hubert-base-ls960")
    with pytest.raises(InputError, match="hubert-base-ls960 layer 6"):
        named(torch.zeros(5, 1024))
    with pytest.raises(InputError, match="NaN or infinity"):
        km(torch.full((2, 16), float("nan")))
    assert km(torch.zeros(0, 16)).shape == (0,)


# ------------------------------------------------------------------------------------------ exactness
def _float64_argmin(features: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    c = codebook.double()
    return (c.pow(2).sum(1) - 2 * features.double() @ c.T).argmin(1)


def test_near_ties_follow_float64_not_float32_rounding():
    """Frames almost equidistant from two of 500 768-d centres: float32 scores order some of them wrongly; the
    assignment equals the float64 argmin everywhere (the margin test sends those frames to float64)."""
    g = torch.Generator().manual_seed(0)
    codebook = torch.randn(500, 768, generator=g) * 3
    a, b = torch.randint(0, 500, (2, 2000), generator=g)
    b = torch.where(a == b, (b + 1) % 500, b)
    t = 0.5 + (torch.rand(2000, generator=g, dtype=torch.float64) - 0.5) * 1e-6
    features = (codebook[a].double() * t[:, None] + codebook[b].double() * (1 - t[:, None])).float()
    want = _float64_argmin(features, codebook)
    float32 = (codebook.pow(2).sum(1) - 2 * features @ codebook.T).argmin(1)
    assert (float32 != want).sum() > 0, "the test data must contain frames that float32 rounding gets wrong"
    assert torch.equal(nearest_code(features, codebook), want)


def test_exact_ties_take_the_first_index():
    codebook = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]])
    features = torch.tensor([[0.5, 0.5], [2.0, 0.0], [0.0, 0.0], [0.0, 3.0]])
    assert nearest_code(features, codebook).tolist() == [0, 0, 0, 1]


def test_float64_and_integer_features():
    g = torch.Generator().manual_seed(1)
    codebook = torch.randn(50, 8, generator=g)
    features = torch.randn(300, 8, generator=g, dtype=torch.float64)
    assert torch.equal(nearest_code(features, codebook), _float64_argmin(features, codebook))
    ints = torch.randint(-3, 4, (100, 8), generator=g)
    assert torch.equal(nearest_code(ints, codebook), _float64_argmin(ints, codebook))


def test_long_inputs_are_scored_in_chunks(monkeypatch):
    monkeypatch.setattr("zoo.models.codebook._CPU_CHUNK_ROWS", 7)
    g = torch.Generator().manual_seed(2)
    codebook, features = torch.randn(20, 4, generator=g), torch.randn(100, 4, generator=g)
    assert torch.equal(nearest_code(features, codebook), _float64_argmin(features, codebook))


# ------------------------------------------------------------------------------------------ registry
def test_registry_lists_the_released_kmeans():
    names = {w.name for w in GSLM_KMEANS}
    for feature_type in ("logmel", "cpc-big-ll6k", "hubert-base-ls960", "w2v2-large-vox-new"):
        assert {f"{feature_type}-kmeans-{k}" for k in (50, 100, 200)} <= names
    assert {"hubert-base-ls960-kmeans-500", "cpc-big-ll6k-kmeans-500", "hubert-fisher-kmeans-500",
            "mhubert-base-vp_en_es_fr-kmeans-1000", "hubert-base-ls960-layer-9-kmeans-500"} <= names
    for w in GSLM_KMEANS:
        assert w.converter == "kmeans" and w.source_url.startswith("https://dl.fbaipublicfiles.com/")
        assert w.source_files[0].sha256 is None or len(w.source_files[0].sha256) == 64
        assert w.converter_options["dense_model"] in {d.checkpoint for d in DENSE_MODELS.values()}
    assert find("gslm_kmeans", dense_model="hubert-base-ls960", vocab_size=100).source_files[0].sha256 \
        == "f14a3104615485381fc489701d6761c9abbdbb0d43607cf55518a1e2891023fe"
    assert find("gslm_kmeans", dense_model="hubert-fisher", vocab_size=500).converter_options == \
        {"dense_model": "hubert-fisher", "layer": 12}
    assert find("gslm_kmeans", dense_model="mhubert-base-vp_mls_cv_8lang", vocab_size=2000,
                quantizer_model="kmeans-expresso").name == "mhubert-base-vp_mls_cv_8lang-kmeans-expresso-2000"


def test_unreleased_selection_lists_the_released_ones():
    with pytest.raises(InputError, match=r"gslm_kmeans\(dense_model='hubert-base-ls960', vocab_size=7\) was never "
                                         r"released; available: .*vocab_size=50"):
        hubconf.gslm_kmeans(dense_model="hubert-base-ls960", vocab_size=7)


@pytest.fixture
def hub(loopback_hub):
    return loopback_hub


def test_torch_hub_load_from_the_mirror(hub, converted, io_tensors):
    entry = find("gslm_kmeans", dense_model="hubert-base-ls960", vocab_size=100)
    hub.add_repo(entry.repo_id, converted)
    km = torch.hub.load(str(ROOT), "gslm_kmeans", dense_model="hubert-base-ls960", vocab_size=100, source="local",
                        progress=False)
    assert torch.equal(km.codebook, io_tensors["cluster_centers"])
    assert any(f"/{entry.repo_id}/resolve/" in r for r in hub.requests)


def test_original_km_bin_is_converted_with_its_metadata(hub, io_tensors):
    """Not mirrored: the registry's km.bin is downloaded, SHA-256-checked and converted with the dense model and
    layer the registry names."""
    import hashlib

    real = find("gslm_kmeans", dense_model="hubert-base-ls960", vocab_size=100)
    url = hub.add_raw("textless_nlp/gslm/hubert/km100/km.bin", KM_BIN.read_bytes())
    entry = Weights(**{**vars(real), "source_files": (SourceFile(url, hashlib.sha256(KM_BIN.read_bytes())
                                                                 .hexdigest()),),
                       "repo_id": "speechzoo/not-mirrored-yet"})
    km = zoo.download.load_release(Codebook, entry, progress=False)
    assert torch.equal(km.codebook, io_tensors["cluster_centers"])
    assert (km.config.dense_model, km.config.layer) == ("hubert-base-ls960", 6)


def test_model_cards_are_current():
    assert model_cards.main(["--check"]) == 0
    card = model_cards.cards()[model_cards.CARDS / "hubert-base-ls960-kmeans-100.md"]
    assert 'torch.hub.load("speechzoo/speechzoo", "gslm_kmeans", dense_model=\'hubert-base-ls960\', ' \
           "vocab_size=100, trust_repo=True)" in card
    assert "f14a3104615485381fc489701d6761c9abbdbb0d43607cf55518a1e2891023fe" in card

