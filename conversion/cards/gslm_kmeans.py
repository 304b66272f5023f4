"""Cards of GSLM's k-means quantizers (``hubconf.gslm_kmeans``)."""
from __future__ import annotations

from zoo.models.codebook import DENSE_MODELS
from zoo.registry import Weights

from . import CardTemplate
from .gslm_ulm import GSLM_CITATION


def _gslm_kmeans_details(weights: Weights) -> str:
    dense = DENSE_MODELS[weights.kwargs["dense_model"]]
    layer = (f"layer {dense.layer} in the indexing of its GSLM reader" if dense.layer is not None
             else "a layer the release does not record" if dense.checkpoint != "logmel" else "no layer")
    return (f"The k-means clusters features of `{dense.checkpoint}` ({layer}). Its `codebook` is the original "
            f"`cluster_centers_` ({weights.kwargs['vocab_size']} centroids) bit for bit, read from the joblib "
            "pickle without scikit-learn; `km(features)` gives scikit-learn's `predict` units (nearest centroid, "
            "first index on ties) as int64, computed exactly rather than in float32.")


def _notebooks(weights: Weights) -> tuple[str, ...]:
    """dGSLM's Fisher set, Expresso's layer-9 sets (the voice-conversion vocoder's units), GSLM's others."""
    dense = weights.kwargs["dense_model"]
    return ("dgslm",) if dense == "hubert-fisher" else ("voice_conversion",) if "layer-9" in dense else ("gslm",)


TEMPLATES: dict[str, CardTemplate] = {
    "gslm_kmeans": CardTemplate(
        notebooks=_notebooks,
        title="k-means quantizer: {dense_model}, K = {vocab_size}",
        tags=("audio", "speech", "k-means", "discrete-units", "gslm", "textless"),
        datasets=(),
        pipeline_tag="feature-extraction",
        original_code="[facebookresearch/fairseq](https://github.com/facebookresearch/fairseq) @ "
                      "`3d262bb25690e4eb2e7d3c1309b1e9c406ca4b99` (`examples/textless_nlp/gslm/speech2unit/"
                      "clustering/cluster_kmeans.py`, `quantize_with_kmeans.py`); "
                      "[facebookresearch/textlesslib](https://github.com/facebookresearch/textlesslib) @ "
                      "`ba33d669d8284b4f7bfe81e7384e83ab799fe384` (`textless/data/kmeans_quantizer.py`)",
        usage="""
import torch

km = {load}  # K = {vocab_size}
units = km(features)  # features (T, D) of {dense_model} -> (T,) int64 units, as sklearn's predict
units, durations = torch.unique_consecutive(units, return_counts=True)  # deduplicated, as textlesslib
""",
        citation=GSLM_CITATION,
        details=_gslm_kmeans_details,
    ),
}
