"""Mistral-ULM: DP-SLM's unit language model over deduplicated WavLM-Large layer-11 DPDP units.

The original (``nicolvisser/Mistral-ULM`` @ 5db79ef, ``ulm/transformer.py`` + ``ulm/units/tokenizer.py``) is the
Mistral decoder of :mod:`zoo.nn.transformer` without an output bias. Its tokenizer prepends BOS (id 0) and shifts
unit ``u`` to id ``u + 1``, so ``vocab_size = k + 1``; there is no EOS or padding. The released models expect
**deduplicated** units (``torch.unique_consecutive``); neither the tokenizer nor the scoring deduplicates.

- ``model(input_ids, seqlens)``: packed logits, as the original's ``forward``;
- ``model.loglikelihood(ids)``: ``Σ_t log p(ids[t+1] | ids[:t+1])``, natural log, summed, not normalised, first
  unit after BOS included (the DP-SLM / ZeroSpeech score); :meth:`UnitLanguageModel.loglikelihoods` scores a
  batch packed, as ``scripts/loglikelihood_zerospeech.py`` does, and :func:`zerospeech_loglikelihoods` is that
  script over a folder of ``.npy`` unit files;
- ``model.generate(units_prompt, max_new_tokens, temperature, top_p)``: continuation with a KV cache (the original
  has no generation code; sampling is ELLA-V's nucleus sampler, greedy at ``temperature=0``).

Example::

    >>> import torch
    >>> from zoo.nn.transformer import TransformerConfig
    >>> model = UnitLanguageModel(TransformerConfig(dim=32, n_layers=2, head_dim=8, hidden_dim=64, n_heads=4,
    ...                                             n_kv_heads=2, vocab_size=21)).eval()   # k = 20 units
    >>> tokenizer = model.tokenizer
    >>> ids = tokenizer.encode([3, 7, 7, 1])              # BOS + units + 1
    >>> ids.tolist()
    [0, 4, 8, 8, 2]
    >>> ll = model.loglikelihood(ids)                     # a float, <= 0
    >>> continuation = model.generate([3, 7, 1], max_new_tokens=5, temperature=0.0)
    >>> continuation.shape, bool(continuation.max() < 20)
    (torch.Size([5]), True)
"""
from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..errors import InputError
from ..modeling import PretrainedModel
from ..nn.transformer import (
    IncrementalDecoder,
    Transformer,
    TransformerConfig,
    sample_top_p,
)
from ..registry import NO_LICENCE, SourceFile, Weights

#: Batch size of the original ZeroSpeech scoring script.
SCORING_BATCH_SIZE = 128


class UnitTokenizer:
    """``encode(units) = [BOS] + [u + 1 for u in units]`` with ``BOS_id = 0``; ``decode`` drops every BOS and
    subtracts 1. ``num_units`` (k) bounds the units it accepts."""

    BOS_id = 0

    def __init__(self, num_units: int) -> None:
        self.num_units = num_units

    def encode(self, units: Sequence[int] | torch.Tensor | np.ndarray) -> torch.Tensor:
        """int64 ids ``(len(units) + 1,)`` for units in ``[0, k)``."""
        units = torch.as_tensor(units) if len(units) else torch.zeros(0, dtype=torch.long)
        if units.ndim != 1 or units.is_floating_point() or units.is_complex() or units.dtype == torch.bool:
            raise InputError(f"units must be a 1-D sequence of integers, got {units.dtype} of shape "
                             f"{tuple(units.shape)}")
        outside = (units < 0) | (units >= self.num_units)
        if outside.any():
            raise InputError(f"units {units[outside].unique().tolist()[:10]} lie outside this model's "
                             f"vocabulary: it models k={self.num_units} units, 0 … {self.num_units - 1}")
        return torch.cat([torch.tensor([self.BOS_id]), units.long().cpu() + 1])

    def decode(self, ids: torch.Tensor) -> list[int]:
        """Units of ``ids``, every BOS removed."""
        ids = torch.as_tensor(ids)
        return (ids[ids != self.BOS_id] - 1).tolist()


