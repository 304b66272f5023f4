"""``speechzoo train speechtokenizer``: the official trainer's numbers (fixture), exact resume, DDP = one process,
from-scratch training on real audio with an exported model, and bad input."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from harness import speechzoo_cli

import hubconf
from zoo.audio import load as load_audio
from zoo.cli import main
from zoo.formats import speechtokenizer as st_format
from zoo.models.hubert import Hubert, HubertConfig
from zoo.train.speechtokenizer import (
    check_files,
    generator_key_map,
    read_config,
    read_file_list,
    teacher_features,
    training_generator,
)

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = "train_speechtokenizer/tiny_resume_bilstm"
REAL_AUDIO = ROOT / "tests" / "data" / "librispeech-1272-128104-0000.flac"
#: Discriminators as narrow as the fixture's, so a CPU trains a few steps per second.
TINY_DISCRIMINATORS = {"mpd_channels": [2, 4, 8, 8, 8], "msd_channels": [16] * 7, "mstftd_filters": 2}


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _fixture_files(case, folder: Path) -> Path:
    """The fixture's file list with absolute paths."""
    lines = [
        "\t".join(str(case.original / p) for p in line.split("\t"))
        for line in (case.original / "train_files.txt").read_text().splitlines() if line.strip()]
    (folder / "train.txt").write_text("\n".join(lines) + "\n")
    return folder / "train.txt"


def _train(*args: object) -> int:
    return main(["train", "speechtokenizer", *map(str, args), "--no-progress"])


# ------------------------------------------------------------------------------------------ the original's numbers
@pytest.mark.cases(FIXTURE)
def test_parameter_order_is_the_originals(case):
    """optim_g's state is indexed by parameter order: the training generator's must be the original's."""
    pkg = torch.load(case.original / "SpeechTokenizerTrainer_00000002", weights_only=True)
    model_config, _, _ = read_config(case.original / "config.json")
    model = training_generator(model_config)
    key_map = generator_key_map(model_config, model)
    original_params = [k for k in pkg["generator"] if "_codebook." not in k]
    assert list(key_map) == original_params
    shapes = {name: p.shape for name, p in model.named_parameters()}
    assert all(shapes[ours] == pkg["generator"][theirs].shape for theirs, ours in key_map.items())
    assert len(key_map) == len(pkg["optim_g"]["state"])


@pytest.mark.slow
@pytest.mark.cases(FIXTURE)
def test_resume_original_checkpoint_reproduces_the_original(case, tmp_path):
    """Resume SpeechTokenizerTrainer_00000002 for 3 steps: every logged loss and lr of the original, and the
    original's weights after the last step, saved in its layout."""
    files = _fixture_files(case, tmp_path)
    init = case.original / "SpeechTokenizerTrainer_00000002"
    assert _train("--config", case.original / "config.json", "--resume", init, "--files", files,
                  "--max-steps", 3, "--seed", 1234, "--log-jsonl", tmp_path / "log.jsonl", "--out", tmp_path / "out") == 0
    records = _records(tmp_path / "log.jsonl")
    assert [r["step"] for r in records] == case.meta["call"]["steps"]
    tol = case.meta["tolerance"]
    for k, record in enumerate(records, 1):
        for name in case.meta["logged"]:
            t = tol["lr"] if name == "lr" else tol["losses"]
            torch.testing.assert_close(torch.tensor(record[name], dtype=torch.float64),
                                       case.io[f"step{k}.{name}"].double().reshape(()), rtol=t["rtol"],
                                       atol=t["atol"], msg=f"step {record['step']} {name}")
    pkg = torch.load(tmp_path / "out" / "SpeechTokenizerTrainer_00000005", weights_only=True)
    init_pkg = torch.load(init, weights_only=True)
    assert set(pkg) >= {"generator", "discriminators", "optim_g", "optim_d", "scheduler_g", "scheduler_d"}
    limits = tol["final_relative_update_error"]
    groups: dict[str, list[float]] = {}
    for key in case.keys("final."):
        parts = key.split(".")
        if parts[1] == "generator":
            name, got, start = ".".join(parts[2:]), pkg["generator"], init_pkg["generator"]
            group = "codebooks" if name.endswith("_codebook.embed") else (None if "_codebook." in name else "generator")
        else:
            name, got, start = ".".join(parts[3:]), pkg["discriminators"][parts[2]], init_pkg["discriminators"][parts[2]]
            group = "discriminators"
        want = case.io[key]
        if group is None or not want.is_floating_point():
            continue
        acc = groups.setdefault(group, [0.0, 0.0])
        acc[0] += (got[name].double() - want.double()).pow(2).sum().item()
        acc[1] += (want.double() - start[name].double()).pow(2).sum().item()
    for group, (num, den) in groups.items():
        assert math.sqrt(num / den) <= limits[group], group
    # the zoo's own state and the exported model came with it
    assert (tmp_path / "out" / "training_state_00000005.safetensors").is_file()
    model = hubconf.speechtokenizer(weights=str(tmp_path / "out" / "model"))
    codes = model.encode(case.io["input.x"])
    assert codes.shape == (4, 1, 120)
    # the exported codebooks are the trained ones
    torch.testing.assert_close(model.quantizer.codebooks[0], pkg["generator"][st_format.codebook_key(0, "embed")])


