"""Cards of DP-SLM's ELLA-V acoustic models (units or phones to WavTokenizer codes)."""
from __future__ import annotations

from zoo.registry import Weights

from . import CardTemplate
from .citations import DPSLM_CITATION, ELLAV_CITATION

ELLAV_CODE = ("[nicolvisser/ELLA-V](https://github.com/nicolvisser/ELLA-V) @ "
              "`3a27cee16edf9d94f3aaa4c7804b850d002a54a1` "
              "(`ellav/model.py`, `ellav/generate.py`, `ellav/tokenizer.py`, `ellav/transformer/`, `hubconf.py`)")
ELLAV_USAGE = """
import torch

ellav = {load}
codec_ids_list, finished = ellav.generate(
    prompts=[{prompt}], max_tokens=1000, max_codec_tokens_per_phone=10,
    temperature=1.0, top_p=0.8, chunk_size=None, progress=True)  # KV-cached, batched over prompts

wavtokenizer, encode, decode = torch.hub.load("speechzoo/speechzoo", "wavtokenizer", "small_600_24k_4096", trust_repo=True)
wav, sr = decode(wavtokenizer, codec_ids_list[0][None, None, :])  # (1, 600 * T) at 24 kHz
"""


def _ellav_details(weights: Weights) -> str:
    return ("ELLA-V's generalized autoregressive stage (WavTokenizer has one codebook, so there is no NAR stage): "
            "a 12-layer Mistral decoder whose vocabulary is UNK, BOS, EOP, EOS, the phones in Python `sorted` order "
            "and the 4096 codec ids. A prompt is the deduplicated phones then `BOS, phone 0`; generation writes "
            "codec ids for the current phone until EOP, and the next phone is then forced, as in the original.")


TEMPLATES: dict[str, CardTemplate] = {
    "ellav_units_to_wavtokenizer": CardTemplate(
        notebooks=("dpslm",),
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
}
