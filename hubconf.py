"""torch.hub entry points of speechzoo.

Each entry point keeps the call signature and return value of the original one-liner it replaces, so code written
for ``torch.hub.load("nicolvisser/WavLM-codebooks", "wavlm_large")`` and friends keeps working when only the repo
name changes; each also takes ``weights=``: a local directory (config.json + model.safetensors, as written by
``python -m conversion``) or a Hub repo id. Without it, the registry's Hub mirror is used, then the original
release, converted on the fly (see ``zoo.download``). Weights are always read from safetensors; nothing is
unpickled. Every entry point also takes ``dtype=`` (or transformers' ``torch_dtype=``), e.g. ``torch.bfloat16``: the
model computes in it, while norms, codebooks, k-means and DPDP distances and mel filterbanks stay float32
(``zoo.nn.precision``).

    >>> import torch
    >>> hub = "speechzoo/speechzoo"
    >>> model, extract_features = torch.hub.load(hub, "wavlm_large", trust_repo=True)  # doctest: +SKIP

The entry points run THIS checkout's ``zoo`` package: torch.hub puts the checkout first on ``sys.path`` while it
imports this file. If another ``zoo`` (an installed speechzoo) was imported before, Python would silently run that
one's model code instead, so loading stops with an ImportError that names both.
"""
import os
from collections.abc import Callable as _Callable
from pathlib import Path as _Path
from typing import Any as _Any

import torch

# Imported under private names: torch.hub.list() shows every public callable of this module as an entry point.
import zoo as _zoo
from zoo.download import cast as _cast
from zoo.download import dtype_alias as _dtype_alias
from zoo.download import load as _load
from zoo.errors import InputError as _InputError
from zoo.models.codebook import Codebook as _Codebook
from zoo.models.cpc import CPC as _CPC
from zoo.models.cpc import CpcFeatureReader as _CpcFeatureReader
from zoo.models.dpdp import DPDPQuantizer as _DPDPQuantizer
from zoo.models.ellav import ELLAV as _ELLAV
from zoo.models.f0_vqvae import F0VQVAE as _F0VQVAE
from zoo.models.feature_reader import FeatureReader as _FeatureReader
from zoo.models.gslm_ulm import GSLMUnitLM as _GSLMUnitLM
from zoo.models.hifigan import CodeHiFiGAN as _CodeHiFiGAN
from zoo.models.hubert import Hubert as _Hubert
from zoo.models.hubert import HubertFeatureReader as _HubertFeatureReader
from zoo.models.hubert import Wav2Vec2 as _Wav2Vec2
from zoo.models.hubert import Wav2VecFeatureReader as _Wav2VecFeatureReader
from zoo.models.logmel import LogMelFeatureReader as _LogMelFeatureReader
from zoo.models.speech_dlm import SpeechDLM as _SpeechDLM
from zoo.models.speech_dlm import SpeechDLMHubInterface as _SpeechDLMHubInterface
from zoo.models.speechtokenizer import SpeechTokenizer as _SpeechTokenizer
from zoo.models.tacotron2 import DEFAULT_MAX_DECODER_STEPS as _DEFAULT_MAX_DECODER_STEPS
from zoo.models.tacotron2 import Tacotron2 as _Tacotron2
from zoo.models.ulm import ENTRY_POINT_60K as _ENTRY_POINT_60K
from zoo.models.ulm import UnitLanguageModel as _UnitLanguageModel
from zoo.models.ulm import UnitTokenizer as _UnitTokenizer
from zoo.models.waveglow import WaveGlow as _WaveGlow
from zoo.models.waveglow import WaveGlowDenoiser as _WaveGlowDenoiser
from zoo.models.wavlm import WavLM as _WavLM
from zoo.models.wavlm import extract_features as _extract_features
from zoo.models.wavtokenizer import VARIANTS as _VARIANTS
from zoo.models.wavtokenizer import WavTokenizer as _WavTokenizer
from zoo.models.wavtokenizer import decode as _decode
from zoo.models.wavtokenizer import encode as _encode
from zoo.pipelines.gslm import SpeechEncoder as _SpeechEncoder
from zoo.registry import find as _find

#: What ``dtype=`` / ``torch_dtype=`` take: a floating dtype or its name ("bfloat16"), "auto", or None (as saved).
_DType = torch.dtype | str | None

dependencies = ["torch", "numpy", "safetensors", "huggingface_hub", "soundfile", "tqdm"]

_CHECKOUT = _Path(__file__).resolve().parent
if _Path(_zoo.__file__).resolve().parent.parent != _CHECKOUT:
    raise ImportError(f"{_CHECKOUT / 'hubconf.py'} runs its own zoo package, but zoo {_zoo.__version__} from "
                      f"{_Path(_zoo.__file__).parent} was imported first, and Python would run that code instead. "
                      "Load the hub entry point before importing zoo (a fresh Python process), or use the installed "
                      "package directly (zoo.download.load / its hubconf.py).")


