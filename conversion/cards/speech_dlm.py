"""Card of dGSLM's SpeechDLM (``hubconf.speech_dlm``)."""
from __future__ import annotations

from . import CardTemplate

TEMPLATES: dict[str, CardTemplate] = {
    "speech_dlm": CardTemplate(
        notebooks=("dgslm",),
        title="dGSLM SpeechDLM: two-channel spoken dialogue language model over Fisher-HuBERT units",
        tags=("audio", "speech", "language-model", "discrete-units", "dgslm", "dialogue", "textless", "fairseq"),
        datasets=(),
        pipeline_tag="text-generation",
        original_code="[facebookresearch/fairseq](https://github.com/facebookresearch/fairseq) @ "
                      "`3d262bb25690e4eb2e7d3c1309b1e9c406ca4b99` (`fairseq/models/speech_dlm/`, "
                      "`fairseq/tasks/speech_dlm_task.py`, `examples/textless_nlp/dgslm/`)",
        usage="""
import torch

speech_dlm = {load}
speech_dlm.eval()
generated_units = speech_dlm.sample(
    [{{"unitA": "7 376 376 133 178 486 486 486 486 486 486 486 486 2 486",
      "unitB": "7 499 415 177 7 7 7 7 7 7 136 136 289 289 408"}}],
    max_len_a=0, max_len_b=500, sampling=True, beam=5)  # prompt + continuation, 500 units (10 s) per channel
""",
        citation="""
@article{nguyen2022dgslm,
  title={Generative Spoken Dialogue Language Modeling},
  author={Nguyen, Tu Anh and Kharitonov, Eugene and Copet, Jade and Adi, Yossi and Hsu, Wei-Ning and Elkahky, Ali and Tomasello, Paden and Algayres, Robin and Sagot, Beno{\\^i}t and Mohamed, Abdelrahman and Dupoux, Emmanuel},
  journal={Transactions of the Association for Computational Linguistics},
  volume={11},
  pages={250--266},
  year={2023}
}""",
        details=lambda weights: ("Units are frame-level (50 per second, not deduplicated) HuBERT-Fisher layer-12 "
                                 "k-means-500 units, one stream per speaker; the dictionary (`dict.unitA.txt`, "
                                 "the same for `unitB`) is stored in `config.json`. The dGSLM vocoder speaks each "
                                 "channel: `hifigan_unit_vocoder(\"dgslm_fisher_hubert_km500\")`."),
    ),
}
