"""``speechzoo list``: the registry of released weights, as a table or as JSON."""
from __future__ import annotations

import argparse
import json

from ..registry import all_weights

_COLUMNS = ("name", "entry_point", "kwargs", "repo_id", "revision", "license", "source_url")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("list", help="list every released weight set")
    p.add_argument("--json", action="store_true", help="print a JSON list of objects instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    entries = [w.as_dict() for w in all_weights()]
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    rows = [[_cell(e[c]) for c in _COLUMNS] for e in entries]
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(_COLUMNS)]
    print("  ".join(c.ljust(w) for c, w in zip(_COLUMNS, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)))
    return 0


def _cell(value: object) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return str(value)