# ------------------------------------------------- DP-SLM: speech → units (WavLM Large, k-means codebooks, DPDP)

def wavlm_large(map_location: str | torch.device = "cpu", progress: bool = True,
                weights: str | os.PathLike | None = None,
                dtype: _DType = None, torch_dtype: _DType = None
                ) -> tuple[_WavLM, _Callable[..., torch.Tensor | tuple[torch.Tensor, torch.Tensor]]]:
    """WavLM Large and its feature helper, as ``nicolvisser/WavLM-codebooks`` returns them: ``(model,
    extract_features)``, the model in eval mode on ``map_location``.

    ``extract_features(model, wav, sr, layer=None)`` takes ``(1, N)`` or ``(B, N)`` audio at ``sr`` Hz and returns
    ``(T, 1024)`` (or ``(B, T, 1024)``) features at 50 Hz from the 1-based ``layer`` (None: the final output);
    it also takes ``lengths=`` for ragged batches and ``chunk_seconds=`` (default 100 s) for long audio.

    >>> model, extract_features = wavlm_large()                       # doctest: +SKIP
    >>> features = extract_features(model, wav, 16000, layer=11)      # doctest: +SKIP
    """
    return _load(_WavLM, "wavlm_large", weights, map_location=map_location, progress=progress,
                 dtype=dtype, torch_dtype=torch_dtype), _extract_features


def codebook(layer: int, k: int, map_location: str | torch.device = "cpu", progress: bool = True,
             weights: str | os.PathLike | None = None,
             dtype: _DType = None, torch_dtype: _DType = None) -> torch.Tensor:
    """The ``(K, D)`` k-means codebook of WavLM-Large layer ``layer`` with ``k`` codes, as DP-SLM released them
    for layer 11 and k in {100, 200, 500, 1000, 2000} (any other pair raises, listing them).

    >>> cb = codebook(layer=11, k=500)                      # doctest: +SKIP
    >>> units = torch.cdist(features, cb).argmin(dim=1)     # doctest: +SKIP
    """
    return _load(_Codebook, "codebook", weights, map_location=map_location, progress=progress,
                 dtype=dtype, torch_dtype=torch_dtype, layer=layer,
                 k=k).codebook


def dpdp_quantizer_from_codebook(codebook: torch.Tensor, lmbda: float, num_neighbors: int | None = None,
                                 map_location: str | torch.device | None = None,
                                 dtype: _DType = None, torch_dtype: _DType = None) -> _DPDPQuantizer:
    """DP-SLM's duration-penalised quantizer (``nicolvisser/dpdp``) over a ``(K, D)`` codebook: ``lmbda`` is the
    penalty per segment on squared distances; ``num_neighbors`` limits each frame to its nearest codes (the paper
    used 5 % of K). ``quantizer(features)`` maps ``(T, D)`` (or ``(B, T, D)`` with ``lengths``) to
    ``(quantized_features, units)``, the same units as the original, in O(T·K) instead of O(T²·K). The quantizer
    lives on the codebook's device unless ``map_location`` names another.

    >>> quantizer = dpdp_quantizer_from_codebook(codebook(layer=11, k=500), lmbda=4500)  # doctest: +SKIP
    >>> quantized_features, units = quantizer(features)                                   # doctest: +SKIP
    """
    quantizer = _cast(_DPDPQuantizer.from_codebook(codebook, lmbda, num_neighbors), dtype, torch_dtype)
    return quantizer if map_location is None else quantizer.to(map_location)


def dpdp_quantizer(codebook_size: int, codebook_dim: int, lmbda: float, num_neighbors: int | None = None,
                   map_location: str | torch.device = "cpu", progress: bool = True,
                   weights: str | os.PathLike | None = None,
                   dtype: _DType = None, torch_dtype: _DType = None) -> _DPDPQuantizer:
    """A DPDP quantizer with a random ``(codebook_size, codebook_dim)`` codebook (``torch.randn`` on the CPU, as the
    original ``dpdp_quantizer``, so a seed gives the original's codebook), to load a codebook into later, on
    ``map_location``; see :func:`dpdp_quantizer_from_codebook`. ``weights`` (a quantizer saved with
    ``save_pretrained``: a directory or Hub repo id) supplies the codebook instead; it must have that shape.

    >>> quantizer = dpdp_quantizer(500, 1024, lmbda=4500, weights="my/dpdp-quantizer")   # doctest: +SKIP
    """
    if weights is None:
        codebook = torch.randn(codebook_size, codebook_dim)
        return _cast(_DPDPQuantizer.from_codebook(codebook, lmbda, num_neighbors).to(map_location), dtype, torch_dtype)
    saved = _load(_DPDPQuantizer, "dpdp_quantizer", weights, map_location=map_location, progress=progress,
                  dtype=dtype, torch_dtype=torch_dtype)
    if saved.codebook.shape != (codebook_size, codebook_dim):
        raise _InputError(f"{weights} holds a {tuple(saved.codebook.shape)} codebook, not ({codebook_size}, "
                          f"{codebook_dim}): pass the sizes of the saved quantizer")
    return _cast(_DPDPQuantizer.from_codebook(saved.codebook, lmbda, num_neighbors), dtype, torch_dtype)



