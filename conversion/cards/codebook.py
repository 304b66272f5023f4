"""Cards of the k-means codebooks (``hubconf.codebook``)."""
from __future__ import annotations

from zoo.registry import Weights, all_weights

from . import CardTemplate
from .citations import DPSLM_CITATION, WAVLM_CITATION

#: Bits per second of plain k-means units (argmin), from the WavLM-codebooks README.
KMEANS_BITRATES = {100: 192, 200: 243, 500: 320, 1000: 386, 2000: 414}


def _kmeans_details(weights: Weights) -> str:
    k = weights.kwargs["k"]
    lmbdas = sorted(w.kwargs["lmbda"] for w in all_weights() if w.entry_point == "ulm" and w.kwargs.get("k") == k)
    trained = (f"DP-SLM released unit language models for DPDP units of this codebook at λ ∈ "
               f"{{{', '.join(map(str, lmbdas))}}} (`hubconf.ulm(k={k}, lmbda=...)`)." if lmbdas else
               "DP-SLM released no downstream model for this codebook size.")
    rate = f" Plain nearest-code units run at {KMEANS_BITRATES[k]} bits per second." if k in KMEANS_BITRATES else ""
    return (f"The codebook is the `({k}, 1024)` float32 tensor of k-means centroids (faiss, k-means++ init, "
            f"Euclidean); the release does not say which audio it was trained on.{rate} {trained}")


TEMPLATES: dict[str, CardTemplate] = {
    "codebook": CardTemplate(
        notebooks=("dpslm",),
        title="WavLM-Large layer-{layer} k-means codebook, K = {k}",
        tags=("audio", "speech", "k-means", "discrete-units", "wavlm", "dp-slm", "textless"),
        datasets=(),
        pipeline_tag="feature-extraction",
        original_code="[nicolvisser/WavLM-codebooks](https://github.com/nicolvisser/WavLM-codebooks) @ "
                      "`d507263b4b78351045de6fe4576381641b8df1e7` (`hubconf.codebook`, `kmeans/train.py`); DPDP: "
                      "[nicolvisser/dpdp](https://github.com/nicolvisser/dpdp) @ "
                      "`0925621e0d89061821243efeb75bfb856d018d57`",
        usage="""
import torch
from zoo import audio

codebook = {load}  # ({k}, 1024)
wavlm, extract_features = torch.hub.load("speechzoo/speechzoo", "wavlm_large", trust_repo=True)
wav, sr = audio.load("speech.flac")
features = extract_features(wavlm, wav, sr, layer={layer})  # (T, 1024) at 50 Hz

units = torch.cdist(features, codebook).argmin(dim=1)  # k-means units, one per frame

# DP-SLM's coarser units: duration-penalised dynamic programming over the same codebook
quantizer = torch.hub.load("speechzoo/speechzoo", "dpdp_quantizer_from_codebook", codebook, lmbda=4500, trust_repo=True)
quantized_features, units = quantizer(features)
units = torch.unique_consecutive(units)
""",
        citation=DPSLM_CITATION + "\n" + WAVLM_CITATION,
        details=_kmeans_details,
    ),
}
