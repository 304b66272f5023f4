"""Cards of the unit HiFi-GAN vocoders (``hubconf.hifigan_unit_vocoder``): one per release, each family of releases
(one paper) with its original code, conditioning and citation."""
from __future__ import annotations

from dataclasses import dataclass

from zoo.registry import Weights

from . import CardTemplate
from .citations import POLYAK_CITATION

FAIRSEQ_CODE = ("facebookresearch/fairseq@3d262bb25690e4eb2e7d3c1309b1e9c406ca4b99 "
                "(`fairseq/models/text_to_speech/vocoder.py`, `codehifigan.py`)")
TEXTLESSLIB_CODE = ("facebookresearch/textlesslib@ba33d669d8284b4f7bfe81e7384e83ab799fe384 "
                    "(`textless/vocoders/hifigan/`)")
SPEECH_RESYNTHESIS = "facebookresearch/speech-resynthesis@dbb92c8ddeb081e711adbe9a75714027cd447532"
DURATION = ("Has a duration predictor: pass deduplicated units with `dur_prediction=True`, or frame-rate units "
            "without.")

DGSLM_CITATION = r"""
@article{nguyen2023dgslm,
  title = {Generative Spoken Dialogue Language Modeling},
  author = {Nguyen, Tu Anh and Kharitonov, Eugene and Copet, Jade and Adi, Yossi and Hsu, Wei-Ning and Elkahky, Ali and Tomasello, Paden and Algayres, Robin and Sagot, Beno{\^\i}t and Mohamed, Abdelrahman and Dupoux, Emmanuel},
  journal = {Transactions of the Association for Computational Linguistics},
  year = {2023}
}"""
EXPRESSO_CITATION = r"""
@inproceedings{nguyen2023expresso,
  title = {EXPRESSO: A Benchmark and Analysis of Discrete Expressive Speech Resynthesis},
  author = {Nguyen, Tu Anh and Hsu, Wei-Ning and D'Avirro, Antony and Shi, Bowen and Gat, Itai and Fazel-Zarani, Maryam and Remez, Tal and Copet, Jade and Synnaeve, Gabriel and Hassid, Michael and Kreuk, Felix and Adi, Yossi and Dupoux, Emmanuel},
  booktitle = {Proceedings of Interspeech},
  year = {2023}
}"""
PGSLM_CITATION = r"""
@inproceedings{kharitonov2022pgslm,
  title = {Text-Free Prosody-Aware Generative Spoken Language Modeling},
  author = {Kharitonov, Eugene and Lee, Ann and Polyak, Adam and Adi, Yossi and Copet, Jade and Lakhotia, Kushal and Nguyen, Tu Anh and Rivi{\`e}re, Morgane and Mohamed, Abdelrahman and Dupoux, Emmanuel and Hsu, Wei-Ning},
  booktitle = {Proceedings of ACL},
  year = {2022}
}"""
HOKKIEN_CITATION = r"""
@inproceedings{chen2023hokkien,
  title = {Speech-to-Speech Translation For A Real-world Unwritten Language},
  author = {Chen, Peng-Jen and Tran, Kevin and Yang, Yilin and Du, Jingfei and Kao, Justine and Chung, Yu-An and Tomasello, Paden and Duquenne, Paul-Ambroise and Schwenk, Holger and Gong, Hongyu and Inaguma, Hirofumi and Popuri, Sravya and Wang, Changhan and Pino, Juan and Hsu, Wei-Ning and Lee, Ann},
  booktitle = {Findings of ACL},
  year = {2023}
}"""
S2ST_DIRECT_CITATION = """
@inproceedings{lee2022direct,
  title = {Direct Speech-to-Speech Translation With Discrete Units},
  author = {Lee, Ann and Chen, Peng-Jen and Wang, Changhan and Gu, Jiatao and Popuri, Sravya and Ma, Xutai and Polyak, Adam and Adi, Yossi and He, Qing and Tang, Yun and Pino, Juan and Hsu, Wei-Ning},
  booktitle = {Proceedings of ACL},
  year = {2022}
}"""
S2ST_TEXTLESS_CITATION = """
@inproceedings{lee2022textless,
  title = {Textless Speech-to-Speech Translation on Real Data},
  author = {Lee, Ann and Gong, Hongyu and Duquenne, Paul-Ambroise and Schwenk, Holger and Chen, Peng-Jen and Wang, Changhan and Popuri, Sravya and Adi, Yossi and Pino, Juan and Gu, Jiatao and Hsu, Wei-Ning},
  booktitle = {Proceedings of NAACL},
  year = {2022}
}"""
SPEECHMATRIX_CITATION = r"""
@inproceedings{duquenne2023speechmatrix,
  title = {SpeechMatrix: A Large-Scale Mined Corpus of Multilingual Speech-to-Speech Translations},
  author = {Duquenne, Paul-Ambroise and Gong, Hongyu and Dong, Ning and Du, Jingfei and Lee, Ann and Goswami, Vedanuj and Wang, Changhan and Pino, Juan and Sagot, Beno{\^\i}t and Schwenk, Holger},
  booktitle = {Proceedings of ACL},
  year = {2023}
}"""
TWIST_CITATION = r"""
@inproceedings{hassid2023twist,
  title = {Textually Pretrained Speech Language Models},
  author = {Hassid, Michael and Remez, Tal and Nguyen, Tu Anh and Gat, Itai and Conneau, Alexis and Kreuk, Felix and Copet, Jade and Defossez, Alexandre and Synnaeve, Gabriel and Dupoux, Emmanuel and Schwartz, Roy and Adi, Yossi},
  booktitle = {Advances in Neural Information Processing Systems},
  year = {2023}
}"""


