"""GSLM end to end on tiny models served by a loopback Hub: ``GSLM.from_pretrained(dense="hubert", vocab_size=100)``
(reader, k-means, unit LM, Tacotron2, WaveGlow under their registry repo ids) against the same steps done by hand,
and ``speechzoo gslm synthesize / resynthesize / continue`` writing playable audio.

The tiny models are tests/tiny_models.py's ``gslm``: the HuBERT and WaveGlow of the original fixtures (converted);
random k-means, unit LM and Tacotron2 of the released layouts (the Tacotron2 through its original checkpoint format
and converter). The Tacotron2's gate never fires, so every utterance has ``MAX_FRAMES`` mel frames.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import soundfile
import torch

import hubconf
from zoo.cli import main as cli_main
from zoo.errors import InputError
from zoo.pipelines.gslm import GSLM

import tiny_models as tiny

SPEECH = Path(__file__).parent / "data" / "librispeech-1272-128104-0000.flac"
LAYER, K = tiny.HUBERT_LAYER, tiny.GSLM_K
MAX_FRAMES = 24   # mel frames per utterance: 6144 samples at 22.05 kHz
HOP = 256

pytestmark = pytest.mark.slow   # every test loads the five models and synthesizes


@pytest.fixture(scope="module")
def released(convert, tmp_path_factory) -> tiny.Models:
    return tiny.gslm(convert, tmp_path_factory.mktemp("gslm"))


@pytest.fixture(scope="module")
def weights(released) -> dict[str, Path]:
    return {name: directory for name, (_, directory) in released.items()}


@pytest.fixture
def hub(released, loopback_hub):
    return loopback_hub.add_models(released)


@pytest.fixture(scope="module")
def speech() -> torch.Tensor:
    return torch.from_numpy(soundfile.read(SPEECH, dtype="float32")[0])


@pytest.fixture
def gslm(hub) -> GSLM:
    return GSLM.from_pretrained(dense="hubert", vocab_size=K, max_decoder_steps=MAX_FRAMES, progress=False)


def units_by_hand(weights, wav: torch.Tensor) -> torch.Tensor:
    reader = hubconf.hubert_feature_reader(layer=LAYER, weights=weights["dense"])
    return hubconf.gslm_kmeans(weights=weights["kmeans"])(reader(wav))


def speech_by_hand(weights, units: torch.Tensor, seed: int, frames: int = MAX_FRAMES) -> torch.Tensor:
    """Tacotron2 → WaveGlow (sigma 0.666) → denoiser (0.1), drawing from one generator, as fairseq's
    synthesize_audio does from its global random state."""
    taco = hubconf.tacotron2(weights=weights["tacotron2"], max_decoder_steps=frames)
    wg = hubconf.waveglow(weights=weights["waveglow"])
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        _, mel, _, _ = taco.inference(taco.encode(units)[None], generator=g)
        audio = wg.infer(mel, sigma=0.666, generator=g)
        return hubconf.waveglow_denoiser(wg)(audio, strength=0.1)[0, 0]


# ------------------------------------------------------------------------------------------ library
def test_encode_and_resynthesize_equal_the_steps_by_hand(gslm, weights, speech):
    short = speech[:24_000]
    units = gslm.encode([speech, short])
    assert torch.equal(units[0], units_by_hand(weights, speech))
    assert torch.equal(units[1], units_by_hand(weights, short))
    assert torch.equal(gslm.encode(speech, deduplicate=True)[0], torch.unique_consecutive(units[0]))

    resynthesized = gslm.resynthesize([short], seed=7)
    torch.testing.assert_close(resynthesized[0], speech_by_hand(weights, units[1], seed=7), atol=1e-5, rtol=1e-4)
    assert resynthesized[0].shape == (MAX_FRAMES * HOP,) and resynthesized[0].abs().max() > 0
    assert torch.equal(gslm.resynthesize([short], seed=7)[0], resynthesized[0]), "a seed makes it reproducible"

    at_16k = gslm.resynthesize([short], seed=7, output_sample_rate=16_000)[0]
    assert at_16k.shape == (math.ceil(MAX_FRAMES * HOP * 16_000 / 22_050),)
    from_44k = gslm.encode(torch.repeat_interleave(short, 2), sample_rate=32_000)[0]   # resampled to 16 kHz first
    assert from_44k.shape == units[1].shape


def test_batches_equal_one_by_one(gslm, speech):
    u2s = gslm.unit_to_speech
    units = [u.tolist() for u in gslm.encode([speech[:20_000], speech[40_000:70_000], speech[:8_000]])]
    limits = [MAX_FRAMES, 10, None]
    together = u2s.synthesize(units, seed=None, max_frames=limits)   # drawn at random: compare shapes only
    assert [len(s) for s in together] == [MAX_FRAMES * HOP, 10 * HOP, MAX_FRAMES * HOP]
    masks = torch.rand(MAX_FRAMES, 2, 3, 16) < 0.5
    ids = [u2s.tacotron2.encode(u) for u in units]
    batched = u2s.tacotron2.infer_batch(ids, prenet_dropout_masks=masks, max_decoder_steps=limits)
    for b, i in enumerate(ids):
        alone = u2s.tacotron2.infer_batch([i], prenet_dropout_masks=masks[:, :, b:b + 1],
                                          max_decoder_steps=[limits[b]])[0]
        torch.testing.assert_close(batched[b].mel, alone.mel, atol=1e-5, rtol=0)


def test_continue_speech_samples_from_the_prompt(gslm, weights, speech):
    prompt = speech[:16_000]
    continued = gslm.continue_speech(prompt, seconds=0.2, temperature=0.7, seed=3)
    assert continued.shape == (min(MAX_FRAMES * HOP, round(1.2 * 22_050)),)
    assert torch.isfinite(continued).all() and continued.abs().max() > 0
    assert torch.equal(continued, gslm.continue_speech(prompt, seconds=0.2, temperature=0.7, seed=3))
    # the unit LM saw the deduplicated prompt and sampled on, as sample.py with --prefix-size -1
    dedup = " ".join(map(str, torch.unique_consecutive(units_by_hand(weights, prompt)).tolist()))
    line = gslm.unit_lm.sample_prompts([f"prompt|{dedup}"], beam=1, sampling=True, temperature=0.7,
                                       max_len_b=len(dedup.split()) + 10, prefix_size=-1, seed=3)[0]
    assert line.partition("|")[2].startswith(dedup)
    with pytest.raises(InputError, match="seconds must be positive"):
        gslm.continue_speech(prompt, seconds=0)


def test_without_the_unit_lm_continuation_is_refused(hub):
    gslm = GSLM.from_pretrained(vocab_size=K, with_unit_lm=False, progress=False)
    assert gslm.unit_lm is None
    with pytest.raises(InputError, match="without its unit LM"):
        gslm.continue_speech(torch.zeros(16_000), seconds=1.0)
    with pytest.raises(InputError, match="components are"):
        GSLM.from_pretrained(vocab_size=K, weights={"vocoder": "x"})


# ------------------------------------------------------------------------------------------ command line
def read_wav(path: Path) -> tuple[torch.Tensor, int]:
    data, rate = soundfile.read(path, dtype="float32")
    assert soundfile.info(path).subtype == "FLOAT"     # nothing clipped or rounded (--subtype PCM_16: the original's)
    return torch.from_numpy(data), rate


def test_cli_synthesize_reads_quantized_units(hub, weights, tmp_path, capsys):
    units = [[int(u) for u in torch.randint(K, (40,), generator=torch.Generator().manual_seed(s))] for s in (1, 2)]
    (tmp_path / "units.txt").write_text("".join(f"utt{i}|{' '.join(map(str, u))}\n" for i, u in enumerate(units))
                                        + "bad|500 501 502\n")
    out = tmp_path / "out"
    code = cli_main(["gslm", "synthesize", str(tmp_path / "units.txt"), "-o", str(out), "--vocab-size", str(K),
                     "--max-decoder-steps", str(MAX_FRAMES), "--seed", "5", "--batch-size", "1", "--skip-errors"])
    assert code == 2, "the line of another quantizer's units is reported, the others are written"
    assert "bad: none of the 3 units" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["utt0.wav", "utt1.wav"]
    wav, rate = read_wav(out / "utt0.wav")
    assert rate == 22_050 and wav.shape == (MAX_FRAMES * HOP,)
    torch.testing.assert_close(wav, speech_by_hand(weights, torch.tensor(units[0]), seed=5), atol=1e-5, rtol=0)


def test_cli_resynthesize_and_continue_write_playable_audio(hub, tmp_path, speech, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    soundfile.write(inputs / "a.flac", speech[:20_000].numpy(), 16_000)
    soundfile.write(inputs / "b.wav", speech[30_000:50_000].numpy(), 16_000)
    (inputs / "broken.wav").write_bytes(b"RIFF....WAVEfmt ")
    out = tmp_path / "out"
    code = cli_main(["gslm", "resynthesize", str(inputs), "-o", str(out), "--dense", "hubert", "--vocab-size", str(K),
                     "--max-decoder-steps", str(MAX_FRAMES), "--16k", "--seed", "1", "--skip-errors"])
    assert code == 2 and "broken.wav" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["a.wav", "b.wav"]
    for name in ("a.wav", "b.wav"):
        wav, rate = read_wav(out / name)
        assert rate == 16_000 and len(wav) == math.ceil(MAX_FRAMES * HOP * 16_000 / 22_050) and wav.abs().max() > 0

    code = cli_main(["gslm", "continue", str(inputs / "a.flac"), "-o", str(tmp_path / "c" / "more.wav"),
                     "--vocab-size", str(K), "--seconds", "0.1", "--max-decoder-steps", str(MAX_FRAMES),
                     "--seed", "2"])
    assert code == 0
    wav, rate = read_wav(tmp_path / "c" / "more.wav")
    assert rate == 22_050 and len(wav) == MAX_FRAMES * HOP and wav.abs().max() > 0
