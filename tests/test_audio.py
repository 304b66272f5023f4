"""zoo.audio: torchaudio-exact resampling, file and array loading, mixdown, and the errors for bad audio."""
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from zoo import audio
from zoo.errors import AudioError

from harness import load_case

LIBRISPEECH = Path(__file__).parent / "data" / "librispeech-1272-128104-0000.flac"
TORCHAUDIO_16K_TO_24K = load_case("wavtokenizer/hubconf_resample_16k_to_24k")


def sine(freq: float, sample_rate: int, seconds: float, phase: float = 0.0) -> torch.Tensor:
    t = torch.arange(int(sample_rate * seconds), dtype=torch.float64) / sample_rate
    return (0.5 * torch.sin(2 * math.pi * freq * t + phase)).float()


def dominant_frequency(waveform: torch.Tensor, sample_rate: int) -> float:
    spectrum = torch.fft.rfft(waveform.double()).abs()
    return float(spectrum.argmax()) * sample_rate / waveform.shape[-1]


# ------------------------------------------------------------------------------------------ resample
@pytest.mark.cases("audio/*")
def test_resample_matches_torchaudio(case):
    """Each call of case.json, with torchaudio's own keyword names (resampling_method, beta, rolloff, ...)."""
    for call in case.meta["calls"]:
        options = {k: v for k, v in call.items() if k not in ("input", "output", "orig_freq", "new_freq")}
        got = audio.resample(case.io[call["input"]], call["orig_freq"], call["new_freq"], **options)
        case.assert_close(call["output"], got)


def test_resample_takes_torchaudio_positional_arguments():
    wav = torch.randn(2, 1000, generator=torch.Generator().manual_seed(0))
    by_name = audio.resample(wav, 16000, 22050, lowpass_filter_width=16, rolloff=0.85,
                             resampling_method="sinc_interp_kaiser", beta=8.555)
    assert torch.equal(audio.resample(wav, 16000, 22050, 16, 0.85, "sinc_interp_kaiser", 8.555), by_name)


@pytest.mark.parametrize("legacy", ["sinc_interpolation", "kaiser_window"])
def test_resample_takes_torchaudios_old_method_names_with_its_numbers(legacy):
    """torchaudio 2.x warns on its old names and then windows with Kaiser unless the name is "sinc_interp_hann"."""
    wav = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    with pytest.warns(DeprecationWarning, match="deprecated name"):
        got = audio.resample(wav, 16000, 24000, resampling_method=legacy)
    assert torch.equal(got, audio.resample(wav, 16000, 24000, resampling_method="sinc_interp_kaiser"))
    assert not torch.equal(got, audio.resample(wav, 16000, 24000, resampling_method="sinc_interp_hann"))


def test_resample_matches_torchaudio_librispeech_16k_to_24k():
    case = TORCHAUDIO_16K_TO_24K
    kernel, width = audio.sinc_resample_kernel(2, 3)  # 16000:24000 reduced by their gcd 8000
    assert width == 7
    case.assert_close("kernel_functional", kernel)
    got = audio.resample(case.io["wav16k"], 16000, 24000)
    case.assert_close("wav24k_functional", got)
    case.assert_close("wav24k_transform", got)


def test_resample_same_rate_is_identity():
    wav = torch.randn(2, 100)
    assert audio.resample(wav, 16000, 16000) is wav


@pytest.mark.parametrize("length", [1, 7, 441, 1000])
@pytest.mark.parametrize("rates", [(44100, 16000), (16000, 24000), (8000, 24000), (22050, 16000)])
def test_resample_length_is_ceil_of_ratio(length, rates):
    orig, new = rates
    assert audio.resample(torch.zeros(length), orig, new).shape == (math.ceil(new * length / orig),)


def test_resample_any_leading_dims_equals_row_by_row():
    wav = torch.randn(3, 2, 1234)
    out = audio.resample(wav, 44100, 16000)
    assert out.shape == (3, 2, 448)
    for i in range(3):
        for c in range(2):
            torch.testing.assert_close(out[i, c], audio.resample(wav[i, c], 44100, 16000), atol=1e-6, rtol=0)


@pytest.mark.parametrize("method", audio.RESAMPLING_METHODS)
def test_resample_reproduces_a_band_limited_sine(method):
    """Away from the edges, a 440 Hz tone resampled 44.1 kHz -> 16 kHz is the same tone sampled at 16 kHz."""
    got = audio.resample(sine(440, 44100, 0.5, phase=0.3), 44100, 16000, resampling_method=method)
    want = sine(440, 16000, 0.5, phase=0.3)
    edge = 200
    torch.testing.assert_close(got[edge:-edge], want[edge:-edge], atol=2e-3, rtol=0)


