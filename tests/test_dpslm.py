"""DP-SLM end to end on tiny models: the DP-SLM README's example through torch.hub and a loopback Hub, the
zoo.pipelines.DPSLM object against the same steps done by hand, and the resynthesize / continue commands."""
from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import soundfile
import torch

from zoo import audio
from zoo.cli import main
from zoo.models.wavlm import extract_features
from zoo.models.wavtokenizer import decode
from zoo.pipelines import DPSLM

import tiny_models as tiny
from harness import ROOT

SPEECH = Path(__file__).parent / "data/librispeech-1272-128104-0000.flac"
K, LMBDA = tiny.DPSLM_K, tiny.DPSLM_LMBDA
FEATURE_DIM = tiny.WAVLM_FEATURE_DIM
WAVTOKENIZER_HOP = 20


@pytest.fixture(scope="module")
def released(tmp_path_factory, convert) -> tiny.Models:
    """Tiny models under the registry entries of DP-SLM's (k, λ) releases (tests/tiny_models.py)."""
    return tiny.dpslm(convert, tmp_path_factory.mktemp("dpslm"), K, LMBDA)


@pytest.fixture(scope="module")
def tiny_models(released) -> dict[str, Path]:
    return {name: directory for name, (_, directory) in released.items()}


# The usage example of nicolvisser/dp-slm's README, as its users run it (repo names and devices substituted below).
README_EXAMPLE = '''
wav, sr = torchaudio.load("your_audio.wav")
k = 500
lmbda = 4500
wavlm, extract_features = torch.hub.load("nicolvisser/WavLM-codebooks", "wavlm_large", trust_repo=True)
wavlm.to("cuda")
with torch.inference_mode():
    features = extract_features(wavlm, wav, sr, layer=11)
codebook = torch.hub.load("nicolvisser/WavLM-codebooks", "codebook", layer=11, k=k, trust_repo=True)
quantizer = torch.hub.load("nicolvisser/dpdp", "dpdp_quantizer_from_codebook", codebook=codebook, lmbda=lmbda,
                           num_neighbors=int(0.05*k), trust_repo=True)
quantizer.to("cuda")
with torch.inference_mode():
    quantized_features, units_duped = quantizer(features)
units_deduped = torch.unique_consecutive(units_duped)
ulm, ulm_tokenizer = torch.hub.load("nicolvisser/Mistral-ULM", "ulm_wavlm_layer_11_dpdp_hours_1k_steps_10k", k=k,
                                    lmbda=lmbda, trust_repo=True, force_reload=True)
ulm.to("cuda")
with torch.inference_mode():
    ulm_input = ulm_tokenizer.encode(units_deduped.tolist()).cuda()
    ulm_ll = ulm.loglikelihood(ulm_input)
ellav = torch.hub.load("nicolvisser/ELLA-V", "ellav_units_to_wavtokenizer", k=k, lmbda=lmbda, trust_repo=True)
ellav.to("cuda")
with torch.inference_mode():
    prompt = [f"u{unit}" for unit in units_deduped.tolist()]
    codec_ids_list, finished = ellav.generate(
        prompts=[prompt] * 3, # generate 3 examples
        max_tokens=1000,
        max_codec_tokens_per_phone=10,
        temperature=1.0,
        top_p=0.8,
    )
wavtokenizer, _, vocode = torch.hub.load("nicolvisser/WavTokenizer", "small_600_24k_4096", trust_repo=True,
                                         force_reload=True)
wavtokenizer.to("cuda")
with torch.inference_mode():
    for i, codec_ids in enumerate(codec_ids_list):
        wav_, sr_ = vocode(wavtokenizer, codec_ids[None, None, :])
        torchaudio.save(f"resynth_{i}.wav", wav_.cpu(), sr_)
'''
ORIGINAL_REPOS = ("nicolvisser/WavLM-codebooks", "nicolvisser/dpdp", "nicolvisser/Mistral-ULM", "nicolvisser/ELLA-V",
                  "nicolvisser/WavTokenizer")


