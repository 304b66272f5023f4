"""fairseq's token ``Dictionary`` (``fairseq/data/dictionary.py``): symbols ↔ ids, ``encode_line`` and ``string``, for
models trained on fairseq-preprocessed text (GSLM's unit LM, dGSLM's SpeechDLM), and how ``fairseq-preprocess``
builds one from training text (:meth:`FairseqDictionary.build`) and writes its ``dict.txt`` (:meth:`~FairseqDictionary.text`).

Ids 0–3 are the specials ``<s> <pad> </s> <unk>``; the ``dict.txt`` lines follow from id 4 in file order
(``fairseq-preprocess`` writes them by descending count, ties in string order, then ``madeupwordNNNN`` fillers up
to a multiple of 8), so a token id is not the unit it spells. :func:`zoo.formats.fairseq.read_dictionary` reads a
``dict.txt``; a converted model keeps its symbols in ``config.json``.

Example::

    >>> d = FairseqDictionary(FairseqDictionary.SPECIALS + ("17", "4", "7"))
    >>> d.encode_line("4 7 99").tolist()          # unknown symbols become <unk>, </s> is appended
    [5, 6, 3, 2]
    >>> d.string([5, 6, 3, 2])                    # </s> dropped, <unk> spelled out
    '4 7 <unk>'
    >>> built = FairseqDictionary.build(["7 7 10", "2 10 7"], padding_factor=8)
    >>> print(built.text(), end="")                # by count, ties in string order, fillers up to 8 symbols
    7 3
    10 2
    2 1
    madeupword0000 0
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import torch

from ..errors import InputError


class FairseqDictionary:
    """Symbols in id order; ``indices`` maps a symbol to its (last) id, as fairseq's ``Dictionary.indices``;
    ``counts`` (one per symbol, the specials' included) are what ``dict.txt`` records, zeros when not known."""

    SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
    bos_index, pad_index, eos_index, unk_index = 0, 1, 2, 3
    #: fairseq's filler symbols, ``madeupword0000``, ... (``Dictionary.pad_to_multiple_``).
    FILLER = "madeupword{:04d}"

    def __init__(self, symbols: Sequence[str], counts: Sequence[int] | None = None) -> None:
        symbols = tuple(symbols)
        if symbols[:4] != self.SPECIALS:
            raise InputError(f"a fairseq dictionary starts with {self.SPECIALS}, got {symbols[:4]}")
        if counts is not None and len(counts) != len(symbols):
            raise InputError(f"{len(counts)} counts for {len(symbols)} symbols")
        self.symbols = symbols
        self.counts = tuple(counts) if counts is not None else (0,) * len(symbols)
        self.indices = {s: i for i, s in enumerate(symbols)}  # a later duplicate (#fairseq:overwrite) wins

    @classmethod
    def build(cls, lines: Iterable[str], threshold: int = -1, nwords: int = -1,
              padding_factor: int = 8) -> FairseqDictionary:
        """``fairseq-preprocess``'s dictionary of training text (``Dictionary.add_file_to_dictionary`` then
        ``finalize``): every whitespace-separated token counted, plus one ``</s>`` per line (on the special); the
        other symbols sorted by count, descending, ties by the symbol's string (``"10"`` before ``"2"``); at most
        ``nwords`` symbols in all (≤ 0: no limit), stopping at the first count below ``threshold``; then
        ``madeupword0000``, ... (count 0) until the size is a multiple of ``padding_factor``."""
        counter: Counter[str] = Counter()
        lines_seen = 0
        for line in lines:
            counter.update(line.split())
            lines_seen += 1
        specials = {s: counter.pop(s, 0) for s in cls.SPECIALS}
        specials["</s>"] += lines_seen
        limit = (nwords if nwords > 0 else len(counter) + len(cls.SPECIALS)) - len(cls.SPECIALS)
        ranked = sorted(counter.items(), key=lambda item: (-item[1], item[0]))[:max(limit, 0)]
        kept = []
        for symbol, count in ranked:
            if count < threshold:
                break
            kept.append((symbol, count))
        symbols = [*cls.SPECIALS, *(s for s, _ in kept)]
        counts = [*specials.values(), *(c for _, c in kept)]
        i = 0
        while padding_factor > 1 and len(symbols) % padding_factor:
            symbols.append(cls.FILLER.format(i))
            counts.append(0)
            i += 1
        return cls(symbols, counts)

    def text(self) -> str:
        """The ``dict.txt`` that fairseq's ``Dictionary.save`` writes: ``"<symbol> <count>"`` per non-special symbol,
        in id order."""
        return "".join(f"{s} {c}\n" for s, c in zip(self.symbols[4:], self.counts[4:]))

    def __len__(self) -> int:
        return len(self.symbols)

    def __getitem__(self, index: int) -> str:
        return self.symbols[index]

    def index(self, symbol: str) -> int:
        """The id of ``symbol``, or ``unk_index``."""
        return self.indices.get(symbol, self.unk_index)

    def encode_line(self, line: str, append_eos: bool = True) -> torch.Tensor:
        """int64 ids of the whitespace-separated symbols of ``line`` (unknown ones → ``<unk>``), then ``</s>``:
        ``Dictionary.encode_line(line, add_if_not_exist=False)``."""
        ids = [self.index(word) for word in line.split()]
        return torch.tensor(ids + [self.eos_index] * append_eos, dtype=torch.long)

    def string(self, ids: Iterable[int] | torch.Tensor) -> str:
        """``Dictionary.string(ids)``: symbols joined by spaces, ``</s>`` dropped (``<s>`` too, as fairseq drops
        its ``bos_index``), ``<unk>`` written as ``<unk>``."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        return " ".join(self.symbols[i] for i in ids if i not in (self.eos_index, self.bos_index))
