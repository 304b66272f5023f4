"""The weight resolution chain against a loopback Hub: registry → hf_hub_download → verified cache, offline reuse,
corrupt and truncated files, and the fallback that converts an original release."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import zoo.download
from zoo.errors import WeightsError
from zoo.models.codebook import Codebook
from zoo.registry import SourceFile, Weights, find

from harness import FIXTURES, ROOT
from hub_server import FakeHub

CODEBOOK_PT = next((FIXTURES / "wavlm/codebook_argmin/original").glob("codebook-*.pt"))
WAVLM_PT = next((FIXTURES / "wavlm/tiny_large_like_speech/original").glob("*.pt"))


@pytest.fixture
def hub(loopback_hub):
    return loopback_hub


@pytest.fixture
def codebook_dir(convert) -> Path:
    return convert("codebook", CODEBOOK_PT)


def expected_codebook() -> torch.Tensor:
    return torch.load(CODEBOOK_PT, weights_only=True)["codebook"]


def blobs(root: Path) -> list[Path]:
    return [p for p in root.rglob("blobs/*") if p.is_file()]


def test_torch_hub_load_uses_registry_repo_then_offline_cache(hub, codebook_dir, monkeypatch):
    entry = find("codebook", layer=11, k=500)
    hub.add_repo(entry.repo_id, codebook_dir)
    cb = torch.hub.load(str(ROOT), "codebook", layer=11, k=500, source="local", progress=False)
    assert torch.equal(cb, expected_codebook())
    assert any(f"/{entry.repo_id}/resolve/{entry.revision}/model.safetensors" in r for r in hub.requests)

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    n_requests = len(hub.requests)
    cb_offline = torch.hub.load(str(ROOT), "codebook", layer=11, k=500, source="local", progress=False)
    assert torch.equal(cb_offline, expected_codebook())
    assert len(hub.requests) == n_requests, "offline load must not touch the network"


def test_wavlm_large_through_registry_and_offline(hub, convert, monkeypatch):
    entry = find("wavlm_large")
    hub.add_repo(entry.repo_id, convert("wavlm", WAVLM_PT))
    wav = torch.randn(1, 16000, generator=torch.Generator().manual_seed(0))
    model, extract_features = torch.hub.load(str(ROOT), "wavlm_large", source="local", progress=False)
    features = extract_features(model, wav, 16000, layer=2)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model2, _ = torch.hub.load(str(ROOT), "wavlm_large", source="local", progress=False)
    assert torch.equal(extract_features(model2, wav, 16000, layer=2), features)
    assert features.shape == (16000 // 320, model.config.embed_dim)


def test_repo_id_with_pinned_revision(hub, codebook_dir):
    hub.add_repo("someone/my-codebook", codebook_dir)
    cb = torch.hub.load(str(ROOT), "codebook", layer=3, k=20, source="local", weights="someone/my-codebook@v2",
                        progress=False)
    assert torch.equal(cb, expected_codebook())
    assert any("/someone/my-codebook/resolve/v2/" in r for r in hub.requests)


def test_tampered_download_is_rejected_and_removed(hub, codebook_dir):
    entry = find("codebook", layer=11, k=500)
    hub.add_repo(entry.repo_id, codebook_dir)
    genuine = (codebook_dir / "model.safetensors").read_bytes()
    tampered = bytearray(genuine)
    tampered[-1] ^= 0xFF  # same size, one bit of one float changed
    hub.corrupt(entry.repo_id, "model.safetensors", bytes(tampered))
    with pytest.raises(WeightsError, match="SHA-256"):
        Codebook.from_pretrained(entry.repo_id, revision=entry.revision, progress=False)
    digest = hashlib.sha256(genuine).hexdigest()
    assert not any(p.name == digest for p in blobs(zoo.download.hf_home())), "corrupt blob must not stay cached"


def test_truncated_transfer_is_an_error_not_a_fallback(hub, codebook_dir):
    entry = find("codebook", layer=11, k=500)
    hub.add_repo(entry.repo_id, codebook_dir)
    hub.corrupt(entry.repo_id, "model.safetensors", (codebook_dir / "model.safetensors").read_bytes()[:100])
    with pytest.raises(WeightsError, match="failed"):
        torch.hub.load(str(ROOT), "codebook", layer=11, k=500, source="local", progress=False)
    assert not any("releases" in r for r in hub.requests), "a broken transfer must not fall back elsewhere"


def test_truncated_cached_file_is_detected(hub, codebook_dir, monkeypatch):
    entry = find("codebook", layer=11, k=500)
    hub.add_repo(entry.repo_id, codebook_dir)
    Codebook.from_pretrained(entry.repo_id, revision=entry.revision, progress=False)
    (blob,) = [p for p in blobs(zoo.download.hf_home()) if len(p.name) == 64]
    blob.write_bytes(blob.read_bytes()[:-10])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match="corrupt or was tampered"):
        Codebook.from_pretrained(entry.repo_id, revision=entry.revision, progress=False)


def loopback_release(hub: FakeHub, sha256: str | None) -> Weights:
    url = hub.add_raw("releases/codebook-layer-3-k-20-test.pt", CODEBOOK_PT.read_bytes())
    return Weights(name="test-codebook", entry_point="codebook", kwargs={"layer": 3, "k": 20}, converter="codebook",
                   source_files=(SourceFile(url, sha256),), license="MIT", paper="", description="test",
                   repo_id="speechzoo/not-mirrored-yet")


def test_original_release_is_converted_when_not_mirrored(hub, monkeypatch):
    entry = loopback_release(hub, hashlib.sha256(CODEBOOK_PT.read_bytes()).hexdigest()[:8])
    model = zoo.download.load_release(Codebook, entry, progress=False)
    assert torch.equal(model.codebook, expected_codebook())
    converted = zoo.download.speechzoo_cache() / "converted" / entry.name / zoo.download.release_key(entry)
    assert torch.equal(load_file(converted / "model.safetensors")["codebook"], expected_codebook())

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    n_requests = len(hub.requests)
    assert torch.equal(zoo.download.load_release(Codebook, entry, progress=False).codebook, expected_codebook())
    assert len(hub.requests) == n_requests


def test_original_release_with_wrong_hash_is_refused(hub):
    entry = loopback_release(hub, "deadbeef")
    with pytest.raises(WeightsError, match="expected deadbeef"):
        zoo.download.load_release(Codebook, entry, progress=False)
    originals = zoo.download.speechzoo_cache() / "originals"
    assert not [p for p in originals.rglob("*") if p.is_file()], "a bad download must be deleted"


def test_release_without_checksum_loads_with_a_warning(hub):
    entry = loopback_release(hub, None)
    with pytest.warns(UserWarning, match="no published checksum"):
        model = zoo.download.load_release(Codebook, entry, progress=False)
    assert torch.equal(model.codebook, expected_codebook())


def test_unknown_repo_and_bad_names(hub):
    with pytest.raises(WeightsError, match="not available"):
        Codebook.from_pretrained("nobody/nothing", progress=False)
    with pytest.raises(WeightsError, match="no such directory: /no/such/dir"):
        Codebook.from_pretrained("/no/such/dir", progress=False)


def test_from_pretrained_takes_huggingface_hub_keywords(hub, codebook_dir, tmp_path):
    hub.add_repo("someone/cb", codebook_dir)
    with pytest.raises(WeightsError, match="not available"):  # nothing cached yet: local_files_only must not fetch
        Codebook.from_pretrained("someone/cb", local_files_only=True, progress=False)
    assert not hub.requests

    cache = tmp_path / "my_cache"
    cb = Codebook.from_pretrained("someone/cb", cache_dir=cache, token="hf_secret", progress=False)
    assert torch.equal(cb.codebook, expected_codebook())
    assert blobs(cache) and not blobs(zoo.download.hf_home()), "cache_dir replaces the Hub cache"
    assert "Bearer hf_secret" in hub.authorizations

    n_requests = len(hub.requests)
    Codebook.from_pretrained("someone/cb", cache_dir=cache, local_files_only=True, progress=False)
    assert len(hub.requests) == n_requests
    Codebook.from_pretrained("someone/cb", cache_dir=cache, force_download=True, progress=False)
    assert any(r.startswith("GET ") for r in hub.requests[n_requests:]), "force_download must download again"
