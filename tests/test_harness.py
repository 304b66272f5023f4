"""The test harness itself (tolerances read from case.json, loops over fixture keys that cannot run zero times) and
the rules that keep tests and benchmarks on it: conversion only through ``convert`` / ``conversion_cli``, no
``sys.path`` edits, one timing helper for every benchmark."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from harness import ROOT, Case, case_names, load_case


def case_with(tolerance: dict, **io: torch.Tensor) -> Case:
    return Case(Path("fixtures/demo/case"), {"tolerance": tolerance}, io)


def test_tolerance_for_every_output_or_per_output_with_patterns():
    flat = case_with({"atol": 1e-4, "rtol": 1e-3, "note": "float32"})
    assert flat.tolerance("anything") == {"atol": 1e-4, "rtol": 1e-3}
    per_key = case_with({"codes": "exact", "wav_decoded_*, forward_wav": {"atol": 1e-5, "rtol": 1e-4},
                         "loss": {"atol": 0.0}})
    assert per_key.tolerance("wav_decoded_st1_to3") == {"atol": 1e-5, "rtol": 1e-4}
    assert per_key.tolerance("forward_wav") == {"atol": 1e-5, "rtol": 1e-4}
    assert per_key.tolerance("loss") == {"atol": 0.0, "rtol": 0.0}
    with pytest.raises(KeyError, match="no tolerance for 'codes'"):  # exact outputs are compared with torch.equal
        per_key.tolerance("codes")


def test_assert_close_uses_the_case_tolerance_and_never_loosens_it():
    case = case_with({"wav": {"atol": 1e-3, "rtol": 0.0}}, wav=torch.zeros(3))
    case.assert_close("wav", torch.full((3,), 9e-4))
    with pytest.raises(AssertionError, match="demo/case wav"):
        case.assert_close("wav", torch.full((3,), 2e-3))
    with pytest.raises(AssertionError, match="Tensor-likes are not close"):
        case.assert_close("wav", torch.full((3,), 9e-4), atol=1e-4)  # tightening is allowed
    with pytest.raises(AssertionError, match="would loosen"):
        case.assert_close("wav", torch.zeros(3), atol=1e-2)


def test_a_loop_over_fixture_keys_cannot_run_zero_times():
    case = case_with({}, codes_encst1=torch.zeros(1), codes=torch.zeros(1))
    assert case.keys("codes_encst") == ["codes_encst1"]
    with pytest.raises(AssertionError, match="no output named codes_nq"):
        case.keys("codes_nq")


def test_every_fixture_case_loads_and_names_a_tolerance():
    names = case_names("*/*")
    assert len(names) >= 10
    for name in names:
        case = load_case(name)
        assert case.io and "tolerance" in case.meta, name


@pytest.mark.cases("audio/*", "f0/*")
def test_the_cases_marker_parametrises_over_matching_cases(case):
    assert case.name.split("/")[0] in ("audio", "f0") and (case.path / "io.safetensors").is_file()


# ------------------------------------------------------------------------------------------ one way to do each thing
def sources(folder: str) -> list[Path]:
    """The Python files of ``folder``, without the scripts that made fixtures with the original code (data, run
    beside the originals, never collected)."""
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "fixtures" not in p.relative_to(ROOT).parts)


def calls_and_imports(path: Path) -> tuple[set[str], set[str]]:
    """Dotted names called (``sys.path.insert``, ``time.perf_counter``) and modules imported by a file."""
    tree = ast.parse(path.read_text())
    called, imported = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            called.add(ast.unparse(node.func))
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    return called, imported


SUBPROCESS_RUNS = {f"subprocess.{name}" for name in ("run", "Popen", "call", "check_call", "check_output")}


def test_tests_convert_only_through_the_harness_and_import_without_sys_path_edits():
    """``python -m conversion`` runs through ``convert`` / ``conversion_cli`` (harness.py), as users run it; a test
    imports references from the ``benchmarks`` package, never by editing ``sys.path`` (conftest.py puts tests/ on
    it once)."""
    for path in sources("tests"):
        if path.name in ("conftest.py", "harness.py"):
            continue
        called, imported = calls_and_imports(path)
        assert "conversion.__main__" not in imported, f"{path.name}: convert with the harness's convert fixture"
        assert not called & SUBPROCESS_RUNS, f"{path.name}: run python -m conversion with harness.conversion_cli"
        assert not {c for c in called if c.startswith("sys.path.")}, f"{path.name} edits sys.path"


def test_benchmarks_share_one_timing_helper():
    """Every benchmark times with benchmarks/timing.py and is a module of the package (no sys.path edits)."""
    for path in sources("benchmarks"):
        if path.name == "timing.py":
            continue
        called, _ = calls_and_imports(path)
        clocks = {c for c in called if c.startswith("time.") and c.rsplit(".", 1)[1] in
                  ("perf_counter", "time", "monotonic", "process_time", "perf_counter_ns")}
        assert not clocks, f"{path.relative_to(ROOT)} reads the clock itself ({clocks}): use benchmarks.timing"
        assert not {c for c in called if c.startswith("sys.path.")}, f"{path.relative_to(ROOT)} edits sys.path"
