"""Model cards (``model_cards/<weights name>.md``) generated from the weights registry.

The front matter, the hub one-liner and the provenance come from each :class:`~zoo.registry.Weights`; what the
registry does not hold — tags, datasets, pipeline tag, the original code, a usage snippet, the citation — comes
from one :class:`CardTemplate` per entry point. Give another family generated cards by adding its template to
:data:`TEMPLATES`.

    python -m conversion.model_cards            # write the cards of every entry point in TEMPLATES
    python -m conversion.model_cards --check    # exit 1 if one of them is missing or out of date
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from zoo.registry import Weights, all_weights

CARDS = Path(__file__).resolve().parents[1] / "model_cards"
HUB_REPO = "speechzoo/speechzoo"
#: Digits of a SHA-256 prefix as torch.hub's ``check_hash`` file names carry it.
_HASH_PREFIX_DIGITS = 8


@dataclass(frozen=True)
class CardTemplate:
    """The family-specific parts of a card. ``title`` and ``usage`` are ``str.format``-ed with the Weights fields,
    its ``kwargs`` and ``load`` (the ``torch.hub.load(...)`` call that selects the weights)."""

    title: str
    tags: tuple[str, ...]
    datasets: tuple[str, ...]
    pipeline_tag: str
    original_code: str                          # "owner/repo@commit (files)"
    usage: str                                  # a Python snippet
    citation: str                               # BibTeX
    details: Callable[[Weights], str] = field(default=lambda weights: "")  # extra paragraph per weight set


def hub_call(weights: Weights) -> str:
    """``torch.hub.load("speechzoo/speechzoo", "<entry point>", <kwargs>)`` for ``weights``."""
    arguments = "".join(f", {key}={value!r}" for key, value in weights.kwargs.items())
    return f'torch.hub.load("{HUB_REPO}", "{weights.entry_point}"{arguments})'


def render(weights: Weights, template: CardTemplate) -> str:
    fields = {**vars(weights), **weights.kwargs, "load": hub_call(weights)}
    front = ["---", f"license: {weights.license.lower().replace(' ', '-')}", "library_name: speechzoo",
             "tags:", *[f"- {tag}" for tag in template.tags],
             "datasets:" + ("" if template.datasets else " []"), *[f"- {d}" for d in template.datasets],
             f"pipeline_tag: {template.pipeline_tag}", "---"]
    rates = [f"{weights.sample_rate} Hz audio" if weights.sample_rate else "",
             f"{weights.frame_rate:g} frames per second" if weights.frame_rate else ""]
    rates = ", ".join(rate for rate in rates if rate)
    sources = "\n".join(f"  - {f.url} ({_describe_hash(f.sha256, f.md5)})" for f in weights.source_files)
    files = " ".join(Path(f.url).name for f in weights.source_files)
    details = template.details(weights)
    sections = [
        "\n".join(front),
        f"# {template.title.format(**fields)}",
        weights.description[0].upper() + weights.description[1:] + "." + (f" Rates: {rates}." if rates else ""),
        *([details] if details else []),
        "## Usage",
        f"```python\n{template.usage.format(**fields).strip()}\n```",
        "## Provenance",
        "\n".join([
            f"- Original code: {template.original_code}.",
            f"- Original release:\n{sources}",
            f"- Converted with `python -m conversion {weights.converter} {files} --out DIR` "
            f"(`zoo.formats.{weights.converter}`); mirrored as `{weights.repo_id}` @ `{weights.revision}`.",
            f"- Paper: {weights.paper}",
        ]),
        "## Citation",
        f"```bibtex\n{template.citation.strip()}\n```",
    ]
    return "\n\n".join(sections) + "\n"


def _describe_hash(sha256: str | None, md5: str | None = None) -> str:
    if not sha256:
        return f"MD5 `{md5}` as the release published it" if md5 else "SHA-256 not published by the release"
    if len(sha256) == _HASH_PREFIX_DIGITS:
        return f"SHA-256 starts with `{sha256}`, as torch.hub's `check_hash` names the file"
    return f"SHA-256 `{sha256}`"


# ------------------------------------------------------------------------------------------ templates
WAVLM_CITATION = """
@article{chen2022wavlm,
  title={WavLM: Large-Scale Self-Supervised Pre-Training for Full Stack Speech Processing},
  author={Chen, Sanyuan and Wang, Chengyi and Chen, Zhengyang and Wu, Yu and Liu, Shujie and Chen, Zhuo and Li, Jinyu and Kanda, Naoyuki and Yoshioka, Takuya and Xiao, Xiong and Wu, Jian and Zhou, Long and Ren, Shuo and Qian, Yanmin and Qian, Yao and Wu, Jian and Zeng, Michael and Yu, Xiangzhan and Wei, Furu},
  journal={IEEE Journal of Selected Topics in Signal Processing},
  volume={16},
  number={6},
  pages={1505--1518},
  year={2022}
}"""
DPSLM_CITATION = """
@article{visser2025dpslm,
  title={Spoken Language Modeling with Duration-Penalized Self-Supervised Units},
  author={Visser, Nicol and Kamper, Herman},
  journal={arXiv preprint arXiv:2505.23494},
  year={2025}
}

