"""``speechzoo convert KIND SRC... --out DIR`` (also ``python -m conversion``): read an ORIGINAL checkpoint with
its ``zoo.formats`` reader and write config.json + model.safetensors that ``weights=DIR`` loads."""
from __future__ import annotations

import argparse
import importlib
import pkgutil
from pathlib import Path

from .. import formats
from .options import add_out


def kinds() -> list[str]:
    """Every original format that has a reader in ``zoo.formats`` (the modules with ``convert``; the others hold
    layouts that several readers share)."""
    names = (m.name for m in pkgutil.iter_modules(formats.__path__) if not m.name.startswith("_"))
    return sorted(name for name in names if hasattr(importlib.import_module(f"zoo.formats.{name}"), "convert"))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", choices=kinds(), help="which original format SRC is in")
    p.add_argument("src", nargs="+", type=Path, help="original file(s), in the order the format's docs give")
    p.add_argument("--config", type=Path, help="the original's separate config file, for formats that need one")
    add_out(p, "directory to write config.json + model.safetensors")
    p.set_defaults(func=run)


def register(subparsers: argparse._SubParsersAction) -> None:
    add_arguments(subparsers.add_parser("convert", help="convert an original checkpoint to safetensors"))


def run(args: argparse.Namespace) -> int:
    module = importlib.import_module(f"zoo.formats.{args.kind}")
    options = {"config": args.config} if args.config is not None else {}
    model = module.convert(list(args.src), **options)
    model.save_pretrained(args.out)
    n = sum(t.numel() for t in model.state_dict().values())
    print(f"wrote {args.out}/config.json and model.safetensors ({type(model).__name__}, {n:,} values)")
    return 0
