"""fairseq's token ``Dictionary`` (``fairseq/data/dictionary.py``) at inference: symbols ↔ ids, ``encode_line`` and
``string``, for models trained on fairseq-preprocessed text (GSLM's unit LM, dGSLM's SpeechDLM).

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
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from ..errors import InputError


class FairseqDictionary:
    """Symbols in id order; ``indices`` maps a symbol to its (last) id, as fairseq's ``Dictionary.indices``."""

    SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
    bos_index, pad_index, eos_index, unk_index = 0, 1, 2, 3

    def __init__(self, symbols: Sequence[str]) -> None:
        symbols = tuple(symbols)
        if symbols[:4] != self.SPECIALS:
            raise InputError(f"a fairseq dictionary starts with {self.SPECIALS}, got {symbols[:4]}")
        self.symbols = symbols
        self.indices = {s: i for i, s in enumerate(symbols)}  # a later duplicate (#fairseq:overwrite) wins

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
