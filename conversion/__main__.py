"""``python -m conversion KIND SRC... [--config FILE] --out DIR``."""
import argparse
import sys

from zoo.cli import convert
from zoo.errors import SpeechZooError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conversion")
    convert.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except SpeechZooError as e:
        print(f"conversion {args.kind}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
