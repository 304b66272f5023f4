"""`speechzoo encode` and zoo.pipelines.SpeechToUnits against the original's numbers (tiny WavLM + codebook
fixtures): the units of the original helper + codebook, deduplicated, with durations; batching and resuming."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from zoo import audio
from zoo.cli import main
from zoo.pipelines import SpeechToUnits, Units

from harness import load_case, python_process

CODEBOOK_CASE = load_case("wavlm/codebook_argmin")
WAVLM_CASE = load_case("wavlm/tiny_large_like_speech")
CODEBOOK_LAYER = 3  # the tiny codebook clusters layer-3 features
K = 20


@pytest.fixture(scope="module")
def weights(convert) -> dict[str, Path]:
    return {"wavlm": convert("wavlm", *WAVLM_CASE.original.glob("*.pt")),
            "codebook": convert("codebook", *CODEBOOK_CASE.original.glob("*.pt"))}


@pytest.fixture(scope="module")
def speech() -> torch.Tensor:
    """The fixtures' input: 2 s of LibriSpeech at 16 kHz."""
    return WAVLM_CASE.io["wav"][0]


def expected_units() -> Units:
    """Deduplicated nearest-centroid units of the original's layer-3 features."""
    return Units.from_framewise(CODEBOOK_CASE.io["units"])


def test_units_are_the_originals_deduplicated(weights, speech):
    s2u = SpeechToUnits.from_pretrained(K, lmbda=0, num_neighbors=K, layer=CODEBOOK_LAYER, weights=weights,
                                        progress=False)
    (units,) = s2u([speech], 16000)
    assert units == expected_units()
    assert sum(units.durations) == len(speech) // 320


def test_batched_ragged_equals_one_by_one(weights, speech):
    s2u = SpeechToUnits.from_pretrained(K, lmbda=30.0, layer=CODEBOOK_LAYER, weights=weights, progress=False)
    wavs = [speech, speech[:12345], speech[4000:30000]]
    assert s2u(wavs, 16000, batch_size=3) == [s2u([w], 16000)[0] for w in wavs]


def test_cli_writes_units_and_resumes(weights, speech, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    audio.save(tmp_path / "in" / "a.flac", speech, 16000)
    audio.save(tmp_path / "in" / "b.wav", audio.resample(speech, 16000, 24000), 24000)
    out = tmp_path / "units.jsonl"
    argv = ["encode", str(tmp_path / "in"), "--k", str(K), "--lmbda", "0", "--num-neighbors", str(K), "--layer",
            str(CODEBOOK_LAYER), "--wavlm-weights", str(weights["wavlm"]), "--codebook-weights",
            str(weights["codebook"]), "--batch-size", "2", "-o", str(out)]
    assert main(argv) == 0
    header, *lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert header["speechzoo_units"] == 1 and header["settings"]["k"] == K and header["settings"]["lmbda"] == 0
    assert [line["id"] for line in lines] == ["a", "b"]
    assert [line["source"] for line in lines] == [str((tmp_path / "in" / n).resolve()) for n in ("a.flac", "b.wav")]
    assert Units(lines[0]["units"], lines[0]["durations"]) == expected_units()  # flac is lossless
    assert sum(lines[1]["durations"]) == len(speech) // 320

    # a killed run leaves a half-written line: it is dropped and that file encoded again; done files are skipped
    out.write_text("".join(out.read_text().splitlines(keepends=True)[:2]) + '{"id": "')
    assert main(argv) == 0
    assert [json.loads(line) for line in out.read_text().splitlines()] == [header, *lines]
    assert "(1 were already there)" in capsys.readouterr().out

    # the same files by another spelling of their paths are the same inputs
    relative = argv.copy()
    relative[1] = str(Path(os.path.relpath(tmp_path / "in" / "a.flac")))
    assert main(relative) == 0 and "all 1 files already encoded" in capsys.readouterr().out

    # other settings: refused, and the file is left as it was
    before = out.read_text()
    other = [*argv[:argv.index("--lmbda") + 1], "5", *argv[argv.index("--lmbda") + 2:]]
    assert main(other) == 2
    assert "lmbda: 0.0 there, 5.0 here" in capsys.readouterr().err and out.read_text() == before


def test_cli_reports_missing_input(weights, tmp_path, capsys):
    assert main(["encode", str(tmp_path / "nothing.wav"), "--k", "20", "--lmbda", "0", "-o",
                 str(tmp_path / "u.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ kills and Ctrl-C
# The encode command runs in a subprocess; an audit hook sees the output file being opened for writing and then
# kills (SIGKILL) or interrupts (SIGINT) the process from a timer thread, and Path.write_text is slowed down, as a
# slow disk would make it, so that an implementation which rewrites the whole file would be caught in the act.
_WRAPPER = """
import os, pathlib, signal, sys, threading, time
out, signum, delay, modes = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
fired = []
def hook(event, args):
    if event == "open" and str(args[0]) == out and isinstance(args[1], str) and set(args[1]) & set(modes) \\
            and not fired:
        fired.append(True)
        threading.Timer(delay, os.kill, (os.getpid(), signum)).start()
sys.addaudithook(hook)
write_text = pathlib.Path.write_text
def slow_write_text(self, data, *a, **k):
    with open(self, "w") as f:
        time.sleep(5)
        f.write(data)
pathlib.Path.write_text = slow_write_text
from zoo.cli import main
sys.exit(main(sys.argv[5:]))
"""


def _encode_argv(inputs: Path, out: Path, weights: dict[str, Path]) -> list[str]:
    return ["encode", str(inputs), "--k", str(K), "--lmbda", "0", "--num-neighbors", str(K), "--layer",
            str(CODEBOOK_LAYER), "--wavlm-weights", str(weights["wavlm"]), "--codebook-weights",
            str(weights["codebook"]), "--batch-size", "1", "-o", str(out)]


def _run_wrapped(argv: list[str], out: Path, signum: int, delay: float, modes: str):
    process = python_process(_WRAPPER, out, signum, delay, modes, *argv)
    process.stdout_text, process.stderr = process.communicate(timeout=120)
    return process


@pytest.mark.slow
def test_kill_during_resume_keeps_every_finished_line(weights, speech, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in "abc":
        audio.save(inputs / f"{name}.flac", speech, 16000)
    out = tmp_path / "units.jsonl"
    argv = _encode_argv(inputs, out, weights)
    assert main(argv) == 0
    finished = out.read_text().splitlines(keepends=True)[:3]  # the header, a and b
    out.write_text("".join(finished) + '{"id": "')  # a run killed while writing c's line

    killed = _run_wrapped(argv, out, signal.SIGKILL, 0.05, "wa+")  # killed 50 ms after it opens the output to fix it
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert out.read_text().splitlines(keepends=True)[:3] == finished, "a kill during the resume lost finished lines"

    assert main(argv) == 0
    _, *lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == ["a", "b", "c"]
    assert all(Units(line["units"], line["durations"]) == expected_units() for line in lines)


@pytest.mark.slow
def test_ctrl_c_says_how_to_resume(weights, speech, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    audio.save(inputs / "a.flac", speech, 16000)
    out = tmp_path / "units.jsonl"
    interrupted = _run_wrapped(_encode_argv(inputs, out, weights), out, signal.SIGINT, 0.0, "a")
    assert interrupted.returncode == 130
    assert interrupted.stderr.strip() == "speechzoo encode: interrupted — run the same command again to resume"