# --------------------------------------------------------------- GSLM: speech → units (dense readers, k-means)

def gslm_kmeans(dense_model: str = "hubert-base-ls960", vocab_size: int = 100, quantizer_model: str = "kmeans",
                weights: str | os.PathLike | None = None, map_location: str | torch.device = "cpu",
                progress: bool = True,
                dtype: _DType = None, torch_dtype: _DType = None) -> _Codebook:
    """A GSLM k-means quantizer: ``joblib.load(km.bin)`` of ``quantize_with_kmeans.py`` and textlesslib's
    ``KMeansQuantizer``, without scikit-learn. ``km(features)`` maps ``(T, D)`` (or ``(..., D)``) float features to
    int64 units ``(T,)``: sklearn's ``predict`` (nearest centroid, first index on ties). ``km.codebook`` is
    ``cluster_centers_`` ``(K, D)`` bit for bit; ``km.vocab_size`` is K.

    The release is chosen as textlesslib names it: ``dense_model`` in logmel, cpc-big-ll6k, hubert-base-ls960,
    w2v2-large-vox-new (GSLM: K in 50, 100, 200; 500 for HuBERT and CPC), hubert-base-ls960-layer-9 (500, and
    2000 with ``quantizer_model="kmeans-expresso"``), hubert-fisher (dGSLM, 500), mhubert-base-vp_en_es_fr (1000),
    mhubert-base-vp_mls_cv_8lang (2000, also kmeans-expresso), mhubert-base-25hz (500); ``speechzoo list``
    shows them all. ``weights=DIR`` loads a km.bin converted with ``python -m conversion kmeans km.bin --out DIR``
    or trained with ``speechzoo train kmeans``.

    >>> km = gslm_kmeans(dense_model="hubert-base-ls960", vocab_size=100)   # doctest: +SKIP
    >>> units = km(features)                                                # (T,) int64 # doctest: +SKIP
    """
    selection = {"quantizer_model": quantizer_model} if quantizer_model != "kmeans" else {}
    return _load(_Codebook, "gslm_kmeans", weights, map_location=map_location, progress=progress,
                 dtype=dtype, torch_dtype=torch_dtype,
                 dense_model=dense_model, vocab_size=vocab_size, **selection)


# ---------------------------------------------------------------------------------- DP-SLM: unit language models

def ulm(k: int, lmbda: int, map_location: str | torch.device = "cpu", progress: bool = True,
        weights: str | os.PathLike | None = None,
        dtype: _DType = None, torch_dtype: _DType = None) -> tuple[_UnitLanguageModel, _UnitTokenizer]:
    """DP-SLM's Mistral-style unit LM over deduplicated WavLM-Large layer-11 DPDP units, trained on 1k hours:
    ``(model, tokenizer)`` as ``nicolvisser/Mistral-ULM``'s ``ulm_wavlm_layer_11_dpdp_hours_1k_steps_10k``.
    Released for k in {100, 200, 500, 1000}, six lmbda each (any other pair raises, listing them).

    >>> model, tokenizer = ulm(k=500, lmbda=4500)                         # doctest: +SKIP
    >>> units = torch.unique_consecutive(units_duped)                     # the ULMs model deduplicated units
    >>> ll = model.loglikelihood(tokenizer.encode(units.tolist()))        # summed natural-log likelihood
    >>> scores = model.loglikelihoods([tokenizer.encode(u) for u in batch])   # packed, as the ZeroSpeech script
    >>> continuation = model.generate(units, max_new_tokens=100, temperature=1.0, top_p=0.9)  # KV-cached
    """
    model = _load(_UnitLanguageModel, "ulm", weights, map_location=map_location, progress=progress,
                  dtype=dtype, torch_dtype=torch_dtype, k=k, lmbda=lmbda)
    return model, model.tokenizer


def ulm_wavlm_layer_11_dpdp_hours_1k_steps_10k(k: int, lmbda: int, map_location: str | torch.device = "cpu",
                                               progress: bool = True, weights: str | os.PathLike | None = None,
                                               dtype: _DType = None, torch_dtype: _DType = None
                                               ) -> tuple[_UnitLanguageModel, _UnitTokenizer]:
    """The original's name of :func:`ulm`."""
    return ulm(k, lmbda, map_location, progress, weights, dtype, torch_dtype)


