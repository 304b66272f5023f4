"""Pictures of what the models do to speech: waveforms, spectrograms with unit segments, codec codes per RVQ layer
and F0 contours. matplotlib is an optional extra (``pip install 'speechzoo[plot]'``); nothing else in speechzoo
needs it.

Every function returns a :class:`matplotlib.figure.Figure` built without ``pyplot`` (no global figure state, so a
command or a loop can draw many); save it with :func:`save` or ``fig.savefig(path)``, and in a notebook show it with
``display(fig)`` after ``%matplotlib inline``.

Example::

    >>> import torch
    >>> wav = torch.sin(torch.arange(16000) / 16000 * 2 * torch.pi * 220)        # 1 s of 220 Hz at 16 kHz
    >>> fig = spectrogram(wav, 16000, units=[7, 3, 9], durations=[10, 25, 15])  # 3 units of 20 ms frames
    >>> boundaries(fig).tolist()                                                  # seconds
    [0.2, 0.7]
    >>> len(codes(torch.randint(0, 1024, (8, 50))).axes)                          # one image per RVQ layer
    8
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from .errors import InputError, missing_dependency

#: Frames per second of the units speechzoo's encoders write (WavLM and HuBERT: 20 ms frames).
UNIT_FRAME_RATE = 50.0
#: Frames per second of YAAPT F0 (:mod:`zoo.f0`: 5 ms hops).
F0_FRAME_RATE = 200.0
#: Segments beyond which the unit ids are not written over the spectrogram (they would overlap unreadably).
MAX_LABELS = 120
#: The ``gid`` of the vertical lines that :func:`spectrogram` draws at unit boundaries (see :func:`boundaries`).
BOUNDARIES_GID = "unit_boundaries"
#: What :func:`save` writes (by the path's suffix): matplotlib's raster and vector formats.
FORMATS = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


def _figure_class() -> type:
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise missing_dependency("Plotting (zoo.plot, --plot)", "matplotlib", "plot") from e
    return Figure


def _figure(rows: int = 1, height: float = 2.5, width: float = 10.0):
    fig = _figure_class()(figsize=(width, height * rows), layout="constrained")
    return fig, fig.subplots(rows, 1, squeeze=False)[:, 0]


def _mono(wav: torch.Tensor | np.ndarray) -> np.ndarray:
    """``(N,)`` float64 from ``(N,)``, ``(1, N)`` or ``(1, 1, N)``; anything else is an :class:`InputError`."""
    x = torch.as_tensor(wav).detach().to("cpu", torch.float64)
    while x.ndim > 1 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 1 or x.numel() == 0:
        raise InputError(f"plot a mono waveform (N,) or (1, N); got shape {tuple(torch.as_tensor(wav).shape)}")
    return x.numpy()


def waveform(wav: torch.Tensor | np.ndarray | Mapping[str, torch.Tensor | np.ndarray], sample_rate: int, *,
             title: str | None = None):
    """Waveform(s) against time in seconds: one waveform ``(N,)``, or ``{label: waveform}`` drawn one per row
    (e.g. the input and its resynthesis)."""
    named = dict(wav) if isinstance(wav, Mapping) else {title or "": wav}
    fig, axes = _figure(len(named), height=1.8)
    for ax, (label, w) in zip(axes, named.items()):
        x = _mono(w)
        ax.plot(np.arange(len(x)) / sample_rate, x, linewidth=0.6)
        ax.set(xlim=(0, len(x) / sample_rate), ylabel="amplitude", title=label or None)
    axes[-1].set_xlabel("time (s)")
    return fig


def _log_spectrogram(x: np.ndarray, sample_rate: int) -> tuple[np.ndarray, float]:
    """Magnitude in dB ``(freqs, frames)`` of 25 ms Hann windows every 10 ms, and the hop in seconds."""
    n_fft = 2 ** math.ceil(math.log2(0.025 * sample_rate))
    hop = max(1, sample_rate // 100)
    signal = torch.from_numpy(x).float()
    if len(signal) < n_fft:
        signal = torch.nn.functional.pad(signal, (0, n_fft - len(signal)))
    spec = torch.stft(signal, n_fft, hop, window=torch.hann_window(n_fft), center=True, return_complex=True).abs()
    return (20 * torch.log10(spec.clamp(min=1e-5))).numpy(), hop / sample_rate


def spectrogram(wav: torch.Tensor | np.ndarray, sample_rate: int, *, units: Sequence[int] | None = None,
                durations: Sequence[int] | None = None, frame_rate: float = UNIT_FRAME_RATE,
                title: str | None = None):
    """A log-magnitude spectrogram (0 .. sample_rate / 2 Hz) with unit segments on top: a vertical line at every
    boundary between two units and each unit's id over its segment (ids are left out beyond :data:`MAX_LABELS`
    segments).

    ``durations`` are the frames each (deduplicated) unit lasted at ``frame_rate`` frames per second (50 for
    speechzoo's DP-SLM and GSLM units, as ``speechzoo encode`` writes them); :func:`boundaries` reads the lines back.
    """
    if (units is None) != (durations is None) or (units is not None and len(units) != len(durations)):
        raise InputError("give units and durations together, one duration per unit")
    x = _mono(wav)
    db, hop_seconds = _log_spectrogram(x, sample_rate)
    fig, (ax,) = _figure(height=3.2)
    seconds = len(x) / sample_rate
    top = db.max()
    ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=top - 80, vmax=top,
              extent=(0, db.shape[1] * hop_seconds, 0, sample_rate / 2))
    ax.set(xlim=(0, seconds), xlabel="time (s)", ylabel="frequency (Hz)", title=title)
    if durations is not None and len(durations):
        ends = np.cumsum(np.asarray(durations, dtype=np.float64)) / frame_rate
        ax.vlines(ends[:-1], 0, sample_rate / 2, colors="white", linewidth=0.7, alpha=0.8, gid=BOUNDARIES_GID)
        if len(units) <= MAX_LABELS:
            starts = np.concatenate([[0.0], ends[:-1]])
            size = max(5.0, min(9.0, 600 / len(units)))
            for unit, start, end in zip(units, starts, ends):
                ax.text((start + end) / 2, sample_rate / 2 * 0.97, str(int(unit)), ha="center", va="top",
                        color="white", fontsize=size, rotation=90 if len(units) > 40 else 0, clip_on=True)
    return fig


def boundaries(fig) -> np.ndarray:
    """The unit boundaries (seconds) that :func:`spectrogram` drew in ``fig``; empty when it drew none."""
    for ax in fig.axes:
        for collection in ax.collections:
            if collection.get_gid() == BOUNDARIES_GID:
                return np.array([segment[0][0] for segment in collection.get_segments()])
    return np.zeros(0)


def codes(codes: torch.Tensor | np.ndarray, *, frame_rate: float | None = None, title: str | None = None,
          names: Sequence[str] | None = None):
    """Codec codes ``(n_q, T)`` (or ``(n_q, 1, T)`` as ``SpeechTokenizer.encode`` returns them): one image row per
    RVQ layer, coloured by code id, against frames (or seconds with ``frame_rate``). ``names`` label the layers
    (default ``RVQ-0`` ...; SpeechTokenizer's layer 0 holds its semantic tokens)."""
    c = torch.as_tensor(codes).detach().cpu()
    if c.ndim == 3 and c.shape[1] == 1:
        c = c[:, 0]
    if c.ndim != 2 or c.numel() == 0:
        raise InputError(f"plot codes (n_q, T) or (n_q, 1, T); got shape {tuple(torch.as_tensor(codes).shape)}")
    names = list(names) if names is not None else [f"RVQ-{q}" for q in range(c.shape[0])]
    if len(names) != c.shape[0]:
        raise InputError(f"{len(names)} names for {c.shape[0]} RVQ layers")
    fig, axes = _figure(c.shape[0], height=0.55, width=10.0)
    end = c.shape[1] / frame_rate if frame_rate else c.shape[1]
    for ax, row, name in zip(axes, c.numpy(), names):
        ax.imshow(row[None], aspect="auto", cmap="viridis", interpolation="nearest", extent=(0, end, 0, 1))
        ax.set_yticks([])
        ax.set_ylabel(name, rotation=0, ha="right", va="center")
        ax.tick_params(labelbottom=False)
    axes[-1].tick_params(labelbottom=True)
    axes[-1].set_xlabel("time (s)" if frame_rate else "frame")
    if title:
        axes[0].set_title(title)
    return fig


def f0(contours: torch.Tensor | np.ndarray | Mapping[str, torch.Tensor | np.ndarray], *,
       frame_rate: float = F0_FRAME_RATE, title: str | None = None):
    """F0 contours in Hz against time, unvoiced frames (0 Hz) left as gaps: one contour, or ``{label: contour}``
    drawn on the same axes (e.g. ``{"F0": f0, "quantised": f0_q}``: before and after quantisation)."""
    named = dict(contours) if isinstance(contours, Mapping) else {"F0": contours}
    fig, (ax,) = _figure(height=2.8)
    longest = 0
    for label, contour in named.items():
        y = _mono(contour).copy()
        y[y <= 0] = np.nan
        ax.plot(np.arange(len(y)) / frame_rate, y, label=label, linewidth=1.2, marker=".", markersize=2)
        longest = max(longest, len(y))
    ax.set(xlim=(0, longest / frame_rate), xlabel="time (s)", ylabel="F0 (Hz)", title=title)
    ax.legend(loc="upper right")
    return fig


def check_path(path: str | Path) -> Path:
    """``path`` if :func:`save` can write its format (by suffix) and matplotlib is installed, else an error saying
    what to do (commands call it before any work, so a bad ``--plot`` costs nothing)."""
    _figure_class()
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise InputError(f"{path}: a plot is written as {', '.join(FORMATS)} (by the file's suffix)")
    return path


def save(fig, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` to ``path`` (the format from its suffix, :data:`FORMATS`), creating its folder; returns path."""
    path = check_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path
