"""fairseq's ``SequenceGenerator`` (``fairseq/sequence_generator.py`` with ``fairseq/search.py``'s ``BeamSearch``
and ``Sampling``) for decoder-only models: beam search, greedy (beam 1) and multinomial sampling (optionally
top-k / top-p), forced prefixes of different lengths, ``min_len``/``max_len``, temperature, length and unk
penalties — the same search, step for step, so the same hypotheses in the same order.

The model is reached through an :class:`IncrementalDecoder`: ``decoder(tokens)`` feeds ``(rows, n)`` new tokens
of every row (appended to what it has seen) and returns their logits ``(rows, n, vocab)``; ``decoder.reorder(order)``
keeps rows ``order``, after which row ``i`` continues old row ``order[i]``. fairseq runs the model one step per token
also while it forces the prompt; here the leading steps where every row is forced (``prefill=True``) run as one
forward pass, and the search then walks through them with the logits it already has.

What fairseq does at every step, in this order: ``lprobs = log_softmax(logits / temperature)`` in float32; NaN →
-inf; ``<pad>`` → -inf; ``lprobs[<unk>] -= unk_penalty``; at ``step == max_len`` everything but ``</s>`` → -inf;
while ``step < prefix width`` and ``step < max_len`` the rows with a non-pad prefix token get -inf everywhere but
that token (its log-prob is kept); otherwise, while ``step < min_len``, ``</s>`` → -inf. Then the search picks
``2·beam`` candidates (beam search; step 0 looks at beam 0 only) or draws one token per beam (sampling; step 0
draws ``beam`` tokens from beam 0 with ``torch.multinomial``), hypotheses ending in ``</s>`` are finalized with
score ``sum(lprobs) / len ** len_penalty``, and a sentence is done once it has ``beam`` of them (or at ``max_len``).

Example (a bigram "model" that always predicts token 4, then ``</s>``)::

    >>> import torch
    >>> class Bigram:
    ...     def __init__(self, rows): self.last = None
    ...     def __call__(self, tokens):
    ...         logits = torch.full((*tokens.shape, 6), -5.0)
    ...         logits[..., 4] = torch.where(tokens == 4, -5.0, 5.0)
    ...         logits[..., 2] = torch.where(tokens == 4, 5.0, -5.0)
    ...         return logits
    ...     def reorder(self, order): pass
    >>> hypos = generate(lambda rows, length: Bigram(rows), torch.full((1, 0), 1), vocab_size=6, beam_size=1,
    ...                  max_len=10)
    >>> hypos[0][0]["tokens"].tolist()                  # the hypothesis ends with </s>
    [4, 2]
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import torch
import torch.nn.functional as F

from ..errors import InputError
from .dictionary import FairseqDictionary

Hypothesis = dict[str, torch.Tensor]  # {"tokens", "score", "positional_scores"}, as fairseq's hypothesis dicts


class IncrementalDecoder(Protocol):
    def __call__(self, tokens: torch.Tensor) -> torch.Tensor: ...

    def reorder(self, order: torch.Tensor) -> None: ...


#: ``new_decoder(rows, max_length)``: a fresh decoder state for ``rows`` sequences of up to ``max_length`` tokens.
DecoderFactory = Callable[[int, int], IncrementalDecoder]


def _beam_step(step: int, lprobs: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``search.BeamSearch.step``: the best ``2·beam`` (beam, token) continuations by cumulative score."""
    bsz, beam, vocab = lprobs.shape
    if step == 0:  # every hypothesis is the same: expand the first beam only
        lprobs = lprobs[:, ::beam, :].contiguous()
    else:
        lprobs = lprobs + scores[:, :, step - 1].unsqueeze(-1)
    flat = lprobs.view(bsz, -1)
    top_scores, top = torch.topk(flat, k=min(2 * beam, flat.shape[1] - 1))  # -1: pad is never a candidate
    return top_scores, top.fmod(vocab), torch.div(top, vocab, rounding_mode="trunc")