def ulm_wavlm_layer_11_dpdp_hours_60k_steps_200k(k: int, lmbda: int, map_location: str | torch.device = "cpu",
                                                 progress: bool = True, weights: str | os.PathLike | None = None,
                                                 dtype: _DType = None, torch_dtype: _DType = None
                                                 ) -> tuple[_UnitLanguageModel, _UnitTokenizer]:
    """The unit LM trained on 60k hours for 200k steps, released for (k, lmbda) = (500, 4500) only:
    ``(model, tokenizer)``, used like :func:`ulm`.

    >>> model, tokenizer = ulm_wavlm_layer_11_dpdp_hours_60k_steps_200k(k=500, lmbda=4500)   # doctest: +SKIP
    """
    model = _load(_UnitLanguageModel, _ENTRY_POINT_60K, weights, map_location=map_location, progress=progress,
                  dtype=dtype, torch_dtype=torch_dtype, k=k, lmbda=lmbda)
    return model, model.tokenizer



# ----------------------------------------------------------------- DP-SLM: units → speech (ELLA-V, WavTokenizer)

def ellav_units_to_wavtokenizer(k: int, lmbda: int, map_location: str | torch.device = "cpu", progress: bool = True,
                                weights: str | os.PathLike | None = None,
                                dtype: _DType = None, torch_dtype: _DType = None) -> _ELLAV:
    """DP-SLM's ELLA-V acoustic model from WavLM-Large layer-11 DPDP units (k in {100, 200, 500, 1000}, six lmbda
    each) to WavTokenizer ``small_600_24k_4096`` codec ids, as ``nicolvisser/ELLA-V``'s entry point.

    >>> ellav = ellav_units_to_wavtokenizer(k=500, lmbda=4500)              # doctest: +SKIP
    >>> codec_ids_list, finished = ellav.generate(
    ...     prompts=[[f"u{u}" for u in units]], max_tokens=1000, max_codec_tokens_per_phone=10,
    ...     temperature=1.0, top_p=0.8, chunk_size=None, progress=True)    # KV-cached, batched over prompts
    >>> codes = codec_ids_list[0][None, None, :]                            # (1, 1, T) for the WavTokenizer
    """
    return _load(_ELLAV, "ellav_units_to_wavtokenizer", weights, map_location=map_location, progress=progress,
                 dtype=dtype, torch_dtype=torch_dtype, k=k,
                 lmbda=lmbda)


def ellav_phones_to_wavtokenizer(map_location: str | torch.device = "cpu", progress: bool = True,
                                 weights: str | os.PathLike | None = None,
                                 dtype: _DType = None, torch_dtype: _DType = None) -> _ELLAV:
    """The ELLA-V acoustic model from MFA us-arpa phones (e.g. ``["HH", "AH0", "L", "OW1"]``) to WavTokenizer
    ``small_600_24k_4096`` codec ids; ``generate`` as for :func:`ellav_units_to_wavtokenizer`."""
    return _load(_ELLAV, "ellav_phones_to_wavtokenizer", weights, map_location=map_location, progress=progress,
                 dtype=dtype, torch_dtype=torch_dtype)


#: ``(model, encode, decode)``: ``encode(model, wav, sr)`` -> codes, ``decode(model, codes)`` -> ``(wav, 24000)``.
_WavTokenizerEntry = tuple[_WavTokenizer, _Callable[[_WavTokenizer, torch.Tensor, int], torch.Tensor],
                          _Callable[[_WavTokenizer, torch.Tensor], tuple[torch.Tensor, int]]]


def wavtokenizer(variant: str = "small_600_24k_4096", pretrained: bool = True, progress: bool = True,
                 weights: str | os.PathLike | None = None, map_location: str | torch.device = "cpu",
                 dtype: _DType = None, torch_dtype: _DType = None) -> _WavTokenizerEntry:
    """WavTokenizer ``variant`` ("small_600_24k_4096": 40 Hz, or "small_320_24k_4096": 75 Hz; one 4096-entry
    codebook, 24 kHz speech) as ``(model, encode, decode)``, like ``nicolvisser/WavTokenizer``'s entries.
    ``pretrained=False`` gives a randomly initialised model of that architecture. The model is in eval mode on
    ``map_location`` (an addition: the original always loads onto the CPU).

    >>> model, encode, decode = wavtokenizer("small_600_24k_4096")   # doctest: +SKIP
    >>> codes = encode(model, wav, sr)          # (1, C, T) int64: wav (C, N) at sr Hz is resampled to 24 kHz
    >>> wav_24k, sr_24k = decode(model, codes)  # (C, T * 600), 24000
    """
    if pretrained or weights is not None:
        model = _load(_WavTokenizer, "wavtokenizer", weights, map_location=map_location, progress=progress,
                      dtype=dtype, torch_dtype=torch_dtype,
                      variant=variant)
    else:
        _find("wavtokenizer", variant=variant)  # an unknown variant lists the released ones
        model = _cast(_WavTokenizer(_VARIANTS[variant]).to(map_location).eval(), dtype, torch_dtype)
    return model, _encode, _decode


