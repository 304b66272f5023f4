"""zoo.plot: every figure rendered to PNG has the size asked for and is not blank; the spectrogram carries the unit
boundaries it was given; ``--plot FILE.png`` on ``encode``, ``tokenize`` and ``vocode`` through the console script."""
from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from zoo import plot
from zoo.errors import InputError, MissingDependencyError
from zoo.models.codebook import Codebook
from zoo.models.hifigan import CodeHiFiGAN, CodeHiFiGANConfig

from harness import FIXTURES, command, load_case

SPEECH = Path(__file__).parent / "data/librispeech-1272-128104-0000.flac"
ST_CASE = load_case("speechtokenizer/tiny_hop320_bilstm")
WAVLM_PT = next((FIXTURES / "wavlm/tiny_large_like_speech/original").glob("*.pt"))


@pytest.fixture(scope="module")
def speech() -> torch.Tensor:
    return torch.from_numpy(soundfile.read(SPEECH, dtype="float32")[0][:24_000])


def pixels(png: bytes | Path) -> np.ndarray:
    """The RGB pixels of a PNG, floats in 0..1, (height, width, 3)."""
    from matplotlib.image import imread

    return imread(io.BytesIO(png) if isinstance(png, bytes) else png, format="png")[..., :3]


def rendered(fig) -> tuple[np.ndarray, list[np.ndarray]]:
    """The figure's pixels at 100 dpi, and the pixels inside each of its axes (frame and ticks left out)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    image = pixels(buffer.getvalue())
    insides = []
    for ax in fig.axes:   # window extents count from the bottom left, image rows from the top
        box = ax.get_window_extent()
        top, bottom = image.shape[0] - int(box.y1) + 2, image.shape[0] - int(box.y0) - 2
        insides.append(image[top:bottom, int(box.x0) + 2: int(box.x1) - 2])
    return image, insides


def assert_drawn(image: np.ndarray, size: tuple[int, int], insides: list[np.ndarray] = ()) -> None:
    """The image is ``size`` (width, height) pixels and not blank: its pixels vary, and so do those inside each
    axes (something was drawn in it, not only a frame and ticks)."""
    assert image.shape[1::-1] == size
    assert image.std() > 0.05, "the figure is blank"
    for i, inside in enumerate(insides):
        assert inside.size and inside.std() > 0.02, f"axes {i} is blank"


def test_a_blank_figure_fails_the_check():
    fig, _ = plot._figure()   # one empty axes: a frame and ticks, nothing inside
    image, insides = rendered(fig)
    with pytest.raises(AssertionError, match="axes 0 is blank"):
        assert_drawn(image, (1000, 250), insides)


def test_every_figure_renders(speech):
    codes = torch.randint(0, 1024, (8, 1, 75), generator=torch.Generator().manual_seed(0))
    f0 = torch.where(torch.arange(300) % 100 < 70, 120 + 20 * torch.sin(torch.arange(300) / 20), torch.zeros(300))
    figures = {
        "waveform": (plot.waveform(speech, 16000), (1000, 180)),
        "waveforms": (plot.waveform({"input": speech, "resynthesis": speech.flip(0)}, 16000), (1000, 360)),
        "spectrogram": (plot.spectrogram(speech, 16000, units=[3, 7, 1], durations=[20, 30, 25]), (1000, 320)),
        "codes": (plot.codes(codes, frame_rate=50), (1000, 440)),
        "f0": (plot.f0({"F0": f0, "quantised": (f0 / 10).round() * 10}), (1000, 280)),
    }
    for name, (fig, size) in figures.items():
        image, insides = rendered(fig)
        assert len(insides) == {"waveforms": 2, "codes": 8}.get(name, 1), name
        assert_drawn(image, size, insides)


def test_spectrogram_draws_the_boundaries_and_ids_it_is_given(speech):
    units, durations = [5, 12, 5, 40], [10, 15, 20, 30]
    fig = plot.spectrogram(speech, 16000, units=units, durations=durations)
    np.testing.assert_allclose(plot.boundaries(fig), [0.2, 0.5, 0.9])
    assert [t.get_text() for t in fig.axes[0].texts] == ["5", "12", "5", "40"]
    assert plot.boundaries(plot.spectrogram(speech, 16000)).size == 0
    many = plot.spectrogram(speech, 16000, units=list(range(200)), durations=[1] * 200)
    assert len(plot.boundaries(many)) == 199 and not many.axes[0].texts   # ids left out: they would overlap


def test_codes_draw_one_row_per_layer():
    codes = torch.arange(40).reshape(4, 10)
    fig = plot.codes(codes, names=["semantic", "a1", "a2", "a3"])
    assert [ax.get_ylabel() for ax in fig.axes] == ["semantic", "a1", "a2", "a3"]
    np.testing.assert_array_equal(fig.axes[2].images[0].get_array()[0], np.arange(20, 30))


def test_bad_input_is_refused(tmp_path):
    with pytest.raises(InputError, match="one duration per unit"):
        plot.spectrogram(torch.zeros(800), 16000, units=[1, 2], durations=[3])
    with pytest.raises(InputError, match="mono waveform"):
        plot.waveform(torch.zeros(2, 800), 16000)
    with pytest.raises(InputError, match=r"codes \(n_q, T\)"):
        plot.codes(torch.zeros(2, 3, 4))
    with pytest.raises(InputError, match=r"\.png"):
        plot.save(plot.waveform(torch.ones(80), 16000), tmp_path / "x.wav")


def test_missing_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(MissingDependencyError, match=r"matplotlib.*\.\[plot\]"):
        plot.waveform(torch.ones(80), 16000)


# ------------------------------------------------------------------------------------------ --plot
@pytest.fixture(scope="module")
def corpus(tmp_path_factory, speech) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    soundfile.write(root / "a.wav", speech.numpy(), 16000)
    soundfile.write(root / "b.wav", speech[:8000].numpy(), 16000)
    return root


def speechzoo(*args) -> str:
    result = command(["speechzoo", *args])
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.slow   # three runs of the console script
def test_plot_flags_of_the_commands(convert, corpus, tmp_path):
    wavlm = convert("wavlm", WAVLM_PT)
    codebook = Codebook.from_tensor(torch.randn(20, 64, generator=torch.Generator().manual_seed(0)), layer=11)
    codebook.save_pretrained(tmp_path / "codebook")
    out = speechzoo("encode", corpus, "--k", 20, "--lmbda", 0, "-o", tmp_path / "units.jsonl", "--weights",
                    f"wavlm={wavlm}", "--weights", f"codebook={tmp_path / 'codebook'}", "--plot",
                    tmp_path / "figs/units.png")
    assert f"drew a to {tmp_path / 'figs/units.png'}" in out
    assert_drawn(pixels(tmp_path / "figs/units.png"), (1000, 320))

    st = convert("speechtokenizer", ST_CASE.original / "config.json", ST_CASE.original / "SpeechTokenizer.pt")
    out = speechzoo("tokenize", corpus, "-o", tmp_path / "codes", "--weights", st, "--plot", tmp_path / "codes.png")
    assert "drew the codes of" in out
    image = pixels(tmp_path / "codes.png")
    assert_drawn(image, (1000, image.shape[0]))
    assert image.shape[0] >= 2 * 55   # one row per RVQ layer

    torch.manual_seed(0)
    vocoder = CodeHiFiGAN(CodeHiFiGANConfig(upsample_rates=(5, 4, 2), upsample_kernel_sizes=(11, 8, 4),
                                            upsample_initial_channel=32, resblock_kernel_sizes=(3,),
                                            resblock_dilation_sizes=((1, 3),), num_embeddings=20, embedding_dim=16,
                                            model_in_dim=16, code_hop_size=40))
    vocoder.eval().save_pretrained(tmp_path / "vocoder")
    speechzoo("vocode", tmp_path / "units.jsonl", "-o", tmp_path / "wavs", "--weights", tmp_path / "vocoder",
              "--plot", tmp_path / "wave.png")
    assert_drawn(pixels(tmp_path / "wave.png"), (1000, 180))


def test_bad_plot_path_is_refused_before_any_work(corpus, tmp_path):
    result = command(["speechzoo", "encode", corpus, "--k", "20", "--lmbda", "0", "-o", tmp_path / "u.jsonl",
                      "--plot", tmp_path / "units.wav"])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "a plot is written as .png" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "u.jsonl").exists()
