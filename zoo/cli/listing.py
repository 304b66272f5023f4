"""``speechzoo list [FILTER]``: the registry of released weights, as a table that fits 100 columns or as JSON.

The table has one section per entry point and, for each weight set, its name, the ``zoo.formats`` converter that
reads the original release, the checksum the release published for its first file (SHA-256, or MD5 where that is
what it published; ``+N`` more files) and its licence as the authors published it. ``FILTER`` keeps the weight sets
whose name, entry point or converter contains it (``-`` and ``_`` alike): ``speechzoo list hifigan``.
"""
from __future__ import annotations

import argparse
import json

from ..errors import InputError
from ..registry import Weights, all_weights

#: The table never gets wider than this.
WIDTH = 100
_COLUMNS = ("name", "converter", "sha256", "license")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("list", help="list the released weight sets", description=__doc__.splitlines()[0])
    p.add_argument("filter", nargs="?", help="only weight sets whose name, entry point or converter contains this")
    p.add_argument("--json", action="store_true", help="print a JSON list of objects (every field) instead")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    weights = [w for w in all_weights() if args.filter is None or _matches(w, args.filter)]
    if not weights:
        raise InputError(f"no released weight set matches {args.filter!r}; `speechzoo list` shows them all")
    if args.json:
        print(json.dumps([w.as_dict() for w in weights], indent=2))
        return 0
    print(table(weights))
    return 0


def table(weights: list[Weights]) -> str:
    """The weight sets grouped by entry point, in columns that fit :data:`WIDTH` (the licence is cut if needed)."""
    rows = [(w.entry_point, [w.name, w.converter, _checksum(w), w.license]) for w in weights]
    widths = [max(len(c), *(len(r[i]) for _, r in rows)) for i, c in enumerate(_COLUMNS)]
    widths[-1] = min(widths[-1], WIDTH - 2 - sum(widths[:-1]) - 2 * (len(widths) - 1))  # 2: the indent
    lines = ["  " + "  ".join(c.ljust(w) for c, w in zip(_COLUMNS, widths)).rstrip()]
    entry_point = None
    for group, row in rows:
        if group != entry_point:
            lines.append(f"{group}:")
            entry_point = group
        cells = [*row[:-1], row[-1] if len(row[-1]) <= widths[-1] else row[-1][: widths[-1] - 1] + "…"]
        lines.append("  " + "  ".join(v.ljust(w) for v, w in zip(cells, widths)).rstrip())
    return "\n".join(lines)


def _matches(weights: Weights, text: str) -> bool:
    wanted = text.lower().replace("-", "_")
    return any(wanted in field.lower().replace("-", "_")
               for field in (weights.name, weights.entry_point, weights.converter))


def _checksum(weights: Weights) -> str:
    """The first source file's published checksum, shortened: its SHA-256 (``8b2b254e``), ``md5:...`` or ``none``;
    ``+N`` when the release has N more files."""
    first = weights.source_files[0]
    value = first.sha256[:8] if first.sha256 else f"md5:{first.md5[:8]}" if first.md5 else "none"
    more = len(weights.source_files) - 1
    return value + (f" +{more}" if more else "")