class UnitLanguageModel(PretrainedModel):
    """The Mistral-ULM transformer plus its tokenizer (``self.tokenizer``); see the module docstring."""

    config_class = TransformerConfig
    model_type = "ulm"

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__(config)
        self.transformer = Transformer(config)
        self.tokenizer = UnitTokenizer(num_units=config.vocab_size - 1)

    @property
    def device(self) -> torch.device:
        return self.transformer.tok_embeddings.weight.device

    def forward(self, input_ids: torch.Tensor, seqlens: Sequence[int]) -> torch.Tensor:
        """Float32 logits ``(N, k + 1)`` of packed ``input_ids`` ``(N,)`` holding sequences of ``seqlens`` tokens
        (block-diagonal causal attention; positions restart at 0 in every sequence)."""
        return self.transformer(input_ids.to(self.device), seqlens)

    @torch.inference_mode()
    def loglikelihood(self, ids: torch.Tensor) -> float:
        """Natural-log likelihood of ``ids[1:]`` given its prefix: ``ids`` is ``tokenizer.encode(units)`` (BOS
        first). Summed over all units, the first one included; not length-normalised."""
        return float(self.loglikelihoods([ids])[0])

    @torch.inference_mode()
    def loglikelihoods(self, ids: Sequence[torch.Tensor], batch_size: int = SCORING_BATCH_SIZE,
                       progress: bool = False) -> torch.Tensor:
        """:meth:`loglikelihood` of many sequences, float32 ``(len(ids),)``: ``batch_size`` sequences at a time are
        packed into one forward and scored per position, as the original ZeroSpeech script does."""
        ids = [torch.as_tensor(x) for x in ids]
        for i, x in enumerate(ids):
            if x.ndim != 1 or len(x) < 2:
                raise InputError(f"sequence {i} has shape {tuple(x.shape)}: each must be 1-D, BOS plus at least "
                                 "one unit (tokenizer.encode(units) with units non-empty)")
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        scores = []
        for start in tqdm(range(0, len(ids), batch_size), desc="ULM: scoring", disable=not progress):
            batch = ids[start:start + batch_size]
            seqlens = [len(x) - 1 for x in batch]
            logits = self(torch.cat([x[:-1] for x in batch]), seqlens)
            targets = torch.cat([x[1:] for x in batch]).to(logits.device)
            surprisal = F.cross_entropy(logits, targets, reduction="none")
            scores.extend(-s.sum() for s in surprisal.split(seqlens))
        return torch.stack(scores).cpu() if scores else torch.zeros(0)

    @torch.inference_mode()
    def generate(self, units_prompt: Sequence[int] | Sequence[Sequence[int]] | torch.Tensor, max_new_tokens: int,
                 temperature: float = 1.0, top_p: float = 1.0, *, use_cache: bool = True,
                 progress: bool = False) -> torch.Tensor:
        """Continue ``units_prompt`` by ``max_new_tokens`` units.

        ``units_prompt``: one prompt (a 1-D sequence of units, BOS is added) or a batch of them (a list of
        sequences, possibly ragged, or a 2-D tensor). Returns int64 units on the CPU, ``(max_new_tokens,)`` for one
        prompt, ``(B, max_new_tokens)`` for a batch. Each step draws with :func:`~zoo.nn.transformer.sample_top_p`
        (``temperature=0``: greedy); BOS is never drawn, so every step yields a unit. ``use_cache=False`` re-runs
        the whole sequence at each step (same result, much slower: the reference).
        """
        prompts, single = self._prompt_ids(units_prompt)
        if max_new_tokens < 0:
            raise InputError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        if max_new_tokens == 0:
            nothing = torch.zeros(len(prompts), 0, dtype=torch.long)
            return nothing[0] if single else nothing
        longest = max(len(p) for p in prompts) + max_new_tokens - 1  # the last new token is never fed back
        if longest > self.config.max_positions:
            raise InputError(f"a prompt of {longest - max_new_tokens} units plus {max_new_tokens} new ones exceeds "
                             f"the {self.config.max_positions} positions this model was built for")
        decoder = IncrementalDecoder(self.transformer, len(prompts), longest, use_cache)
        logits = decoder(torch.cat(prompts).to(self.device), [len(p) for p in prompts])
        new_ids = []
        for step in tqdm(range(max_new_tokens), desc="ULM: generating", disable=not progress):
            logits[:, self.tokenizer.BOS_id] = -torch.inf
            new_ids.append(sample_top_p(logits, temperature, top_p))
            if step + 1 < max_new_tokens:
                logits = decoder(new_ids[-1], [1] * len(prompts))
        units = (torch.stack(new_ids, 1) - 1).cpu()
        return units[0] if single else units

    def _prompt_ids(self, units_prompt) -> tuple[list[torch.Tensor], bool]:
        """Encoded prompts and whether a single prompt (not a batch) was given."""
        if not isinstance(units_prompt, (list, tuple)):
            units_prompt = torch.as_tensor(units_prompt)
            single = units_prompt.ndim == 1
            rows = [units_prompt] if single else list(units_prompt)
        else:
            first = units_prompt[0] if units_prompt else None
            single = isinstance(first, numbers.Integral) or getattr(first, "ndim", None) == 0
            rows = [units_prompt] if single else list(units_prompt)
        if not rows or any(len(row) == 0 for row in rows):
            raise InputError("empty prompt: the ULM continues units, give at least one unit per prompt")
        return [self.tokenizer.encode(row) for row in rows], single