# ------------------------------------------------------------------------------------------ tiny runs on real audio
def _tiny_run(folder: Path, n_files: int = 4, batch_size: int = 2, epochs: int = 100, **overrides) -> tuple[Path, Path]:
    """A tiny config and a file list of ``n_files`` excerpts of the bundled LibriSpeech utterance (16 kHz), each
    with random stand-in teacher features of the right length."""
    folder.mkdir(parents=True, exist_ok=True)
    wav, _ = load_audio(REAL_AUDIO)
    lines = []
    hop = 40
    for i in range(n_files):
        audio = folder / f"utt{i}.wav"
        piece = wav[0, i * 16000: i * 16000 + 8000]
        soundfile.write(audio, piece.numpy(), 16000)
        feature = folder / f"utt{i}.npy"
        np.save(feature, np.random.default_rng(i).standard_normal((math.ceil(len(piece) / hop) - 2, 12),
                                                                  dtype=np.float32))
        lines.append(f"{audio}\t{feature}")
    (folder / "train.txt").write_text("\n".join(lines) + "\n")
    config = json.loads((ROOT / "tests/fixtures" / FIXTURE / "original/config.json").read_text())
    config.update({"batch_size": batch_size, "epochs": epochs, "segment_size": 2400, "save_model_steps": 1000,
                   "log_steps": 1, "stdout_steps": 1, "train_files": "train.txt", "valid_files": "train.txt",
                   **TINY_DISCRIMINATORS, **overrides})
    (folder / "config.json").write_text(json.dumps(config))
    return folder / "config.json", folder / "train.txt"


@pytest.mark.slow
def test_exact_resume_from_the_zoos_training_state(tmp_path):
    """4 steps straight = 2 steps, stop, resume from training_state_00000001, 2 steps: same losses and weights."""
    config, files = _tiny_run(tmp_path / "data", n_files=3, batch_size=2)
    common = ("--config", config, "--files", files, "--seed", 5)
    assert _train(*common, "--max-steps", 4, "--log-jsonl", tmp_path / "a.jsonl", "--out", tmp_path / "a") == 0
    assert _train(*common, "--max-steps", 2, "--log-jsonl", tmp_path / "b.jsonl", "--out", tmp_path / "b") == 0
    state = tmp_path / "b" / "training_state_00000001.safetensors"
    assert _train(*common, "--max-steps", 2, "--resume", state, "--log-jsonl", tmp_path / "b.jsonl",
                  "--out", tmp_path / "b") == 0
    a, b = _records(tmp_path / "a.jsonl"), _records(tmp_path / "b.jsonl")
    assert [r["step"] for r in b] == [0, 1, 2, 3]
    assert a == b
    pa = torch.load(tmp_path / "a" / "SpeechTokenizerTrainer_00000003", weights_only=True)
    pb = torch.load(tmp_path / "b" / "SpeechTokenizerTrainer_00000003", weights_only=True)
    for key, value in pa["generator"].items():
        assert torch.equal(value, pb["generator"][key]), key
    for name, state in pa["discriminators"].items():
        for key, value in state.items():
            assert torch.equal(value, pb["discriminators"][name][key]), (name, key)
    assert pa["scheduler_g"] == pb["scheduler_g"]


