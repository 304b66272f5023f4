"""Model-card templates: one module per model family, each with ``TEMPLATES``, a dict from hubconf entry point to
:class:`CardTemplate`. :mod:`conversion.model_cards` renders one card per registered weight set from its
:class:`~zoo.registry.Weights` and its entry point's template; a new family adds a module here.

Every text field is either a string, ``str.format``-ed with the Weights fields, its ``kwargs`` and ``load`` (the
``torch.hub.load(...)`` call that selects the weights) — except ``citation``, BibTeX being full of braces —, or a
function of the Weights returning the text.
"""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

from zoo.registry import Weights

#: A card's text: a format string, or a function of the weight set.
Text = str | Callable[[Weights], str]
#: The notebooks (``notebooks/<name>.ipynb``) a card links, by name, with what each shows.
NOTEBOOKS = {
    "dpslm": "DP-SLM: units on the spectrogram, resynthesis, continuation and the λ sweep",
    "gslm": "GSLM: HuBERT units to Tacotron2 + WaveGlow speech, and continuation",
    "speechtokenizer": "SpeechTokenizer: codes per RVQ layer, semantic-only against all layers",
    "voice_conversion": "voice conversion with a multi-speaker unit HiFi-GAN, and F0 contours",
    "dgslm": "dGSLM: spoken dialogue continuation",
    "train_speechtokenizer": "training a tiny SpeechTokenizer and loading the exported model",
}


@dataclass(frozen=True)
class CardTemplate:
    """The family-specific parts of a card; the registry gives the rest (license, rates, release files, paper)."""

    title: Text
    tags: tuple[str, ...]
    datasets: tuple[str, ...]                   # used when the Weights name none
    pipeline_tag: str
    original_code: Text                         # "owner/repo@commit (files)"
    usage: Text                                 # a Python snippet
    citation: Text                              # BibTeX
    details: Text = ""                          # a paragraph after the summary
    summary: Text = ""                          # replaces the registry's description (and rates) when given
    notes: Text = ""                            # paragraphs after the usage snippet
    release: Text = ""                          # what the original release is, after its files
    conversion: Text = ""                       # what the converter changes, after the conversion command
    parity: Text = ""                           # how the numbers were checked against the original
    notebooks: tuple[str, ...] | Callable[[Weights], tuple[str, ...]] = ()   # keys of NOTEBOOKS showing it at work


def text(value: Text, weights: Weights, fields: dict | None) -> str:
    """A template field for ``weights``: called, or ``str.format``-ed with ``fields`` (None: taken as it is)."""
    if callable(value):
        return value(weights)
    return value if fields is None else value.format(**fields)


def templates() -> dict[str, CardTemplate]:
    """Entry point -> template, from every module of this package that declares ``TEMPLATES``."""
    found: dict[str, CardTemplate] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for entry_point, template in getattr(module, "TEMPLATES", {}).items():
            if entry_point in found:
                raise ValueError(f"two card templates for {entry_point!r}")
            found[entry_point] = template
    return found
