"""Cards of the WavTokenizer codecs (``hubconf.wavtokenizer`` and its two named entries)."""
from __future__ import annotations

from zoo.models.wavtokenizer import VARIANTS
from zoo.registry import Weights

from . import CardTemplate

WAVTOKENIZER_CITATION = """
@article{ji2024wavtokenizer,
  title={Wavtokenizer: an efficient acoustic discrete codec tokenizer for audio language modeling},
  author={Ji, Shengpeng and Jiang, Ziyue and Wang, Wen and Chen, Yifu and Fang, Minghui and Zuo, Jialong and Yang, Qian and Cheng, Xize and Wang, Zehan and Li, Ruiqi and others},
  journal={arXiv preprint arXiv:2408.16532},
  year={2024}
}"""
#: The inference fork nicolvisser's hubconf downloads the same checkpoints from.
FORK_RELEASE = "https://github.com/nicolvisser/WavTokenizer/releases/download/v0.1/"


def _summary(weights: Weights) -> str:
    config = VARIANTS[weights.kwargs["variant"]]
    return (f"A single-codebook acoustic codec for 24 kHz speech: a SEANet encoder (strides of `downsamples` "
            f"[{','.join(map(str, config.downsamples))}] reversed, hop {config.hop_length}) and one Euclidean "
            f"codebook of {config.codebook_size} × 512 turn audio into **{config.frame_rate:g} codec ids per "
            f"second**; a Vocos backbone (ConvNeXt with AdaLayerNorm, after an attention \"pos_net\") and an ISTFT "
            f"head (n_fft {config.head.n_fft}, hop {config.head.hop_length}) turn ids back into audio. DP-SLM "
            "uses it as the vocoder behind ELLA-V. Trained on LibriTTS (speech only).")


def _usage(weights: Weights) -> str:
    variant, hop = weights.kwargs["variant"], VARIANTS[weights.kwargs["variant"]].hop_length
    return f"""
import torch
from zoo import audio

model, encode, decode = torch.hub.load("speechzoo/speechzoo", "{variant}", trust_repo=True)
wav, sr = audio.load("speech.flac")          # (1, samples), any rate: encode resamples to 24 kHz
codes = encode(model, wav, sr)               # (1, 1, T) int64, T = ceil(samples_24k / {hop})
wav_24k, sr_24k = decode(model, codes)       # (1, T * {hop}), 24000
"""


def _notes(weights: Weights) -> str:
    variant, hop = weights.kwargs["variant"], VARIANTS[weights.kwargs["variant"]].hop_length
    return (f'`hubconf.wavtokenizer(variant="{variant}")` is the same model. The model\'s own methods keep the '
            "original's shapes: `model.encode(wav, bandwidth_id=0)` → (features (B, 512, T), codes (1, B, T)), "
            "`model.codes_to_features(codes)` with codes (K, B, L) — a 2-D tensor is (K, L) of **one** item —, and "
            f"`model.decode(features, bandwidth_id=0)` → (B, L·{hop}).")


def _release(weights: Weights) -> str:
    (source,) = weights.source_files
    name = source.url.rsplit("/", 1)[1]
    fork_name = name.replace(".ckpt", f"_{source.sha256[:8]}.ckpt")
    return (f"the authors' release on the Hub, `novateur/WavTokenizer`; nicolvisser's hubconf downloads the same "
            f"file as `{FORK_RELEASE}{fork_name}`")


TEMPLATES: dict[str, CardTemplate] = {
    "wavtokenizer": CardTemplate(
        notebooks=("dpslm",),
        title=lambda w: (f"WavTokenizer small, {w.frame_rate:g} Hz, 1 × "
                         f"{VARIANTS[w.kwargs['variant']].codebook_size} codebook (`{w.kwargs['variant']}`)"),
        tags=("audio", "speech", "audio-codec", "wavtokenizer", "dp-slm"),
        datasets=("libritts",),
        pipeline_tag="audio-to-audio",
        summary=_summary,
        usage=_usage,
        notes=_notes,
        original_code="[nicolvisser/WavTokenizer](https://github.com/nicolvisser/WavTokenizer) @ "
                      "`02ce308cde48ca9cdbef96f292c98cf922dee00a` (the inference fork of "
                      "[jishengpeng/WavTokenizer](https://github.com/jishengpeng/WavTokenizer) @ "
                      "`5cf440d91ac420ca338f117b7003a77450d64730`)",
        release=_release,
        conversion="the Lightning checkpoint's generator only (discriminators, loss buffers, the unused SEANet "
                   "decoder and the codebook's EMA state dropped), encoder weight norm folded, saved as safetensors",
        parity="the same codes as the original and waveforms within float32 rounding (checked on fixtures the "
               "original made).",
        citation=WAVTOKENIZER_CITATION,
    ),
}
