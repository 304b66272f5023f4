"""The options every subcommand spells the same way: ``-o/--out``, ``--weights``, ``--batch-size``, ``--device``,
``--skip-errors``, ``--subtype``, ``--plot``.

A command that loads one model takes ``--weights DIR_OR_REPO``; a pipeline of several takes ``--weights NAME=DIR``
once per model it replaces (:func:`weights_by_name` checks the names).

    >>> parser = argparse.ArgumentParser()
    >>> add_out(parser, "folder for the outputs"); add_batch_size(parser, 8, "files per batch")
    >>> add_weights(parser, components=("wavlm", "codebook"))
    >>> args = parser.parse_args(["-o", "out", "--weights", "codebook=my/cb", "--batch-size", "2"])
    >>> args.out, args.batch_size, weights_by_name(args.weights, ("wavlm", "codebook"))
    (PosixPath('out'), 2, {'codebook': 'my/cb'})
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import soundfile
import torch

from ..errors import InputError
from .inputs import positive_int


def add_out(parser: argparse.ArgumentParser, help: str, *aliases: str, metavar: str | None = None) -> None:
    """``-o/--out PATH`` (required); ``aliases`` are older spellings that still work."""
    parser.add_argument("-o", "--out", *aliases, dest="out", required=True, type=Path, metavar=metavar, help=help)


def add_batch_size(parser: argparse.ArgumentParser, default: int, help: str) -> None:
    """``--batch-size N``, a positive count rejected while parsing, before any model is loaded."""
    parser.add_argument("--batch-size", type=positive_int, default=default, help=help)


def add_device(parser: argparse.ArgumentParser) -> None:
    """``--device``, checked while parsing: a name torch knows, on a build and machine that has it."""
    parser.add_argument("--device", default="cpu", type=device, help="torch device: cpu, cuda, cuda:1, mps")


def device(text: str) -> str:
    """argparse type of ``--device``: ``text`` if torch can use that device here, else a one-line error.

    >>> device("gpu")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: 'gpu' is not a torch device; use cpu, cuda, cuda:N or mps
    """
    try:
        kind = torch.device(text).type
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device; use cpu, cuda, cuda:N or mps") from None
    if kind == "cuda" and not torch.cuda.is_available():
        build = "built without CUDA" if torch.version.cuda is None else "without a usable GPU here"
        raise argparse.ArgumentTypeError(f"{text}: this torch {torch.__version__} is {build}; use --device cpu "
                                         "(or install a CUDA build of torch)")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{text}: MPS is not available here; use --device cpu")
    return text


def add_skip_errors(parser: argparse.ArgumentParser) -> None:
    """``--skip-errors``: a batch command goes on past bad inputs, lists them at the end and exits with 2 (without
    it, the first bad input stops the command once the finished items are written)."""
    parser.add_argument("--skip-errors", action="store_true",
                        help="go on past bad inputs, list them at the end and exit with status 2")


def add_subtype(parser: argparse.ArgumentParser) -> None:
    """``--subtype``: the sample format of the written .wav files (float by default: nothing is clipped)."""
    parser.add_argument("--subtype", default="FLOAT", type=str.upper,
                        choices=sorted(soundfile.available_subtypes("WAV")), metavar="SUBTYPE",
                        help="sample format of the .wav files: FLOAT (default, nothing clipped), PCM_16 (warns "
                             "when samples beyond ±1 are clipped), PCM_24, DOUBLE, ...")


def add_plot(parser: argparse.ArgumentParser, what: str) -> None:
    """``--plot FILE.png``: draw ``what`` with :mod:`zoo.plot` (the ``plot`` extra) to the path the user gives."""
    parser.add_argument("--plot", type=Path, metavar="FILE.png",
                        help=f"also draw {what} to this image (.png, .pdf, .svg; needs matplotlib: the plot extra)")


def add_weights(parser: argparse.ArgumentParser, what: str = "the model", components: Sequence[str] = ()) -> None:
    """``--weights``: one directory or Hub repo id for ``what``, or (with ``components``) ``NAME=DIR`` for each
    model of a pipeline that should not come from the registry, repeatable."""
    if not components:
        parser.add_argument("--weights", metavar="DIR_OR_REPO",
                            help=f"converted weights of {what}: a directory with config.json + model.safetensors "
                                 "or a Hub repo id (default: the registered release)")
        return
    parser.add_argument("--weights", action="append", default=[], metavar="NAME=DIR",
                        help=f"use a local or Hub copy of one model ({', '.join(components)}); repeatable")


class WeightsAlias(argparse.Action):
    """An older per-model spelling, ``--NAME-weights DIR``, kept as ``--weights NAME=DIR``."""

    def __init__(self, option_strings: list[str], dest: str, *, component: str, **kwargs) -> None:
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)
        self.component = component

    def __call__(self, parser, namespace, value, option_string=None) -> None:
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest) or []), f"{self.component}={value}"])


def weights_by_name(items: Sequence[str], components: Sequence[str]) -> dict[str, str]:
    """``["wavlm=DIR", ...]`` as ``{"wavlm": "DIR"}``; an unknown name or a missing ``=`` is an :class:`InputError`."""
    weights = {}
    for item in items:
        name, sep, location = item.partition("=")
        if not sep or name not in components:
            raise InputError(f"--weights {item!r}: give NAME=DIR with NAME one of {', '.join(components)}")
        weights[name] = location
    return weights
