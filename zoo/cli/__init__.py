"""The ``speechzoo`` command line. Each subcommand lives in its own module under ``zoo.cli`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (called with the parsed arguments).

Whatever goes wrong is one line on stderr, never a traceback: a bad argument or input exits with status 2, Ctrl-C
with 130; warnings (a truncated wav, clipped samples) are one line each too.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from .. import __version__
from ..errors import SpeechZooError

#: Modules of zoo.cli that add subcommands, in the order ``speechzoo --help`` lists them.
COMMANDS = ("listing", "convert", "encode", "quantize", "dpslm", "codec", "vocode", "gslm", "train", "prepare", "validate",
            "dialogue")


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors, which records in ``args.prog`` the (sub)command that parsed them."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_known_args(self, args=None, namespace=None):
        namespace, rest = super().parse_known_args(args, namespace)
        if not hasattr(namespace, "prog"):  # the innermost subcommand parses first
            namespace.prog = self.prog
        return namespace, rest


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="speechzoo", description="Textless spoken-language models in pure PyTorch.")
    parser.add_argument("--version", action="version", version=f"speechzoo {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"zoo.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    prog = "speechzoo"
    try:
        args = build_parser().parse_args(argv)
        prog = args.prog
        with warnings.catch_warnings():
            warnings.showwarning = lambda message, *_, **__: print(f"{prog}: warning: {message}", file=sys.stderr)
            return args.func(args) or 0
    except SpeechZooError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`speechzoo list | head`): nothing more to say
        sys.stdout = None
        return 0


if __name__ == "__main__":
    sys.exit(main())
