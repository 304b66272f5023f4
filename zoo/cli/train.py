"""``speechzoo train MODEL ...``: training with the originals' recipes, one sub-command per model."""
from __future__ import annotations

import argparse
import importlib

#: Modules of zoo.cli that add a ``speechzoo train`` sub-command (each exposes ``register(subparsers)``).
TRAINERS = ("train_kmeans", "train_speechtokenizer", "train_resynthesis", "train_lm")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train a model with the original recipe",
                              description=__doc__.splitlines()[0])
    models = p.add_subparsers(dest="model", required=True, metavar="MODEL")
    for name in TRAINERS:
        importlib.import_module(f"zoo.cli.{name}").register(models)
