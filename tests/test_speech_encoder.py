"""GSLM speech → units end to end: textlesslib's SpeechEncoder (``hubconf.speech_encoder``) served from a loopback Hub
with tiny converted models, on the LibriSpeech file; consistent with the reader + k-means called by hand, batched,
and with ``speechzoo encode --dense``."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile
import torch
from harness import load_case

import hubconf
from zoo.cli import main as cli_main
from zoo.errors import InputError
from zoo.models.codebook import Codebook
from zoo.pipelines.gslm import align_f0_to_durations
from zoo.registry import find

ROOT = Path(__file__).resolve().parents[1]
SPEECH = Path(__file__).parent / "data" / "librispeech-1272-128104-0000.flac"
HUBERT_CASE = load_case("gslm/hubert_tiny_layer2")
LAYER = 2     # the tiny HuBERT has 3 blocks; its k-means clusters block 2
K = 100


@pytest.fixture(scope="module")
def weights(convert, tmp_path_factory) -> dict[str, Path]:
    hubert = convert("hubert", next(HUBERT_CASE.original.glob("*.pt")))
    codebook = torch.randn(K, 48, generator=torch.Generator().manual_seed(0))
    kmeans = Codebook.from_tensor(codebook, layer=LAYER, dense_model="hubert-base-ls960")
    return {"hubert": hubert, "kmeans": kmeans.save_pretrained(tmp_path_factory.mktemp("kmeans"))}


@pytest.fixture
def hub(weights, loopback_hub):
    loopback_hub.add_repo(find("hubert_feature_reader", checkpoint="hubert-base-ls960").repo_id, weights["hubert"])
    loopback_hub.add_repo(find("gslm_kmeans", dense_model="hubert-base-ls960", vocab_size=K).repo_id,
                          weights["kmeans"])
    return loopback_hub


@pytest.fixture(scope="module")
def speech() -> torch.Tensor:
    return torch.from_numpy(soundfile.read(SPEECH, dtype="float32")[0])


def by_hand(weights, wav: torch.Tensor) -> torch.Tensor:
    reader = hubconf.hubert_feature_reader(layer=LAYER, weights=weights["hubert"])
    return hubconf.gslm_kmeans(weights=weights["kmeans"])(reader(wav))


def test_torch_hub_speech_encoder_from_the_loopback_hub(hub, weights, speech):
    encoder = torch.hub.load(str(ROOT), "speech_encoder", dense_model="hubert-base-ls960", vocab_size=K,
                             source="local", progress=False)
    encoded = encoder(speech)
    frames = by_hand(weights, speech)
    units, durations = torch.unique_consecutive(frames, return_counts=True)
    assert torch.equal(encoded["units"], units) and torch.equal(encoded["durations"], durations)
    assert encoded["dense"].shape == (len(frames), 48) and int(durations.sum()) == (len(speech) - 400) // 320 + 1
    assert any("/resolve/" in r for r in hub.requests)

    framewise = torch.hub.load(str(ROOT), "speech_encoder", vocab_size=K, deduplicate=False, source="local",
                               progress=False)(speech)
    assert torch.equal(framewise["units"], frames) and framewise["durations"].eq(1).all()


def test_batches_equal_each_utterance_alone(hub, speech):
    encoder = hubconf.speech_encoder(vocab_size=K, progress=False)
    wavs = [speech[:20_000], speech, speech[30_000:41_234], torch.stack([speech, speech * 0.5])]
    batched = encoder.encode(wavs, batch_size=3)
    for wav, got in zip(wavs, batched):
        alone = encoder(wav)
        assert torch.equal(got["units"], alone["units"]) and torch.equal(got["durations"], alone["durations"])
        torch.testing.assert_close(got["dense"], alone["dense"], atol=2e-5, rtol=2e-5)


def test_f0_per_unit(hub, speech):
    encoder = hubconf.speech_encoder(vocab_size=K, need_f0=True, progress=False)
    encoded = encoder(speech[:32_000])
    assert encoded["f0"].shape == encoded["units"].shape and encoder.f0_code_ratio == 4.0
    assert (encoded["f0"] > 0).any() and (encoded["f0"][encoded["f0"] > 0] > 50).all()


def test_align_f0_to_durations():
    f0 = torch.tensor([0.0, 100.0, 110.0, 0.0, 0.0, 0.0, 200.0, 0.0])
    # 2 units of 1 and 3 frames at 2 F0 frames per unit frame: the mean of each span's voiced F0, 0 if none
    torch.testing.assert_close(align_f0_to_durations(f0, torch.tensor([1, 3]), 2.0, 2.0), torch.tensor([100.0, 155.0]))
    with pytest.raises(InputError, match="cannot align"):
        align_f0_to_durations(f0, torch.tensor([10]), 2.0, 2.0)


def test_encode_cli_dense(hub, weights, speech, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    for name, wav in (("a", speech[:24_000]), ("b", speech[10_000:50_000])):
        soundfile.write(tmp_path / "in" / f"{name}.flac", wav.numpy(), 16_000)
    out = tmp_path / "units.jsonl"
    argv = ["encode", str(tmp_path / "in"), "--dense", "hubert-base-ls960", "--vocab-size", str(K), "-o", str(out),
            "--batch-size", "2"]
    assert cli_main(argv) == 0
    header, *lines = [json.loads(line) for line in out.read_text().splitlines()]
    expected = [torch.unique_consecutive(by_hand(weights, speech[:24_000]), return_counts=True),
                torch.unique_consecutive(by_hand(weights, speech[10_000:50_000]), return_counts=True)]
    assert header["settings"]["system"] == "gslm" and header["settings"]["vocab_size"] == K
    assert [line["id"] for line in lines] == ["a", "b"]
    for line, (units, durations) in zip(lines, expected):
        assert line["units"] == units.tolist() and line["durations"] == durations.tolist()
    assert cli_main(argv) == 0 and "already encoded" in capsys.readouterr().out  # resumed: nothing to do

    text = tmp_path / "units.txt"
    assert cli_main([*argv[:-4], "--format", "gslm", "--no-deduplicate", "-o", str(text)]) == 0
    rows = text.read_text().splitlines()
    assert rows[0] == "a|" + " ".join(map(str, by_hand(weights, speech[:24_000]).tolist()))
