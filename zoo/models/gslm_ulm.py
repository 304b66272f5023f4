"""GSLM's unit language model: fairseq's ``transformer_lm`` over k-means units, as ``ulm/sample.py`` and fairseq's hub
interface use it (``facebookresearch/fairseq``: ``examples/textless_nlp/gslm/ulm/sample.py``,
``fairseq/models/transformer_lm.py``, ``fairseq/sequence_generator.py``, ``fairseq/hub_utils.py``).

A stack of pre-LN decoder layers (:mod:`zoo.nn.fairseq_transformer`; the released models are ``transformer_lm_big``:
12 layers, width 1024, 16 heads, FFN 4096, ReLU)::

    x = sqrt(d) · E[tokens] + P[positions]          # sinusoidal sin|cos rows (or learned), from padding_idx + 1 = 2
    x = layers(x)                                   # causal; pad keys masked
    logits = layer_norm(x) @ E^T                    # tied output projection, no bias

Tokens are ids of the model's fairseq dictionary (:class:`~zoo.nn.dictionary.FairseqDictionary`): ``<s> <pad> </s>
<unk>``, then ``dict.txt`` in file order, so a unit's id is not the unit. Every sequence starts with ``</s>`` (the
task's ``add_bos_token`` is off). Generation is fairseq's :func:`~zoo.nn.sequence_generator.generate` (beam search,
greedy, sampling) on a KV cache.

Example (random weights)::

    >>> import torch
    >>> config = GSLMUnitLMConfig(symbols=FairseqDictionary.SPECIALS + tuple(map(str, range(12))), embed_dim=32,
    ...                           ffn_embed_dim=64, layers=2, attention_heads=4, max_target_positions=64)
    >>> lm = GSLMUnitLM(config).eval()
    >>> lm.encode("3 1 4").tolist()                             # dict ids, then </s>
    [7, 5, 8, 2]
    >>> tuple(lm(torch.tensor([[2, 7, 5, 8]]))[0].shape)        # logits: (B, T, V)
    (4, 16)
    >>> s = lm.score("3 1 4"); s["tokens"].tolist(), tuple(s["positional_scores"].shape)
    ([7, 5, 8], (3,))
    >>> lines = lm.sample_prompts(["a|3 1 4 1 5"], beam=1, max_len_b=8, prefix_size=-1)
    >>> lines[0].startswith("a__0|3 1 4 1 5")                   # the prompt, then the greedy continuation
    True
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..errors import ConfigError, InputError
from ..modeling import PretrainedModel
from ..nn.dictionary import FairseqDictionary
from ..nn.fairseq_transformer import (
    ACTIVATIONS,
    DecoderLayer,
    KVCache,
    PositionalEmbedding,
    make_positions,
)
from ..nn.precision import LayerNorm
from ..nn.sequence_generator import Hypothesis, IncrementalDecoder
from ..nn.sequence_generator import generate as sequence_generate
from ..registry import SourceFile, Weights

#: Lines scored per forward pass by :meth:`GSLMUnitLM.score`.
SCORE_BATCH_SIZE = 16


@dataclass(frozen=True)
class GSLMUnitLMConfig:
    """fairseq ``transformer_lm`` hyper-parameters (defaults: ``transformer_lm_big``) and the dictionary."""

    symbols: tuple[str, ...]          # the fairseq dictionary in id order: <s> <pad> </s> <unk>, then dict.txt
    embed_dim: int = 1024
    ffn_embed_dim: int = 4096
    layers: int = 12
    attention_heads: int = 16
    max_target_positions: int = 3072  # generation stops at max_target_positions - 1 tokens
    learned_pos: bool = False         # learned positions (decoder_learned_pos) instead of the sinusoidal table
    activation_fn: str = "relu"
    scale_embedding: bool = True      # x = sqrt(embed_dim) · E[tokens] (fairseq's no_scale_embedding=False)
    final_layer_norm: bool = True     # decoder.layer_norm after the last layer (no_decoder_final_norm=False)
    normalize_before: bool = True     # pre-LN layers; False: post-LN (hydra fairseq's --arch transformer_lm)
    add_bos_token: bool = False       # the task's flag: sequences start with <s> instead of </s>

    def __post_init__(self) -> None:
        if self.activation_fn not in ACTIVATIONS:
            raise ConfigError(f"activation_fn {self.activation_fn!r} is not one of {sorted(ACTIVATIONS)}")
        if self.embed_dim % self.attention_heads:
            raise ConfigError(f"embed_dim {self.embed_dim} is not a multiple of {self.attention_heads} heads")


class GSLMUnitLM(PretrainedModel):
    """fairseq ``TransformerLanguageModel`` + its dictionary; see the module docstring."""

    config_class = GSLMUnitLMConfig
    model_type = "gslm_ulm"

    def __init__(self, config: GSLMUnitLMConfig) -> None:
        super().__init__(config)
        self.dictionary = FairseqDictionary(config.symbols)
        self.padding_idx = self.dictionary.pad_index
        self.bos = self.dictionary.bos_index if config.add_bos_token else self.dictionary.eos_index
        self.embed_scale = math.sqrt(config.embed_dim) if config.scale_embedding else 1.0
        self.embed_tokens = nn.Embedding(len(self.dictionary), config.embed_dim)
        self.layers = nn.ModuleList(
            DecoderLayer(config.embed_dim, config.ffn_embed_dim, config.attention_heads, config.activation_fn,
                         config.normalize_before)
            for _ in range(config.layers))
        self.layer_norm = LayerNorm(config.embed_dim) if config.final_layer_norm else None
        self.embed_positions = PositionalEmbedding(config.max_target_positions, config.embed_dim, self.padding_idx,
                                                   learned=config.learned_pos)

    @property
    def device(self) -> torch.device:
        return self.embed_tokens.weight.device

    @property
    def max_positions(self) -> int:
        return self.config.max_target_positions

    # -------------------------------------------------------------- forward
    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        return F.linear(x, self.embed_tokens.weight)

    def _check_tokens(self, tokens: torch.Tensor) -> None:
        if tokens.ndim != 2 or tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool:
            raise InputError(f"tokens must be a (B, T) integer tensor, got {tokens.dtype} of shape "
                             f"{tuple(tokens.shape)}")
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= len(self.dictionary)):
            raise InputError(f"token ids must lie in [0, {len(self.dictionary)}): encode text with lm.encode")

    def forward(self, src_tokens: torch.Tensor, src_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(B, T, V)`` (the model's dtype) of right-padded ``src_tokens`` ``(B, T)``, each row starting with
        ``</s>``: ``TransformerLanguageModel.forward(...)[0]``. ``src_lengths`` is accepted and ignored, as there.
        Rows at ``<pad>`` positions are not meaningful."""
        self._check_tokens(src_tokens)
        tokens = src_tokens.to(self.device)
        positions = self.embed_positions(make_positions(tokens, self.padding_idx))
        x = self.embed_scale * self.embed_tokens(tokens) + positions
        mask, causal = None, True
        keep = tokens.ne(self.padding_idx)
        if not keep.all():  # pad keys are masked; a pad query also sees itself, so no row is empty
            t = tokens.shape[1]
            own = torch.eye(t, dtype=torch.bool, device=tokens.device)
            mask = torch.ones(t, t, dtype=torch.bool, device=tokens.device).tril() & (keep[:, None, :] | own)
            mask, causal = mask[:, None], False
        for layer in self.layers:
            x = layer(x, attn_mask=mask, is_causal=causal)
        return self._logits(x)

    def new_cache(self, rows: int, max_length: int) -> KVCache:
        """An empty :class:`~zoo.nn.fairseq_transformer.KVCache` on this model's device and dtype."""
        c = self.config
        return KVCache(c.layers, rows, c.attention_heads, max_length, c.embed_dim // c.attention_heads,
                       device=self.device, dtype=self.embed_tokens.weight.dtype)

    def forward_cached(self, tokens: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Logits ``(rows, n, V)`` of ``n`` new tokens per row (no pads) after the ``cache.length`` cached ones,
        which they are appended to: fairseq's incremental decoding, positions continuing from the cache."""
        tokens = tokens.to(self.device)
        start = self.padding_idx + 1 + cache.length
        positions = self.embed_positions(torch.arange(start, start + tokens.shape[1], device=tokens.device))
        x = self.embed_scale * self.embed_tokens(tokens) + positions
        for i, layer in enumerate(self.layers):
            x = layer(x, is_causal=True, cache=cache, layer=i)
        cache.advance(tokens.shape[1])
        return self._logits(x)

    # -------------------------------------------------------------- text
    def encode(self, line: str) -> torch.Tensor:
        """``Dictionary.encode_line(line, add_if_not_exist=False)``: int64 ids of the units of ``line`` (unknown
        ones → ``<unk>`` = 3), then ``</s>`` = 2."""
        return self.dictionary.encode_line(line)

    def decode(self, tokens: torch.Tensor | Sequence[int]) -> str:
        """``Dictionary.string``: units separated by spaces, ``</s>``/``<s>`` dropped."""
        return self.dictionary.string(tokens)

    def _source(self, ids: torch.Tensor) -> torch.Tensor:
        """``build_dataset_for_inference``'s source: ``</s>`` stripped from both ends, the start token prepended."""
        ids = ids.tolist()
        while ids and ids[-1] == self.dictionary.eos_index:
            ids.pop()
        while ids and ids[0] == self.dictionary.eos_index:
            ids.pop(0)
        return torch.tensor([self.bos] + ids, dtype=torch.long)

    def _check_sizes(self, encoded: Sequence[torch.Tensor], name: str = "sequence {}") -> None:
        """An :class:`InputError` for the first sequence longer than the model's positions (``name`` formats its
        index into what the message calls it)."""
        for i, ids in enumerate(encoded):
            if len(ids) > self.max_positions:
                raise InputError(f"{name.format(i)} has {len(ids) - 1} units: this model takes at most "
                                 f"{self.max_positions - 1} (max_target_positions = {self.max_positions})")

    # -------------------------------------------------------------- scoring
    @torch.inference_mode()
    def score(self, sentences: str | Sequence[str], replace_newline_with_eos: bool = False,
              batch_size: int = SCORE_BATCH_SIZE) -> Hypothesis | list[Hypothesis]:
        """fairseq's hub ``score``: for each line, ``"tokens"`` (its ids without the ``</s>``),
        ``"positional_scores"`` (float32 natural-log ``p(token_i | </s>, token_<i)``) and ``"score"`` (their mean).
        A string gives one dict, a list of strings a list."""
        if isinstance(sentences, str):
            return self.score([sentences], replace_newline_with_eos, batch_size)[0]
        encoded = [torch.cat([self.encode(x) for x in s.splitlines()]) if replace_newline_with_eos else self.encode(s)
                   for s in sentences]
        self._check_sizes(encoded)
        out = []
        for start in range(0, len(encoded), batch_size):
            sources = [self._source(ids) for ids in encoded[start:start + batch_size]]
            src = nn.utils.rnn.pad_sequence(sources, batch_first=True, padding_value=self.padding_idx)
            target = torch.cat([src[:, 1:], torch.full_like(src[:, :1], self.padding_idx)], dim=1)
            lprobs = F.log_softmax(self(src).float(), dim=-1).cpu()
            probs = lprobs.gather(2, target.unsqueeze(-1)).squeeze(-1)
            for row, tgt in zip(probs, target):
                ref = tgt[tgt.ne(self.padding_idx)]
                scores = row[:len(ref)]
                out.append({"tokens": ref, "score": scores.sum() / len(ref), "positional_scores": scores})
        return out

    # -------------------------------------------------------------- generation
    def incremental_decoder(self, rows: int, max_length: int, use_cache: bool = True) -> IncrementalDecoder:
        """What :func:`~zoo.nn.sequence_generator.generate` drives: a KV cache, or (``use_cache=False``, the slow
        reference) a full forward over every row's whole sequence at each call."""
        return _CachedDecoder(self, rows, max_length) if use_cache else _RerunDecoder(self)

    @torch.inference_mode()
    def generate(self, tokenized: Sequence[torch.Tensor], beam: int = 5, sampling: bool = False,
                 sampling_topk: int = -1, sampling_topp: float = -1.0, temperature: float = 1.0,
                 max_len_a: float = 0, max_len_b: int = 200, min_len: int = 1, lenpen: float = 1.0,
                 unkpen: float = 0.0, batch_size: int | None = None, seed: int | None = None,
                 generator: torch.Generator | None = None, use_cache: bool = True,
                 progress: bool = False) -> list[list[Hypothesis]]:
        """fairseq's hub ``generate`` for a language model: each of ``tokenized`` (``encode`` output) is forced as
        the prompt, then continued; returns per prompt its hypotheses best first (``{"tokens", "score",
        "positional_scores"}``, tokens = prompt + continuation + ``</s>``).

        Prompts are batched in order, ``batch_size`` at a time (None: all at once). A hypothesis has at most
        ``min(max_len_a · W + max_len_b, max_target_positions - 1)`` tokens before its ``</s>``, W being the width
        of its batch (the longest prompt + 1). ``sampling`` draws ``beam`` samples per prompt from
        ``softmax(logits / temperature)`` (``sampling_topk``/``sampling_topp`` > 0 truncate it) with
        ``torch.multinomial``, drawing from ``generator`` (or a new one seeded with ``seed``; neither: torch's global
        generator); otherwise beam search (``beam=1``: greedy). ``use_cache=False`` re-runs every sequence at each
        step (same result, slower).
        """
        self._check_sizes(tokenized)
        if batch_size is not None and batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        if generator is None and seed is not None:
            generator = torch.Generator(self.device).manual_seed(seed)
        results: list[list[Hypothesis]] = []
        size = batch_size or max(len(tokenized), 1)
        with tqdm(total=len(tokenized), desc="ULM: generating", unit="prompt", disable=not progress) as bar:
            for start in range(0, len(tokenized), size):
                sources = [self._source(ids) for ids in tokenized[start:start + size]]
                src = nn.utils.rnn.pad_sequence(sources, batch_first=True, padding_value=self.padding_idx)
                max_len = min(int(max_len_a * src.shape[1] + max_len_b), self.max_positions - 1)
                results += sequence_generate(
                    lambda rows, length: self.incremental_decoder(rows, length, use_cache),
                    src[:, 1:].to(self.device), vocab_size=len(self.dictionary), max_len=max_len, beam_size=beam,
                    min_len=min_len, sampling=sampling, sampling_topk=sampling_topk, sampling_topp=sampling_topp,
                    temperature=temperature, len_penalty=lenpen, unk_penalty=unkpen, bos=self.bos,
                    generator=generator)
                bar.update(len(sources))
        return results

    def iter_samples(self, lines: Sequence[str], beam: int = 5, sampling: bool = False, temperature: float = 1.0,
                     max_len_a: float = 0, max_len_b: int = 200, prefix_size: int = 0, batch_size: int | None = None,
                     samples_per_prompt: int = 1, seed: int | None = 1, sampling_topk: int = -1,
                     sampling_topp: float = -1.0, min_len: int = 1, lenpen: float = 1.0, unkpen: float = 0.0,
                     progress: bool = False,
                     on_error: Callable[[str, InputError], None] | None = None) -> Iterator[str]:
        """:meth:`sample_prompts`, yielding each batch's lines as soon as the batch is done. Every line is checked
        before any generation; a bad one raises an :class:`InputError`, or with ``on_error`` is passed to
        ``on_error(where, error)`` and left out (the others are sampled)."""
        encoded, ids = [], []
        for n, line in enumerate(lines, 1):
            try:
                if "|" not in line:
                    raise InputError(f"prompt line {n} ({line[:40]!r}) is not 'id|u1 u2 ...'")
                name, units = line.split("|", 1)
                prompt = self.encode(" ".join(units.split()[:prefix_size]) if prefix_size >= 0 else units)
                self._check_sizes([prompt], name=f"prompt line {n}")
            except InputError as e:
                if on_error is None:
                    raise
                on_error(f"line {n}", e)
                continue
            ids.append(name)
            encoded.append(prompt)
        if sampling:  # sample.py: beam = nbest = --samples-per-prompt
            beam = samples_per_prompt
        # sample.py seeds once; the batches continue one random stream
        generator = torch.Generator(self.device).manual_seed(seed) if sampling and seed is not None else None
        size = batch_size or max(len(encoded), 1)
        with tqdm(total=len(encoded), desc="ULM: sampling", unit="prompt", disable=not progress) as bar:
            for start in range(0, len(encoded), size):
                hypos = self.generate(encoded[start:start + size], beam=beam, sampling=sampling,
                                      sampling_topk=sampling_topk, sampling_topp=sampling_topp,
                                      temperature=temperature, max_len_a=max_len_a, max_len_b=max_len_b,
                                      min_len=min_len, lenpen=lenpen, unkpen=unkpen, generator=generator)
                for name, sentence in zip(ids[start:start + size], hypos):
                    for k, h in enumerate(sentence):
                        yield f"{name}__{k}|{self.decode(h['tokens'])}"
                bar.update(len(hypos))

    @torch.inference_mode()
    def sample_prompts(self, lines: Sequence[str], beam: int = 5, sampling: bool = False, temperature: float = 1.0,
                       max_len_a: float = 0, max_len_b: int = 200, prefix_size: int = 0,
                       batch_size: int | None = None, samples_per_prompt: int = 1, seed: int | None = 1,
                       sampling_topk: int = -1, sampling_topp: float = -1.0, min_len: int = 1, lenpen: float = 1.0,
                       unkpen: float = 0.0, progress: bool = False) -> list[str]:
        """``ulm/sample.py`` on prompt lines ``"id|u1 u2 ..."``, with its flags and defaults; returns the lines it
        writes, ``"{id}__{k}|{units}"`` (no newline), in prompt order, every hypothesis of every prompt.

        ``prefix_size``: the first ``prefix_size`` units prompt the model (0, the default: unconditional; -1: the
        whole prompt). Without ``sampling`` it is beam search with ``beam`` (1: greedy) and all finished beams are
        written, best first; with ``sampling``, ``samples_per_prompt`` samples. ``units`` include the prompt.
        ``seed`` seeds the draws (a generator of its own: torch's global random state is left alone).
        """
        return list(self.iter_samples(lines, beam, sampling, temperature, max_len_a, max_len_b, prefix_size,
                                      batch_size, samples_per_prompt, seed, sampling_topk, sampling_topp, min_len,
                                      lenpen, unkpen, progress))


class _CachedDecoder:
    """:class:`~zoo.nn.sequence_generator.IncrementalDecoder` over a :class:`~zoo.nn.fairseq_transformer.KVCache`."""

    def __init__(self, model: GSLMUnitLM, rows: int, max_length: int) -> None:
        self.model, self.cache = model, model.new_cache(rows, max_length)

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.forward_cached(tokens, self.cache)

    def reorder(self, order: torch.Tensor) -> None:
        self.cache.reorder(order)


class _RerunDecoder:
    """Keeps each row's tokens and runs the full forward over all of them at every call (no cache)."""

    def __init__(self, model: GSLMUnitLM) -> None:
        self.model, self.tokens = model, None

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        self.tokens = tokens if self.tokens is None else torch.cat([self.tokens, tokens.to(self.tokens)], dim=1)
        return self.model(self.tokens)[:, -tokens.shape[1]:]

    def reorder(self, order: torch.Tensor) -> None:
        self.tokens = self.tokens.index_select(0, order.to(self.tokens.device))


# ------------------------------------------------------------------------------------------ releases
_RELEASE = "https://dl.fbaipublicfiles.com/textless_nlp/gslm"
_PAPER = "https://arxiv.org/abs/2102.01192"
#: GSLM feature type (the keys of codebook.GSLM_FEATURE_TYPES) → the LM archive's name in GSLM's URLs and what the
#: units quantize.
ULM_ARCHIVES = {
    "logmel": ("logmel{k}_lm.tgz", "80-bin log-mel filterbank features"),
    "cpc": ("cpc{k}_lm.tgz", "modified CPC (cpc_big_ll6kh_top_ctc) features"),
    "hubert": ("hubert{k}_lm.tgz", "HuBERT Base (LibriSpeech 960 h) layer-6 features"),
    "w2v2": ("w2v2_{k}_lm.tgz", "wav2vec 2.0 Large (LibriVox, vox_new) features"),
}
VOCAB_SIZES = (50, 100, 200)

WEIGHTS = tuple(
    Weights(
        name=f"gslm-ulm-{dense}-km{k}",
        entry_point="gslm_ulm",
        kwargs={"dense": dense, "vocab_size": k},
        converter="gslm_ulm",
        # GSLM published no checksums for these archives
        source_files=(SourceFile(f"{_RELEASE}/{dense}/lm_km{k}/{file.format(k=k)}", None),),
        license="MIT",
        paper=_PAPER,
        description=f"GSLM unit language model (fairseq transformer_lm_big) over K = {k} k-means units of "
                    f"{described}",
    )
    for dense, (file, described) in ULM_ARCHIVES.items() for k in VOCAB_SIZES
)
