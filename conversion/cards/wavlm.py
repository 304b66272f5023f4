"""Card of WavLM Large (``hubconf.wavlm_large``)."""
from __future__ import annotations

from . import CardTemplate
from .citations import WAVLM_CITATION

TEMPLATES: dict[str, CardTemplate] = {
    "wavlm_large": CardTemplate(
        notebooks=("dpslm",),
        title="WavLM Large",
        tags=("audio", "speech", "self-supervised-learning", "feature-extraction", "wavlm", "dp-slm"),
        datasets=("libri-light", "gigaspeech", "voxpopuli"),
        pipeline_tag="feature-extraction",
        summary="""\
Microsoft's self-supervised speech encoder (315 M parameters, 94 k hours of Libri-Light, GigaSpeech and
VoxPopuli English): a 7-block conv stack turns {sample_rate} Hz audio into **{frame_rate:g} frames per second**,
which 24 pre-LN transformer blocks with a gated relative position bias map to 1024-dim features. DP-SLM quantises
its **layer-11** features with the k-means codebooks of `hubconf.codebook(layer=11, k=...)`.""",
        usage="""
import torch
from zoo import audio

model, extract_features = {load}
wav, sr = audio.load("speech.flac")                     # (1, samples); resampled to 16 kHz inside
features = extract_features(model, wav, sr, layer=11)   # (T, 1024), T = samples_16k // 320
""",
        notes="""\
As in the original: 40 zeros are padded on both sides, the waveform is **not** normalised, and `layer` is 1-based
(`layer=11` is block 11's output without the final LayerNorm; `layer=None` is the final output, with it). Beyond the
original: `extract_features(model, batch, sr, layer=11, lengths=lengths)` takes a ragged `(B, N)` batch and returns
`(features (B, T, 1024), frame_lengths)`, each item equal to its unbatched features; audio longer than
`chunk_seconds` (default 100 s) is encoded in equal chunks cut at frame boundaries (frames near a cut differ from a
single pass, since attention is global; shorter audio gives exactly the single-pass result).""",
        original_code="`wavlm/WavLM.py` and `wavlm/modules.py` of "
                      "[nicolvisser/WavLM-codebooks](https://github.com/nicolvisser/WavLM-codebooks) @ "
                      "`d507263b4b78351045de6fe4576381641b8df1e7`, a copy of "
                      "[microsoft/unilm](https://github.com/microsoft/unilm)'s `wavlm/` (MIT License)",
        release="Microsoft's WavLM Large in the original `{{'cfg', 'model'}}` container",
        conversion="the training mask embedding dropped, the positional conv's weight norm folded (over the kernel "
                   "dim), saved as safetensors. The transformers layout (`microsoft/wavlm-large`: `config.json` + "
                   "`pytorch_model.bin`) converts the same way",
        parity="features match the original within 1e-4 (checked on fixtures the original made) and transformers' "
               "`WavLMModel` within 1e-4 at every layer.",
        citation=WAVLM_CITATION,
    ),
}