def test_dpslm_readme_example_runs_against_a_loopback_hub(released, loopback_hub, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    audio.save("your_audio.wav", audio.load(SPEECH)[0][:, :24000], 16000)
    # torchaudio cannot be installed beside torch 2.13: its two calls in the example go through zoo.audio instead
    torchaudio = types.SimpleNamespace(load=lambda path: audio.load(path, mono=False),
                                       save=lambda path, wav, sr: audio.save(path, wav, sr))
    monkeypatch.setitem(sys.modules, "torchaudio", torchaudio)
    code = README_EXAMPLE.replace('"cuda"', '"cpu"').replace(".cuda()", ".cpu()")
    for repo in ORIGINAL_REPOS:
        code = code.replace(f'"{repo}"', repr(str(ROOT)))
    code = code.replace("trust_repo=True", 'source="local", trust_repo=True')

    loopback_hub.add_models(released)
    scope = {"torch": torch, "torchaudio": torchaudio}
    exec(compile(code, "dp-slm README", "exec"), scope)

    assert scope["features"].shape == (24000 // 320, FEATURE_DIM)
    assert -float("inf") < scope["ulm_ll"] < 0
    for i, codec_ids in enumerate(scope["codec_ids_list"]):
        data, rate = soundfile.read(tmp_path / f"resynth_{i}.wav")
        assert rate == 24000 and len(data) == len(codec_ids) * WAVTOKENIZER_HOP and len(data) > 0


@pytest.fixture(scope="module")
def dpslm(tiny_models) -> DPSLM:
    return DPSLM.from_pretrained(K, LMBDA, weights={k: str(v) for k, v in tiny_models.items()}, progress=False)


@pytest.fixture(scope="module")
def speech() -> list[torch.Tensor]:
    wav = audio.load(SPEECH)[0][0]
    return [wav[:16000], wav[20000:44000]]


def test_resynthesize_equals_the_steps_by_hand(dpslm, speech):
    greedy = {"temperature": 0.0, "top_p": 0.0}
    got = dpslm.resynthesize(speech, 16000, **greedy)
    for wav, out in zip(speech, got):
        features = extract_features(dpslm.speech_to_units.wavlm, wav[None], 16000, layer=11)
        units = torch.unique_consecutive(dpslm.speech_to_units.quantizer(features)[1])
        codec_ids, _ = dpslm.ellav.generate([[f"u{u}" for u in units.tolist()]], 1000, 10, strict=False, **greedy)
        expected, _ = decode(dpslm.wavtokenizer, codec_ids[0][None, None, :])
        torch.testing.assert_close(out, expected[0], rtol=0, atol=0)
    assert dpslm.resynthesize(speech, 16000, batch_size=1, **greedy)[1].equal(got[1])


def test_continue_speech_extends_the_prompt(dpslm, speech):
    seconds = 3.0
    torch.manual_seed(1)  # ELLA-V samples (top_p 0.8) as in DP-SLM; the unit LM is greedy here
    out = dpslm.continue_speech(speech[1], 16000, seconds, temperature=0.0)

    torch.manual_seed(1)
    (prompt,) = dpslm.encode(speech[1], 16000)
    new_units = round(seconds / (prompt.seconds / len(prompt.units)))
    continuation = dpslm.ulm.generate(prompt.units, new_units, 0.0)
    (expected,) = dpslm.units_to_speech([prompt.units + continuation.tolist()])
    assert len(continuation) == new_units > 0
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_commands_write_wav_files(tiny_models, speech, tmp_path):
    audio.save(tmp_path / "a.wav", speech[0], 16000)
    audio.save(tmp_path / "b.flac", audio.resample(speech[1], 16000, 44100), 44100)
    weights = [arg for name, path in tiny_models.items() for arg in ("--weights", f"{name}={path}")]
    torch.manual_seed(0)
    assert main(["resynthesize", str(tmp_path / "a.wav"), str(tmp_path / "b.flac"), "-o", str(tmp_path / "out"),
                 "--batch-size", "2", *weights]) == 0
    for name in ("a", "b"):
        data, rate = soundfile.read(tmp_path / "out" / f"{name}.wav")
        assert rate == 24000 and len(data) % WAVTOKENIZER_HOP == 0
    assert main(["continue", str(tmp_path / "a.wav"), "-o", str(tmp_path / "more.wav"), "--seconds", "1",
                 *weights]) == 0
    assert soundfile.info(tmp_path / "more.wav").samplerate == 24000


def test_bad_arguments(dpslm, speech, tmp_path, capsys):
    with pytest.raises(ValueError, match="seconds must be positive"):
        dpslm.continue_speech(speech[0], 16000, 0)
    with pytest.raises(ValueError, match="mono"):
        dpslm.resynthesize([torch.zeros(2, 16000)], 16000)
    assert main(["resynthesize", str(tmp_path), "-o", str(tmp_path / "o"), "--weights", "vocoder=x"]) == 2
    assert "holds no audio files" in capsys.readouterr().err


def test_to_moves_every_model_of_the_system(tiny_models):
    system = DPSLM.from_pretrained(K, LMBDA, weights={k: str(v) for k, v in tiny_models.items()}, progress=False)
    assert system.to("meta") is system
    models = [system.speech_to_units.wavlm, system.speech_to_units.quantizer, system.ellav, system.wavtokenizer,
              system.ulm]
    assert {t.device.type for m in models for t in [*m.parameters(), *m.buffers()]} == {"meta"}
