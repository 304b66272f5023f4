"""The ``speechzoo`` console script as users run it, on a nested corpus of real speech with a corrupt file, against
tiny models served by the loopback Hub: commands chain through the one units schema (``encode → vocode``,
``encode → gslm synthesize``, ``tokenize → detokenize``), outputs mirror the input tree under ``-o``, no name
writes outside it, one bad file costs only itself with ``--skip-errors`` (and never the finished work without it),
errors are one line with exit status 2."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import soundfile
import torch

import hubconf
from zoo.models.hifigan import CodeHiFiGAN, CodeHiFiGANConfig
from zoo.registry import find
from zoo.units import UnitsRecord, header_line

import tiny_models as tiny
from harness import ROOT, command
from hub_server import FakeHub
from test_gslm_pipeline import MAX_FRAMES, K

SPEECH = Path(__file__).parent / "data" / "librispeech-1272-128104-0000.flac"
#: Ids that would leave the output folder, or are no path at all.
BAD_IDS = ("../escaped", "/tmp/speechzoo-absolute", "", "a/../../b", "a\\b", "a//b", ".", "x/")

pytestmark = pytest.mark.slow  # each command is a fresh process that loads its models


@pytest.fixture(scope="module")
def hub(convert, tmp_path_factory):
    """The loopback Hub serving, under their registry repo ids: GSLM's tiny models (HuBERT + k-means 100, unit LM,
    Tacotron2, WaveGlow), a unit vocoder over 100 units (as the default ``vocode`` variant) and SpeechTokenizer."""
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    vocoder = CodeHiFiGAN(CodeHiFiGANConfig(upsample_rates=(5, 4, 2), upsample_kernel_sizes=(11, 8, 4),
                                            upsample_initial_channel=32, resblock_kernel_sizes=(3, 7, 11),
                                            resblock_dilation_sizes=((1, 3, 5),) * 3, num_embeddings=K,
                                            embedding_dim=16, model_in_dim=16, code_hop_size=40))
    models = {**tiny.gslm(convert, root), **tiny.speechtokenizer(convert),
              "vocoder": (find("hifigan_unit_vocoder", variant="s2st_mhubert_km1000_lj"),
                          vocoder.eval().save_pretrained(root / "vocoder"))}
    with FakeHub() as server:   # module-scoped: the commands get HF_ENDPOINT in their environment (speechzoo())
        server.add_models(models)
        yield server, {entry.entry_point: directory for entry, directory in models.values()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """``spk1/0001.wav`` and ``spk2/0001.wav`` (two stretches of the LibriSpeech utterance) and a corrupt
    ``spk2/0002.wav``."""
    root = tmp_path_factory.mktemp("corpus")
    speech, rate = soundfile.read(SPEECH, dtype="float32")
    for name, part in (("spk1/0001.wav", speech[:16_000]), ("spk2/0001.wav", speech[20_000:44_000])):
        (root / name).parent.mkdir(exist_ok=True)
        soundfile.write(root / name, part, rate)
    (root / "spk2/0002.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")
    return root


def speechzoo(hub, home: Path, *args) -> subprocess.CompletedProcess:
    """The installed console script with this checkout's code, offline but for the loopback Hub."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_ENDPOINT": hub[0].url, "HF_HOME": str(home),
           "OMP_NUM_THREADS": "1"}
    env.pop("HF_HUB_OFFLINE", None)
    return command(["speechzoo", *args], env=env)