@article{kamper2022dpdp,
  title={Word Segmentation on Discovered Phone Units with Dynamic Programming and Self-Supervised Scoring},
  author={Kamper, Herman},
  journal={arXiv preprint arXiv:2202.11929},
  year={2022}
}"""

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


ELLAV_CITATION = """
@article{song2024ellav,
  title={ELLA-V: Stable Neural Codec Language Modeling with Alignment-guided Sequence Reordering},
  author={Song, Yakun and Chen, Zhuo and Wang, Xiaofei and Ma, Ziyang and Chen, Xie},
  journal={arXiv preprint arXiv:2401.07333},
  year={2024}
}"""
ULM_CODE = ("[nicolvisser/Mistral-ULM](https://github.com/nicolvisser/Mistral-ULM) @ "
            "`5db79efc39fd7298c38e68de5a0ff95e4772f3ba` (`ulm/transformer.py`, `ulm/units/tokenizer.py`, `hubconf.py`, "
            "`scripts/loglikelihood_zerospeech.py`)")
ELLAV_CODE = ("[nicolvisser/ELLA-V](https://github.com/nicolvisser/ELLA-V) @ `3a27cee16edf9d94f3aaa4c7804b850d002a54a1` "
              "(`ellav/model.py`, `ellav/generate.py`, `ellav/tokenizer.py`, `ellav/transformer/`, `hubconf.py`)")
ULM_USAGE = """
import torch

model, tokenizer = {load}
units = torch.unique_consecutive(units_duped)  # DPDP units (k={k}, lmbda={lmbda}); the ULM models them deduplicated
ll = model.loglikelihood(tokenizer.encode(units.tolist()))  # summed natural-log likelihood, first unit included
scores = model.loglikelihoods([tokenizer.encode(u) for u in batch])  # packed batches, as the ZeroSpeech script
continuation = model.generate(units, max_new_tokens=250, temperature=1.0, top_p=0.9)  # KV-cached sampling
"""
ELLAV_USAGE = """
import torch

ellav = {load}
codec_ids_list, finished = ellav.generate(
    prompts=[{prompt}], max_tokens=1000, max_codec_tokens_per_phone=10,
    temperature=1.0, top_p=0.8, chunk_size=None, progress=True)  # KV-cached, batched over prompts