def _sample_top_p(lprobs: torch.Tensor, top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``search.Sampling._sample_topp``: probabilities of the smallest set (sorted, descending) whose mass
    reaches ``top_p``, the others zeroed, and their token ids."""
    probs, indices = lprobs.exp().sort(descending=True)
    keep = probs.cumsum(dim=2).lt(top_p)
    last = keep.cumsum(dim=2)[:, :, -1:].clamp_(0, keep.shape[2] - 1)  # one more token crosses top_p
    keep = keep.scatter_(2, last, True)
    width = int(last.max()) + 1
    return probs[:, :, :width].masked_fill_(~keep[:, :, :width], 0), indices[:, :, :width]


def _sampling_step(step: int, lprobs: torch.Tensor, scores: torch.Tensor, top_k: int, top_p: float,
                   generator: torch.Generator | None) -> tuple[torch.Tensor, ...]:
    """``search.Sampling.step``: one multinomial draw per beam (``beam`` draws from beam 0 at step 0); scores are
    the chosen tokens' log-probs (of the truncated distribution, not renormalised) added to the beam's score."""
    bsz, beam, _ = lprobs.shape
    if step == 0:
        lprobs = lprobs[:, ::beam, :].contiguous()
    top_indices = None
    if top_p > 0:
        probs, top_indices = _sample_top_p(lprobs, top_p)
    elif top_k > 0:
        top_lprobs, top_indices = lprobs.topk(top_k)
        probs = top_lprobs.exp()
    else:
        probs = lprobs.exp()
    if step == 0:
        drawn = torch.multinomial(probs.view(bsz, -1), beam, replacement=True, generator=generator)
        probs = probs.expand(bsz, beam, -1)
    else:
        drawn = torch.multinomial(probs.view(bsz * beam, -1), 1, replacement=True, generator=generator)
    drawn = drawn.view(bsz, beam)
    cand_scores = torch.gather(probs, 2, drawn.unsqueeze(-1)).log_().view(bsz, -1)
    if top_indices is not None:
        drawn = torch.gather(top_indices.expand(bsz, beam, -1), 2, drawn.unsqueeze(-1)).squeeze(2)
    if step == 0:
        beams = drawn.new_zeros(bsz, beam)
    else:
        beams = torch.arange(beam, device=drawn.device).repeat(bsz, 1)
        cand_scores.add_(torch.gather(scores[:, :, step - 1], 1, beams))
    return cand_scores, drawn, beams


def _leading_forced_steps(prefix: torch.Tensor, max_len: int, pad: int, eos: int) -> int:
    """How many first steps force a prompt token in every row (a forced ``</s>`` ends the count: it finalizes
    hypotheses, which the prefill does not replay)."""
    n = 0
    while n < min(prefix.shape[1], max_len) and not (prefix[:, n].eq(pad) | prefix[:, n].eq(eos)).any():
        n += 1
    return n


@torch.no_grad()
def generate(new_decoder: DecoderFactory, prefix_tokens: torch.Tensor, *, vocab_size: int, max_len: int,
             beam_size: int = 5, min_len: int = 1, sampling: bool = False, sampling_topk: int = -1,
             sampling_topp: float = -1.0, temperature: float = 1.0, len_penalty: float = 1.0,
             unk_penalty: float = 0.0, normalize_scores: bool = True, bos: int = FairseqDictionary.eos_index,
             eos: int = FairseqDictionary.eos_index, pad: int = FairseqDictionary.pad_index,
             unk: int = FairseqDictionary.unk_index, generator: torch.Generator | None = None,
             prefill: bool = True) -> list[list[Hypothesis]]:
    """fairseq's ``SequenceGenerator._generate`` for a decoder-only model (see the module docstring).

    ``prefix_tokens``: ``(bsz, P)`` int64 forced tokens per sentence, right-padded with ``pad`` (a sentence is free
    from its first pad on); ``P = 0`` for unconditional generation. Every hypothesis starts with ``bos``.
    ``max_len``: the longest hypothesis, ``</s>`` excluded (``</s>`` is forced at step ``max_len``); the decoder
    sees at most ``max_len + 1`` tokens per row. ``beam_size`` is capped at ``vocab_size - 1`` (pad is never
    chosen); with ``sampling`` it is the number of independent samples. ``generator`` seeds the draws.

    Returns, per sentence, its finalized hypotheses best first: ``{"tokens"}`` (int64, ending with ``</s>``,
    ``bos`` excluded), ``"score"`` (length-normalised sum of log-probs) and ``"positional_scores"`` (float32, one
    per token).
    """
    if temperature <= 0:
        raise InputError(f"temperature must be > 0, got {temperature}")
    if not min_len <= max_len:
        raise InputError(f"min_len ({min_len}) cannot be larger than max_len ({max_len}); raise max_len_b")
    bsz, device = prefix_tokens.shape[0], prefix_tokens.device
    beam = min(beam_size, vocab_size - 1)
    if bsz == 0:
        return []

    scores = torch.zeros(bsz * beam, max_len + 1, device=device)
    tokens = torch.full((bsz * beam, max_len + 2), pad, dtype=torch.long, device=device)
    tokens[:, 0] = bos
    cands_to_ignore = torch.zeros(bsz, beam, dtype=torch.bool, device=device)
    finalized: list[list[Hypothesis]] = [[] for _ in range(bsz)]
    finished = [False] * bsz
    remaining = bsz
    cand_size = 2 * beam
    bbsz_offsets = (torch.arange(bsz, device=device) * beam).unsqueeze(1)
    cand_offsets = torch.arange(cand_size, device=device)

    def normalized(logits: torch.Tensor) -> torch.Tensor:
        return F.log_softmax((logits / temperature).float(), dim=-1)

    # Steps that force a prompt token in every row need no search to know their inputs: run them as one pass.
    forced = _leading_forced_steps(prefix_tokens, max_len, pad, eos) if prefill else 0
    if forced:
        decoder = new_decoder(bsz, max_len + 1)
        inputs = torch.cat([tokens[::beam, :1], prefix_tokens[:, :forced - 1]], dim=1)
        pre_lprobs = normalized(decoder(inputs)).repeat_interleave(beam, dim=0)  # (bsz * beam, forced, V)
        decoder.reorder(torch.arange(bsz, device=device).repeat_interleave(beam))
    else:
        decoder = new_decoder(bsz * beam, max_len + 1)

    reorder_state = batch_idxs = None
    for step in range(max_len + 1):  # one extra step for </s>
        if reorder_state is not None:
            if batch_idxs is not None:  # finished sentences left the batch: shift the beam indices
                corr = batch_idxs - torch.arange(batch_idxs.numel(), device=device)
                reorder_state.view(-1, beam).add_(corr.unsqueeze(-1) * beam)
            decoder.reorder(reorder_state)
        if step < forced:  # every beam of a sentence holds its prompt here, so reordering changes nothing
            lprobs = pre_lprobs[:, step].clone()
        else:
            lprobs = normalized(decoder(tokens[:, step:step + 1])[:, -1])

        lprobs[lprobs.isnan()] = -math.inf
        lprobs[:, pad] = -math.inf
        lprobs[:, unk] -= unk_penalty
        if step >= max_len:
            lprobs[:, :eos] = -math.inf
            lprobs[:, eos + 1:] = -math.inf
        if step < prefix_tokens.shape[1] and step < max_len:
            lprobs, tokens, scores = _force_prefix(step, lprobs, scores, tokens, prefix_tokens, beam, pad, eos)
        elif step < min_len:
            lprobs[:, eos] = -math.inf

        if sampling:
            cand_scores, cand_indices, cand_beams = _sampling_step(
                step, lprobs.view(bsz, -1, vocab_size), scores.view(bsz, beam, -1)[:, :, :step], sampling_topk,
                sampling_topp, generator)
        else:
            cand_scores, cand_indices, cand_beams = _beam_step(
                step, lprobs.view(bsz, -1, vocab_size), scores.view(bsz, beam, -1)[:, :, :step])
        cand_bbsz_idx = cand_beams.add(bbsz_offsets)

        # finalize the hypotheses that end in </s> among the first `beam` candidates
        eos_mask = cand_indices.eq(eos) & cand_scores.ne(-math.inf)
        eos_mask[:, :beam][cands_to_ignore] = False
        eos_bbsz_idx = torch.masked_select(cand_bbsz_idx[:, :beam], mask=eos_mask[:, :beam])
        finalized_sents: list[int] = []
        if eos_bbsz_idx.numel() > 0:
            eos_scores = torch.masked_select(cand_scores[:, :beam], mask=eos_mask[:, :beam])
            finalized_sents = _finalize(step, eos_bbsz_idx, eos_scores, tokens, scores, finalized, finished, beam,
                                        max_len, eos, normalize_scores, len_penalty)
            remaining -= len(finalized_sents)
        if remaining == 0:
            break
        if step >= max_len:
            raise AssertionError(f"sentences left unfinished at max_len={max_len}")

        if finalized_sents:  # drop the finished sentences from the batch
            new_bsz = bsz - len(finalized_sents)
            batch_mask = torch.ones(bsz, dtype=torch.bool, device=device)
            batch_mask[finalized_sents] = False
            batch_idxs = torch.arange(bsz, device=device).masked_select(batch_mask)
            eos_mask, cand_beams = eos_mask[batch_idxs], cand_beams[batch_idxs]
            bbsz_offsets = bbsz_offsets[:new_bsz]
            cand_bbsz_idx = cand_beams.add(bbsz_offsets)
            cand_scores, cand_indices = cand_scores[batch_idxs], cand_indices[batch_idxs]
            prefix_tokens = prefix_tokens[batch_idxs]
            cands_to_ignore = cands_to_ignore[batch_idxs]
            scores = scores.view(bsz, -1)[batch_idxs].view(new_bsz * beam, -1)
            tokens = tokens.view(bsz, -1)[batch_idxs].view(new_bsz * beam, -1)
            bsz = new_bsz
        else:
            batch_idxs = None

        # keep the `beam` best candidates that did not end (finished or ignored ones sort last)
        eos_mask[:, :beam] = ~((~cands_to_ignore) & (~eos_mask[:, :beam]))
        active_mask = eos_mask.type_as(cand_offsets) * cand_size + cand_offsets[: eos_mask.shape[1]]
        new_cands_to_ignore, active_hypos = torch.topk(active_mask, k=beam, dim=1, largest=False)
        cands_to_ignore = new_cands_to_ignore.ge(cand_size)[:, :beam]
        if not (~cands_to_ignore).any(dim=1).all():
            raise AssertionError("a sentence has no live hypothesis left")
        active_bbsz_idx = torch.gather(cand_bbsz_idx, 1, active_hypos).view(-1)

        tokens[:, :step + 1] = tokens[:, :step + 1].index_select(0, active_bbsz_idx)
        tokens.view(bsz, beam, -1)[:, :, step + 1] = torch.gather(cand_indices, 1, active_hypos)
        if step > 0:
            scores[:, :step] = scores[:, :step].index_select(0, active_bbsz_idx)
        scores.view(bsz, beam, -1)[:, :, step] = torch.gather(cand_scores, 1, active_hypos)
        reorder_state = active_bbsz_idx

    for sent, hypos in enumerate(finalized):
        order = torch.sort(torch.tensor([float(h["score"].item()) for h in hypos]), descending=True)[1]
        finalized[sent] = [hypos[i] for i in order]
    return finalized


def _force_prefix(step: int, lprobs: torch.Tensor, scores: torch.Tensor, tokens: torch.Tensor,
                  prefix_tokens: torch.Tensor, beam: int, pad: int, eos: int) -> tuple[torch.Tensor, ...]:
    """``SequenceGenerator._prefix_tokens``: rows whose prefix token at ``step`` is not ``pad`` may only take it."""
    prefix_toks = prefix_tokens[:, step].unsqueeze(-1).repeat(1, beam).view(-1)
    prefix_lprobs = lprobs.gather(-1, prefix_toks.unsqueeze(-1))
    prefix_mask = prefix_toks.ne(pad)
    lprobs[prefix_mask] = -math.inf
    lprobs[prefix_mask] = lprobs[prefix_mask].scatter(-1, prefix_toks[prefix_mask].unsqueeze(-1),
                                                      prefix_lprobs[prefix_mask])
    eos_mask = prefix_toks.eq(eos)
    if eos_mask.any():  # a forced </s> finalizes: every beam of that sentence must be the first one
        first_beam = tokens[eos_mask].view(-1, beam, tokens.shape[-1])[:, 0, 1:step + 1]
        sentence_mask = eos_mask.view(-1, beam)[:, 0]
        if not (first_beam == prefix_tokens[sentence_mask][:, :step]).all():
            raise AssertionError("the first beam does not hold the forced prefix")
        tokens, scores, lprobs = (_replicate_first_beam(t, sentence_mask, beam) for t in (tokens, scores, lprobs))
    return lprobs, tokens, scores


def _replicate_first_beam(tensor: torch.Tensor, mask: torch.Tensor, beam: int) -> torch.Tensor:
    tensor = tensor.view(-1, beam, tensor.shape[-1])
    tensor[mask] = tensor[mask][:, :1, :]
    return tensor.view(-1, tensor.shape[-1])


def _finalize(step: int, bbsz_idx: torch.Tensor, eos_scores: torch.Tensor, tokens: torch.Tensor,
              scores: torch.Tensor, finalized: list[list[Hypothesis]], finished: list[bool], beam: int,
              max_len: int, eos: int, normalize_scores: bool, len_penalty: float) -> list[int]:
    """``SequenceGenerator.finalize_hypos``: store the hypotheses ``bbsz_idx`` that end in ``</s>``; return the
    batch positions of the sentences that are now finished (``beam`` hypotheses, or ``max_len`` reached)."""
    tokens_clone = tokens.index_select(0, bbsz_idx)[:, 1:step + 2]  # without bos
    tokens_clone[:, step] = eos
    pos_scores = scores.index_select(0, bbsz_idx)[:, :step + 1]
    pos_scores[:, step] = eos_scores
    pos_scores[:, 1:] = pos_scores[:, 1:] - pos_scores[:, :-1]  # cumulative → per position
    if normalize_scores:
        eos_scores /= (step + 1) ** len_penalty

    # batch position (in the shrunken batch) → sentence index (in the original batch)
    cum_unfin: list[int] = []
    prev = 0
    for f in finished:
        if f:
            prev += 1
        else:
            cum_unfin.append(prev)
    unfin_idx = torch.div(bbsz_idx, beam, rounding_mode="trunc")
    sent = unfin_idx + torch.tensor(cum_unfin, dtype=torch.long, device=bbsz_idx.device)[unfin_idx]
    unique_seen = torch.unique((sent << 32) + unfin_idx).tolist()

    for i, s in enumerate(sent.tolist()):
        if len(finalized[s]) < beam:
            finalized[s].append({"tokens": tokens_clone[i], "score": eos_scores[i],
                                 "positional_scores": pos_scores[i]})
    newly_finished = []
    for key in unique_seen:
        s, position = key >> 32, key - ((key >> 32) << 32)
        if not finished[s] and (len(finalized[s]) == beam or step == max_len):
            finished[s] = True
            newly_finished.append(position)
    return newly_finished