def small_600_24k_4096(pretrained: bool = True, progress: bool = True, weights: str | os.PathLike | None = None,
                       map_location: str | torch.device = "cpu",
                       dtype: _DType = None, torch_dtype: _DType = None) -> _WavTokenizerEntry:
    """WavTokenizer small, 24 kHz, 600× down-sampling (40 Hz), 4096 codebook entries: ``(model, encode, decode)``."""
    return wavtokenizer("small_600_24k_4096", pretrained, progress, weights, map_location, dtype, torch_dtype)


def small_320_24k_4096(pretrained: bool = True, progress: bool = True, weights: str | os.PathLike | None = None,
                       map_location: str | torch.device = "cpu",
                       dtype: _DType = None, torch_dtype: _DType = None) -> _WavTokenizerEntry:
    """WavTokenizer small, 24 kHz, 320× down-sampling (75 Hz), 4096 codebook entries: ``(model, encode, decode)``."""
    return wavtokenizer("small_320_24k_4096", pretrained, progress, weights, map_location, dtype, torch_dtype)



# ----------------------------------------------------------------------------------------------- SpeechTokenizer

def speechtokenizer(variant: str = "speechtokenizer_hubert_avg", map_location: str | torch.device = "cpu",
                    progress: bool = True, weights: str | os.PathLike | None = None,
                    dtype: _DType = None, torch_dtype: _DType = None) -> _SpeechTokenizer:
    """SpeechTokenizer ``variant`` (released: "speechtokenizer_hubert_avg", 16 kHz, 8 codebooks of 1024 at 50 Hz;
    codebook 0 holds the HuBERT-distilled semantic tokens), in eval mode, with the original's ``encode``,
    ``decode``, ``forward`` and ``forward_feature``. Its codebooks are frozen buffers: no call changes them.

    >>> model = speechtokenizer()                              # doctest: +SKIP
    >>> codes = model.encode(wav)                  # wav (B, 1, N) at 16 kHz -> (8, B, ceil(N / 320)) int64
    >>> semantic_tokens, acoustic_codes = codes[0], codes[1:]
    >>> wav_out = model.decode(codes)              # (B, 1, 320 * T)
    >>> acoustic_only = model.decode(codes[1:], st=1)
    """
    return _load(_SpeechTokenizer, "speechtokenizer", weights, map_location=map_location, progress=progress,
                 dtype=dtype, torch_dtype=torch_dtype,
                 variant=variant)



# --------------------------------------------------------------------------------- GSLM: the unit language model

def gslm_ulm(dense: str = "hubert", vocab_size: int = 100, map_location: str | torch.device = "cpu",
             progress: bool = True, weights: str | os.PathLike | None = None,
             dtype: _DType = None, torch_dtype: _DType = None) -> _GSLMUnitLM:
    """GSLM's unit language model (fairseq ``transformer_lm_big`` + its ``dict.txt``), released for ``dense`` in
    {"logmel", "cpc", "hubert", "w2v2"} and ``vocab_size`` (k-means K) in {50, 100, 200}; ``weights=DIR`` loads a
    model converted with ``python -m conversion gslm_ulm checkpoint_best.pt dict.txt --out DIR``.

    >>> lm = gslm_ulm(dense="hubert", vocab_size=100)                           # doctest: +SKIP
    >>> lm.encode("71 12 57")                                                   # dict.txt ids + </s>
    >>> lm.score("71 12 57")["positional_scores"]                               # log p(unit | </s>, previous)
    >>> lm.sample_prompts(["utt|71 12 57 12"], sampling=True, temperature=0.7, prefix_size=-1,
    ...                   max_len_b=500, samples_per_prompt=10)                 # ulm/sample.py's lines
    """
    return _load(_GSLMUnitLM, "gslm_ulm", weights, map_location=map_location, progress=progress,
                 dtype=dtype, torch_dtype=torch_dtype, dense=dense,
                 vocab_size=vocab_size)


# ------------------------------------ Unit HiFi-GAN vocoders (GSLM, dGSLM, speech-resynthesis, speech-to-speech)