def errors(result: subprocess.CompletedProcess) -> list[str]:
    """The error lines of a run, which never holds a traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    return [line for line in result.stderr.splitlines() if ": error: " in line]


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_encode_then_synthesize_and_vocode_mirror_the_corpus(hub, corpus, tmp_path):
    units = tmp_path / "units.jsonl"
    encode = ["encode", corpus, "--dense", "hubert-base-ls960", "--vocab-size", K, "-o", units]
    result = speechzoo(hub, tmp_path / "hf", *encode)
    assert result.returncode == 2 and len(errors(result)) == 1 and "0002.wav" in errors(result)[0]
    header, *records = [json.loads(line) for line in units.read_text().splitlines()]
    assert header["settings"]["system"] == "gslm" and [r["id"] for r in records] == ["spk1/0001", "spk2/0001"]
    assert [r["source"] for r in records] == [str((corpus / f"{r['id']}.wav").resolve()) for r in records]
    reader = hubconf.hubert_feature_reader(layer=tiny.HUBERT_LAYER, weights=hub[1]["hubert_feature_reader"])
    kmeans = hubconf.gslm_kmeans(weights=hub[1]["gslm_kmeans"])
    for record in records:
        wav, _ = soundfile.read(record["source"], dtype="float32")
        expected, counts = torch.unique_consecutive(kmeans(reader(torch.from_numpy(wav))), return_counts=True)
        assert record["units"] == expected.tolist() and record["durations"] == counts.tolist()

    # resumed with --skip-errors: the finished files are kept, the corrupt one is reported again
    result = speechzoo(hub, tmp_path / "hf", *encode, "--skip-errors")
    assert result.returncode == 2 and "0002.wav" in errors(result)[0] and "1 inputs failed" in result.stderr
    assert len(units.read_text().splitlines()) == 3

    result = speechzoo(hub, tmp_path / "hf", "gslm", "synthesize", units, "-o", tmp_path / "speech", "--vocab-size",
                       K, "--max-decoder-steps", MAX_FRAMES, "--seed", 1)
    assert result.returncode == 0, result.stderr
    assert files_under(tmp_path / "speech") == ["spk1/0001.wav", "spk2/0001.wav"]
    assert soundfile.info(tmp_path / "speech/spk1/0001.wav").subtype == "FLOAT"

    result = speechzoo(hub, tmp_path / "hf", "vocode", units, "-o", tmp_path / "vocoded")
    assert result.returncode == 0, result.stderr
    assert files_under(tmp_path / "vocoded") == ["spk1/0001.wav", "spk2/0001.wav"]
    vocoder = hubconf.hifigan_unit_vocoder(weights=hub[1]["hifigan_unit_vocoder"])
    for record in records:  # the units repeated by their durations: the frame-level sequence encode saw
        frames = torch.repeat_interleave(torch.tensor(record["units"]), torch.tensor(record["durations"]))
        wav, _ = soundfile.read(tmp_path / "vocoded" / f"{record['id']}.wav", dtype="float32")
        with torch.no_grad():
            torch.testing.assert_close(torch.from_numpy(wav), vocoder(frames)[0, 0], atol=1e-6, rtol=1e-5)


def test_tokenize_then_detokenize_mirror_the_corpus(hub, corpus, tmp_path):
    result = speechzoo(hub, tmp_path / "hf", "tokenize", corpus, "-o", tmp_path / "codes", "--skip-errors")
    assert result.returncode == 2 and "0002.wav" in errors(result)[0]
    assert files_under(tmp_path / "codes") == ["spk1/0001.safetensors", "spk2/0001.safetensors"]
    result = speechzoo(hub, tmp_path / "hf", "detokenize", tmp_path / "codes", "-o", tmp_path / "speech")
    assert result.returncode == 0, result.stderr
    assert files_under(tmp_path / "speech") == ["spk1/0001.wav", "spk2/0001.wav"]
    model = hubconf.speechtokenizer(weights=hub[1]["speechtokenizer"])
    for name in ("spk1/0001", "spk2/0001"):
        wav, _ = soundfile.read(corpus / f"{name}.wav", dtype="float32")
        with torch.no_grad():
            expected = model.decode(model.encode(torch.from_numpy(wav)[None, None]))[0, 0, : len(wav)]
        got, _ = soundfile.read(tmp_path / "speech" / f"{name}.wav", dtype="float32")
        torch.testing.assert_close(torch.from_numpy(got), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("command", ["vocode", "gslm synthesize"])
def test_no_id_writes_outside_the_output_folder(hub, tmp_path, command):
    lines = [json.dumps({"id": bad, "units": [1, 2, 3, 4]}) for bad in BAD_IDS]
    (tmp_path / "u.jsonl").write_text("\n".join([*lines, json.dumps({"id": "ok/fine", "units": [1, 2, 3]})]) + "\n")
    out = tmp_path / "run" / "out"
    extra = ["--vocab-size", K, "--max-decoder-steps", MAX_FRAMES] if command.startswith("gslm") else []
    if command == "vocode":  # without --skip-errors: refused before any synthesis
        result = speechzoo(hub, tmp_path / "hf", command, tmp_path / "u.jsonl", "-o", out)
        assert result.returncode == 2 and len(errors(result)) == 1 and "outside the output folder" in result.stderr
        assert not out.exists() or files_under(out) == []
    result = speechzoo(hub, tmp_path / "hf", *command.split(), tmp_path / "u.jsonl", "-o", out, *extra,
                       "--skip-errors")
    assert result.returncode == 2 and len(errors(result)) == len(BAD_IDS)
    assert files_under(tmp_path / "run") == ["out/ok/fine.wav"]
    assert not Path("/tmp/speechzoo-absolute.wav").exists() and not (tmp_path / "escaped.wav").exists()


def test_inputs_by_any_spelling_land_inside_the_output_folder(hub, corpus, tmp_path):
    """Paths with ``..`` and absolute paths are inputs, not output names: outputs mirror their resolved tree."""
    spelled = [corpus / "spk1" / ".." / "spk2" / "0001.wav", (corpus / "spk1" / "0001.wav").resolve()]
    result = speechzoo(hub, tmp_path / "hf", "tokenize", *spelled, "-o", tmp_path / "codes")
    assert result.returncode == 0, result.stderr
    assert files_under(tmp_path / "codes") == ["spk1/0001.safetensors", "spk2/0001.safetensors"]


def test_errors_are_one_line_with_exit_2(hub, corpus, tmp_path):
    for args, message in ((["encode", corpus, "--k", 5, "--lmbda", 0, "-o", "u.jsonl", "--device", "gpu"],
                           "'gpu' is not a torch device"),
                          (["vocode", SPEECH, "-o", tmp_path / "o"], "is not a units file"),
                          (["gslm", "synthesize", SPEECH, "-o", tmp_path / "o"], "is not a units file")):
        result = speechzoo(hub, tmp_path / "hf", *args)
        assert result.returncode == 2 and len(errors(result)) == 1 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    if not torch.cuda.is_available():
        result = speechzoo(hub, tmp_path / "hf", "vocode", SPEECH, "-o", tmp_path / "o", "--device", "cuda")
        assert result.returncode == 2 and "use --device cpu" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    result = speechzoo(hub, tmp_path / "hf", "--version")
    assert result.returncode == 0 and result.stdout.startswith("speechzoo ")


def test_vocode_refuses_units_of_another_quantizer(hub, tmp_path):
    """A units file says what made it: units of DP-SLM's 500-unit codebook are not fed to a 100-unit vocoder."""
    units = tmp_path / "dpslm.jsonl"
    units.write_text(header_line({"system": "dpslm", "k": 500}) + UnitsRecord("a", [1, 2, 3], [2, 1, 1]).to_line())
    result = speechzoo(hub, tmp_path / "hf", "vocode", units, "-o", tmp_path / "o")
    assert result.returncode == 2 and len(errors(result)) == 1, result.stderr
    assert "holds units of a 500-unit quantizer (dpslm), but the vocoder reads 100 units" in result.stderr
    assert not (tmp_path / "o").exists()
    units.write_text(header_line({"system": "gslm", "vocab_size": K}) + UnitsRecord("a", [1, 2, 3]).to_line())
    result = speechzoo(hub, tmp_path / "hf", "vocode", units, "-o", tmp_path / "o")
    assert result.returncode == 0, result.stderr
    assert files_under(tmp_path / "o") == ["a.wav"]
