"""GSLM k-means training (``speech2unit/clustering/cluster_kmeans.py``): mini-batch k-means on dense features.

Two back ends:

* :func:`fit_sklearn` runs scikit-learn's ``MiniBatchKMeans`` itself with cluster_kmeans.py's arguments
  (:class:`KMeansParams` holds its defaults), so with the same scikit-learn version the centres are bitwise the
  original's. It needs the ``kmeans`` extra (scikit-learn) and the features in memory.
* :func:`fit_torch` is the same algorithm written in torch — k-means++ seeding (greedy, 2 + ln K local trials) on
  ``init_size`` random frames, the best of ``n_init`` seedings on a validation sample, then ``max_iter`` epochs of
  mini-batches drawn with replacement, per-centre learning rates 1/count, reassignment of starved centres and
  early stopping on the smoothed batch inertia — for GPUs and for feature dumps larger than memory (a memory-mapped
  ``.npy`` is read batch by batch). Its random draws are torch's, so it finds a different local optimum than
  scikit-learn: comparable inertia, NOT the same centres.

Both return a :class:`KMeansResult` whose ``codebook`` is the :class:`~zoo.models.codebook.Codebook` that
``gslm_kmeans(weights=DIR)`` loads once saved.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, InputError, missing_dependency
from ..models.codebook import Codebook

#: Frames scored at a time when assigning a whole feature set (bounds the (rows, K) distance matrix).
_CHUNK_ROWS = 65536


@dataclass(frozen=True)
class KMeansParams:
    """``MiniBatchKMeans`` arguments, with cluster_kmeans.py's defaults (its flag names)."""

    num_clusters: int = 50
    init: str = "k-means++"
    max_iter: int = 150
    batch_size: int = 10000
    tol: float = 0.0
    max_no_improvement: int = 100
    n_init: int = 20
    reassignment_ratio: float = 0.5
    seed: int = 1369

    def __post_init__(self) -> None:
        if self.init not in ("k-means++", "random"):
            raise ConfigError(f"init must be 'k-means++' or 'random', got {self.init!r}")
        for name in ("num_clusters", "max_iter", "batch_size", "n_init", "max_no_improvement"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.tol < 0 or self.reassignment_ratio < 0:
            raise ConfigError("tol and reassignment_ratio must not be negative")


@dataclass
class KMeansResult:
    codebook: Codebook
    inertia: float            # sum over the training frames of the squared distance to the closest centre
    n_steps: int              # mini-batch steps run
    estimator: Any = None     # the fitted sklearn MiniBatchKMeans (sklearn back end)

    def log_record(self, num_frames: int) -> dict[str, Any]:
        """What cluster_kmeans.py logs: ``inertia`` (sklearn's ``inertia_``) and ``mean_inertia`` (its "Total
        intertia", ``-score(X) / N``), plus the run's size."""
        return {"split": "train", "inertia": self.inertia, "mean_inertia": self.inertia / num_frames,
                "n_steps": self.n_steps, "num_frames": num_frames, "num_clusters": self.codebook.config.num_codes,
                "dim": self.codebook.config.dim}


def check_features(features: np.ndarray, params: KMeansParams) -> np.ndarray:
    """``(N, D)`` frames (a ``(utterances, frames, D)`` dump is flattened), float, enough of them for K."""
    if features.dtype.kind != "f":
        raise InputError(f"features must be floats, got {features.dtype}")
    if features.ndim == 3:
        features = features.reshape(-1, features.shape[-1])
    if features.ndim != 2 or 0 in features.shape:
        raise InputError(f"features must be (frames, dim), got shape {features.shape}")
    if len(features) < params.num_clusters:
        raise InputError(f"{len(features)} frames cannot make {params.num_clusters} clusters")
    return features


def fit_sklearn(features: np.ndarray, params: KMeansParams, *, verbose: bool = False) -> KMeansResult:
    """scikit-learn's ``MiniBatchKMeans`` with cluster_kmeans.py's arguments, fitted on ``features`` ``(N, D)``."""
    try:
        from sklearn.cluster import MiniBatchKMeans
    except ImportError as e:
        raise missing_dependency("k-means training on the CPU (or train with --backend torch)", "scikit-learn",
                                 "kmeans") from e
    features = check_features(features, params)
    estimator = MiniBatchKMeans(
        n_clusters=params.num_clusters, init=params.init, max_iter=params.max_iter, batch_size=params.batch_size,
        tol=params.tol, max_no_improvement=params.max_no_improvement, n_init=params.n_init,
        reassignment_ratio=params.reassignment_ratio, random_state=params.seed, verbose=int(verbose),
        compute_labels=True, init_size=None,
    ).fit(features)
    centers = torch.from_numpy(np.ascontiguousarray(estimator.cluster_centers_, dtype=np.float32))
    return KMeansResult(Codebook.from_tensor(centers), float(estimator.inertia_), int(estimator.n_steps_), estimator)


def fit_torch(features: np.ndarray | torch.Tensor, params: KMeansParams, *, device: str | torch.device = "cpu",
              verbose: bool = False) -> KMeansResult:
    """Mini-batch k-means in torch on ``features`` ``(N, D)`` — an array, a memory-mapped ``.npy`` or a tensor —
    holding only a mini-batch (and the seeding sample) on ``device`` at a time. Not bitwise scikit-learn's."""
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().numpy()
    features = check_features(features, params)
    device = torch.device(device)
    n, k = len(features), params.num_clusters
    generator = torch.Generator().manual_seed(params.seed)
    batch_size = min(params.batch_size, n)
    init_size = min(max(3 * batch_size, 3 * k), n)

    def rows(index: torch.Tensor) -> torch.Tensor:
        order = np.sort(index.numpy())  # sorted reads are sequential in a memory-mapped file
        return torch.from_numpy(np.ascontiguousarray(features[order], dtype=np.float32)).to(device)

    validation = rows(torch.randint(0, n, (init_size,), generator=generator))
    best = None
    for attempt in range(params.n_init):
        sample = rows(torch.randint(0, n, (init_size,), generator=generator))
        centers = (_kmeans_plus_plus(sample, k, generator) if params.init == "k-means++"
                   else sample[torch.randperm(init_size, generator=generator)[:k].to(device)])
        inertia = _assign(validation, centers)[1].sum().item()
        if verbose:
            print(f"init {attempt + 1}/{params.n_init}: inertia {inertia:.6g} on {init_size} frames")
        if best is None or inertia < best[0]:
            best = (inertia, centers)
    centers = best[1].clone()
    counts = torch.zeros(k, dtype=torch.float64, device=device)
    n_steps = params.max_iter * n // batch_size
    ewa = ewa_min = None
    no_improvement = since_reassign = 0
    alpha = min(batch_size * 2.0 / (n + 1), 1.0)
    step = 0
    for step in range(1, n_steps + 1):
        batch = rows(torch.randint(0, n, (batch_size,), generator=generator))
        labels, distances = _assign(batch, centers)
        batch_inertia = distances.sum().item() / batch_size
        previous = centers.clone() if params.tol > 0 else None
        _update(centers, counts, batch, labels)
        since_reassign += batch_size
        if params.reassignment_ratio > 0 and ((counts == 0).any() or since_reassign >= 10 * k):
            since_reassign = 0
            _reassign(centers, counts, batch, params.reassignment_ratio, generator)
        if step == 1:  # its inertia is the seeding's, as sklearn
            continue
        ewa = batch_inertia if ewa is None else ewa * (1 - alpha) + batch_inertia * alpha
        if verbose:
            print(f"step {step}/{n_steps}: mean batch inertia {batch_inertia:.6g}, ewa inertia {ewa:.6g}")
        if previous is not None and (centers - previous).pow(2).sum().item() <= params.tol:
            break
        if ewa_min is None or ewa < ewa_min:
            no_improvement, ewa_min = 0, ewa
        else:
            no_improvement += 1
        if no_improvement >= params.max_no_improvement:
            break
    codebook = Codebook.from_tensor(centers.float().cpu())
    return KMeansResult(codebook, inertia_of(features, codebook.codebook.to(device)), step)


def inertia_of(features: np.ndarray, centers: torch.Tensor) -> float:
    """Sum over ``features`` ``(N, D)`` of the squared distance to the closest of ``centers``, read in chunks."""
    total = 0.0
    for start in range(0, len(features), _CHUNK_ROWS):
        chunk = torch.from_numpy(np.array(features[start: start + _CHUNK_ROWS], dtype=np.float32))  # a copy
        total += _assign(chunk.to(centers.device), centers)[1].double().sum().item()
    return total


def _assign(x: torch.Tensor, centers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centre of each row and its squared distance (clamped at 0 against rounding), in float32."""
    scores = torch.addmm(centers.pow(2).sum(1), x, centers.T, alpha=-2)
    best, labels = scores.min(1)
    return labels, (best + x.pow(2).sum(1)).clamp_(min=0)


def _kmeans_plus_plus(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Greedy k-means++ (Arthur & Vassilvitskii, with 2 + ln k candidates per centre, as scikit-learn)."""
    n = len(x)
    trials = 2 + int(math.log(k))
    sq_norms = x.pow(2).sum(1)
    first = int(torch.randint(0, n, (1,), generator=generator))
    centers = [x[first]]
    closest = (sq_norms - 2 * x @ x[first] + sq_norms[first]).clamp_(min=0)
    potential = closest.sum()
    for _ in range(1, k):
        draws = torch.rand(trials, generator=generator, dtype=torch.float64).to(x.device) * potential.double()
        candidates = torch.searchsorted(closest.double().cumsum(0), draws).clamp_(max=n - 1)
        distance = (sq_norms[candidates, None] - 2 * x[candidates] @ x.T + sq_norms[None]).clamp_(min=0)
        distance = torch.minimum(closest[None], distance)
        potentials = distance.sum(1)
        chosen = int(potentials.argmin())
        closest, potential = distance[chosen], potentials[chosen]
        centers.append(x[candidates[chosen]])
    return torch.stack(centers)


def _update(centers: torch.Tensor, counts: torch.Tensor, batch: torch.Tensor, labels: torch.Tensor) -> None:
    """Move each centre to the running mean of the frames it was assigned (learning rate 1/count)."""
    k = len(centers)
    batch_counts = torch.bincount(labels, minlength=k).to(counts.dtype)
    sums = torch.zeros_like(centers, dtype=torch.float64).index_add_(0, labels, batch.double())
    hit = batch_counts > 0
    new_counts = counts + batch_counts
    centers[hit] = ((centers[hit].double() * counts[hit, None] + sums[hit]) / new_counts[hit, None]).to(centers)
    counts.copy_(new_counts)


def _reassign(centers: torch.Tensor, counts: torch.Tensor, batch: torch.Tensor, ratio: float,
              generator: torch.Generator) -> None:
    """Centres with fewer than ``ratio`` × the largest count jump to random frames of the batch (at most half the
    batch); their counts restart at the smallest kept count, as scikit-learn does."""
    starved = counts < ratio * counts.max()
    if starved.sum() > 0.5 * len(batch):
        starved[counts.argsort()[int(0.5 * len(batch)):]] = False
    n = int(starved.sum())
    if n == 0:
        return
    picks = torch.randperm(len(batch), generator=generator)[:n].to(batch.device)
    centers[starved] = batch[picks]
    counts[starved] = counts[~starved].min()


def save_km_bin(result: KMeansResult, path: str, params: KMeansParams) -> None:
    """The original's ``km.bin`` (``joblib.dump`` of a fitted ``MiniBatchKMeans``), for tools that load it with
    joblib. The sklearn back end saves its own estimator; a torch fit is wrapped in one that ``predict``s."""
    try:
        import joblib
        from sklearn.cluster import MiniBatchKMeans
    except ImportError as e:
        raise missing_dependency("writing km.bin", "scikit-learn joblib", "kmeans") from e
    estimator = result.estimator
    if estimator is None:
        centers = result.codebook.codebook.numpy()
        estimator = MiniBatchKMeans(
            n_clusters=params.num_clusters, init=params.init, max_iter=params.max_iter,
            batch_size=params.batch_size, tol=params.tol, max_no_improvement=params.max_no_improvement,
            n_init=params.n_init, reassignment_ratio=params.reassignment_ratio, random_state=params.seed,
            compute_labels=True, init_size=None)
        estimator.cluster_centers_ = centers.copy()
        estimator.n_features_in_ = centers.shape[1]
        estimator._n_features_out = centers.shape[0]
        estimator._n_threads = 1
        estimator.inertia_ = result.inertia
        estimator.n_steps_ = result.n_steps
    with open(path, "wb") as f:
        joblib.dump(estimator, f)
