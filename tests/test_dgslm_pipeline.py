"""dGSLM end to end on tiny models served by a loopback Hub: ``DialogueGSLM.from_pretrained()`` (Fisher HuBERT reader,
k-means, SpeechDLM, unit HiFi-GAN under their registry repo ids) against the same steps done by hand, and
``speechzoo dialogue`` writing a playable stereo file.

The tiny models are tests/tiny_models.py's ``dgslm``: the HuBERT and SpeechDLM of the original fixtures (converted
with ``python -m conversion``); the k-means (20
centroids over the HuBERT's features: the SpeechDLM's 20 units) and the vocoder (a speaker table of 5 rows) are
random models of the released layouts. The conversation is the LibriSpeech utterance on one channel and a later
part of it on the other.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import soundfile
import torch

import hubconf
from zoo.cli import main as cli_main
from zoo.errors import InputError
from zoo.pipelines.dgslm import SPEAKERS, DialogueGSLM

import tiny_models as tiny

SPEECH = Path(__file__).parent / "data" / "librispeech-1272-128104-0000.flac"
HOP = tiny.DGSLM_HOP
SECONDS = 0.2                # 10 new frames per channel

pytestmark = pytest.mark.slow   # loads four models and generates


@pytest.fixture(scope="module")
def released(convert, tmp_path_factory) -> tiny.Models:
    return tiny.dgslm(convert, tmp_path_factory.mktemp("dgslm"))


@pytest.fixture(scope="module")
def weights(released) -> dict[str, Path]:
    return {name: directory for name, (_, directory) in released.items()}


@pytest.fixture
def hub(released, loopback_hub):
    return loopback_hub.add_models(released)


@pytest.fixture(scope="module")
def conversation() -> torch.Tensor:
    speech = torch.from_numpy(soundfile.read(SPEECH, dtype="float32")[0])
    return torch.stack([speech[:16_000], speech[40_000:56_000]])


def units_by_hand(weights, wav: torch.Tensor) -> str:
    """One channel as dgslm_utils' HubertTokenizer: reader at the k-means' layer, nearest centroid, every frame."""
    kmeans = hubconf.gslm_kmeans(weights=weights["kmeans"])
    reader = hubconf.hubert_feature_reader(layer=kmeans.config.layer, weights=weights["dense"])
    return " ".join(map(str, kmeans(reader(wav)).tolist()))


def test_continue_dialogue_equals_the_steps_by_hand(hub, weights, conversation):
    dialogue = DialogueGSLM.from_pretrained(progress=False)
    stereo = dialogue.continue_dialogue(conversation, SECONDS, seed=7)

    prompt = {"unitA": units_by_hand(weights, conversation[0]), "unitB": units_by_hand(weights, conversation[1])}
    assert dialogue.encode([conversation]) == [prompt]
    frames = len(prompt["unitA"].split())
    assert frames == 16_000 // HOP - 1   # HuBERT's conv stack: 49 frames in one second
    speech_dlm = hubconf.speech_dlm(weights=weights["speech_dlm"]).eval()
    torch.manual_seed(7)
    continued = speech_dlm.sample(prompt, beam=5, sampling=True, max_len_a=0, max_len_b=frames + 10)
    for ch in ("unitA", "unitB"):
        assert continued[ch].startswith(prompt[ch]) and len(continued[ch].split()) == frames + 10
    assert dialogue.continue_units([prompt], SECONDS, seed=7) == [continued]

    vocoder = hubconf.hifigan_unit_vocoder(weights=weights["vocoder"])
    expected = [vocoder(torch.tensor([int(u) for u in continued[ch].split()]), speaker=speaker)[0, 0]
                for ch, speaker in zip(("unitA", "unitB"), SPEAKERS)]
    assert stereo.shape == (2, (frames + 10) * HOP)
    torch.testing.assert_close(stereo, torch.stack(expected), atol=1e-5, rtol=0)
    assert torch.equal(stereo, dialogue.continue_dialogue(conversation, SECONDS, seed=7))   # seeded: reproducible


def test_batch_of_dialogues_equals_one_by_one(hub, conversation):
    dialogue = DialogueGSLM.from_pretrained(progress=False)
    other = conversation.flip(0)[:, :12_000]
    together = dialogue.encode([conversation, other], batch_size=4)
    assert together == dialogue.encode([conversation]) + dialogue.encode([other])
    greedy = dict(sampling=False, beam=1)
    assert (dialogue.continue_units(together, SECONDS, **greedy)
            == dialogue.continue_units(together[:1], SECONDS, **greedy)
            + dialogue.continue_units(together[1:], SECONDS, **greedy))


def test_unspeakable_units_repeat_the_unit_before(hub):
    dialogue = DialogueGSLM.from_pretrained(progress=False)
    with_unk = dialogue.vocode({"unitA": "<unk> 3 4 <unk> madeupword0000 5", "unitB": "1 1 2 2 3 3"})
    plain = dialogue.vocode({"unitA": "3 3 4 4 4 5", "unitB": "1 1 2 2 3 3"})
    torch.testing.assert_close(with_unk, plain)


def test_bad_input_is_refused(hub, conversation):
    dialogue = DialogueGSLM.from_pretrained(progress=False)
    with pytest.raises(InputError, match="two mono files"):
        dialogue.encode([conversation[0]])
    with pytest.raises(InputError, match="seconds must be positive"):
        dialogue.continue_dialogue(conversation, 0)
    with pytest.raises(InputError, match="exceed the SpeechDLM's"):
        dialogue.continue_dialogue(conversation, 10_000)
    with pytest.raises(InputError, match="components are"):
        DialogueGSLM.from_pretrained(weights={"tacotron2": "x"})


# ------------------------------------------------------------------------------------------ command line
def test_cli_writes_the_stereo_continuation(hub, tmp_path, conversation, capsys):
    soundfile.write(tmp_path / "a_b.wav", conversation.T.numpy(), 16_000)
    soundfile.write(tmp_path / "a.wav", conversation[0].numpy(), 16_000)
    soundfile.write(tmp_path / "b.flac", conversation[1].numpy(), 16_000)
    out = tmp_path / "out" / "dialogue.wav"
    assert cli_main(["dialogue", str(tmp_path / "a_b.wav"), "-o", str(out), "--seconds", str(SECONDS),
                     "--seed", "7"]) == 0
    data, rate = soundfile.read(out, dtype="float32", always_2d=True)
    assert rate == 16_000 and data.shape == (59 * HOP, 2) and abs(data).max() > 0
    expected = DialogueGSLM.from_pretrained(progress=False).continue_dialogue(conversation, SECONDS, seed=7)
    torch.testing.assert_close(torch.from_numpy(data.T), expected.clamp(-1, 1), atol=2 ** -15 + 1e-5, rtol=0)

    two = tmp_path / "two.wav"
    assert cli_main(["dialogue", str(tmp_path / "a.wav"), str(tmp_path / "b.flac"), "-o", str(two),
                     "--seconds", str(SECONDS), "--seed", "7"]) == 0
    assert (soundfile.read(two, dtype="float32")[0] == data).all()

    assert cli_main(["dialogue", str(tmp_path / "a.wav"), "-o", str(tmp_path / "mono.wav")]) == 2
    err = capsys.readouterr().err
    assert "1 channel(s)" in err and "speechzoo dialogue A.wav B.wav" in err
    assert not (tmp_path / "mono.wav").exists()
