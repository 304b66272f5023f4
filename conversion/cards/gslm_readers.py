"""Cards of GSLM's dense feature readers (``hubconf.hubert_feature_reader``, ``w2v2_feature_reader``,
``cpc_feature_reader``)."""
from __future__ import annotations

from . import CardTemplate
from .gslm_ulm import GSLM_CITATION

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
reader = torch.hub.load("speechzoo/speechzoo", "{entry_point}", layer=LAYER, checkpoint="{checkpoint}", trust_repo=True)
features = reader.get_feats("speech.flac")   # 16 kHz audio -> (frames, dim) float32, as GSLM's get_feats
features = reader(wav)                       # or a 1-D float waveform at 16 kHz
"""


def _reader_template(title: str, tags: tuple[str, ...], citation: str, layers: str) -> CardTemplate:
    return CardTemplate(title=title, tags=("audio", "speech", "feature-extraction", "gslm", "textless", *tags),
                        datasets=(), pipeline_tag="feature-extraction", original_code=GSLM_CODE,
                        notebooks=lambda w: ("dgslm",) if w.kwargs["checkpoint"] == "hubert-fisher" else ("gslm",),
                        usage=READER_USAGE.replace("{layers}", layers), citation=GSLM_CITATION + "\n" + citation)


TEMPLATES: dict[str, CardTemplate] = {
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
}