def hifigan_unit_vocoder(variant: str = "s2st_mhubert_km1000_lj", map_location: str | torch.device = "cpu",
                         progress: bool = True, weights: str | os.PathLike | None = None,
                         dtype: _DType = None, torch_dtype: _DType = None) -> _CodeHiFiGAN:
    """A discrete-unit HiFi-GAN vocoder (fairseq ``CodeHiFiGANVocoder``, textlesslib, speech-resynthesis
    ``CodeGenerator``). ``variant`` picks a release (``speechzoo list`` shows them: fairseq S2ST, SpeechMatrix,
    dGSLM, pGSLM, TWIST, Expresso); ``weights=DIR`` loads one converted with ``python -m conversion hifigan``
    (e.g. a speech-resynthesis generator you trained: those were never released).

    Call it as ``vocoder(units, dur_prediction=False, speaker=None, f0=None)`` -> waveform ``(B, 1, samples)``
    at ``vocoder.sample_rate``; see :class:`zoo.models.hifigan.CodeHiFiGAN`.

    >>> vocoder = hifigan_unit_vocoder("s2st_mhubert_km1000_lj")          # doctest: +SKIP
    >>> wav = vocoder(torch.tensor([[12, 12, 507, 33]]))                  # doctest: +SKIP
    """
    return _load(_CodeHiFiGAN, "hifigan_unit_vocoder", weights, map_location=map_location, progress=progress,
                 dtype=dtype, torch_dtype=torch_dtype,
                 variant=variant)


def f0_vqvae(map_location: str | torch.device = "cpu", progress: bool = True,
             weights: str | os.PathLike | None = None,
             dtype: _DType = None, torch_dtype: _DType = None) -> _F0VQVAE:
    """speech-resynthesis' F0 VQ-VAE (``Quantizer``), converted with ``python -m conversion f0_vqvae``; calling it
    on normalised F0 ``(B, 1, T)`` returns ``(reconstruction, codes)``. None was released, so ``weights`` is
    required.

    >>> recon, codes = f0_vqvae(weights="converted/f0_vq")(f0)            # doctest: +SKIP
    """
    return _load(_F0VQVAE, "f0_vqvae", weights, map_location=map_location, progress=progress,
                 dtype=dtype, torch_dtype=torch_dtype)



# ---------------------------------------------------------------- GSLM: units → speech (Tacotron2, WaveGlow)

def tacotron2(dense: str = "hubert", vocab_size: int = 100, max_decoder_steps: int = _DEFAULT_MAX_DECODER_STEPS,
              map_location: str | torch.device = "cpu", progress: bool = True,
              weights: str | os.PathLike | None = None,
              dtype: _DType = None, torch_dtype: _DType = None) -> _Tacotron2:
    """GSLM's unit-to-speech Tacotron2 for ``dense`` units ("logmel", "cpc", "hubert" or "w2v2") quantised with
    ``vocab_size`` in {50, 100, 200} clusters, as fairseq's ``load_tacotron`` (decoding at most
    ``max_decoder_steps`` steps), or ``weights=DIR`` converted with ``python -m conversion tacotron2``.

    ``encode(units)`` maps units to the model's ids through its code_dict; ``inference(ids[None], ...)`` returns
    ``[mel, mel_postnet, gate, alignments]`` as the original (the prenet dropout stays on: pass ``generator=`` or
    ``prenet_dropout_masks=`` for reproducible mels). See :mod:`zoo.models.tacotron2`.

    >>> taco = tacotron2(dense="hubert", vocab_size=100)                       # doctest: +SKIP
    >>> _, mel, _, _ = taco.inference(taco.encode("71 12 12 57 ...")[None])    # doctest: +SKIP
    """
    if max_decoder_steps < 1:
        raise _InputError(f"max_decoder_steps must be at least 1, got {max_decoder_steps}")
    model = _load(_Tacotron2, "tacotron2", weights, map_location=map_location, progress=progress,
                  dtype=dtype, torch_dtype=torch_dtype, dense=dense,
                  vocab_size=vocab_size)
    model.max_decoder_steps = max_decoder_steps
    return model


def waveglow(map_location: str | torch.device = "cpu", progress: bool = True,
             weights: str | os.PathLike | None = None,
             dtype: _DType = None, torch_dtype: _DType = None) -> _WaveGlow:
    """The WaveGlow vocoder of GSLM's unit-to-speech (NVIDIA's 256-channel LJSpeech model, textlesslib's standalone
    release), or ``weights=DIR`` converted with ``python -m conversion waveglow``. ``infer(mel, sigma=0.666)`` maps
    ``(B, 80, T)`` mels to ``(B, 256 T)`` audio at 22.05 kHz (``noise=``/``generator=`` fix the latent).

    >>> wg = waveglow()                                        # doctest: +SKIP
    >>> audio = wg.infer(mel, sigma=0.666)                     # doctest: +SKIP
    """
    return _load(_WaveGlow, "waveglow", weights, map_location=map_location, progress=progress,
                 dtype=dtype, torch_dtype=torch_dtype)