@dataclass(frozen=True)
class Release:
    """What the releases of one paper share."""

    code: str          # the original inference code
    conditioning: str  # how to call it beyond units ("" if units only)
    citation: str


#: Paper (the registry's ``Weights.paper``) -> what its vocoders share.
RELEASES = {
    "https://arxiv.org/abs/2107.05604": Release(FAIRSEQ_CODE, DURATION, S2ST_DIRECT_CITATION),
    "https://arxiv.org/abs/2112.08352": Release(FAIRSEQ_CODE, DURATION, S2ST_TEXTLESS_CITATION),
    "https://arxiv.org/abs/2211.06474": Release(FAIRSEQ_CODE, DURATION, HOKKIEN_CITATION),
    "https://arxiv.org/abs/2211.04508": Release(FAIRSEQ_CODE, DURATION, SPEECHMATRIX_CITATION),
    "https://arxiv.org/abs/2203.16502": Release(
        FAIRSEQ_CODE, "Multi-speaker: pass `speaker=` (dGSLM uses speakers 0 and 4 for the two channels).",
        DGSLM_CITATION),
    "https://arxiv.org/abs/2109.03264": Release(
        FAIRSEQ_CODE, "Conditioned on F0: pass `f0=` as pGSLM prepares it (speaker-mean-normalised log F0{bins}).",
        PGSLM_CITATION),
    "https://arxiv.org/abs/2305.13009": Release(TEXTLESSLIB_CODE, "", TWIST_CITATION),
    "https://arxiv.org/abs/2308.05725": Release(
        TEXTLESSLIB_CODE, "Multi-speaker and multi-style: pass `speaker=` and `style=` ids (the release's "
                          "speakers.txt / styles.txt list them).", EXPRESSO_CITATION),
}


def _conditioning(weights: Weights) -> str:
    bins = ", as bin ids" if "bins" in weights.kwargs["variant"] else ""
    return RELEASES[weights.paper].conditioning.format(bins=bins)


def _notebooks(weights: Weights) -> tuple[str, ...]:
    return ("dgslm",) if weights.kwargs["variant"].startswith("dgslm") else ("voice_conversion",)


TEMPLATES: dict[str, CardTemplate] = {
    "hifigan_unit_vocoder": CardTemplate(
        notebooks=_notebooks,
        title="Unit HiFi-GAN vocoder {name}",
        tags=("audio", "vocoder", "hifigan", "discrete-units", "speech-synthesis", "textless"),
        datasets=(),
        pipeline_tag="text-to-speech",
        summary="{description}. Input: discrete units at {frame_rate:g} Hz; output: {sample_rate} Hz mono waveform.",
        details=_conditioning,
        usage="""
import torch
vocoder = {load}
wav = vocoder(units)          # units: (B, T) int64, -1 pads shorter rows -> (B, 1, samples)
""",
        notes="or `speechzoo vocode units.txt -o wavs/ --vocoder {variant}`.",
        original_code=lambda w: f"{RELEASES[w.paper].code}; architecture and training: {SPEECH_RESYNTHESIS}",
        conversion="weight norm folded, keys renamed, nothing else changed",
        citation=lambda w: RELEASES[w.paper].citation + "\n" + POLYAK_CITATION,
    ),
}
