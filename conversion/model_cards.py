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
    sources = "\n".join(f"  - {f.url} ({_describe_hash(f.sha256)})" for f in weights.source_files)
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


def _describe_hash(sha256: str | None) -> str:
    if not sha256:
        return "SHA-256 not published by the release"
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
GSLM_ULM_USAGE = """
import torch

lm = {load}
ids = lm.encode("71 12 57 12")  # dict.txt ids of the units, then </s>
scores = lm.score("71 12 57 12")["positional_scores"]  # natural-log p(unit | </s>, previous units)
# ulm/sample.py: prompt lines "id|units" in, "id__k|units" lines out (prompt included)
lines = lm.sample_prompts(["utt1|71 12 57 12"], sampling=True, temperature=0.7, prefix_size=-1,
                          max_len_b=500, samples_per_prompt=10)
"""


def _gslm_ulm_details(weights: Weights) -> str:
    return ("fairseq's `transformer_lm`, `transformer_lm_big` in GSLM's training recipe (12 pre-LN layers, width 1024, "
            "16 heads, FFN 4096, ReLU, sinusoidal positions, tied and scaled embeddings; the converter builds the "
            "model from the settings stored in the checkpoint), over the model's `dict.txt`: `<s> <pad> </s> <unk>`, then the "
            "units by descending training count, padded with `madeupword` fillers to a multiple of 8, so a unit's id "
            "is not the unit. Sequences start with `</s>`. Generation is fairseq's sequence generator (beam search, "
            "greedy, sampling with top-k/top-p and temperature) on a KV cache; `speechzoo gslm sample` is "
            "`ulm/sample.py`.")


HUBERT_CITATION = """
@article{hsu2021hubert,
  title={HuBERT: Self-Supervised Speech Representation Learning by Masked Prediction of Hidden Units},
  author={Hsu, Wei-Ning and Bolte, Benjamin and Tsai, Yao-Hung Hubert and Lakhotia, Kushal and Salakhutdinov, Ruslan and Mohamed, Abdelrahman},
  journal={IEEE/ACM Transactions on Audio, Speech, and Language Processing},
  volume={29},
  pages={3451--3460},
  year={2021}
}"""
WAV2VEC2_CITATION = """
@inproceedings{baevski2020wav2vec,
  title={wav2vec 2.0: A Framework for Self-Supervised Learning of Speech Representations},
  author={Baevski, Alexei and Zhou, Henry and Mohamed, Abdelrahman and Auli, Michael},
  booktitle={Advances in Neural Information Processing Systems},
  year={2020}
}"""
CPC_CITATION = """
@inproceedings{riviere2020cpc,
  title={Unsupervised Pretraining Transfers Well Across Languages},
  author={Rivi{\\`e}re, Morgane and Joulin, Armand and Mazar{\\'e}, Pierre-Emmanuel and Dupoux, Emmanuel},
  booktitle={ICASSP},
  year={2020}
}"""
GSLM_CODE = ("[facebookresearch/fairseq](https://github.com/facebookresearch/fairseq) @ "
             "`3d262bb25690e4eb2e7d3c1309b1e9c406ca4b99` (`examples/textless_nlp/gslm/speech2unit/pretrained/`, "
             "`fairseq/models/hubert/hubert.py`, `fairseq/models/wav2vec/wav2vec2.py`)")
READER_USAGE = """
import torch

# {layers}
reader = torch.hub.load("speechzoo/speechzoo", "{entry_point}", layer=LAYER, checkpoint="{checkpoint}")
features = reader.get_feats("speech.flac")   # 16 kHz audio -> (frames, dim) float32, as GSLM's get_feats
features = reader(wav)                       # or a 1-D float waveform at 16 kHz
"""


def _reader_template(title: str, tags: tuple[str, ...], citation: str, layers: str) -> CardTemplate:
    return CardTemplate(title=title, tags=("audio", "speech", "feature-extraction", "gslm", "textless", *tags),
                        datasets=(), pipeline_tag="feature-extraction", original_code=GSLM_CODE,
                        usage=READER_USAGE.replace("{layers}", layers), citation=GSLM_CITATION + "\n" + citation)


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
    "gslm_ulm": CardTemplate(
        title="GSLM unit language model: {dense} units, K = {vocab_size}",
        tags=("audio", "speech", "language-model", "discrete-units", "gslm", "textless", "fairseq"),
        datasets=(),
        pipeline_tag="text-generation",
        original_code="[facebookresearch/fairseq](https://github.com/facebookresearch/fairseq) @ "
                      "`3d262bb25690e4eb2e7d3c1309b1e9c406ca4b99` (`examples/textless_nlp/gslm/ulm/sample.py`, "
                      "`fairseq/models/transformer_lm.py`, `fairseq/sequence_generator.py`, `fairseq/hub_utils.py`)",
        usage=GSLM_ULM_USAGE,
        citation=GSLM_CITATION,
        details=_gslm_ulm_details,
    ),
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
    "hubert_feature_reader": _reader_template(
        "HuBERT `{checkpoint}` for GSLM's HuBERT feature reader", ("hubert",), HUBERT_CITATION,
        "LAYER is 1-based, as the original: GSLM reads hubert-base-ls960 at 6 (its km500 set at 9), dGSLM "
        "hubert-fisher at 12, the speech-to-speech vocoders mhubert-base-vp_en_es_fr at 11"),
    "w2v2_feature_reader": _reader_template(
        "wav2vec 2.0 `{checkpoint}` for GSLM's w2v2 feature reader", ("wav2vec2",), WAV2VEC2_CITATION,
        "LAYER is 0-based, as the original (0 = the first block's output, -1 the last)"),
    "cpc_feature_reader": _reader_template(
        "Modified CPC `{checkpoint}` for GSLM's CPC feature reader", ("cpc",), CPC_CITATION,
        "LAYER is the number of LSTM layers kept, as the original: GSLM uses 2"),
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
