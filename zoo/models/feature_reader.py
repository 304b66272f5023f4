"""The interface of GSLM's dense feature readers (fairseq ``examples/textless_nlp/gslm/speech2unit/pretrained``),
shared by the HuBERT / wav2vec 2.0 (:mod:`zoo.models.hubert`), CPC (:mod:`zoo.models.cpc`) and log-mel
(:mod:`zoo.models.logmel`) readers.

A reader is an ``nn.Module`` (move it with ``.to(device)``) with the original's ``get_feats(path, ...)``, which
reads the file as the original does (soundfile, float64 in [-1, 1], ``channel_id`` 1-based, no resampling), and
``get_feats(wav)`` / ``reader(wav)`` on a 1-D float32 waveform — exactly what soundfile gives after channel
selection — as textlesslib's readers take it. Each returns the original's ``(frames, dim)`` float32 features, on
the reader's device. Beyond the originals, ``reader(wavs, lengths)`` encodes a zero-padded batch ``(B, N)`` and
returns ``(features (B, T, dim), frame_lengths (B,))``, each item's features equal to its features alone.

Example::

    >>> import torch
    >>> from zoo.models.logmel import LogMelFeatureReader
    >>> reader = LogMelFeatureReader()
    >>> reader(torch.zeros(16000)).shape                       # 1 s at 16 kHz -> 98 frames of 80 bins
    torch.Size([98, 80])
    >>> features, frames = reader(torch.zeros(2, 16000), torch.tensor([16000, 8000]))
    >>> features.shape, frames.tolist()
    (torch.Size([2, 98, 80]), [98, 48])
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import soundfile
import torch
from torch import nn

from ..errors import AudioError, InputError
from ..nn.precision import compute_dtype
from ..nn.ragged import zero_beyond

#: The rate every GSLM dense model reads.
SAMPLE_RATE = 16_000
#: The originals warn when a file's length differs from the manifest's ``ref_len`` by more than this (samples).
REF_LEN_TOLERANCE = 160


def read_audio(path: str | os.PathLike, channel_id: int | None = None, *, downmix: bool = True,
               sample_rate: int | None = SAMPLE_RATE, ref_len: int | None = None) -> tuple[torch.Tensor, int]:
    """A file read as the GSLM readers read it: ``soundfile.read`` (float64), channel ``channel_id`` (1-based) of
    a multi-channel file, or the mean of its channels when ``downmix`` (in float64, as numpy does), then float32.
    Returns ``(wav (samples,), rate)``.

    ``sample_rate``: the rate the model reads; a file at another rate is refused (the originals assert it and
    never resample). None accepts any rate (the log-mel reader computes its filterbank at the file's rate).
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"no audio file at {path}")
    try:
        wav, rate = soundfile.read(str(path), dtype="float64")
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as e:
        raise AudioError(f"cannot read {path} as audio ({e})") from e
    if channel_id is not None:
        if wav.ndim != 2:
            raise AudioError(f"channel_id={channel_id} was given but {path} is mono; leave channel_id out")
        if isinstance(channel_id, bool) or not isinstance(channel_id, (int, np.integer)) \
                or not 1 <= channel_id <= wav.shape[1]:
            raise AudioError(f"channel_id={channel_id!r} is out of range: {path} has {wav.shape[1]} channels, "
                             f"numbered 1 to {wav.shape[1]}")
        wav = wav[:, channel_id - 1]
    if wav.ndim == 2:
        if not downmix:
            raise AudioError(f"{path} has {wav.shape[1]} channels and this reader does not mix them down (as the "
                             f"original): pass channel_id=1 ... {wav.shape[1]}")
        wav = wav.mean(-1)
    if sample_rate is not None and rate != sample_rate:
        raise AudioError(f"{path} is at {rate} Hz; the model reads {sample_rate} Hz audio and, as the original, "
                         f"does not resample. Resample it first, e.g. wav, _ = zoo.audio.load(path, "
                         f"sample_rate={sample_rate}) then reader(wav[0]), or `sox IN -r {sample_rate} OUT`")
    if ref_len is not None and abs(ref_len - len(wav)) > REF_LEN_TOLERANCE:
        warnings.warn(f"ref {ref_len} != read {len(wav)} ({path})", stacklevel=3)
    return torch.from_numpy(wav).float(), rate


