"""The package's shape: zoo's imports form no cycle and are made at module level, and every hubconf entry point is
fully annotated and is all that ``torch.hub.list`` shows."""
from __future__ import annotations

import argparse
import ast
import inspect
import os
import typing
from pathlib import Path

import pytest
import torch

import hubconf
from conversion import model_cards
from zoo.cli import build_parser
from zoo.cli.convert import kinds
from zoo.cli.options import weights_by_name
from zoo.models.hifigan import CodeHiFiGAN
from zoo.models.speechtokenizer import SpeechTokenizer
from zoo.models.wavlm import WavLM
from zoo.models.wavtokenizer import WavTokenizer
from zoo.registry import all_weights, families

ROOT = Path(__file__).resolve().parents[1]


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_imports(package: Path) -> dict[str, list[tuple[int, str, bool]]]:
    """module -> ``(line, imported module of the package, made inside a function)`` for each module of ``package``."""
    root = package.parent
    files = sorted(package.rglob("*.py"))
    modules = {module_name(p, root) for p in files}
    imports: dict[str, list[tuple[int, str, bool]]] = {}
    for path in files:
        name = module_name(path, root)
        parent = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = imports[name] = []

        def visit(node: ast.AST, in_function: bool, name=name, parent=parent, found=found) -> None:
            for child in ast.iter_child_nodes(node):
                targets: list[str] = []
                if isinstance(child, ast.Import):
                    targets = [alias.name for alias in child.names]
                elif isinstance(child, ast.ImportFrom):
                    base = child.module or ""
                    if child.level:
                        anchor = parent.split(".")[: len(parent.split(".")) - child.level + 1]
                        base = ".".join(anchor + ([base] if base else []))
                    # ``from pkg import sub`` imports the submodule pkg.sub
                    targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in child.names]
                found.extend((child.lineno, t, in_function) for t in targets if t in modules and t != name)
                visit(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda))

        visit(ast.parse(path.read_text()), False)
    return imports


def find_cycle(imports: dict[str, list[tuple[int, str, bool]]]) -> list[str] | None:
    """One import cycle (``[a, b, ..., a]``), counting imports inside functions too, or None."""
    graph = {module: sorted({target for _, target, _ in found}) for module, found in imports.items()}
    done: set[str] = set()

    def walk(module: str, stack: list[str]) -> list[str] | None:
        if module in stack:
            return [*stack[stack.index(module):], module]
        if module in done:
            return None
        for target in graph[module]:
            if cycle := walk(target, [*stack, module]):
                return cycle
        done.add(module)
        return None

    return next((cycle for module in sorted(graph) if (cycle := walk(module, []))), None)


