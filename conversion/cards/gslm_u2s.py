"""Cards of GSLM's unit-to-speech models (``hubconf.tacotron2``, ``hubconf.waveglow``)."""
from __future__ import annotations

from zoo.registry import Weights

from . import CardTemplate
from .gslm_ulm import GSLM_CITATION

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

taco = torch.hub.load("speechzoo/speechzoo", "tacotron2", dense="{dense}", vocab_size={vocab_size}, trust_repo=True)
waveglow = torch.hub.load("speechzoo/speechzoo", "waveglow", trust_repo=True)
denoiser = torch.hub.load("speechzoo/speechzoo", "waveglow_denoiser", waveglow, trust_repo=True)

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
    "tacotron2": CardTemplate(
        notebooks=("gslm",),
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
        notebooks=("gslm",),
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
