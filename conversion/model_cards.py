"""Model cards (``model_cards/<weights name>.md``) generated from the weights registry, one per registered weight set.

The front matter, the hub one-liner, the rates and the provenance come from each :class:`~zoo.registry.Weights`;
what the registry does not hold (tags, pipeline tag, the original code, a usage snippet, notes, the citation) comes
from the :class:`~conversion.cards.CardTemplate` of its entry point, in ``conversion/cards/<family>.py``.

    python -m conversion.model_cards            # write every card
    python -m conversion.model_cards --check    # exit 1 if a card is missing, out of date or not registered
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zoo.registry import NO_LICENCE, Weights, all_weights

from .cards import NOTEBOOKS, CardTemplate, templates, text

CARDS = Path(__file__).resolve().parents[1] / "model_cards"
HUB_REPO = "speechzoo/speechzoo"
#: Digits of a SHA-256 prefix as torch.hub's ``check_hash`` file names carry it.
_HASH_PREFIX_DIGITS = 8


def hub_call(weights: Weights) -> str:
    """``torch.hub.load("speechzoo/speechzoo", "<entry point>", <kwargs>, trust_repo=True)`` for ``weights``
    (``trust_repo=True``: torch ≥ 2.0 otherwise asks on stdin, and a batch job without one dies)."""
    arguments = "".join(f", {key}={value!r}" for key, value in weights.kwargs.items())
    return f'torch.hub.load("{HUB_REPO}", "{weights.entry_point}"{arguments}, trust_repo=True)'


def licence_front_matter(licence: str) -> list[str]:
    """The Hub's ``license:`` field: an SPDX-like id, or ``other`` with a name when the authors stated none."""
    if licence == NO_LICENCE:
        return ["license: other", "license_name: no-licence-stated-by-the-authors"]
    return [f"license: {licence.lower().replace(' ', '-')}"]


def intended_use(weights: Weights) -> str:
    return (f"Research on textless spoken-language modelling: {weights.description}, as its authors released it, "
            f"loaded without their code (`{hub_call(weights)}`, or `weights=` a converted folder). It gives the "
            "original's numbers (see Provenance), so results obtained with the original carry over.")


def limitations(weights: Weights, datasets: tuple[str, ...]) -> str:
    if weights.license == NO_LICENCE:
        terms = ("The authors published no licence for this release: beyond what the law allows without one "
                 "(e.g. research use where that is permitted), using or redistributing it needs their permission.")
    elif "NC" in weights.license:
        terms = f"Licensed {weights.license} by its authors: non-commercial use only."
    else:
        terms = f"Released under {weights.license} by its authors."
    data = (f"It was trained on {', '.join(datasets)} and inherits that data's language, speakers and "
            "recording conditions: expect it to work best on similar speech" if datasets else
            "It inherits the language, speakers and recording conditions of its training data: expect it to work "
            "best on speech like it")
    rate = f" at {weights.sample_rate} Hz" if weights.sample_rate else ""
    return (f"{terms} {data}{rate}. speechzoo checks that it reproduces the original's outputs, not how well it "
            "performs; see the paper for its evaluation. Models that generate speech can imitate voices: do not "
            "use them to impersonate people or to deceive.")


def notebook_links(weights: Weights, template: CardTemplate) -> str:
    """The card's list of its family's notebooks: GitHub page and Colab link of each."""
    names = template.notebooks(weights) if callable(template.notebooks) else template.notebooks
    return "\n".join(f"- [`notebooks/{name}.ipynb`](https://github.com/{HUB_REPO}/blob/main/notebooks/{name}.ipynb) "
                     f"([open in Colab](https://colab.research.google.com/github/{HUB_REPO}/blob/main/notebooks/"
                     f"{name}.ipynb)): {NOTEBOOKS[name]}" for name in names)