def test_zoo_has_no_import_cycle():
    imports = package_imports(ROOT / "zoo")
    assert len(imports) > 20 and sum(map(len, imports.values())) > 40, "the walk must see the package's imports"
    cycle = find_cycle(imports)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_cycle_through_a_function_local_import_is_found(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from .sub import b\n")
    (package / "sub" / "b.py").write_text("def f():\n    from .. import c\n")
    (package / "c.py").write_text("import pkg.a\n")
    assert find_cycle(package_imports(package)) == ["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]
    (package / "c.py").write_text("import os\n")
    assert find_cycle(package_imports(package)) is None


def test_zoo_modules_are_imported_at_module_level():
    """A function-local import hides a dependency (and usually a cycle); only optional third-party packages are
    imported late, so zoo modules never are."""
    local = [f"{module}:{line} imports {target}" for module, found in package_imports(ROOT / "zoo").items()
             for line, target, in_function in found if in_function]
    assert not local, "\n".join(local)


def entry_points() -> dict[str, typing.Callable]:
    return {name: f for name, f in vars(hubconf).items()
            if inspect.isfunction(f) and f.__module__ == hubconf.__name__ and not name.startswith("_")}


def test_torch_hub_lists_exactly_the_entry_points():
    listed = [f for f in dir(hubconf) if callable(getattr(hubconf, f)) and not f.startswith("_")]  # as torch.hub.list
    assert sorted(listed) == sorted(entry_points())
    assert len(entry_points()) == 27


@pytest.mark.parametrize("name", sorted(entry_points()))
def test_hubconf_entry_point_is_fully_annotated(name):
    function = entry_points()[name]
    hints = typing.get_type_hints(function)
    parameters = inspect.signature(function).parameters
    assert "return" in hints, f"{name} has no return annotation"
    assert not [p for p in parameters if p not in hints], f"{name}: unannotated parameters"
    if "weights" in parameters:
        assert hints["weights"] == str | os.PathLike | None and parameters["weights"].default is None
    if "map_location" in parameters:
        assert str in typing.get_args(hints["map_location"]) and torch.device in typing.get_args(hints["map_location"])
    if "progress" in parameters:
        assert hints["progress"] is bool and parameters["progress"].default is True


def test_loading_entry_points_take_weights_map_location_progress_and_dtype():
    # built from what they are given: the codebook tensor, the WaveGlow whose bias the denoiser removes
    built_from_argument = {"dpdp_quantizer_from_codebook", "waveglow_denoiser"}
    loads_nothing = {"logmel_feature_reader"}  # Kaldi filterbanks have no weights
    for name, function in entry_points().items():
        parameters = inspect.signature(function).parameters
        if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            continue  # a dispatcher (gslm_feature_reader): the entry point it calls takes them
        expected = ({"map_location"} if name in built_from_argument | loads_nothing
                    else {"weights", "map_location", "progress"}) | {"dtype", "torch_dtype"}
        assert expected <= set(parameters), f"{name} lacks {expected - set(parameters)}"


def subcommands(parser: argparse.ArgumentParser | None = None, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every (sub)command parser by its full name, e.g. "gslm sample"."""
    found = {}
    for action in (parser or build_parser())._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[f"{prefix}{name}"] = sub
                found.update(subcommands(sub, f"{prefix}{name} "))
    return found


def test_cli_spells_shared_options_one_way():
    seen = {"out": 0, "weights": 0, "batch": 0}
    for name, parser in subcommands().items():
        for action in parser._actions:
            options = [o for o in action.option_strings if o.startswith("--")]
            if "-o" in action.option_strings or action.dest in ("out", "output"):
                seen["out"] += 1
                assert action.option_strings[:2] == ["-o", "--out"] and action.dest == "out", f"{name}: {options}"
            elif "batch" in action.dest:
                seen["batch"] += 1
                # the original script's underscore spelling may stay as an alias (existing shell scripts)
                assert options[0] == "--batch-size" and set(options[1:]) <= {"--batch_size"}, f"{name}: {options}"
            elif "weights" in action.dest:
                seen["weights"] += 1
                assert action.dest == "weights", f"{name}: {options} must store into --weights"
                assert options == ["--weights"] or action.help == argparse.SUPPRESS, f"{name}: {options}"
    assert seen["out"] >= 8 and seen["batch"] >= 6 and seen["weights"] >= 6, seen


def test_old_spellings_still_work():
    encode = subcommands()["encode"]
    args = encode.parse_args(["x.wav", "--k", "5", "--lmbda", "0", "--output", "u.jsonl", "--wavlm-weights", "w",
                              "--codebook-weights", "c"])
    assert args.out == Path("u.jsonl") and weights_by_name(args.weights, ("wavlm", "codebook")) == {
        "wavlm": "w", "codebook": "c"}


@pytest.mark.parametrize("cls, rate", [(WavLM, 16000), (WavTokenizer, 24000), (SpeechTokenizer, 16000),
                                       (CodeHiFiGAN, 16000)])
def test_every_audio_model_says_its_sample_rate(cls, rate):
    """The models that read or write waveforms; pipelines and CLIs resample to ``model.sample_rate``."""
    assert isinstance(inspect.getattr_static(cls, "sample_rate"), property)
    released = {w.sample_rate for module in families() for w in getattr(module, "WEIGHTS", ())
                if module.__name__ == cls.__module__}
    assert released == {rate}


def test_every_registered_weight_set_has_a_generated_card(tmp_path, monkeypatch):
    cards = model_cards.cards()
    assert set(cards) == {model_cards.CARDS / f"{w.name}.md" for w in all_weights()} and len(cards) >= 86
    assert set(model_cards.CARDS.glob("*.md")) == set(cards), "a card without registered weights"
    stray = tmp_path / "cards"
    stray.mkdir()
    for path, card in cards.items():
        (stray / path.name).write_text(card)
    (stray / "unregistered.md").write_text("hand-written")
    monkeypatch.setattr(model_cards, "CARDS", stray)
    assert model_cards.main(["--check"]) == 1


def test_convert_offers_only_formats_with_a_reader():
    assert "encodec" not in kinds() and "fairseq" not in kinds()
    assert {"codebook", "wavlm", "hifigan", "gslm_ulm"} <= set(kinds())
