"""The ``speechzoo`` command line. Each subcommand lives in its own module under ``zoo.cli`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (called with the parsed arguments)."""
from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import SpeechZooError

#: Modules of zoo.cli that add subcommands, in the order ``speechzoo --help`` lists them.
COMMANDS = ("listing", "convert", "encode", "quantize", "dpslm", "codec", "vocode", "gslm", "train", "prepare", "dialogue")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="speechzoo", description="Textless spoken-language models in pure PyTorch.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"zoo.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except SpeechZooError as e:
        print(f"speechzoo {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
