"""k-means codebooks over speech features: GSLM's k-means quantizers and DP-SLM's WavLM-Large codebooks.

Both originals keep a ``(K, D)`` matrix of centroids and map each feature frame to its nearest centroid:

* GSLM (``speech2unit/clustering/quantize_with_kmeans.py``, textlesslib's ``KMeansQuantizer``) pickles a fitted
  scikit-learn ``MiniBatchKMeans`` (``km.bin``) and calls ``predict``: ``argmin_j ||c_j||² − 2 x·c_j`` in float32,
  first index on ties, int32 out.
* DP-SLM (``nicolvisser/WavLM-codebooks`` ``hubconf.codebook``) returns the centroid tensor and takes
  ``torch.cdist(features, codebook).argmin(-1)``.

:class:`Codebook` serves both. It returns the exact nearest centroid (the float64 argmin of
``||c_j||² − 2 x·c_j``, first index on ties), which is what both float32 originals approximate: they agree with it
on every frame whose best and second-best centroids are not within float32 rounding of each other. It is fast
because it does not compute in float64: one float32 matrix product gives every score with a proven error bound,
and only the frames whose runner-up lies within that bound of the best are scored again in float64.

Example::

    >>> import torch
    >>> cb = Codebook.from_tensor(torch.eye(3))
    >>> cb(torch.tensor([[0.9, 0.1, 0.0], [0.0, 0.2, 0.7]])).tolist()
    [0, 2]
    >>> cb(torch.tensor([[0.5, 0.5, 0.0]])).tolist()  # an exact tie: the first index wins, as in sklearn
    [0]
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import InputError
from ..modeling import PretrainedModel
from ..nn.precision import KeepFloat32
from ..registry import NO_LICENCE, SourceFile, Weights

#: Unit roundoff of float32 and float64, and of the float32 matrix products that torch may run at lower
#: precision (``torch.set_float32_matmul_precision``: TF32 keeps 10 mantissa bits, bfloat16 7).
_ROUNDOFF = {torch.float32: 2.0 ** -24, torch.float64: 2.0 ** -53}
_MATMUL_ROUNDOFF = {"highest": 2.0 ** -24, "high": 2.0 ** -11, "medium": 2.0 ** -8}
#: Rows scored per matrix product. On a CPU, 512 rows keep the (rows, K) scores in the L2 cache while they are
#: reduced (sklearn's predict scores 256 rows at a time for the same reason); on a GPU, big chunks fill the device.
_CPU_CHUNK_ROWS = 512
_DEVICE_CHUNK_ROWS = 16384


@dataclass(frozen=True)
class CodebookConfig:
    num_codes: int                 # K
    dim: int                       # D, the feature dimension
    layer: int | None = None       # the dense model's layer it clusters, in that model's reader's own indexing
    dense_model: str | None = None  # the dense model whose features it clusters (metadata), e.g. "hubert-base-ls960"


class Codebook(KeepFloat32, PretrainedModel):
    """A ``(K, D)`` codebook; calling it maps features ``(..., D)`` to the nearest code's index ``(...)`` (int64).

    ``codebook`` is the ``(K, D)`` centroid buffer (sklearn's ``cluster_centers_``, bit for bit). ``vocab_size``
    is K, as textlesslib's quantizer names it.
    """

    config_class = CodebookConfig
    model_type = "codebook"

    def __init__(self, config: CodebookConfig) -> None:
        super().__init__(config)
        self.register_buffer("codebook", torch.zeros(config.num_codes, config.dim))

    @classmethod
    def from_tensor(cls, codebook: torch.Tensor, layer: int | None = None, dense_model: str | None = None) -> Codebook:
        """A codebook holding ``codebook`` ``(K, D)`` (copied, as float32)."""
        if codebook.ndim != 2 or 0 in codebook.shape:
            raise InputError(f"a codebook is a non-empty (K, D) matrix; got shape {tuple(codebook.shape)}")
        model = cls(CodebookConfig(num_codes=codebook.shape[0], dim=codebook.shape[1], layer=layer,
                                   dense_model=dense_model))
        model.codebook.copy_(codebook)
        return model

    @property
    def vocab_size(self) -> int:
        return self.config.num_codes

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Nearest-code units (int64, shape ``features.shape[:-1]``) of ``features`` ``(..., D)``."""
        features = torch.as_tensor(features)
        if features.ndim == 0 or features.shape[-1] != self.config.dim:
            shape = tuple(features.shape)
            raise InputError(f"features of shape {shape} have dimension {shape[-1] if shape else None}, the "
                             f"codebook {self.config.dim}: were they read from the dense model and layer this "
                             f"k-means was trained on{f' ({self._source()})' if self._source() else ''}?")
        if features.is_complex() or features.dtype == torch.bool:
            raise InputError(f"features must be real numbers, got {features.dtype}")
        flat = features.reshape(-1, self.config.dim).to(self.codebook.device)
        return nearest_code(flat, self.codebook).reshape(features.shape[:-1])

    def _source(self) -> str:
        layer = f" layer {self.config.layer}" if self.config.layer is not None else ""
        return f"{self.config.dense_model}{layer}" if self.config.dense_model else ""


def nearest_code(features: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index ``(N,)`` int64 of the nearest row of ``codebook`` ``(K, D)`` to each row of ``features`` ``(N, D)``:
    the float64 argmin of ``||c||² − 2 x·c``, first index on ties (sklearn's ``predict``, without its float32
    rounding), computed in float32 with float64 only where rounding could change the answer.

    Why it is exact: in float32 each score carries an error of at most ``err = 2u·max||c||² + 2(γ_D + 3u)·||x||·
    max||c||`` (γ_D = D·u / (1 − D·u) bounds any order of summation of a D-term dot product, u the roundoff of
    the product; the 3u term covers rounding the inputs to float32 and the sum). A code whose float32 score is
    more than ``2·err`` above the float32 minimum cannot be the true minimum, so a row with one candidate is
    decided; the others are scored again in float64.
    """
    if features.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=features.device)
    if not features.is_floating_point():
        features = features.double()
    norms = torch.linalg.vector_norm(features.float(), dim=1)
    # NaN or infinity anywhere makes a norm non-finite (so do finite values too large for float32: then look closer)
    if not torch.isfinite(norms).all() and not torch.isfinite(features).all():
        raise InputError("features contain NaN or infinity: no nearest code exists (sklearn refuses them too)")
    if features.dtype == torch.float64 or codebook.shape[0] == 1:
        return _scores64(features, codebook).argmin(1)
    c32 = codebook.float()
    sq_norms = codebook.to(_float64_device(codebook.device), torch.float64).pow(2).sum(1)
    c_max = sq_norms.max().sqrt().item()
    d = codebook.shape[1]
    # float32 matmuls run at the precision torch is set to; float64 errors are negligible but bounded too
    u = max(_MATMUL_ROUNDOFF[torch.get_float32_matmul_precision()], _ROUNDOFF[torch.float32])
    gamma = d * u / (1 - d * u)
    u64 = _ROUNDOFF[torch.float64]
    gamma64 = d * u64 / (1 - d * u64)
    slope = 2 * (gamma + 3 * u + gamma64 + 3 * u64) * c_max * 1.01   # per unit of ||x||
    offset = 2 * (u + u64) * c_max ** 2 * 1.01
    margins = 2 * (offset + slope * norms)   # 2·err per row
    rows = _CPU_CHUNK_ROWS if features.device.type == "cpu" else _DEVICE_CHUNK_ROWS
    scores = torch.empty(min(rows, features.shape[0]), codebook.shape[0], device=features.device)
    c32_t, sq32 = c32.T, sq_norms.to(features.device, torch.float32)
    units = torch.empty(features.shape[0], dtype=torch.long, device=features.device)
    ambiguous = []
    for start in range(0, features.shape[0], rows):
        x = features[start: start + rows].float()
        chunk = torch.addmm(sq32, x, c32_t, alpha=-2, out=scores[: x.shape[0]])           # (n, K)
        # the two lowest scores: where the second is within 2·err of the first (exact ties included), the
        # float32 choice is not certain; elsewhere the lowest is the answer
        lowest, index = chunk.topk(2, dim=1, largest=False)
        units[start: start + x.shape[0]] = index[:, 0]
        near = lowest[:, 1] <= lowest[:, 0] + margins[start: start + x.shape[0]]
        ambiguous.append(near.nonzero().squeeze(1) + start)
    ambiguous = torch.cat(ambiguous)
    if ambiguous.numel():  # near-ties, where float32 rounding could pick the wrong code: decided in float64
        units[ambiguous] = _scores64(features[ambiguous], codebook, sq_norms).argmin(1)
    return units


def _scores64(features: torch.Tensor, codebook: torch.Tensor, sq_norms: torch.Tensor | None = None) -> torch.Tensor:
    """``||c||² − 2 x·c`` in float64 (on the CPU where the device has no float64, e.g. Apple's MPS)."""
    device = _float64_device(features.device)
    c64 = codebook.to(device, torch.float64)
    if sq_norms is None:
        sq_norms = c64.pow(2).sum(1)
    return torch.addmm(sq_norms.to(device), features.to(device, torch.float64), c64.T, alpha=-2).to(features.device)


def _float64_device(device: torch.device) -> torch.device:
    return torch.device("cpu") if device.type == "mps" else device


# ------------------------------------------------------------------------------------------ releases
_RELEASE = "https://github.com/nicolvisser/WavLM-codebooks/releases/download/v0.1.0/"
#: (k, first 8 hex digits of the release file's SHA-256), all at WavLM-Large layer 11.
_RELEASED = ((100, "8b2b254e"), (200, "55b06314"), (500, "2c2dee95"), (1000, "db31d361"), (2000, "af7a6260"))

WAVLM_CODEBOOKS = tuple(
    Weights(
        name=f"wavlm-large-layer11-kmeans{k}",
        entry_point="codebook",
        kwargs={"layer": 11, "k": k},
        converter="codebook",
        source_files=(SourceFile(f"{_RELEASE}codebook-layer-11-k-{k}-{sha}.pt", sha),),
        license=NO_LICENCE,  # nicolvisser/WavLM-codebooks has no LICENSE (WavLM Large itself is MIT)
        paper="https://arxiv.org/abs/2505.23494",
        description=f"k-means codebook (K={k}) of WavLM-Large layer-11 features, from DP-SLM",
        sample_rate=16000,
        frame_rate=50.0,
    )
    for k, sha in _RELEASED
)


@dataclass(frozen=True)
class DenseModel:
    """What a GSLM k-means clusters: the dense checkpoint (speechzoo's registry name), its layer in its GSLM
    reader's own indexing (None where the release does not say), the feature dimension and frame rate."""

    checkpoint: str
    layer: int | None
    dim: int | None
    frame_rate: float
    description: str


#: textlesslib's dense-model names (``SpeechEncoder.by_name(dense_model_name=...)``) and GSLM's feature types.
DENSE_MODELS = {
    "logmel": DenseModel("logmel", None, 80, 100.0, "80-bin log-mel filterbanks (GSLM's LogMelFeatureReader)"),
    "cpc-big-ll6k": DenseModel("cpc-big-ll6k", 2, None, 100.0,
                               "modified CPC big (LibriLight 6k h) features after 2 LSTM layers"),
    "hubert-base-ls960": DenseModel("hubert-base-ls960", 6, 768, 50.0,
                                    "HuBERT Base (LibriSpeech 960 h) layer-6 features"),
    "w2v2-large-vox-new": DenseModel("w2v2-large-vox-new", None, 1024, 50.0,
                                     "wav2vec 2.0 Large (LibriLight 60k h, wav2vec_vox_new.pt) features of a "
                                     "layer GSLM does not record"),
    "hubert-base-ls960-layer-9": DenseModel("hubert-base-ls960", 9, 768, 50.0,
                                            "HuBERT Base (LibriSpeech 960 h) layer-9 features"),
    "hubert-fisher": DenseModel("hubert-fisher", 12, 768, 50.0, "dGSLM's Fisher HuBERT layer-12 features"),
    "mhubert-base-vp_en_es_fr": DenseModel("mhubert-base-vp_en_es_fr", 11, 768, 50.0,
                                           "mHuBERT Base (VoxPopuli en-es-fr, iteration 3) layer-11 features"),
    "mhubert-base-vp_mls_cv_8lang": DenseModel("mhubert-base-vp_mls_cv_8lang", 12, 768, 50.0,
                                               "mHuBERT Base (VoxPopuli + MLS + Common Voice, 8 languages) "
                                               "layer-12 features"),
    "mhubert-base-25hz": DenseModel("mhubert-base-25hz", 11, 768, 25.0,
                                    "TWIST's 25 Hz mHuBERT Base layer-11 features"),
}

_DL = "https://dl.fbaipublicfiles.com/"
_GSLM = _DL + "textless_nlp/gslm/"
_EXPRESSO = _DL + "textless_nlp/expresso/checkpoints/"
#: SHA-256 of the GSLM km.bin files, as textlesslib's checkpoint manager publishes them (logmel and w2v2: none).
_GSLM_SHA256 = {
    ("hubert", 50): "d01a7d5bc2c54b7b5f25f321ba525b4d230b06e3927f90bad0394198bc89f494",
    ("hubert", 100): "f14a3104615485381fc489701d6761c9abbdbb0d43607cf55518a1e2891023fe",
    ("hubert", 200): "b3c46c9cdd1707ad852dd53c359aa73942e79d53c432a9a8a419ed046408024b",
    ("hubert", 500): "411c8668e1314751404f58636f935fc73540a6793890435da4a8ffadf157398e",
    ("cpc", 50): "c48be5717aebc08169aa5165d58267449b8c8568624a346bb9f4b26eac3b0240",
    ("cpc", 100): "077b96e010b1e87be627ef2bef0f5e5cdaa1c01722aa363b2dc0bb6a638e8b26",
    ("cpc", 200): "2d863d1c6f251d19e667998248c87642ecb5e3ffaa410e9ebfa64341db4f6de2",
    ("cpc", 500): "35398f665dff06801a7bf1e595bc176711ed751d554e64d999dc42f1dd106561",
}
#: GSLM's feature types (``--feature_type``) → the dense-model names of their k-means releases (textlesslib's).
GSLM_FEATURE_TYPES = {"logmel": "logmel", "cpc": "cpc-big-ll6k", "hubert": "hubert-base-ls960",
                       "w2v2": "w2v2-large-vox-new"}
_GSLM_PAPER = "https://arxiv.org/abs/2102.01192"
_EXPRESSO_PAPER = "https://arxiv.org/abs/2308.05725"


def _kmeans(dense_model: str, k: int, url: str, sha256: str | None, *, quantizer_model: str = "kmeans",
            license: str = "MIT", paper: str, origin: str) -> Weights:
    dense = DENSE_MODELS[dense_model]
    selection = {"dense_model": dense_model, "vocab_size": k}
    suffix = f"-{quantizer_model}-{k}"
    if quantizer_model != "kmeans":  # textlesslib's second quantizer family (Expresso-trained)
        selection["quantizer_model"] = quantizer_model
    return Weights(
        name=dense_model + suffix, entry_point="gslm_kmeans", kwargs=selection, converter="kmeans",
        source_files=(SourceFile(url, sha256),), license=license, paper=paper,
        description=f"k-means (K={k}) over {dense.description}" + (f" ({dense.dim}-d)" if dense.dim else "")
                    + f", released by {origin}",
        sample_rate=16000, frame_rate=dense.frame_rate,
        converter_options={"dense_model": dense.checkpoint, "layer": dense.layer},
    )


GSLM_KMEANS = (
    *(_kmeans(GSLM_FEATURE_TYPES[feature_type], k, f"{_GSLM}{feature_type}/km{k}/km.bin",
              _GSLM_SHA256.get((feature_type, k)), paper=_GSLM_PAPER, origin="GSLM")
      for feature_type in GSLM_FEATURE_TYPES for k in (50, 100, 200)),
    *(_kmeans(GSLM_FEATURE_TYPES[feature_type], 500, f"{_GSLM}{feature_type}/km500/km.bin",
              _GSLM_SHA256[(feature_type, 500)], paper=_GSLM_PAPER, origin="GSLM (no GSLM decoder uses it)")
      for feature_type in ("hubert", "cpc")),
    _kmeans("hubert-base-ls960-layer-9", 500, _DL + "hubert/hubert_base_ls960_L9_km500.bin",
            "4450dcbc90aa7d0553306a4b0fafef35c9b3c840468f02969273dfbb9db89a23", paper=_EXPRESSO_PAPER,
            origin="Expresso"),
    _kmeans("hubert-base-ls960-layer-9", 2000, _EXPRESSO + "hubert_base_ls960_L9_km2000_expresso.bin",
            "ae73e3cc7ea0426faf43c8bb67fc3846a0f8708232526d045a101836e8c7929f", quantizer_model="kmeans-expresso",
            license="CC-BY-NC-4.0", paper=_EXPRESSO_PAPER, origin="Expresso (trained on Expresso)"),
    _kmeans("hubert-fisher", 500, _DL + "textless_nlp/dgslm/checkpoints/hubert/hubert_fisher_km_500.bin", None,
            paper="https://arxiv.org/abs/2203.16502", origin="dGSLM"),
    _kmeans("mhubert-base-vp_en_es_fr", 1000, _DL + "hubert/mhubert_base_vp_en_es_fr_it3_L11_km1000.bin",
            "c70f5416c38044d0c20e33fdeedf4533974a8ac4029985cdef3b755038381a0b",
            paper="https://arxiv.org/abs/2112.08352", origin="fairseq speech-to-speech"),
    _kmeans("mhubert-base-vp_mls_cv_8lang", 2000, _DL + "hubert/mhubert_base_vp_mls_cv_8lang_it3_L12_km2000.bin",
            "05de230870427dcdce334d29922ccce354c7e7d0574edc645f5daed47b1ccc18", paper=_EXPRESSO_PAPER,
            origin="Expresso"),
    _kmeans("mhubert-base-vp_mls_cv_8lang", 2000,
            _EXPRESSO + "mhubert_base_vp_mls_cv_8lang_it3_L12_km2000_expresso.bin",
            "bda2dbf5fe42bf59359799b281498a9d7fd0a9ec703d6dc54a4a4a0ff70a4e22", quantizer_model="kmeans-expresso",
            license="CC-BY-NC-4.0", paper=_EXPRESSO_PAPER, origin="Expresso (trained on Expresso)"),
    _kmeans("mhubert-base-25hz", 500,
            _DL + "textless_nlp/twist/speech_tokenizer/mhubert_base_25hz_cp_mls_cv_sp_fisher_L11_km500.bin",
            "03cc04a9c24fec4285e73e709c485756d8f116aa8e724eac555de6a7cf8d28ad",
            paper="https://arxiv.org/abs/2305.13009", origin="TWIST"),
)

WEIGHTS = WAVLM_CODEBOOKS + GSLM_KMEANS

