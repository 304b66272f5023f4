"""Cards of GSLM's unit language models (``hubconf.gslm_ulm``)."""
from __future__ import annotations

from zoo.registry import Weights

from . import CardTemplate

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


TEMPLATES: dict[str, CardTemplate] = {
    "gslm_ulm": CardTemplate(
        notebooks=("gslm",),
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
}
