"""torch.hub entry points of speechzoo.

Each entry point keeps the call signature and return value of the original one-liner it replaces, so code written
for ``torch.hub.load("nicolvisser/WavLM-codebooks", "wavlm_large")`` and friends keeps working when only the repo
name changes; each also takes ``weights=``: a local directory (config.json + model.safetensors, as written by
``python -m conversion``) or a Hub repo id. Without it, the registry's Hub mirror is used, then the original
release, converted on the fly (see ``zoo.download``). Weights are always read from safetensors; nothing is
unpickled.

    >>> import torch
    >>> model, extract_features = torch.hub.load("speechzoo/speechzoo", "wavlm_large")  # doctest: +SKIP
"""
dependencies = ["torch", "numpy", "safetensors", "huggingface_hub", "soundfile", "tqdm"]


def codebook(layer, k, map_location="cpu", progress=True, weights=None):
    """The ``(K, D)`` k-means codebook of WavLM-Large layer ``layer`` with ``k`` codes, as DP-SLM released them
    for layer 11 and k in {100, 200, 500, 1000, 2000} (any other pair raises, listing them).

    >>> cb = codebook(layer=11, k=500)                      # doctest: +SKIP
    >>> units = torch.cdist(features, cb).argmin(dim=1)     # doctest: +SKIP
    """
    from zoo.models.kmeans import load_codebook

    return load_codebook(layer, k, map_location, progress, weights).codebook