@pytest.mark.slow
def test_two_gloo_processes_equal_one_with_the_same_global_batch(tmp_path):
    """torchrun --nproc-per-node 2 (batch 1 each) = one process with batch 2, from the fixture's weights."""
    config, files = _tiny_run(tmp_path / "data", n_files=2, batch_size=2, epochs=10)
    init = ROOT / "tests/fixtures" / FIXTURE / "original/SpeechTokenizerTrainer_00000002"
    common = ["--files", files, "--init-from", init, "--max-steps", 2, "--seed", 3, "--no-progress"]
    r = speechzoo_cli("train", "speechtokenizer", "--config", config, *common, "--log-jsonl", tmp_path / "one.jsonl",
                      "--out", tmp_path / "one")
    assert r.returncode == 0, r.stderr[-2000:]
    cfg2 = json.loads(config.read_text())
    cfg2["batch_size"] = 1
    (tmp_path / "data" / "config2.json").write_text(json.dumps(cfg2))
    r = speechzoo_cli("train", "speechtokenizer", "--config", tmp_path / "data" / "config2.json", *common,
                      "--log-jsonl", tmp_path / "two.jsonl", "--out", tmp_path / "two", nproc=2)
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = _records(tmp_path / "one.jsonl"), _records(tmp_path / "two.jsonl")
    assert len(a) == len(b) == 2
    for ra, rb in zip(a, b):
        assert ra["step"] == rb["step"]
        assert rb["lr"] == pytest.approx(ra["lr"], rel=1e-12)
        for name in ("loss_disc_all", "loss_generator_all", "loss_mel", "loss_q", "loss_distill", "loss_feature"):
            assert rb[name] == pytest.approx(ra[name], rel=1e-4), name
    pa = torch.load(tmp_path / "one" / "SpeechTokenizerTrainer_00000001", weights_only=True)
    pb = torch.load(tmp_path / "two" / "SpeechTokenizerTrainer_00000001", weights_only=True)
    init_pkg = torch.load(init, weights_only=True)
    for layer in range(4):  # the EMA statistics are summed over the ranks
        key = st_format.codebook_key(layer, "embed")
        torch.testing.assert_close(pb["generator"][key], pa["generator"][key], rtol=1e-4, atol=1e-5)
    # the contract's measure, ||two - one|| / ||one - init|| over the generator. Adam's first steps move a parameter
    # by ~lr·sign(gradient) whatever the gradient's size, so the all-reduce's rounding flips a few near-zero
    # gradients' moves (measured 0.06; the contract allows 0.05 for a 1e-6 perturbation of the weights)
    keys = [k for k, v in pa["generator"].items() if v.is_floating_point() and "_codebook." not in k]
    diff = sum((pb["generator"][k].double() - pa["generator"][k].double()).pow(2).sum() for k in keys).sqrt()
    update = sum((pa["generator"][k].double() - init_pkg["generator"][k].double()).pow(2).sum() for k in keys).sqrt()
    assert diff / update < 0.1


@pytest.mark.slow
def test_from_scratch_on_real_audio(tmp_path):
    """100 steps from a random init (k-means codebooks on the first batch): the mel loss falls, TensorBoard
    events and JSONL are written, and the exported model loads through hubconf and encodes/decodes."""
    config, files = _tiny_run(tmp_path / "data", n_files=1, batch_size=1, learning_rate=2e-3,
                              intial_learning_rate=2e-3)
    assert _train("--config", config, "--files", files, "--max-steps", 100, "--seed", 0,
                  "--log-jsonl", tmp_path / "log.jsonl", "--out", tmp_path / "out") == 0
    records = _records(tmp_path / "log.jsonl")
    assert len(records) == 100
    first = sum(r["loss_mel"] for r in records[:10]) / 10
    last = sum(r["loss_mel"] for r in records[-10:]) / 10
    assert last < 0.9 * first, (first, last)
    assert list((tmp_path / "out" / "logs").glob("events.out.tfevents.*"))
    model = hubconf.speechtokenizer(weights=str(tmp_path / "out" / "model"))
    wav, _ = load_audio(REAL_AUDIO)
    codes = model.encode(wav[None, :, :8000])
    assert codes.shape == (4, 1, 200)
    decoded = model.decode(codes)
    assert decoded.shape == (1, 1, 8000) and torch.isfinite(decoded).all()