wavtokenizer, encode, decode = torch.hub.load("speechzoo/speechzoo", "wavtokenizer", "small_600_24k_4096")
wav, sr = decode(wavtokenizer, codec_ids_list[0][None, None, :])  # (1, 600 * T) at 24 kHz
"""


def _ulm_details(weights: Weights) -> str:
    return ("A pre-norm Mistral decoder (interleaved RoPE, RMSNorm, SwiGLU, no biases, untied embeddings; the 1k-hour "
            "releases have 12 layers, width 1024, 16 heads, SwiGLU 4096, and every model is built from the args "
            "stored in its checkpoint) over `k + 1` tokens: BOS (id 0) and unit `u` as id `u + 1`. It was trained "
            "on chunks of consecutive utterances of deduplicated units, each starting with BOS. The original has no "
            "generation code; speechzoo's `generate` adds a KV cache and nucleus sampling (BOS is never drawn).")


def _ellav_details(weights: Weights) -> str:
    return ("ELLA-V's generalized autoregressive stage (WavTokenizer has one codebook, so there is no NAR stage): "
            "a 12-layer Mistral decoder whose vocabulary is UNK, BOS, EOP, EOS, the phones in Python `sorted` order "
            "and the 4096 codec ids. A prompt is the deduplicated phones then `BOS, phone 0`; generation writes "
            "codec ids for the current phone until EOP, and the next phone is then forced, as in the original.")


def _ulm_template(training: str) -> CardTemplate:
    return CardTemplate(
        title=f"Mistral-ULM unit language model, k = {{k}}, λ = {{lmbda}} ({training})",
        tags=("audio", "speech", "language-model", "discrete-units", "wavlm", "dp-slm", "textless", "mistral"),
        datasets=(),
        pipeline_tag="text-generation",
        original_code=ULM_CODE,
        usage=ULM_USAGE,
        citation=DPSLM_CITATION,
        details=_ulm_details,
    )


GSLM_CITATION = """
@article{lakhotia2021gslm,
  title={On Generative Spoken Language Modeling from Raw Audio},
  author={Lakhotia, Kushal and Kharitonov, Eugene and Hsu, Wei-Ning and Adi, Yossi and Polyak, Adam and Bolte, Benjamin and Nguyen, Tu-Anh and Copet, Jade and Baevski, Alexei and Mohamed, Abdelrahman and Dupoux, Emmanuel},
  journal={Transactions of the Association for Computational Linguistics},
  volume={9},
  pages={1336--1354},
  year={2021}
}"""
WAVEGLOW_CITATION = """
@inproceedings{prenger2019waveglow,
  title={WaveGlow: A Flow-based Generative Network for Speech Synthesis},
  author={Prenger, Ryan and Valle, Rafael and Catanzaro, Bryan},
  booktitle={ICASSP 2019},
  pages={3617--3621},
  year={2019}
}"""
TACOTRON2_CITATION = """
@inproceedings{shen2018tacotron2,
  title={Natural TTS Synthesis by Conditioning WaveNet on Mel Spectrogram Predictions},
  author={Shen, Jonathan and Pang, Ruoming and Weiss, Ron J. and Schuster, Mike and Jaitly, Navdeep and Yang, Zongheng and Chen, Zhifeng and Zhang, Yu and Wang, Yuxuan and Skerry-Ryan, R.J. and Saurous, Rif A. and Agiomyrgiannakis, Yannis and Wu, Yonghui},
  booktitle={ICASSP 2018},
  pages={4779--4783},
  year={2018}
}"""
GSLM_U2S_CODE = ("[facebookresearch/fairseq](https://github.com/facebookresearch/fairseq) @ "
                 "`3d262bb25690e4eb2e7d3c1309b1e9c406ca4b99` (`examples/textless_nlp/gslm/unit2speech/`: "
                 "`tacotron2/model.py`, `tacotron2/waveglow_denoiser.py`, `glow.py`, `tts_data.py`, `utils.py`); "
                 "[facebookresearch/textlesslib](https://github.com/facebookresearch/textlesslib) @ "
                 "`ba33d669d8284b4f7bfe81e7384e83ab799fe384` (`textless/vocoders/tacotron2/vocoder.py`)")
U2S_USAGE = """
import torch

taco = torch.hub.load("speechzoo/speechzoo", "tacotron2", dense="{dense}", vocab_size={vocab_size})
waveglow = torch.hub.load("speechzoo/speechzoo", "waveglow")
denoiser = torch.hub.load("speechzoo/speechzoo", "waveglow_denoiser", waveglow)

ids = taco.encode("71 12 12 57 57 3 ...")  # {dense} k-means-{vocab_size} units, through this model's code_dict
g = torch.Generator().manual_seed(0)        # the prenet dropout stays on at inference, as in the original
with torch.inference_mode():
    _, mel, _, _ = taco.inference(ids[None], generator=g)
    audio = waveglow.infer(mel, sigma=0.666, generator=g)
    audio = denoiser(audio, strength=0.1)[:, 0]  # (1, samples) at 22.05 kHz