def render(weights: Weights, template: CardTemplate) -> str:
    fields = {**vars(weights), **weights.kwargs, "load": hub_call(weights)}
    datasets = weights.datasets or template.datasets
    front = ["---", *licence_front_matter(weights.license), "library_name: speechzoo",
             "tags:", *[f"- {tag}" for tag in template.tags],
             "datasets:" + ("" if datasets else " []"), *[f"- {d}" for d in datasets],
             f"pipeline_tag: {template.pipeline_tag}", "---"]
    rates = [f"{weights.sample_rate} Hz audio" if weights.sample_rate else "",
             f"{weights.frame_rate:g} frames per second" if weights.frame_rate else ""]
    rates = ", ".join(rate for rate in rates if rate)
    summary = (text(template.summary, weights, fields) if template.summary else
               weights.description[0].upper() + weights.description[1:] + "." + (f" Rates: {rates}." if rates else ""))
    sources = "\n".join(f"  - {f.url} ({_describe_hash(f.sha256, f.md5)})" for f in weights.source_files)
    files = " ".join(Path(f.url).name for f in weights.source_files)
    details, notes, release, conversion, parity = (
        text(getattr(template, name), weights, fields) for name in ("details", "notes", "release", "conversion",
                                                                    "parity"))
    sections = [
        "\n".join(front),
        f"# {text(template.title, weights, fields)}",
        summary,
        *([details] if details else []),
        "## Usage",
        f"```python\n{text(template.usage, weights, fields).strip()}\n```",
        *([notes.strip()] if notes else []),
        *(["## Notebooks", notebook_links(weights, template)] if template.notebooks else []),
        "## Intended use",
        intended_use(weights),
        "## Limitations",
        limitations(weights, datasets),
        "## Provenance",
        "\n".join([
            f"- Original code: {text(template.original_code, weights, fields)}.",
            f"- Original release{f' ({release})' if release else ''}:\n{sources}",
            f"- Converted with `python -m conversion {weights.converter} {files} --out DIR` "
            f"(`zoo.formats.{weights.converter}`){f': {conversion}' if conversion else ''}.",
            f"- Mirrored on the Hub as `{weights.repo_id}` @ `{weights.revision}`.",
            *([f"- Parity: {parity}"] if parity else []),
            f"- Paper: {weights.paper}",
        ]),
        "## Citation",
        f"```bibtex\n{text(template.citation, weights, None).strip()}\n```",
    ]
    return "\n\n".join(sections) + "\n"


def _describe_hash(sha256: str | None, md5: str | None = None) -> str:
    if not sha256:
        return (f"MD5 `{md5}` as the release published it (the download is verified against it)" if md5 else
                "SHA-256 not published by the release: the download is not verified")
    if len(sha256) == _HASH_PREFIX_DIGITS:
        return f"SHA-256 starts with `{sha256}`, as torch.hub's `check_hash` names the file"
    return f"SHA-256 `{sha256}`"


def cards() -> dict[Path, str]:
    """The card of every registered weight set, by path; an entry point without a template is an error."""
    found = templates()
    missing = sorted({w.entry_point for w in all_weights()} - set(found))
    if missing:
        raise KeyError(f"no card template for the entry points {missing}: add one in conversion/cards/")
    return {CARDS / f"{w.name}.md": render(w, found[w.entry_point]) for w in all_weights()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conversion.model_cards", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report missing, out-of-date or stray cards")
    args = parser.parse_args(argv)
    expected = cards()
    stale = [path for path, card in expected.items() if not path.is_file() or path.read_text() != card]
    stray = sorted(set(CARDS.glob("*.md")) - set(expected))
    if args.check:
        for path in stale:
            print(f"out of date: {path.relative_to(CARDS.parent)}", file=sys.stderr)
        for path in stray:
            print(f"not in the registry: {path.relative_to(CARDS.parent)}", file=sys.stderr)
        return 1 if stale or stray else 0
    for path, card in expected.items():
        path.write_text(card)
        print(path.relative_to(CARDS.parent))
    for path in stray:
        print(f"not in the registry (delete it or register its weights): {path.relative_to(CARDS.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
