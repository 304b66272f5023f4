"""The audio front end: read, write, mix down, validate and resample waveforms.

Waveforms are float tensors laid out ``(channels, samples)`` (or ``(..., samples)`` for :func:`resample`), with
samples in [-1, 1]. :func:`resample` reproduces ``torchaudio.functional.resample`` (band-limited windowed-sinc
interpolation, same defaults, same numbers) in pure torch, so pipelines built on torchaudio give the same
features here. Files are read and written with libsndfile (through ``soundfile``): wav, flac, ogg, mp3 and the
other formats it knows.

Example::

    >>> import torch
    >>> wav = torch.randn(2, 24000)                      # 1 s of 24 kHz stereo
    >>> mono = to_mono(wav)                              # (1, 24000)
    >>> resample(mono, 24000, 16000).shape
    torch.Size([1, 16000])
    >>> check_waveform(torch.zeros(1, 10), min_samples=400)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    zoo.errors.AudioError: waveform has 10 samples, fewer than the 400 the model needs ...
"""
from __future__ import annotations

import functools
import math
import os
import warnings
from pathlib import Path

import numpy as np
import soundfile
import torch
import torch.nn.functional as F

from .errors import AudioError

#: torchaudio's defaults for :func:`resample`.
LOWPASS_FILTER_WIDTH = 6
ROLLOFF = 0.99
RESAMPLING_METHODS = ("sinc_interp_hann", "sinc_interp_kaiser")
#: torchaudio < 2.0's names, which torchaudio still accepts with a deprecation warning. Its code then takes the
#: Hann window only for the exact name "sinc_interp_hann", so BOTH old names get the Kaiser window there (its warning
#: says the behaviour is unchanged; the numbers say otherwise); we give the numbers torchaudio gives.
LEGACY_RESAMPLING_METHODS = {"sinc_interpolation": "sinc_interp_kaiser", "kaiser_window": "sinc_interp_kaiser"}
#: torchaudio's Kaiser window shape when ``beta`` is None.
KAISER_BETA = 14.769656459379492
#: How many resampling kernels (one per rate pair, parameters, dtype and device) are kept.
_KERNEL_CACHE_SIZE = 32


class MissingAudioFileError(AudioError, FileNotFoundError):
    """An audio path that does not exist (both an :class:`AudioError` and a :class:`FileNotFoundError`)."""


# ------------------------------------------------------------------------------------------ resampling
@functools.lru_cache(maxsize=_KERNEL_CACHE_SIZE)
@torch.inference_mode(False)  # a cached kernel must also serve later calls that record autograd
def sinc_resample_kernel(orig_freq: int, new_freq: int, lowpass_filter_width: int = LOWPASS_FILTER_WIDTH,
                         rolloff: float = ROLLOFF, resampling_method: str = "sinc_interp_hann",
                         beta: float | None = None,
                         dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
                         ) -> tuple[torch.Tensor, int]:
    """The polyphase windowed-sinc kernel ``(new, 1, 2·width + orig)`` for gcd-reduced rates, and ``width``.

    Output phase ``j`` (time ``j / new``) weights input sample ``i`` (time ``i / orig``) by a sinc low-passed at
    ``rolloff · min(orig, new)`` and windowed to ``lowpass_filter_width`` zero crossings. It is computed in
    ``dtype`` step by step as torchaudio does, so the rounding, hence the output, is the same. Treat the cached
    result as read-only.
    """
    base_freq = min(orig_freq, new_freq) * rolloff  # below both Nyquists: anti-aliasing, and no edge ringing
    width = math.ceil(lowpass_filter_width * orig_freq / base_freq)
    input_times = torch.arange(-width, width + orig_freq, dtype=dtype, device=device)[None, None] / orig_freq
    output_times = torch.arange(0, -new_freq, -1, dtype=dtype, device=device)[:, None, None] / new_freq
    t = (output_times + input_times) * base_freq
    t = t.clamp(-lowpass_filter_width, lowpass_filter_width)
    if resampling_method == "sinc_interp_hann":
        window = torch.cos(t * math.pi / lowpass_filter_width / 2) ** 2
    else:
        beta_tensor = torch.tensor(float(KAISER_BETA if beta is None else beta))
        window = torch.i0(beta_tensor * torch.sqrt(1 - (t / lowpass_filter_width) ** 2)) / torch.i0(beta_tensor)
    t = t * math.pi
    sinc = torch.where(t == 0, torch.tensor(1.0).to(t), t.sin() / t)
    return sinc * (window * (base_freq / orig_freq)), width


