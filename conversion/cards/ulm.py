"""Cards of DP-SLM's unit language models (``hubconf.ulm`` and the 60k-hour one)."""
from __future__ import annotations

from zoo.registry import Weights

from . import CardTemplate
from .citations import DPSLM_CITATION

ULM_CODE = ("[nicolvisser/Mistral-ULM](https://github.com/nicolvisser/Mistral-ULM) @ "
            "`5db79efc39fd7298c38e68de5a0ff95e4772f3ba` (`ulm/transformer.py`, `ulm/units/tokenizer.py`, `hubconf.py`, "
            "`scripts/loglikelihood_zerospeech.py`)")
ULM_USAGE = """
import torch

model, tokenizer = {load}
units = torch.unique_consecutive(units_duped)  # DPDP units (k={k}, lmbda={lmbda}); the ULM models them deduplicated
ll = model.loglikelihood(tokenizer.encode(units.tolist()))  # summed natural-log likelihood, first unit included
scores = model.loglikelihoods([tokenizer.encode(u) for u in batch])  # packed batches, as the ZeroSpeech script
continuation = model.generate(units, max_new_tokens=250, temperature=1.0, top_p=0.9)  # KV-cached sampling
"""


def _ulm_details(weights: Weights) -> str:
    return ("A pre-norm Mistral decoder (interleaved RoPE, RMSNorm, SwiGLU, no biases, untied embeddings; the 1k-hour "
            "releases have 12 layers, width 1024, 16 heads, SwiGLU 4096, and every model is built from the args "
            "stored in its checkpoint) over `k + 1` tokens: BOS (id 0) and unit `u` as id `u + 1`. It was trained "
            "on chunks of consecutive utterances of deduplicated units, each starting with BOS. The original has no "
            "generation code; speechzoo's `generate` adds a KV cache and nucleus sampling (BOS is never drawn).")

def _ulm_template(training: str) -> CardTemplate:
    return CardTemplate(
        notebooks=("dpslm",),
        title=f"Mistral-ULM unit language model, k = {{k}}, λ = {{lmbda}} ({training})",
        tags=("audio", "speech", "language-model", "discrete-units", "wavlm", "dp-slm", "textless", "mistral"),
        datasets=(),
        pipeline_tag="text-generation",
        original_code=ULM_CODE,
        usage=ULM_USAGE,
        citation=DPSLM_CITATION,
        details=_ulm_details,
    )


TEMPLATES: dict[str, CardTemplate] = {
    "ulm": _ulm_template("1k hours, 10k steps"),
    "ulm_wavlm_layer_11_dpdp_hours_60k_steps_200k": _ulm_template("60k hours, 200k steps"),
}