def waveglow_denoiser(waveglow: _WaveGlow, filter_length: int = 1024, n_overlap: int = 4, win_length: int = 1024,
                      mode: str = "zeros", map_location: str | torch.device | None = None,
                      dtype: _DType = None, torch_dtype: _DType = None) -> _WaveGlowDenoiser:
    """The original ``Denoiser(waveglow)``: ``den(audio, strength=0.1)`` removes WaveGlow's bias spectrum from
    ``(B, N)`` audio and returns ``(B, 1, N)``. It lives on the WaveGlow's device unless ``map_location`` names
    another.

    >>> den = waveglow_denoiser(wg)                            # doctest: +SKIP
    >>> clean = den(audio, strength=0.1)[:, 0]                 # doctest: +SKIP
    """
    denoiser = _cast(_WaveGlowDenoiser(waveglow, filter_length, n_overlap, win_length, mode), dtype, torch_dtype)
    return denoiser if map_location is None else denoiser.to(map_location)


# ---------------------------------------------------- GSLM: speech → dense features (HuBERT, wav2vec 2.0, CPC, log-mel)

def hubert_feature_reader(layer: int = 6, max_chunk: int = 1_600_000, checkpoint: str = "hubert-base-ls960",
                          map_location: str | torch.device = "cpu", progress: bool = True,
                          weights: str | os.PathLike | None = None,
                          dtype: _DType = None, torch_dtype: _DType = None) -> _HubertFeatureReader:
    """GSLM's ``HubertFeatureReader(checkpoint_path, layer, max_chunk)`` (textlesslib's default layer 6): a
    module whose ``get_feats(path, ref_len=None, channel_id=None)``, ``get_feats(wav)`` and ``reader(wav)``
    return ``(frames, 768)`` float32 features at 50 Hz from 16 kHz audio.

    ``layer`` is 1-based (block L's output; -1, 0 or > N: the last block). ``checkpoint`` picks a release by
    textlesslib's name: "hubert-base-ls960" (GSLM: layer 6; km500 sets: layer 9), "hubert-fisher" (dGSLM: layer
    12) or "mhubert-base-vp_en_es_fr" (speech-to-speech vocoders: layer 11); ``weights=DIR`` loads one converted
    with ``python -m conversion hubert``.

    >>> reader = hubert_feature_reader(layer=6)                    # doctest: +SKIP
    >>> features = reader.get_feats("speech.flac")                 # doctest: +SKIP
    """
    model = _load(_Hubert, "hubert_feature_reader", weights, map_location=map_location, progress=progress,
                  dtype=dtype, torch_dtype=torch_dtype,
                  checkpoint=checkpoint)
    return _HubertFeatureReader(model, layer, max_chunk)


def w2v2_feature_reader(layer: int, checkpoint: str = "w2v2-large-vox-new", map_location: str | torch.device = "cpu",
                        progress: bool = True, weights: str | os.PathLike | None = None,
                        dtype: _DType = None, torch_dtype: _DType = None) -> _Wav2VecFeatureReader:
    """GSLM's ``Wav2VecFeatureReader(checkpoint_path, layer)`` over wav2vec 2.0 Large "vox_new" (or
    ``weights=DIR`` from ``python -m conversion wav2vec2``): ``layer`` is 0-based (0 = block 1's output, -1 the
    last block's); ``get_feats(path, channel_id=None)`` / ``reader(wav)`` give ``(frames, 1024)`` at 50 Hz.

    >>> features = w2v2_feature_reader(layer=14).get_feats("speech.flac")   # doctest: +SKIP
    """
    model = _load(_Wav2Vec2, "w2v2_feature_reader", weights, map_location=map_location, progress=progress,
                  dtype=dtype, torch_dtype=torch_dtype,
                  checkpoint=checkpoint)
    return _Wav2VecFeatureReader(model, layer)


def cpc_feature_reader(layer: int | None = 2, use_encoder_layer: bool = False, norm_features: bool = False,
                       max_chunk: int = 64_000, checkpoint: str = "cpc-big-ll6k",
                       map_location: str | torch.device = "cpu", progress: bool = True,
                       weights: str | os.PathLike | None = None,
                       dtype: _DType = None, torch_dtype: _DType = None) -> _CpcFeatureReader:
    """GSLM's ``CpcFeatureReader(checkpoint_path, layer, use_encoder_layer, norm_features, max_chunk)`` over
    "CPC big" (or ``weights=DIR`` from ``python -m conversion cpc``): ``layer`` LSTM layers are kept (GSLM: 2;
    None: all); 100 Hz features, with the original's chunking and its whole-signal tail.

    >>> features = cpc_feature_reader(layer=2).get_feats("speech.flac")     # doctest: +SKIP
    """
    model = _load(_CPC, "cpc_feature_reader", weights, map_location=map_location, progress=progress,
                  dtype=dtype, torch_dtype=torch_dtype,
                  checkpoint=checkpoint)
    return _CpcFeatureReader(model, layer, use_encoder_layer, norm_features, max_chunk)