def resample(waveform: torch.Tensor, orig_freq: int, new_freq: int,
             lowpass_filter_width: int = LOWPASS_FILTER_WIDTH, rolloff: float = ROLLOFF,
             resampling_method: str = "sinc_interp_hann", beta: float | None = None) -> torch.Tensor:
    """Resample ``waveform`` ``(..., samples)`` from ``orig_freq`` to ``new_freq`` Hz, exactly as
    ``torchaudio.functional.resample`` (same kernel, padding and output length ``ceil(new·samples/orig)``).

    The signature is torchaudio's, so a call written for ``torchaudio.functional.resample`` runs unchanged:
    ``lowpass_filter_width`` zero crossings of the sinc on each side, ``rolloff`` (the cutoff as a fraction of
    the lower Nyquist frequency), ``resampling_method`` ``"sinc_interp_hann"`` or ``"sinc_interp_kaiser"`` (the old
    names ``"sinc_interpolation"``/``"kaiser_window"`` warn and, as in torchaudio 2.x, both take the Kaiser window)
    and the Kaiser window's ``beta`` (None: torchaudio's 14.77). Works on any device and floating dtype (the kernel
    is built in the waveform's dtype); returns the input itself when the rates are equal.

    >>> resample(torch.zeros(3, 2, 44100), 44100, 16000).shape
    torch.Size([3, 2, 16000])
    >>> resample(torch.zeros(16000), 16000, 22050, resampling_method="sinc_interp_kaiser", beta=8.555).shape
    torch.Size([22050])
    """
    if orig_freq <= 0 or new_freq <= 0:
        raise AudioError(f"sample rates must be positive, got orig_freq={orig_freq}, new_freq={new_freq}")
    if int(orig_freq) != orig_freq or int(new_freq) != new_freq:
        raise AudioError(f"sample rates must be whole numbers of Hz, got {orig_freq} and {new_freq}; scale both "
                         "by the same factor to make them integers with the same ratio")
    if resampling_method in LEGACY_RESAMPLING_METHODS:
        warnings.warn(f"resampling_method={resampling_method!r} is torchaudio's deprecated name; like torchaudio 2.x "
                      f"it resamples with {LEGACY_RESAMPLING_METHODS[resampling_method]!r}: pass that name (or "
                      "'sinc_interp_hann' for the Hann window)", DeprecationWarning, stacklevel=2)
        resampling_method = LEGACY_RESAMPLING_METHODS[resampling_method]
    if resampling_method not in RESAMPLING_METHODS:
        raise AudioError(f"unknown resampling method {resampling_method!r}; choose one of {RESAMPLING_METHODS}")
    if lowpass_filter_width <= 0:
        raise AudioError(f"lowpass_filter_width must be positive, got {lowpass_filter_width}")
    if not waveform.is_floating_point():
        raise AudioError(f"resample needs a floating-point waveform, got {waveform.dtype}; "
                         "convert integer PCM first (e.g. int16 / 32768)")
    if orig_freq == new_freq:
        return waveform
    gcd = math.gcd(int(orig_freq), int(new_freq))
    orig, new = int(orig_freq) // gcd, int(new_freq) // gcd
    kernel, width = sinc_resample_kernel(orig, new, lowpass_filter_width, rolloff, resampling_method, beta,
                                         waveform.dtype, waveform.device)
    batch_shape, length = waveform.shape[:-1], waveform.shape[-1]
    flat = F.pad(waveform.reshape(-1, 1, length), (width, width + orig))
    # Stride ``orig`` = one step per period; the ``new`` output channels are the phases within it.
    phases = F.conv1d(flat, kernel, stride=orig)
    resampled = phases.transpose(1, 2).reshape(flat.shape[0], -1)
    target_length = math.ceil(new * length / orig)
    return resampled[:, :target_length].reshape(*batch_shape, -1)