def test_resample_keeps_float64():
    wav = torch.randn(1, 4410, dtype=torch.float64)
    out = audio.resample(wav, 44100, 16000)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out.float(), audio.resample(wav.float(), 44100, 16000), atol=1e-4, rtol=0)


def test_resample_kernel_built_in_inference_mode_serves_autograd():
    with torch.inference_mode():
        audio.resample(torch.randn(1, 300), 48000, 16000)
    wav = torch.randn(1, 300, requires_grad=True)
    audio.resample(wav, 48000, 16000).sum().backward()
    assert wav.grad is not None and wav.grad.abs().sum() > 0


@pytest.mark.parametrize("kwargs, match", [
    (dict(orig_freq=0, new_freq=16000), "positive"),
    (dict(orig_freq=16000, new_freq=-1), "positive"),
    (dict(orig_freq=44100.5, new_freq=16000), "whole numbers"),
    (dict(orig_freq=16000, new_freq=8000, resampling_method="linear"), "unknown resampling method"),
    (dict(orig_freq=16000, new_freq=8000, lowpass_filter_width=0), "lowpass_filter_width"),
])
def test_resample_rejects_bad_arguments(kwargs, match):
    with pytest.raises(AudioError, match=match):
        audio.resample(torch.zeros(100), **kwargs)


def test_resample_rejects_integer_pcm():
    with pytest.raises(AudioError, match="floating-point"):
        audio.resample(torch.zeros(100, dtype=torch.int16), 16000, 8000)


# ------------------------------------------------------------------------------------------ load / save
def test_load_librispeech_flac_as_torchaudio_does():
    wav, sr = audio.load(LIBRISPEECH)
    assert sr == 16000 and wav.dtype == torch.float32
    assert torch.equal(wav, TORCHAUDIO_16K_TO_24K.io["wav16k"])  # torchaudio.load: int16 / 32768, shape (1, N)


def test_load_with_resampling_equals_torchaudio():
    wav, sr = audio.load(str(LIBRISPEECH), sample_rate=24000)
    assert sr == 24000
    TORCHAUDIO_16K_TO_24K.assert_close("wav24k_functional", wav)


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_lossless_round_trip(tmp_path, suffix):
    wav = sine(440, 16000, 0.25)[None]
    path = audio.save(tmp_path / f"tone{suffix}", wav, 16000)
    got, sr = audio.load(path)
    assert sr == 16000 and got.shape == wav.shape
    torch.testing.assert_close(got, wav, atol=1 / 32768, rtol=0)  # 16-bit PCM quantisation


@pytest.mark.parametrize("suffix", [".ogg", ".mp3"])
def test_lossy_formats_keep_the_tone(tmp_path, suffix):
    path = audio.save(tmp_path / f"tone{suffix}", sine(1000, 16000, 1.0), 16000)
    got, sr = audio.load(path)
    assert sr == 16000 and got.shape[0] == 1
    assert abs(got.shape[1] - 16000) < 2000  # codecs add a little delay and padding
    assert dominant_frequency(got[0], sr) == pytest.approx(1000, abs=2)
    assert got.pow(2).mean().sqrt() == pytest.approx(0.5 / math.sqrt(2), rel=0.1)


def test_stereo_file_is_mixed_down(tmp_path):
    left, right = sine(300, 8000, 0.1), sine(500, 8000, 0.1, phase=1.0)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, torch.stack([left, right], 1).numpy(), 8000, subtype="FLOAT")
    mono, sr = audio.load(path)
    torch.testing.assert_close(mono, ((left + right) / 2)[None], atol=1e-7, rtol=0)
    both, _ = audio.load(path, mono=False)
    assert torch.equal(both, torch.stack([left, right]))
    torch.testing.assert_close(audio.to_mono(both), mono, atol=1e-7, rtol=0)


def test_to_mono_numbers_and_shapes():
    stereo = torch.tensor([[1.0, 0.0, -1.0], [0.0, 0.5, 1.0]])
    assert audio.to_mono(stereo).tolist() == [[0.5, 0.25, 0.0]]
    assert audio.to_mono(stereo[None].expand(4, 2, 3)).shape == (4, 1, 3)
    assert torch.equal(audio.to_mono(stereo[0]), stereo[0])  # 1-D is already mono


def test_load_arrays():
    pcm = np.array([0, 16384, -32768, 32767], dtype=np.int16)
    wav, sr = audio.load(pcm, sample_rate=8000)
    assert sr == 8000 and wav.tolist() == [[0.0, 0.5, -1.0, 32767 / 32768]]
    stereo = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    wav, _ = audio.load(stereo, sample_rate=8000)
    assert wav.dtype == torch.float32 and wav.tolist() == [[0.5, 0.5]]
    assert audio.load(stereo, sample_rate=8000, mono=False)[0].shape == (2, 2)