"""


def _tacotron2_details(weights: Weights) -> str:
    return ("GSLM's modified Tacotron2: units are mapped to ids through the `code_dict` released with the model "
            "(kept in `config.json`; its order is model specific), with `<s>`/`</s>` added and repeated units "
            "collapsed; 3 convolutions and a BiLSTM encode them, and a location-attention decoder writes 80-bin "
            "mel frames (hop 256 at 22.05 kHz) until its gate stops it (at most `max_decoder_steps`, 2000 by "
            "default). The prenet's dropout stays active at inference, so synthesis is stochastic unless "
            "`generator=` or `prenet_dropout_masks=` is given. Trained on LJSpeech quantised with the same dense "
            "model and k-means as the units it reads. Speak its mels with the `waveglow` entry point.")


def _waveglow_details(weights: Weights) -> str:
    return ("WaveGlow, 12 flows of 8 WaveNet-like layers with 256 channels, 8-sample groups, 2 channels out every 4 "
            "flows; weight norm folded at conversion. `infer(mel, sigma)` takes the latent as `noise=` or draws it "
            "from `generator=`. The legacy full-module pickle `waveglow_256channels_new.pt` of the fairseq README "
            "converts to the same model (`python -m conversion waveglow`, read without its classes).")


TEMPLATES: dict[str, CardTemplate] = {
    "codebook": CardTemplate(
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
wavlm, extract_features = torch.hub.load("speechzoo/speechzoo", "wavlm_large")
wav, sr = audio.load("speech.flac")
features = extract_features(wavlm, wav, sr, layer={layer})  # (T, 1024) at 50 Hz

units = torch.cdist(features, codebook).argmin(dim=1)  # k-means units, one per frame

# DP-SLM's coarser units: duration-penalised dynamic programming over the same codebook
quantizer = torch.hub.load("speechzoo/speechzoo", "dpdp_quantizer_from_codebook", codebook, lmbda=4500)
quantized_features, units = quantizer(features)
units = torch.unique_consecutive(units)
""",
        citation=DPSLM_CITATION + "\n" + WAVLM_CITATION,
        details=_kmeans_details,
    ),
    "ulm": _ulm_template("1k hours, 10k steps"),
    "ulm_wavlm_layer_11_dpdp_hours_60k_steps_200k": _ulm_template("60k hours, 200k steps"),
    "ellav_units_to_wavtokenizer": CardTemplate(
        title="ELLA-V: WavLM DPDP units (k = {k}, λ = {lmbda}) to WavTokenizer codes",
        tags=("audio", "speech", "text-to-speech", "discrete-units", "codec-language-model", "ella-v", "wavtokenizer",
              "dp-slm", "textless"),
        datasets=(),
        pipeline_tag="text-to-speech",
        original_code=ELLAV_CODE,
        usage=ELLAV_USAGE.replace("{prompt}", '[f"u{{u}}" for u in units]'),
        citation=DPSLM_CITATION + "\n" + ELLAV_CITATION,
        details=_ellav_details,
    ),
    "ellav_phones_to_wavtokenizer": CardTemplate(
        title="ELLA-V: us-arpa phones to WavTokenizer codes",
        tags=("audio", "speech", "text-to-speech", "codec-language-model", "ella-v", "wavtokenizer", "dp-slm"),
        datasets=(),
        pipeline_tag="text-to-speech",
        original_code=ELLAV_CODE,
        usage=ELLAV_USAGE.replace("{prompt}", '["HH", "AH0", "L", "OW1"]'),
        citation=DPSLM_CITATION + "\n" + ELLAV_CITATION,
        details=_ellav_details,
    ),
    "tacotron2": CardTemplate(
        title="GSLM unit-to-speech Tacotron2, {dense} k-means-{vocab_size} units",
        tags=("audio", "speech", "text-to-speech", "tacotron2", "discrete-units", "gslm", "textless"),
        datasets=("keithito/lj_speech",),
        pipeline_tag="text-to-speech",
        original_code=GSLM_U2S_CODE,
        usage=U2S_USAGE,
        citation=GSLM_CITATION + "\n" + TACOTRON2_CITATION,
        details=_tacotron2_details,
    ),
    "waveglow": CardTemplate(
        title="WaveGlow vocoder (256 channels, LJSpeech) of GSLM",
        tags=("audio", "speech", "vocoder", "waveglow", "gslm", "textless"),
        datasets=("keithito/lj_speech",),
        pipeline_tag="text-to-speech",
        original_code=GSLM_U2S_CODE,
        usage=U2S_USAGE.replace("{dense}", "hubert").replace("{vocab_size}", "100"),
        citation=GSLM_CITATION + "\n" + WAVEGLOW_CITATION,
        details=_waveglow_details,
    ),
}


def cards() -> dict[Path, str]:
    """Every card the templates produce, by path."""
    return {CARDS / f"{w.name}.md": render(w, TEMPLATES[w.entry_point])
            for w in all_weights() if w.entry_point in TEMPLATES}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conversion.model_cards", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report missing or out-of-date cards")
    args = parser.parse_args(argv)
    stale = [path for path, text in cards().items() if not path.is_file() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"out of date: {path.relative_to(CARDS.parent)}", file=sys.stderr)
        return 1 if stale else 0
    for path, text in cards().items():
        path.write_text(text)
        print(path.relative_to(CARDS.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