def trim_silence(waveform: np.ndarray, top_db: float = 60.0, frame_length: int = 2048,
                 hop_length: int = 512) -> np.ndarray:
    """Leading and trailing silence removed as ``librosa.effects.trim(waveform, top_db=...)`` removes it.

    Frame RMS (``frame_length`` samples every ``hop_length``, centred, zero-padded as librosa >= 0.10 pads), in dB below the loudest frame;
    the kept span runs from the first to the last frame louder than ``-top_db`` (in samples: ``first * hop`` to
    ``min(len, (last + 1) * hop)``). All-silent input becomes empty. ``waveform``: ``(samples,)``.

    >>> x = np.concatenate([np.zeros(4096), np.ones(2048), np.zeros(4096)])
    >>> len(trim_silence(x, top_db=20))     # frames 7..13 overlap the tone: samples 3584..7168
    3584
    """
    y = np.asarray(waveform)
    padded = np.pad(y, frame_length // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, frame_length)[::hop_length]
    power = np.mean(np.abs(frames) ** 2, axis=-1)
    amin = 1e-10
    db = 10.0 * np.log10(np.maximum(amin, power)) - 10.0 * np.log10(np.maximum(amin, power.max(initial=0.0)))
    loud = np.flatnonzero(db > -top_db)
    if loud.size == 0:
        return y[:0]
    return y[int(loud[0]) * hop_length: min(y.shape[-1], (int(loud[-1]) + 1) * hop_length)]


# ------------------------------------------------------------------------------------------ validation
def to_mono(waveform: torch.Tensor) -> torch.Tensor:
    """Average the channels of ``(..., channels, samples)`` into ``(..., 1, samples)``; 1-D input is returned."""
    if waveform.ndim < 2:
        return waveform
    return waveform.mean(dim=-2, keepdim=True)


def check_waveform(waveform: torch.Tensor, *, min_samples: int = 1, batched: bool = True, name: str = "waveform",
                   sample_rate: int | None = None) -> torch.Tensor:
    """Raise a clear :class:`AudioError` unless ``waveform`` is audio a model can take; return it unchanged.

    Accepted shapes: ``(samples,)`` and ``(batch, samples)`` when ``batched``, else ``(samples,)`` and
    ``(1, samples)`` (then a ``(2, samples)`` tensor is taken for stereo). ``min_samples`` is the model's receptive
    field: shorter audio yields no frame. Samples must be finite floats.
    """
    if not isinstance(waveform, torch.Tensor):
        raise AudioError(f"{name} must be a torch.Tensor, got {type(waveform).__name__}; "
                         "use zoo.audio.load(array, sample_rate=...) to convert arrays")
    shape = tuple(waveform.shape)
    if waveform.ndim == 0 or waveform.ndim > 2:
        layout = "(batch, samples)" if batched else "(1, samples)"
        hint = (" Multi-channel audio: mix it down with zoo.audio.to_mono(waveform) and drop the channel axis."
                if waveform.ndim == 3 else "")
        raise AudioError(f"{name} has shape {shape}; expected (samples,) or {layout}.{hint}")
    if not batched and waveform.ndim == 2 and shape[0] != 1:
        raise AudioError(f"{name} has shape {shape}: {shape[0]} channels where mono (1, samples) is needed; "
                         "mix it down with zoo.audio.to_mono(waveform)")
    if not waveform.is_floating_point():
        raise AudioError(f"{name} has dtype {waveform.dtype}; expected floating-point samples in [-1, 1] "
                         "(integer PCM: divide int16 by 32768)")
    if waveform.numel() == 0:
        raise AudioError(f"{name} is empty (shape {shape}); pass at least {min_samples} samples of audio")
    length = shape[-1]
    if length < min_samples:
        seconds = f" ({length / sample_rate * 1000:.1f} ms at {sample_rate} Hz)" if sample_rate else ""
        transposed = (" It looks transposed: pass (channels, samples), not (samples, channels)."
                      if waveform.ndim == 2 and shape[0] > shape[1] else "")
        raise AudioError(f"{name} has {length} samples{seconds}, fewer than the {min_samples} the model needs "
                         f"for one frame (its receptive field); pass longer audio or pad it.{transposed}")
    if not torch.isfinite(waveform).all():
        bad = int((~torch.isfinite(waveform)).sum())
        raise AudioError(f"{name} has {bad} NaN or infinite samples; clean the audio (e.g. torch.nan_to_num) "
                         "before passing it")
    return waveform


# ------------------------------------------------------------------------------------------ files and arrays
def load(source: str | os.PathLike | np.ndarray | torch.Tensor, *, sample_rate: int | None = None,
         mono: bool = True) -> tuple[torch.Tensor, int]:
    """Read audio as a float32 ``(channels, samples)`` tensor (``(1, samples)`` when ``mono``) and its rate in Hz.

    ``source`` is a file libsndfile reads (wav, flac, ogg, mp3, ...) — then ``sample_rate``, if given, is the rate
    to resample to — or an array/tensor ``(samples,)`` or ``(channels, samples)`` — then ``sample_rate`` is its
    rate and is required. Integer PCM arrays are scaled to [-1, 1] as libsndfile does (int16 / 32768).

    >>> wav, sr = load("tests/data/librispeech-1272-128104-0000.flac")
    >>> wav.shape, sr
    (torch.Size([1, 93680]), 16000)
    """
    if isinstance(source, (np.ndarray, torch.Tensor)):
        if sample_rate is None:
            raise AudioError("an array or tensor carries no sample rate: pass load(array, sample_rate=HZ)")
        waveform, rate = _from_array(source), sample_rate
    else:
        waveform, rate = _read(Path(source))
    if mono:
        waveform = to_mono(waveform)
    if sample_rate is not None and rate != sample_rate:
        waveform, rate = resample(waveform, rate, sample_rate), sample_rate
    return waveform, rate


#: Integer sample formats, which hold [-1, 1) only: louder samples are clipped when written.
INTEGER_SUBTYPES = ("PCM_S8", "PCM_U8", "PCM_16", "PCM_24", "PCM_32")


def save(path: str | os.PathLike, waveform: torch.Tensor | np.ndarray, sample_rate: int,
         subtype: str | None = None) -> Path:
    """Write ``waveform`` ``(samples,)`` or ``(channels, samples)`` to ``path``; the extension picks the format.

    ``subtype`` is libsndfile's sample format (``soundfile.available_subtypes()``): by default 32-bit float where the
    format has it (wav), so that nothing is clipped or rounded, else the format's default (flac: 16-bit). Writing
    an integer format (``"PCM_16"``) warns when samples beyond ±1 would be clipped.

    >>> import tempfile, soundfile
    >>> path = save(tempfile.mkdtemp() + "/a.wav", torch.full((4,), 1.5), 16000)
    >>> soundfile.info(path).subtype, float(load(path)[0].max())
    ('FLOAT', 1.5)
    """
    path = Path(path)
    data = torch.as_tensor(waveform).detach().to("cpu", torch.float32)
    if data.ndim not in (1, 2):
        raise AudioError(f"save takes (samples,) or (channels, samples), got shape {tuple(data.shape)}")
    file_format = path.suffix.lstrip(".").upper()
    if file_format not in soundfile.available_formats():
        raise AudioError(f"cannot write {path}: use an extension libsndfile writes: "
                         f"{', '.join('.' + f.lower() for f in soundfile.available_formats())}")
    if subtype is None:
        subtype = "FLOAT" if soundfile.check_format(file_format, "FLOAT") else soundfile.default_subtype(file_format)
    if not soundfile.check_format(file_format, subtype):
        raise AudioError(f"cannot write {path} as {subtype}: {path.suffix} files take "
                         f"{', '.join(soundfile.available_subtypes(file_format))}")
    if subtype in INTEGER_SUBTYPES and data.numel() and (peak := float(data.abs().max())) > 1:
        warnings.warn(f"{path}: {int((data.abs() > 1).sum())} samples beyond ±1 (peak {peak:.2f}) are clipped by "
                      f"the {subtype} format; write float (the default for .wav) to keep them", stacklevel=2)
    try:
        soundfile.write(path, data.T.numpy() if data.ndim == 2 else data.numpy(), sample_rate, subtype=subtype)
    except (TypeError, ValueError, soundfile.LibsndfileError) as e:
        raise AudioError(f"cannot write {path} ({e})") from e
    return path


def _read(path: Path) -> tuple[torch.Tensor, int]:
    if not path.exists():
        raise MissingAudioFileError(f"no audio file at {path}")
    if path.is_dir():
        raise AudioError(f"{path} is a directory, not an audio file")
    try:
        data, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as e:
        raise AudioError(f"cannot read {path} as audio ({e}): the format is unknown to libsndfile or the file is "
                         "corrupt. Convert it to wav or flac (e.g. `ffmpeg -i IN out.flac`)") from e
    declared = _declared_wav_bytes(path)
    if declared is not None and (held := path.stat().st_size - declared[1]) < declared[0]:
        warnings.warn(f"{path} is truncated: its header announces {declared[0]} bytes of samples but the file "
                      f"holds {held}; read the {len(data) / rate:.2f} s that are there", stacklevel=3)
    return torch.from_numpy(np.ascontiguousarray(data.T)), rate


def _declared_wav_bytes(path: Path) -> tuple[int, int] | None:
    """``(size the data chunk announces, offset of its first byte)`` of a RIFF/WAVE file, else None. libsndfile
    reads a cut-off wav without a word; comparing the two says it was cut (a streaming writer's placeholder sizes,
    0 and 0xFFFFFFFF, say nothing)."""
    with open(path, "rb") as f:
        if (head := f.read(12))[:4] != b"RIFF" or head[8:] != b"WAVE":
            return None
        while len(chunk := f.read(8)) == 8:
            size = int.from_bytes(chunk[4:], "little")
            if chunk[:4] == b"data":
                return (size, f.tell()) if 0 < size < 0xFFFFFFFF else None
            f.seek(size + size % 2, os.SEEK_CUR)
    return None


def _from_array(array: np.ndarray | torch.Tensor) -> torch.Tensor:
    waveform = torch.as_tensor(array).detach().cpu()
    if waveform.ndim == 1:
        waveform = waveform[None]
    if waveform.ndim != 2:
        raise AudioError(f"audio arrays are (samples,) or (channels, samples), got shape {tuple(waveform.shape)}")
    if waveform.shape[0] > waveform.shape[1]:
        raise AudioError(f"an audio array of shape {tuple(waveform.shape)} has more channels than samples: it looks "
                         "like (samples, channels), as soundfile returns it; pass its transpose")
    if waveform.dtype in (torch.int16, torch.int32):
        full_scale = 2.0 ** (torch.iinfo(waveform.dtype).bits - 1)
        return waveform.to(torch.float32) / full_scale
    if not waveform.is_floating_point():
        raise AudioError(f"audio arrays are float, int16 or int32 PCM; got {waveform.dtype}")
    return waveform.to(torch.float32)