@torch.inference_mode()
def zerospeech_loglikelihoods(model: UnitLanguageModel, units_dir: str | os.PathLike,
                              output_path: str | os.PathLike | None = None, batch_size: int = SCORING_BATCH_SIZE,
                              progress: bool = True) -> dict[str, float]:
    """``scripts/loglikelihood_zerospeech.py`` of the original: score every ``units_dir/*.npy`` (deduplicated
    units, sorted by path) and write ``"{stem} {ll}"`` lines (no trailing newline) to ``output_path``, the
    input of the ZeroSpeech sWUGGY/sBLIMP evaluation. Returns ``{stem: ll}``."""
    paths = sorted(Path(units_dir).glob("*.npy"))
    if not paths:
        raise InputError(f"{units_dir} holds no .npy unit files")
    ids = [model.tokenizer.encode(np.load(p).tolist()) for p in paths]
    scores = {p.stem: float(ll) for p, ll in zip(paths, model.loglikelihoods(ids, batch_size, progress))}
    if output_path is not None:
        Path(output_path).write_text("\n".join(f"{key} {ll!r}" for key, ll in scores.items()))
    return scores


# ------------------------------------------------------------------------------------------ releases
_RELEASE = "https://github.com/nicolvisser/Mistral-ULM/releases/download/v0.1.0/"
_PAPER = "https://arxiv.org/abs/2505.23494"
#: {k: ((lmbda, first 8 hex digits of the release file's SHA-256), ...)}, 1k hours of LibriLight, 10k steps.
_RELEASED_1K = {
    100: ((0, "b7a35cc5"), (600, "17e91718"), (1500, "6ba3cc55"), (3000, "5d0669b5"), (5000, "0c1af6fe"),
          (9000, "92bc9c97")),
    200: ((0, "5574c355"), (700, "487bae0c"), (1500, "8524865e"), (3000, "ac40635d"), (5000, "09a1f87c"),
          (7500, "b685aac0")),
    500: ((0, "532387cd"), (600, "b96bee1d"), (1500, "853fbee4"), (2800, "ef015b7f"), (4500, "9b75c46e"),
          (7000, "886ec1dd")),
    1000: ((0, "56124eaa"), (600, "810cb2f0"), (1400, "7f014b7e"), (2500, "c5cd03ce"), (3800, "2c798110"),
           (6000, "df9e72a7")),
}
#: The one model trained on 60k hours for 200k steps.
_RELEASED_60K = {500: ((4500, "09759305"),)}
ENTRY_POINT_60K = "ulm_wavlm_layer_11_dpdp_hours_60k_steps_200k"


def _weights(entry_point: str, hours: str, steps: str, released: dict) -> tuple[Weights, ...]:
    return tuple(
        Weights(
            name=f"ulm-wavlm-layer11-k{k}-lmbda{lmbda}-hours{hours}",
            entry_point=entry_point,
            kwargs={"k": k, "lmbda": lmbda},
            converter="ulm",
            source_files=(SourceFile(f"{_RELEASE}mistral-ulm-k-{k}-lmbda-{lmbda}-hours-{hours}-steps-{steps}-"
                                     f"{sha}.pt", sha),),
            license=NO_LICENCE,
            paper=_PAPER,
            description=f"Mistral-style unit LM over deduplicated WavLM-Large layer-11 DPDP units (k={k}, "
                        f"lmbda={lmbda}), trained on {hours} hours for {steps} steps, from DP-SLM",
        )
        for k, pairs in released.items() for lmbda, sha in pairs
    )


WEIGHTS = _weights("ulm", "1k", "10k", _RELEASED_1K) + _weights(ENTRY_POINT_60K, "60k", "200k", _RELEASED_60K)