def logmel_feature_reader(num_mel_bins: int = 80, frame_length: float = 25.0,
                          map_location: str | torch.device = "cpu",
                          dtype: _DType = None, torch_dtype: _DType = None) -> _LogMelFeatureReader:
    """GSLM's ``LogMelFeatureReader(num_mel_bins=80, frame_length=25.0)``: Kaldi log-mel filterbanks (no
    weights), ``(frames, num_mel_bins)`` at 100 Hz.

    >>> features = logmel_feature_reader().get_feats("speech.flac")         # doctest: +SKIP
    """
    return _cast(_LogMelFeatureReader(num_mel_bins, frame_length).to(map_location), dtype, torch_dtype)


def gslm_feature_reader(feature_type: str, **kwargs: _Any) -> _FeatureReader:
    """GSLM's ``get_feature_reader(feature_type)(...)``: ``feature_type`` "hubert", "w2v2", "cpc" or "logmel",
    and the keywords of that reader's entry point.

    >>> reader = gslm_feature_reader("hubert", layer=6)                      # doctest: +SKIP
    """
    readers = {"hubert": hubert_feature_reader, "w2v2": w2v2_feature_reader, "cpc": cpc_feature_reader,
               "logmel": logmel_feature_reader}
    if feature_type not in readers:
        raise _InputError(f"feature_type {feature_type!r} is not supported; choose one of {sorted(readers)}")
    return readers[feature_type](**kwargs)


def speech_encoder(dense_model: str = "hubert-base-ls960", quantizer_model: str = "kmeans", vocab_size: int = 100,
                   deduplicate: bool = True, need_f0: bool = False, add_bos_eos: bool = False,
                   f0_normalizer: _Callable | None = None, f0_quantizer: _Callable | None = None,
                   map_location: str | torch.device = "cpu", progress: bool = True,
                   weights: str | os.PathLike | None = None,
                   dense_weights: str | os.PathLike | None = None,
                   dtype: _DType = None, torch_dtype: _DType = None) -> _SpeechEncoder:
    """textlesslib's ``SpeechEncoder.by_name(dense_model_name, quantizer_model_name, vocab_size, deduplicate,
    add_bos_eos, need_f0, ...)``: ``encoder(wav)`` (16 kHz, ``(samples,)`` or ``(channels, samples)``) returns
    ``{"units", "durations", "dense"}`` (+ ``"f0"``, the mean voiced YAAPT F0 per unit, with ``need_f0``);
    ``encoder.encode(wavs, batch_size=8)`` encodes a list in padded batches.

    ``dense_model`` and ``vocab_size`` pick a GSLM k-means release (``speechzoo list``) and the dense model at the
    layer it clusters; ``weights`` (the k-means) and ``dense_weights`` (the dense model) load converted directories
    or Hub repos instead.

    >>> encoder = speech_encoder("hubert-base-ls960", vocab_size=100)   # doctest: +SKIP
    >>> encoded = encoder(wav)                                          # doctest: +SKIP
    >>> encoded["units"], encoded["durations"]                          # doctest: +SKIP
    """
    return _SpeechEncoder.by_name(dense_model, quantizer_model, vocab_size, deduplicate, add_bos_eos, need_f0,
                                  f0_normalizer, f0_quantizer, map_location=map_location, progress=progress,
                                  dense_weights=dense_weights, quantizer_weights=weights,
                                  dtype=_dtype_alias(dtype, torch_dtype))


# ------------------------------------------------------------------- dGSLM: two-channel spoken dialogue unit LM

def speech_dlm(variant: str = "speech_dlm_base", weights: str | os.PathLike | None = None,
               map_location: str | torch.device = "cpu", progress: bool = True,
               dtype: _DType = None, torch_dtype: _DType = None) -> _SpeechDLMHubInterface:
    """dGSLM's SpeechDLM as fairseq's ``SpeechDLM.from_pretrained(model_dir, 'speech_dlm_base.pt', data_dir)``
    returns it: the hub interface (``.models[0]`` is the model) with ``encode``, ``decode``, ``generate`` and
    ``sample`` on ``{'unitA': '7 376 ...', 'unitB': '...'}`` Fisher-HuBERT k-means-500 unit strings (50 per second,
    one stream per speaker). ``variant``: the released "speech_dlm_base"; ``weights=DIR``: a model converted with
    ``python -m conversion speech_dlm CKPT.pt dict.unitA.txt dict.unitB.txt --out DIR``.

    >>> speech_dlm = speech_dlm()                                              # doctest: +SKIP
    >>> speech_dlm.eval()                                                      # doctest: +SKIP
    >>> speech_dlm.sample([{"unitA": "7 376 376 133 178 486 486 486", "unitB": "7 499 415 177 7 7 7 7"}],
    ...                   max_len_a=0, max_len_b=500, sampling=True, beam=5)  # doctest: +SKIP
    """
    model = _load(_SpeechDLM, "speech_dlm", weights, map_location=map_location, progress=progress,
                  dtype=dtype, torch_dtype=torch_dtype, variant=variant)
    return _SpeechDLMHubInterface(model)