class FeatureReader(nn.Module):
    """Base of the readers: subclasses implement :meth:`encode` (a padded batch → features and frame counts)."""

    #: Samples the shortest input needs for one frame.
    min_samples: int = 1
    #: Samples between two frames (16 kHz input).
    hop_length: int

    @property
    def device(self) -> torch.device:
        tensor = next(iter(self.parameters()), None)
        if tensor is None:
            tensor = next(iter(self.buffers()), torch.empty(0))
        return tensor.device

    def encode(self, wavs: torch.Tensor, lengths: list[int], *, progress: bool = False
               ) -> tuple[torch.Tensor, list[int]]:
        """Features ``(B, T, D)`` of the zero-padded float32 waveforms ``wavs`` ``(B, N)`` (on the reader's
        device) whose items have ``lengths`` samples, and each item's frame count; zeros past it."""
        raise NotImplementedError

    def read(self, source: str | os.PathLike | torch.Tensor | np.ndarray, channel_id: int | None = None,
             ref_len: int | None = None) -> torch.Tensor:
        """The 1-D float32 waveform of a file path (read as the original) or of a waveform given as it is."""
        if isinstance(source, (str, os.PathLike)):
            return read_audio(source, channel_id, ref_len=ref_len)[0]
        if channel_id is not None:
            raise InputError("channel_id selects a channel of a file; pass the channel itself as wav "
                             "(e.g. stereo[channel_id - 1])")
        return source

    def get_feats(self, source: str | os.PathLike | torch.Tensor, ref_len: int | None = None,
                  channel_id: int | None = None) -> torch.Tensor:
        """The original's ``get_feats(file_path, ref_len=None, channel_id=None)``, which also takes the 1-D
        waveform itself: features ``(frames, dim)``."""
        return self(self.read(source, channel_id, ref_len))

    @torch.no_grad()
    def forward(self, wav: torch.Tensor | np.ndarray, lengths: torch.Tensor | list[int] | None = None, *,
                progress: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Features of a 1-D float waveform at 16 kHz: ``(frames, dim)``. A zero-padded batch ``(B, N)`` gives
        ``(B, T, dim)``, and ``(features, frame_lengths)`` when ``lengths`` ``(B,)`` (samples per item) is given."""
        wav = torch.as_tensor(wav)
        if wav.ndim not in (1, 2) or not wav.is_floating_point() or wav.numel() == 0:
            raise AudioError(f"wav must be a non-empty float waveform (samples,) or a padded batch (batch, samples);"
                             f" got {tuple(wav.shape)} {wav.dtype}. Stereo: pass one channel, or the mean of them")
        if not torch.isfinite(wav).all():
            raise AudioError("wav has NaN or infinite samples; clean the audio before encoding it")
        batch = wav[None] if wav.ndim == 1 else wav
        if lengths is None:
            sizes = [batch.shape[1]] * batch.shape[0]
        else:
            sizes = torch.as_tensor(lengths).tolist()
            if wav.ndim == 1 or not isinstance(sizes, list) or len(sizes) != batch.shape[0] or any(
                    not isinstance(n, int) or not 0 < n <= batch.shape[1] for n in sizes):
                raise InputError(f"lengths must give each row of a (batch, samples) wav its sample count, between 1 "
                                 f"and {batch.shape[1]}; got {lengths!r} for shape {tuple(wav.shape)}")
        if min(sizes) < self.min_samples:
            raise AudioError(f"wav has {min(sizes)} samples, fewer than the {self.min_samples} this reader needs "
                             "for one frame; pass longer audio")
        batch = batch.to(self.device, compute_dtype(self))
        if lengths is not None:  # what lies past an item's end must not reach it
            batch = zero_beyond(batch, sizes)
        features, frames = self.encode(batch, sizes, progress=progress)
        if wav.ndim == 1:
            return features[0, : frames[0]]
        return features if lengths is None else (features, torch.tensor(frames, device=features.device))
