"""ELLA-V acoustic model: DP-SLM's units (or phones) → WavTokenizer codec tokens.

The original (``nicolvisser/ELLA-V`` @ 3a27cee, an unofficial ELLA-V, arXiv 2401.07333) is only the generalized
autoregressive (GAR) stage, since WavTokenizer has a single codebook: the Mistral decoder of
:mod:`zoo.nn.transformer` (with an output bias) over one vocabulary of ``UNK, BOS, EOP, EOS``, the phones (unit
strings ``"u0" … "u{k-1}"`` or ARPAbet phones, in Python ``sorted`` order: ``u0, u1, u10, …``) and the codec ids.

A prompt is the deduplicated phones ``D`` followed by ``BOS, D[0]``. The model then writes codec tokens for the
current phone until it emits EOP; generation forces the next phone after each EOP, forces EOP once a phone has run
too long, and stops when every row has consumed its phones (:meth:`ELLAV.generate` gives the exact rules, which
keep the original's off-by-one limits). The codec ids are vocoded by WavTokenizer ``small_600_24k_4096`` (40 Hz).

Example::

    >>> import torch
    >>> from zoo.nn.transformer import TransformerConfig
    >>> tokenizer = ELLAVTokenizerConfig(phones=tuple(sorted(f"u{n}" for n in range(12))), phone_token_rate=50.0,
    ...                                  num_codec_types=24, codec_token_rate=40.0)
    >>> transformer = TransformerConfig(dim=32, n_layers=2, head_dim=8, hidden_dim=64, n_heads=4, n_kv_heads=2,
    ...                                 vocab_size=4 + 12 + 24, output_bias=True)
    >>> model = ELLAV(ELLAVConfig(transformer, tokenizer)).eval()
    >>> codec_ids, finished = model.generate([["u3", "u3", "u10", "u1"]], max_tokens=50,
    ...                                      max_codec_tokens_per_phone=3, temperature=0.0, top_p=0.8, strict=False)
    >>> codec_ids[0].dtype, bool(codec_ids[0].lt(24).all())
    (torch.int64, True)
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby

import torch
from tqdm.auto import tqdm

from ..errors import InputError, WeightsError
from ..modeling import PretrainedModel
from ..nn.transformer import (
    IncrementalDecoder,
    Transformer,
    TransformerConfig,
    sample_top_p,
)
from ..registry import NO_LICENCE, SourceFile, Weights

SPECIAL_TOKENS = ("UNK", "BOS", "EOP", "EOS")
UNK_ID, BOS_ID, EOP_ID, EOS_ID = range(len(SPECIAL_TOKENS))
#: What a forced token's logit is set to (the rest of a forced row is zero), as in the original.
FORCED_LOGIT = 1e9
#: Largest mismatch between the phone and codec durations that ``encode_train(strict=True)`` accepts, seconds.
DURATION_TOLERANCE = 0.1


@dataclass(frozen=True)
class ELLAVTokenizerConfig:
    phones: tuple[str, ...]              # phone/unit strings in id order: phone i has id 4 + i
    phone_token_rate: float              # Hz of the framewise phones/units of training (units 50, MFA phones 100)
    num_codec_types: int                 # codec vocabulary (WavTokenizer: 4096); codec c has id 4 + P + c
    codec_token_rate: float              # Hz of the codec tokens (WavTokenizer small_600_24k_4096: 40)
    tokens_not_to_sandwich: tuple[str, ...] = ()   # phones dropped from prompts (the phone model: "UNK")


@dataclass(frozen=True)
class ELLAVConfig:
    transformer: TransformerConfig
    tokenizer: ELLAVTokenizerConfig


class ELLAVTokenizer:
    """The original's ``ELLAVTokenizer``: ids ``UNK=0, BOS=1, EOP=2, EOS=3``, then the phones, then the codec ids."""

    def __init__(self, config: ELLAVTokenizerConfig) -> None:
        self.config = config
        self.codec_offset = len(SPECIAL_TOKENS) + len(config.phones)
        codec_tokens = tuple(str(c) for c in range(config.num_codec_types))
        self.token_to_id = {token: i for i, token in enumerate(SPECIAL_TOKENS + config.phones + codec_tokens)}

    @property
    def vocab_size(self) -> int:
        return self.codec_offset + self.config.num_codec_types

    def _ids(self, tokens: Sequence[str]) -> list[int]:
        return [self.token_to_id.get(token, UNK_ID) for token in tokens]

    def encode_infer(self, phones: Sequence[str]) -> list[int]:
        """Prompt ids: runs of ``phones`` collapsed, ``tokens_not_to_sandwich`` dropped (in that order), then
        ``ids(D) + [BOS, ids(D[0])]``. Strings outside the vocabulary become UNK, as in the original (with a
        warning here)."""
        if isinstance(phones, str) or not all(isinstance(p, str) for p in phones):
            raise InputError("a prompt is a list of phone/unit strings such as ['u12', 'u7'] (units: f'u{n}')")
        deduped = [p for p, _ in groupby(phones) if p not in self.config.tokens_not_to_sandwich]
        if not deduped:
            raise InputError(f"empty prompt: {list(phones)[:10]} has no phones left to speak (after dropping "
                             f"{list(self.config.tokens_not_to_sandwich)})")
        unknown = sorted({p for p in deduped if p not in self.token_to_id})
        if unknown:
            warnings.warn(f"prompt tokens {unknown[:10]} are not phones of this model (it knows "
                          f"{len(self.config.phones)}: {', '.join(self.config.phones[:5])}, …); they are read as UNK",
                          stacklevel=3)
        return self._ids(deduped + ["BOS", deduped[0]])

    def decode(self, ids: Sequence[int]) -> list[int]:
        """The codec ids among ``ids``; special and phone ids are dropped."""
        return [i - self.codec_offset for i in ids if i >= self.codec_offset]

    def encode_train(self, framewise_phones: Sequence[str], framewise_codec_ids: torch.Tensor,
                     strict: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """The GAR training sequence ``(ids, user_input_mask)``, both ``(L,)``: every phone run (the global
        advance), BOS, then phones, codec ids and EOPs interleaved by time, then EOS.

        Codec id ``j`` (at ``j / codec_token_rate`` s) follows the phone run whose ``[start, end)`` holds that
        time; at equal times EOP comes before the phone, the phone before the codec id. ``user_input_mask`` marks
        BOS and the phones with id > 4 (the original's strict ``>`` leaves the first phone unmarked).
        """
        cfg = self.config
        codec = torch.as_tensor(framewise_codec_ids)
        if codec.ndim != 1:
            raise InputError(f"framewise_codec_ids must be 1-D, got shape {tuple(codec.shape)}")
        mismatch = abs(len(framewise_phones) / cfg.phone_token_rate - len(codec) / cfg.codec_token_rate)
        if strict and mismatch > DURATION_TOLERANCE:
            raise InputError(f"phones and codec ids last {len(framewise_phones) / cfg.phone_token_rate:.3f} s and "
                             f"{len(codec) / cfg.codec_token_rate:.3f} s: more than {DURATION_TOLERANCE} s apart")
        runs = []  # (phone, first frame, last frame)
        for phone, frames in groupby(enumerate(framewise_phones), key=lambda frame: frame[1]):
            indices = [i for i, _ in frames]
            if phone not in cfg.tokens_not_to_sandwich:
                runs.append((phone, indices[0], indices[-1]))
        events = ([("EOP", (last + 1) / cfg.phone_token_rate, 0) for _, _, last in runs]
                  + [(phone, first / cfg.phone_token_rate, 1) for phone, first, _ in runs]
                  + [(str(c), j / cfg.codec_token_rate, 2) for j, c in enumerate(codec.tolist())])
        events.sort(key=lambda event: (event[1], event[2]))
        tokens = [phone for phone, _, _ in runs] + ["BOS"] + [token for token, _, _ in events] + ["EOS"]
        ids = torch.tensor(self._ids(tokens))
        user_input = ((ids > len(SPECIAL_TOKENS)) & (ids < self.codec_offset)) | (ids == BOS_ID)
        return ids, user_input


class ELLAV(PretrainedModel):
    """ELLA-V's GAR transformer plus its tokenizer (``self.tokenizer``); see the module docstring."""

    config_class = ELLAVConfig
    model_type = "ellav"

    def __init__(self, config: ELLAVConfig) -> None:
        super().__init__(config)
        self.transformer = Transformer(config.transformer)
        self.tokenizer = ELLAVTokenizer(config.tokenizer)
        if self.tokenizer.vocab_size != config.transformer.vocab_size:
            raise WeightsError(f"the tokenizer has {self.tokenizer.vocab_size} tokens (4 special + "
                               f"{len(config.tokenizer.phones)} phones + {config.tokenizer.num_codec_types} codec) "
                               f"but the transformer's vocabulary is {config.transformer.vocab_size}")

    @property
    def device(self) -> torch.device:
        return self.transformer.tok_embeddings.weight.device

    def forward(self, input_ids: torch.Tensor, seqlens: Sequence[int]) -> torch.Tensor:
        """Float32 logits ``(N, vocab)`` of packed training sequences (the original's training transformer)."""
        return self.transformer(input_ids.to(self.device), seqlens)

    @torch.inference_mode()
    def generate(self, prompts: Sequence[Sequence[str]], max_tokens: int, max_codec_tokens_per_phone: int,
                 temperature: float, top_p: float, chunk_size: int | None = None, strict: bool = True,
                 progress: bool = False, *, use_cache: bool = True) -> tuple[list[torch.Tensor], list[bool]]:
        """Codec ids for a batch of prompts, as the original's ``ELLAVGARModel.generate``.

        ``prompts``: one list of phone strings per row (units as ``f"u{n}"``, framewise or deduplicated).
        Returns ``(codec_ids, finished)``: one int64 tensor of codec ids (0 … C-1) per row, and per row whether it
        spoke all its phones within ``max_tokens`` steps (``strict=True`` warns when one did not). Both are empty
        lists if generation stopped before its first token was kept.

        The steps (all rows in lock-step, ``raw`` as :meth:`generate_raw` returns it):

        1. draw ``x`` with :func:`~zoo.nn.transformer.sample_top_p` (``temperature <= 0``: argmax);
        2. count tokens since the last EOP (EOP resets to 0); a row that exceeds ``max_codec_tokens_per_phone + 1``
           is forced to EOP next; each EOP advances the row to its next phone, which is forced next; a row past
           its last phone is forced to EOS (finished);
        3. if every row is finished, stop without keeping ``x``; otherwise keep ``x`` for every row and feed it;
        4. a forced row's next logits are replaced by zeros with ``1e9`` at each forced token (a finished row may
           get EOP and EOS both; argmax then picks EOP).

        Only EOP advances: sampled EOS, BOS or phone ids are kept, fed back and dropped from the codec ids.
        ``chunk_size`` prefills the prompts that many tokens at a time (every prompt must be non-empty in every
        chunk). ``use_cache=False`` re-runs every row in full at each step (same tokens, slower: the reference).
        """
        if isinstance(prompts, str) or not prompts:
            raise InputError("prompts must be a non-empty list of prompts, each a list of phone strings")
        if isinstance(prompts[0], str):
            raise InputError("prompts is a batch: pass [prompt] for a single prompt (a list of phone strings)")
        encoded = [self.tokenizer.encode_infer(prompt) for prompt in prompts]
        raw, finished = self.generate_raw(encoded, max_tokens, max_codec_tokens_per_phone, temperature, top_p,
                                          chunk_size, progress, use_cache=use_cache)
        codec_ids = [torch.tensor(self.tokenizer.decode(row), dtype=torch.long) for row in raw.tolist()]
        if not finished:  # nothing was kept: the original returns two empty lists
            codec_ids = []
        if strict and not all(finished):
            warnings.warn("some generated sequences did not reach EOS: increase max_tokens, or pass strict=False "
                          "to silence this", stacklevel=2)
        return codec_ids, finished

    @torch.inference_mode()
    def generate_raw(self, encoded_prompts: Sequence[Sequence[int]], max_tokens: int,
                     max_codec_tokens_per_phone: int, temperature: float, top_p: float,
                     chunk_size: int | None = None, progress: bool = False, *,
                     use_cache: bool = True) -> tuple[torch.Tensor, list[bool]]:
        """The token-level loop of :meth:`generate` on ``tokenizer.encode_infer`` prompts: every kept id (codec,
        EOP, forced phones, EOS, anything drawn) as int64 ``(B, steps)`` on the CPU, and the finished flags."""
        if max_tokens < 0 or max_codec_tokens_per_phone < 0:
            raise InputError(f"max_tokens ({max_tokens}) and max_codec_tokens_per_phone "
                             f"({max_codec_tokens_per_phone}) must be >= 0")
        if chunk_size is not None and chunk_size < 1:
            raise InputError(f"chunk_size must be None or >= 1, got {chunk_size}")
        batch, device = len(encoded_prompts), self.device
        lengths = [len(p) for p in encoded_prompts]
        longest = max(lengths)
        decoder = IncrementalDecoder(self.transformer, batch, longest + max_tokens, use_cache)
        chunk_size = chunk_size or longest
        for start in range(0, longest, chunk_size):
            chunks = [list(p[start:start + chunk_size]) for p in encoded_prompts]
            if not all(chunks):
                raise InputError(f"chunk_size={chunk_size} leaves prompt {[len(c) for c in chunks].index(0)} "
                                 f"empty in the chunk from token {start}: every prompt must be non-empty in every "
                                 "chunk (use chunk_size=None, or prompts of similar length)")
            logits = decoder(torch.tensor(sum(chunks, []), device=device), [len(c) for c in chunks])

        prompt_ids = torch.zeros(batch, longest, dtype=torch.long, device=device)
        for row, prompt in enumerate(encoded_prompts):
            prompt_ids[row, : len(prompt)] = torch.tensor(prompt)
        num_phones = torch.tensor(lengths, device=device) - 2  # the prompt ends with BOS, D[0]
        since_eop = torch.zeros(batch, dtype=torch.long, device=device)
        phone_index = torch.zeros(batch, dtype=torch.long, device=device)
        kept: list[torch.Tensor] = []
        for _ in tqdm(range(max_tokens), desc="ELLA-V: generating", unit="token", disable=not progress):
            ids = sample_top_p(logits, temperature, top_p)
            eop = ids == EOP_ID
            since_eop = torch.where(eop, 0, since_eop + 1)
            force_eop = since_eop > max_codec_tokens_per_phone + 1
            phone_index = phone_index + eop
            force_eos = phone_index >= num_phones
            if force_eos.all():
                break
            force_phone = eop & ~force_eos
            kept.append(ids)
            logits = decoder(ids, [1] * batch)
            forced = force_phone | force_eop | force_eos
            if forced.any():
                next_phone = prompt_ids.gather(1, phone_index.clamp(max=longest - 1)[:, None])[:, 0]
                forced_logits = torch.zeros_like(logits)
                rows = force_phone.nonzero()[:, 0]
                forced_logits[rows, next_phone[rows]] = FORCED_LOGIT
                forced_logits[force_eop, EOP_ID] = FORCED_LOGIT
                forced_logits[force_eos, EOS_ID] = FORCED_LOGIT
                logits = torch.where(forced[:, None], forced_logits, logits)
        if not kept:
            return torch.zeros(batch, 0, dtype=torch.long), []
        return torch.stack(kept, 1).cpu(), force_eos.tolist()


# ------------------------------------------------------------------------------------------ releases
_RELEASE = "https://github.com/nicolvisser/ELLA-V/releases/download/v0.1.0/"
_PAPER = "https://arxiv.org/abs/2505.23494"
#: {k: ((lmbda, first 8 hex digits of the release file's SHA-256), ...)}: WavLM-Large layer-11 units.
_RELEASED_UNITS = {
    100: ((0, "c4686bf9"), (600, "1448a9ec"), (1500, "6bdae6f8"), (3000, "6e277bbd"), (5000, "90149573"),
          (9000, "58352115")),
    200: ((0, "bc26448e"), (700, "32e22dc4"), (1500, "7b009e62"), (3000, "8c19612d"), (5000, "a7d6e988"),
          (7500, "c6673f9e")),
    500: ((0, "e6f3c91d"), (600, "9e639ac6"), (1500, "89352a68"), (2800, "f76d2db5"), (4500, "3815b3ab"),
          (7000, "f0b78c0f")),
    1000: ((0, "96650d8d"), (600, "1505a398"), (1400, "98bd66a9"), (2500, "fedea4c6"), (3800, "d286d597"),
           (6000, "5fb405fc")),
}
_PHONES_SHA = "e06af002"
WAVTOKENIZER_SAMPLE_RATE = 24000
WAVTOKENIZER_FRAME_RATE = 40.0


def _weights(name: str, entry_point: str, kwargs: dict, filename: str, sha: str, description: str) -> Weights:
    return Weights(name=name, entry_point=entry_point, kwargs=kwargs, converter="ellav",
                   source_files=(SourceFile(f"{_RELEASE}{filename}-{sha}.pt", sha),), license=NO_LICENCE,
                   paper=_PAPER, description=description, sample_rate=WAVTOKENIZER_SAMPLE_RATE,
                   frame_rate=WAVTOKENIZER_FRAME_RATE)


WEIGHTS = tuple(
    _weights(f"ellav-wavlm-layer11-k{k}-lmbda{lmbda}-wavtokenizer", "ellav_units_to_wavtokenizer",
             {"k": k, "lmbda": lmbda}, f"ella-v-wavlm-layer-11-k-{k}-lmbda-{lmbda}-clean-10k-40hz", sha,
             f"ELLA-V acoustic model: deduplicated WavLM-Large layer-11 DPDP units (k={k}, lmbda={lmbda}) to "
             "WavTokenizer small_600_24k_4096 codec tokens (40 Hz), from DP-SLM")
    for k, pairs in _RELEASED_UNITS.items() for lmbda, sha in pairs
) + (
    _weights("ellav-phones-us-arpa-wavtokenizer", "ellav_phones_to_wavtokenizer", {},
             "ella-v-phonemes-us-arpa-clean-10k-40hz", _PHONES_SHA,
             "ELLA-V acoustic model: MFA us-arpa phones to WavTokenizer small_600_24k_4096 codec tokens (40 Hz), "
             "from DP-SLM"),
)