def test_array_errors():
    with pytest.raises(AudioError, match="sample_rate"):
        audio.load(np.zeros(10, dtype=np.float32))
    with pytest.raises(AudioError, match="shape"):
        audio.load(np.zeros((1, 2, 10), dtype=np.float32), sample_rate=16000)
    with pytest.raises(AudioError, match=r"looks like \(samples, channels\).*transpose"):
        audio.load(np.zeros((100, 2), dtype=np.float32), sample_rate=16000)
    with pytest.raises(AudioError, match="bool"):
        audio.load(np.zeros(10, dtype=bool), sample_rate=16000)


def test_missing_file(tmp_path):
    with pytest.raises(audio.MissingAudioFileError, match="no audio file") as error:
        audio.load(tmp_path / "nope.wav")
    assert isinstance(error.value, FileNotFoundError) and isinstance(error.value, AudioError)


@pytest.mark.parametrize("name, content", [("notes.txt", b"hello"), ("broken.wav", b"RIFF\x00\x00garbage")])
def test_unreadable_file(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(AudioError, match="cannot read .*ffmpeg"):
        audio.load(tmp_path / name)


def test_directory_is_not_audio(tmp_path):
    with pytest.raises(AudioError, match="directory"):
        audio.load(tmp_path)


def test_save_errors(tmp_path):
    with pytest.raises(AudioError, match="cannot write"):
        audio.save(tmp_path / "x.unknownformat", torch.zeros(10), 16000)
    with pytest.raises(AudioError, match="shape"):
        audio.save(tmp_path / "x.wav", torch.zeros(1, 1, 10), 16000)


# ------------------------------------------------------------------------------------------ check_waveform
def test_check_waveform_accepts_and_returns_good_audio():
    wav = torch.randn(2, 400)
    assert audio.check_waveform(wav, min_samples=400) is wav
    first = wav[:1]
    assert audio.check_waveform(first, min_samples=400, batched=False) is first


@pytest.mark.parametrize("waveform, kwargs, match", [
    (torch.zeros(1, 0), {}, "empty"),
    (torch.zeros(0), {}, "empty"),
    (torch.zeros(1, 300), dict(min_samples=400, sample_rate=16000),
     r"300 samples \(18.8 ms at 16000 Hz\), fewer than the 400"),
    (torch.zeros(300, 2), dict(min_samples=400), "transposed"),
    (torch.tensor([[0.0, float("nan"), 0.0]]), {}, "1 NaN or infinite"),
    (torch.tensor([float("inf"), -float("inf")]), {}, "2 NaN or infinite"),
    (torch.zeros(1, 2, 400), {}, r"shape \(1, 2, 400\).*zoo.audio.to_mono"),
    (torch.tensor(0.5), {}, "shape"),
    (torch.zeros(2, 400), dict(batched=False), "2 channels where mono .*to_mono"),
    (torch.zeros(1, 400, dtype=torch.int16), {}, "int16"),
    (np.zeros((1, 400), dtype=np.float32), {}, "torch.Tensor"),
])
def test_check_waveform_errors(waveform, kwargs, match):
    with pytest.raises(AudioError, match=match):
        audio.check_waveform(waveform, **kwargs)


def test_check_waveform_names_the_argument():
    with pytest.raises(AudioError, match="^wav is empty"):
        audio.check_waveform(torch.zeros(0), name="wav")


def test_wav_is_written_as_float_by_default_and_pcm16_warns_when_it_clips(tmp_path):
    loud = torch.tensor([0.5, 1.5, -2.0, 0.25])
    path = audio.save(tmp_path / "float.wav", loud, 16000)
    assert soundfile.info(path).subtype == "FLOAT" and torch.equal(audio.load(path)[0][0], loud)
    with pytest.warns(UserWarning, match=r"2 samples beyond ±1 \(peak 2.00\) are clipped by the PCM_16 format"):
        path = audio.save(tmp_path / "pcm.wav", loud, 16000, subtype="PCM_16")
    assert audio.load(path)[0][0].tolist() == [0.5, 32767 / 32768, -1.0, 0.25]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        audio.save(tmp_path / "quiet.wav", loud / 2, 16000, subtype="PCM_16")  # nothing to clip: no warning
    with pytest.raises(AudioError, match="cannot write .* as FLOAT: .flac files take"):
        audio.save(tmp_path / "a.flac", loud, 16000, subtype="FLOAT")


def test_a_truncated_wav_is_read_with_a_warning(tmp_path):
    path = audio.save(tmp_path / "full.wav", torch.zeros(1000), 16000, subtype="PCM_16")
    (tmp_path / "cut.wav").write_bytes(path.read_bytes()[:-500])
    with pytest.warns(UserWarning, match="cut.wav is truncated: its header announces 2000 bytes of samples but the "
                                         "file holds 1500"):
        wav, _ = audio.load(tmp_path / "cut.wav")
    assert wav.shape == (1, 750)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert audio.load(path)[0].shape == (1, 1000)
