"""Duration-penalised dynamic-programming (DPDP) quantisation of features into units (Kamper 2022; DP-SLM).

Each frame gets a code of the ``(K, D)`` codebook so that the squared Euclidean distances of the frames to their
codes plus ``lmbda`` per segment (a run of frames sharing one code) is minimal. ``lmbda = 0`` gives the per-frame
nearest code; larger values give fewer, longer segments. Units keep their consecutive duplicates (one per frame),
as the original ``nicolvisser/dpdp`` quantizer returns them.

The original solves this with an O(T²·K) recursion over all segment starts. :func:`dpdp` solves the same problem
with an O(T·K) Viterbi recursion and returns the SAME units, ties included (why: below). With
``D(t, k)`` the squared distance of frame ``t`` to code ``k``, ``V_t(k)`` the cost of the best segmentation of frames
``0..t-1`` whose last segment has code ``k``, ``A_t = min_k V_t(k)`` and ``S_t(k)`` the start of that last segment::

    V_1(k) = D(0, k)                              S_1(k) = 0
    V_t(k) = D(t-1, k) + min(V_{t-1}(k), A_{t-1} + lmbda)
    S_t(k) = S_{t-1}(k) if V_{t-1}(k) <= A_{t-1} + lmbda else t - 1   (stay in the segment on ties)

The last segment of frames ``0..t-1`` is ``[S_t(k*), t)`` with code ``k*``, the code minimising ``(S_t(k), k)``
among the codes with ``V_t(k) = A_t`` (the original's tie-break: longest segment, then lowest code); backtracking
from ``t = T`` decodes the units.

Why the units are the original's: unrolling the recursion gives ``V_t(k) = min_s [A_s + lmbda + sum of D(tau, k)
for tau in s..t-1]`` with ``A_0 = -lmbda`` (staying extends every earlier start by the same amount, switching is the
start ``s = t-1``), so ``A_t`` is the optimal cost of frames ``0..t-1`` (the original's shifted by a constant
that depends on ``t`` only). Staying keeps the order of the earlier starts and wins ties against switching, so
``S_t(k)`` is the *smallest* optimal start of a last segment with code ``k``. The original picks, among all optimal
(start, code) pairs, the smallest start and then the smallest code; a code can end an optimal segmentation exactly
when ``V_t(k) = A_t``, so that pair is the minimum of ``(S_t(k), k)`` over those codes, the rule above. Same
decision at every ``t``, same backtracking, same units.

``V`` is accumulated in float64 (float32 at T in the thousands loses the small differences between codes); the
distances are ``torch.cdist(features, codebook) ** 2`` as in the original, so they are the same bits.

The recursion is sequential in time, so its O(K) steps run in numpy on the CPU whatever the features' device:
four array operations per frame, vectorised over codes and over the batch. The tie-breaking decisions are taken
afterwards, vectorised over blocks of frames.

Example::

    >>> import torch
    >>> codebook = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    >>> features = torch.tensor([[0.0, 0.1], [0.9, 1.0], [0.1, 0.0], [1.0, 1.0]])
    >>> DPDPQuantizer.from_codebook(codebook, lmbda=0.0)(features)[1].tolist()
    [0, 1, 0, 1]
    >>> DPDPQuantizer.from_codebook(codebook, lmbda=2.0)(features)[1].tolist()  # one segment is cheapest
    [1, 1, 1, 1]
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError
from ..modeling import PretrainedModel
from ..nn.precision import KeepFloat32, at_least_float32
from ..nn.ragged import PAD_UNIT, Lengths

#: Frames × batch × codes handled per block when taking the tie-breaking decisions (bounds their memory).
_BLOCK_ELEMENTS = 1 << 20
_NEVER = np.iinfo(np.int64).max


@dataclass(frozen=True)
class DPDPConfig:
    num_codes: int                    # K
    dim: int                          # D, the feature dimension
    lmbda: float                      # penalty per segment, on the scale of squared distances
    num_neighbors: int | None = None  # frames may only take one of their n nearest codes; None: all K


class DPDPQuantizer(KeepFloat32, PretrainedModel):
    """The DPDP quantizer of ``nicolvisser/dpdp``: ``quantizer(features)`` returns ``(quantized, units)``.

    Holds the codebook as a ``(K, D)`` float32 buffer, so ``.to(device)`` moves it.
    """

    config_class = DPDPConfig
    model_type = "dpdp_quantizer"

    def __init__(self, config: DPDPConfig) -> None:
        super().__init__(config)
        _check_options(config.lmbda, config.num_neighbors, config.num_codes)
        self.register_buffer("codebook", torch.zeros(config.num_codes, config.dim))

    @classmethod
    def from_codebook(cls, codebook: torch.Tensor, lmbda: float, num_neighbors: int | None = None) -> DPDPQuantizer:
        """A quantizer on the codebook's device, with a float32 copy of the ``(K, D)`` codebook."""
        codebook = torch.as_tensor(codebook)
        if codebook.ndim != 2:
            raise InputError(f"a codebook is (K, D); got shape {tuple(codebook.shape)}")
        config = DPDPConfig(num_codes=codebook.shape[0], dim=codebook.shape[1], lmbda=float(lmbda),
                            num_neighbors=num_neighbors)
        quantizer = cls(config).to(codebook.device)
        quantizer.codebook.copy_(codebook.detach())
        return quantizer

    @property
    def lmbda(self) -> float:
        return self.config.lmbda

    @property
    def num_neighbors(self) -> int | None:
        return self.config.num_neighbors

    def forward(self, features: torch.Tensor, lengths: Lengths | torch.Tensor = None,
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantize ``features`` ``(T, D)`` or ``(B, T, D)`` (with optional ``lengths`` ``(B,)``).

        Returns ``(quantized, units)``: the straight-through codes ``features - (features - codebook[units]).detach()``
        (value of the codes, gradient of the features), shaped like ``features``, and the int64 units ``(T,)`` or
        ``(B, T)``. Frames beyond an item's length get unit :data:`PAD_UNIT` (-1) and quantized value 0.
        """
        units = dpdp(features, self.codebook, self.lmbda, self.num_neighbors, lengths=lengths)
        # index_select: the same values as codebook[units], several times faster on CPU.
        codes = self.codebook.to(features.dtype).index_select(0, units.clamp(min=0).flatten())
        codes = codes.view(*units.shape, self.config.dim)
        quantized = features - (features - codes).detach()
        if lengths is not None:  # whatever the padding frames hold (even NaN), their output is 0
            quantized = quantized.masked_fill((units == PAD_UNIT)[..., None], 0)
        return quantized, units


# ------------------------------------------------------------------------------------------ functional form
def squared_distances(features: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """``(T, K)`` squared Euclidean distances of ``features`` ``(T, D)`` to ``codebook`` ``(K, D)``, computed as
    ``torch.cdist(...) ** 2`` like the original, so bit-identical to it (other formulas differ at ~1e-6 relative,
    which can flip near-ties)."""
    dtype = at_least_float32(features, codebook)  # half-precision distances would decide near-ties by rounding
    return torch.cdist(features.to(dtype), codebook.to(dtype), p=2.0) ** 2


def keep_nearest(distances: torch.Tensor, num_neighbors: int | None) -> torch.Tensor:
    """Set each row's ``K - num_neighbors`` largest distances, as ``topk`` picks them, to +inf (in place), as the
    original does: a segment may then only take a code that is among the nearest of every one of its frames."""
    if num_neighbors is not None:
        farthest = distances.topk(distances.shape[1] - num_neighbors, dim=1, largest=True, sorted=True).indices
        distances.scatter_(1, farthest, math.inf)
    return distances


def dpdp(features: torch.Tensor, codebook: torch.Tensor, lmbda: float, num_neighbors: int | None = None, *,
         lengths: Lengths | torch.Tensor = None) -> torch.Tensor:
    """DPDP units of ``features`` ``(T, D)`` → ``(T,)``, or ``(B, T, D)`` → ``(B, T)`` (padding frames beyond
    ``lengths`` get :data:`PAD_UNIT`), on the features' device. Same units as the original ``dpdp``.

    The distances are computed item by item on the features' device, exactly as the original computes them for
    that item alone, so batched units equal one-by-one units.
    """
    if codebook.ndim != 2:
        raise InputError(f"a codebook is (K, D); got shape {tuple(codebook.shape)}")
    _check_options(lmbda, num_neighbors, codebook.shape[0])
    batch, lengths = _as_batch(features, codebook, lengths)
    if features.device != codebook.device:
        raise InputError(f"features are on {features.device} but the codebook is on {codebook.device}; "
                         "move the quantizer with .to(device) or the features to the codebook's device")
    dtype = np.float64 if features.dtype == torch.float64 else np.float32
    distances = np.zeros((max(lengths, default=0), len(lengths), codebook.shape[0]), dtype)
    with torch.no_grad():
        for i, length in enumerate(lengths):
            item = squared_distances(batch[i, :length], codebook)
            if not torch.isfinite(item).all():
                where = "features" if features.ndim == 2 else f"features[{i}]"
                raise InputError(f"{where} hold NaN or infinite values; the quantizer needs finite features")
            distances[:length, i] = _to_numpy(keep_nearest(item, num_neighbors))
    starts, codes = _last_segments(distances, float(lmbda))
    units = torch.from_numpy(_backtrack(starts, codes, lengths, batch.shape[1])).to(features.device)
    return units[0] if features.ndim == 2 else units


def _last_segments(distances: np.ndarray, lmbda: float) -> tuple[np.ndarray, np.ndarray]:
    """Run the O(T·K) recursion over ``distances`` ``(T, B, K)``: for every prefix length ``t`` in 1..T and item,
    the start and code of the optimal last segment, as ``(T + 1, B)`` arrays (row 0 unused)."""
    num_frames, batch_size, num_codes = distances.shape
    starts = np.zeros((num_frames + 1, batch_size), np.int64)
    codes = np.zeros((num_frames + 1, batch_size), np.int64)
    block = max(1, min(num_frames, _BLOCK_ELEMENTS // max(1, batch_size * num_codes)))
    # Rows 1.. of ``cost``/``best`` hold V_t and A_t of a block of steps; row 0 the step before the block. Before
    # frame 0, V = inf and A = -lmbda make step 1 start every segment at 0 with V_1 = D(0).
    cost = np.full((block + 1, batch_size, num_codes), math.inf)
    best = np.full((block + 1, batch_size, 1), -lmbda)
    cost_rows, best_rows = list(cost), list(best)
    switch_cost = np.empty((batch_size, 1))
    start = np.zeros(batch_size * num_codes, np.int64)  # S_t(k) at the step before the block
    for first in range(1, num_frames + 1, block):
        last = min(first + block, num_frames + 1)  # this block: prefix lengths first .. last - 1
        n = last - first
        frame_rows = list(distances[first - 1:last - 1].astype(np.float64))
        for i in range(1, n + 1):  # the sequential part: four in-place array operations per frame
            np.add(best_rows[i - 1], lmbda, out=switch_cost)
            np.minimum(cost_rows[i - 1], switch_cost, out=cost_rows[i])
            np.add(cost_rows[i], frame_rows[i - 1], out=cost_rows[i])
            np.minimum.reduce(cost_rows[i], axis=1, out=best_rows[i], keepdims=True)
        # The decisions, vectorised over the block, on (step, item * code) matrices.
        switched = (cost[:n] > best[:n] + lmbda).reshape(n, -1)
        optimal = (cost[1:n + 1] == best[1:n + 1]).reshape(n, -1)
        candidates = np.flatnonzero(optimal.any(0))  # the few codes ever optimal in this block
        # S_t(k) of the candidates: the last step t' <= t that switched (started a segment at t' - 1).
        start_at = np.where(switched[:, candidates], np.arange(first - 1, last - 1)[:, None], -1)
        np.maximum.accumulate(start_at, axis=0, out=start_at)
        np.maximum(start_at, start[candidates], out=start_at)
        # Among the optimal codes of an item, the smallest (start, code): longest segment, then lowest code.
        key = np.where(optimal[:, candidates], start_at * num_codes + candidates % num_codes, _NEVER)
        items = np.searchsorted(candidates, np.arange(batch_size) * num_codes)
        starts[first:last], codes[first:last] = np.divmod(np.minimum.reduceat(key, items, axis=1), num_codes)
        # Carry every code's segment start into the next block.
        last_switch = first + n - 2 - switched[::-1].argmax(0)
        start = np.where(switched.any(0), last_switch, start)
        cost[0], best[0] = cost[n], best[n]
    return starts, codes


def _backtrack(starts: np.ndarray, codes: np.ndarray, lengths: Sequence[int], num_frames: int) -> np.ndarray:
    """Units ``(B, num_frames)`` from the last-segment decisions, following segment starts back from each item's
    length."""
    units = np.full((len(lengths), num_frames), PAD_UNIT, np.int64)
    for i, length in enumerate(lengths):
        item_starts, item_codes = starts[:, i].tolist(), codes[:, i].tolist()
        end = length
        while end > 0:
            units[i, item_starts[end]:end] = item_codes[end]
            end = item_starts[end]
    return units


def _to_numpy(distances: torch.Tensor) -> np.ndarray:
    """float16/bfloat16 widen exactly to float32; numpy has no bfloat16."""
    if distances.dtype not in (torch.float32, torch.float64):
        distances = distances.float()
    return distances.cpu().numpy()


# ------------------------------------------------------------------------------------------ checks
def _check_options(lmbda: float, num_neighbors: int | None, num_codes: int) -> None:
    if not math.isfinite(lmbda) or lmbda < 0:
        raise InputError(f"lmbda must be a finite number ≥ 0 (a penalty per segment; 0: plain nearest codes), got "
                         f"{lmbda}")
    n = num_neighbors
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= num_codes):
        raise InputError(f"num_neighbors must be None or an integer in 1..{num_codes} (the codebook size), got {n!r}")


def _as_batch(features: torch.Tensor, codebook: torch.Tensor, lengths) -> tuple[torch.Tensor, list[int]]:
    """``features`` as ``(B, T, D)`` and the item lengths, after checking shapes."""
    if not isinstance(features, torch.Tensor):
        raise InputError(f"features must be a torch.Tensor, got {type(features).__name__}")
    if features.ndim not in (2, 3):
        raise InputError(f"features must be (T, D) or (B, T, D), got shape {tuple(features.shape)}")
    if features.shape[-1] != codebook.shape[1]:
        raise InputError(f"features have dimension {features.shape[-1]} but the codebook has {codebook.shape[1]}: "
                         "use the features of the layer the codebook was trained on")
    if not features.is_floating_point():
        raise InputError(f"features must be floating point, got {features.dtype}")
    if features.ndim == 2:
        if lengths is not None:
            raise InputError("lengths go with batched (B, T, D) features; (T, D) features are one item")
        return features[None], [features.shape[0]]
    batch_size, num_frames = features.shape[:2]
    if lengths is None:
        return features, [num_frames] * batch_size
    lengths = torch.as_tensor(lengths)
    integers = not (lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool)
    if lengths.shape != (batch_size,) or not integers:
        raise InputError(f"lengths must be {batch_size} integers (one per item), got {lengths!r}")
    lengths = lengths.tolist()
    if not all(0 <= n <= num_frames for n in lengths):
        raise InputError(f"lengths must lie in 0..{num_frames} (the padded number of frames), got {lengths}")
    return features, lengths