# ------------------------------------------------------------------------------------------ bad input
def _error(capsys, *args: object) -> str:
    assert _train(*args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    return err


def test_bad_input_is_refused_before_training(tmp_path, capsys):
    config, files = _tiny_run(tmp_path / "data", n_files=2)
    out = tmp_path / "out"
    base = ("--config", config, "--max-steps", 1, "--out", out)

    missing = tmp_path / "missing.txt"
    missing.write_text(f"{tmp_path / 'nope.wav'}\t{tmp_path / 'data/utt0.npy'}\n")
    assert "does not exist" in _error(capsys, *base, "--files", missing)

    wav8k = tmp_path / "at8k.wav"
    soundfile.write(wav8k, np.zeros(4000, dtype=np.float32), 8000)
    wrong_rate = tmp_path / "rate.txt"
    wrong_rate.write_text(f"{wav8k}\t{tmp_path / 'data/utt0.npy'}\n")
    assert "8000 Hz" in _error(capsys, *base, "--files", wrong_rate)

    short = tmp_path / "short.npy"
    np.save(short, np.zeros((10, 12), dtype=np.float32))
    mismatch = tmp_path / "mismatch.txt"
    mismatch.write_text(f"{tmp_path / 'data/utt0.wav'}\t{short}\n")
    assert "frames" in _error(capsys, *base, "--files", mismatch)

    bad_config = tmp_path / "bad.json"
    bad_config.write_text("{not json")
    assert "--config" in _error(capsys, "--config", bad_config, "--files", files, "--out", out)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"resblock": "1", "upsample_rates": [5, 4]}))
    assert "SpeechTokenizer" in _error(capsys, "--config", other, "--files", files, "--out", out)

    do_ckpt = tmp_path / "do_00000002"
    torch.save({"mpd": {}, "msd": {}, "optim_g": {}, "optim_d": {}, "steps": 2, "epoch": 1}, do_ckpt)
    assert "not a SpeechTokenizer trainer checkpoint" in _error(capsys, *base, "--files", files, "--resume", do_ckpt)
    assert not out.exists() or not any(out.glob("SpeechTokenizerTrainer_*"))


# ------------------------------------------------------------------------------------------ teacher
def _tiny_hubert():
    torch.manual_seed(0)
    config = HubertConfig(conv_layers=((32, 10, 5),) + ((32, 3, 2),) * 4 + ((32, 2, 2),) * 2, embed_dim=12,
                          num_layers=3, num_heads=2, ffn_dim=24, pos_conv_kernel=16, pos_conv_groups=4)
    return Hubert(config).eval()


def test_teacher_hidden_states_are_transformers_layout():
    """hidden state 0 = transformer input after the positional conv and LayerNorm; L = block L's output; "avg"
    = their mean; the audio is standardised and zero-padded to the segment first."""
    model = _tiny_hubert()
    wav = torch.randn(3000)
    padded = torch.nn.functional.pad(wav, (0, 1000))
    x = (padded - padded.mean()) / torch.sqrt(padded.var(unbiased=False) + 1e-7)
    blocks = [model(x[None], output_layer=layer)[0][0] for layer in (1, 2, 3)]
    conv, _ = model.conv_features(x[None])
    first = model.encoder.layer_norm(conv + model.encoder.pos_conv(conv))[0]
    torch.testing.assert_close(teacher_features(model, wav, 2, segment_size=4000), blocks[1])
    torch.testing.assert_close(teacher_features(model, wav, 0, segment_size=4000), first)
    torch.testing.assert_close(teacher_features(model, wav, "avg", segment_size=4000),
                               torch.stack([first, *blocks]).mean(0))
    assert teacher_features(model, wav, "avg").shape == ((3000 - 400) // 320 + 1, 12)


def test_teacher_command_writes_features_and_lists_the_trainer_reads(tmp_path):
    _tiny_hubert().save_pretrained(tmp_path / "hubert")
    wav, _ = load_audio(REAL_AUDIO)
    (tmp_path / "audio" / "spk").mkdir(parents=True)
    for i in range(3):
        soundfile.write(tmp_path / "audio" / "spk" / f"u{i}.flac", wav[0, i * 4000: i * 4000 + 3000 + 500 * i].numpy(),
                        16000)
    config = json.loads((ROOT / "tests/fixtures" / FIXTURE / "original/config.json").read_text())
    config.update({"segment_size": 3200, "semantic_dimension": 12, "strides": [8, 5, 4, 2]})
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert main(["train", "speechtokenizer-teacher", "--config", str(tmp_path / "config.json"), "--audio_dir",
                 str(tmp_path / "audio"), "--rep_dir", str(tmp_path / "rep"), "--valid_set_size", "1",
                 "--weights", str(tmp_path / "hubert")]) == 0
    train = (tmp_path / "rep" / "train_files.txt").read_text().splitlines()
    valid = (tmp_path / "rep" / "valid_files.txt").read_text().splitlines()
    assert len(train) == 2 and len(valid) == 1
    feature = np.load(tmp_path / "rep" / "spk" / "u2.hubert.npy")
    assert feature.shape == ((4000 - 400) // 320 + 1, 12)
    check_files(read_file_list(tmp_path / "rep" / "train_files.txt"), sample_rate=16000, segment_size=3200, hop=320,
                dim=12, resample_audio=False)
