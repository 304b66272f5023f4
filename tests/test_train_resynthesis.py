"""speech-resynthesis' trainers: ``speechzoo train resynthesis`` (train.py) against the original's resumed run,
``speechzoo train f0-vqvae`` (train_f0_vq.py) by its properties, and ``speechzoo prepare`` (its scripts)."""
from __future__ import annotations

import ast
import json
import random
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

import hubconf
from zoo.cli import main
from zoo.f0 import peak_normalize, yaapt_f0
from zoo.formats import hifigan as hifigan_format
from zoo.formats.f0_vqvae import f0_vqvae_config, original_quantizer_keys
from zoo.formats.hifigan import original_generator_keys
from zoo.train import f0_vqvae as f0_recipe
from zoo.train import resynthesis as recipe
from zoo.train.resynthesis_data import CodeDataset, read_manifest, split_samples

from harness import load_case, speechzoo_cli

CASE = load_case("train_resynthesis/units_f0vq_spkr")
ORIGINAL = CASE.original
AUDIO = Path(__file__).parent / "data" / "librispeech-1272-128104-0000.flac"


def _absolute_config(tmp: Path, **changes) -> Path:
    """The case's config and manifests with their relative paths made absolute (as check_reference does)."""
    raw = json.loads((ORIGINAL / "config.json").read_text())
    for key in ("f0_stats", "f0_quantizer_path"):
        raw[key] = str(ORIGINAL / raw[key])
    for key in ("input_training_file", "input_validation_file"):
        lines = []
        for line in (ORIGINAL / raw[key]).read_text().splitlines():
            sample = ast.literal_eval(line)
            sample["audio"] = str(ORIGINAL / sample["audio"])
            lines.append(repr(sample))
        (tmp / raw[key]).write_text("\n".join(lines) + "\n")
        raw[key] = str(tmp / raw[key])
    raw.update(changes)
    path = tmp / "config.json"
    path.write_text(json.dumps(raw))
    return path


def _train(*args) -> int:
    return main(["train", *map(str, args)])


# ------------------------------------------------------------------------------------------ data and layouts
def test_dataset_item_is_the_originals(tmp_path):
    config, _ = recipe.read_config(_absolute_config(tmp_path))
    entries = read_manifest(config.input_training_file)
    dataset = CodeDataset(entries, segment_size=config.segment_size, code_hop_size=config.vocoder.code_hop_size,
                          mel=config.log_mel(), f0=True, options=config.f0, rng=random.Random(1234))
    feats, audio, _, mel = dataset[0]
    assert torch.equal(feats["code"], CASE.io["input.code"][0])
    assert torch.equal(feats["spkr"], CASE.io["input.spkr"][0])
    torch.testing.assert_close(feats["f0"], CASE.io["input.f0"][0], rtol=0, atol=0)
    torch.testing.assert_close(audio, CASE.io["input.y"][0, 0], rtol=0, atol=0)
    # log-mels of order 1..10: librosa builds the filters in float64, here in float32 (|diff| ~1e-6)
    torch.testing.assert_close(mel, CASE.io["input.y_mel"][0], rtol=1e-5, atol=1e-5)


def test_original_key_orders_are_the_originals():
    """The enumerated CodeGenerator / Quantizer keys are the checkpoints' own, in order (= optimiser indices)."""
    g_keys = list(torch.load(ORIGINAL / "g_00000002", weights_only=True)["generator"])
    quantizer = torch.load(ORIGINAL / "f0_vq" / "g_00400000", weights_only=True)["generator"]
    raw = json.loads((ORIGINAL / "config.json").read_text())
    config = recipe.config_from_raw({**raw, "f0_quantizer_path": "unused"})
    assert original_generator_keys(config.vocoder, list(quantizer)) == g_keys
    assert original_quantizer_keys(f0_vqvae_config(raw["f0_quantizer"], where="case")) == list(quantizer)
    n_params = len(torch.load(ORIGINAL / "do_00000002", weights_only=True)["optim_g"]["param_groups"][0]["params"])
    assert n_params == len(g_keys) - 1  # every key but the codebook buffer is a parameter


# ------------------------------------------------------------------------------------------ the contract
@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resumed")
    config = _absolute_config(tmp)
    raw = json.loads(config.read_text())
    out, log = tmp / "out", tmp / "log.jsonl"
    assert _train("resynthesis", "--config", config, "--resume", ORIGINAL / "g_00000002", ORIGINAL / "do_00000002",
                  "--files", raw["input_training_file"], "--max-steps", 3, "--seed", raw["seed"],
                  "--log-jsonl", log, "--out", out) == 0
    return out, [json.loads(line) for line in log.read_text().splitlines()]


@pytest.mark.slow
def test_resume_logs_the_originals_losses_and_learning_rates(resumed):
    _, records = resumed
    assert [r["step"] for r in records] == CASE.meta["call"]["steps"]
    assert [r["epoch"] for r in records] == CASE.meta["call"]["epochs"]
    tolerance = CASE.meta["tolerance"]
    for k, record in enumerate(records, 1):
        for name in CASE.meta["logged"]:
            t = tolerance["lr"] if name == "lr" else tolerance["losses"]
            got = torch.tensor([record[name]], dtype=torch.float64)
            torch.testing.assert_close(got, CASE.io[f"step{k}.{name}"].double(), **t, msg=f"step {k} {name}")


def _relative_error(got: dict, initial: dict, prefix: str) -> float:
    keys = [k[len(prefix):] for k in CASE.keys(prefix)]
    num = sum((got[k].double() - CASE.io[prefix + k].double()).pow(2).sum() for k in keys)
    den = sum((CASE.io[prefix + k].double() - initial[k].double()).pow(2).sum() for k in keys)
    return float((num / den).sqrt())


@pytest.mark.slow
def test_resume_writes_the_originals_checkpoints(resumed):
    out, _ = resumed
    tolerance = CASE.meta["tolerance"]["final_relative_update_error"]
    g = torch.load(out / "g_00000005", weights_only=True)
    do = torch.load(out / "do_00000005", weights_only=True)
    g0 = torch.load(ORIGINAL / "g_00000002", weights_only=True)
    do0 = torch.load(ORIGINAL / "do_00000002", weights_only=True)
    assert list(g["generator"]) == list(g0["generator"]) and set(do) == set(do0)
    assert (do["steps"], do["epoch"]) == (5, 4)
    assert _relative_error(g["generator"], g0["generator"], "final.generator.") < tolerance["generator"]
    for name in ("mpd", "msd"):
        assert list(do[name]) == list(do0[name])
        assert _relative_error(do[name], do0[name], f"final.{name}.") < tolerance["discriminators"]
    for optim in ("optim_g", "optim_d"):  # the same parameter indices and hyper-parameters as the original's
        assert do[optim]["param_groups"][0]["params"] == do0[optim]["param_groups"][0]["params"]
        assert set(do[optim]["state"]) == set(do0[optim]["state"])
        assert do[optim]["param_groups"][0]["weight_decay"] == 0.01
    frozen = [k for k in g0["generator"] if k.startswith("quantizer.")]
    assert all(torch.equal(g["generator"][k], g0["generator"][k]) for k in frozen)


@pytest.mark.slow
def test_resumed_export_loads_through_hubconf(resumed):
    out, _ = resumed
    vocoder = hubconf.hifigan_unit_vocoder(weights=out / "model")
    code, f0, spkr = (CASE.io[f"input.{k}"] for k in ("code", "f0", "spkr"))
    wav = vocoder(code, speaker=spkr, f0=f0)
    assert wav.shape == (1, 1, 3840) and wav.abs().max() <= 1
    # the same numbers as the generator in the written g_ checkpoint, converted as an original checkpoint would be
    (out / "cmp").mkdir()
    (out / "cmp" / "config.json").write_text((out / "config.json").read_text())
    converted = hifigan_format.convert([out / "g_00000005", out / "cmp" / "config.json"])
    torch.testing.assert_close(wav, converted(code, speaker=spkr, f0=f0), rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------------ bad input
def _error(capsys, *args) -> str:
    assert _train(*args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    return err


def _manifest(tmp: Path, audio: Path, units: str = "9 1 2 2 2 9 10 6 0 1 3 5") -> Path:
    path = tmp / "train.txt"
    path.write_text(repr({"audio": str(audio), "hubert": units, "duration": 0.24}) + "\n")
    return path


def test_bad_input_is_refused_before_training(tmp_path, capsys):
    config = _absolute_config(tmp_path)
    common = ["--max-steps", 1, "--out", tmp_path / "out"]
    err = _error(capsys, "resynthesis", "--config", config, "--files", _manifest(tmp_path, tmp_path / "gone.wav"),
                 *common)
    assert "gone.wav" in err and "does not exist" in err
    wav = tmp_path / "1272_a.wav"
    soundfile.write(wav, np.zeros(3840), 22050)
    assert "22050 Hz" in _error(capsys, "resynthesis", "--config", config, "--files", _manifest(tmp_path, wav),
                                *common)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert "not a JSON config" in _error(capsys, "resynthesis", "--config", broken, *common)
    f0_config = ORIGINAL / "f0_vq" / "config.json"
    assert "f0-vqvae" in _error(capsys, "resynthesis", "--config", f0_config, *common)
    assert "not a speech-resynthesis vocoder checkpoint" in _error(
        capsys, "resynthesis", "--config", config, "--resume", ORIGINAL / "f0_vq" / "g_00400000",
        ORIGINAL / "do_00000002", *common)
    assert "not an F0 VQ-VAE checkpoint" in _error(
        capsys, "f0-vqvae", "--config", f0_config, "--files", _manifest(tmp_path, AUDIO), "--resume",
        ORIGINAL / "g_00000002", *common)
    assert not (tmp_path / "out" / "g_00000000").exists()


# ------------------------------------------------------------------------------------------ F0 VQ-VAE
@pytest.fixture(scope="module")
def contours() -> torch.Tensor:
    """Speaker-normalised YAAPT F0 of the bundled LibriSpeech utterance, cut into 8 windows of 64 frames."""
    wav, _ = soundfile.read(AUDIO, dtype="int16")
    f0 = yaapt_f0(peak_normalize(torch.from_numpy(wav / 32768.0)), 16000)
    voiced = f0[f0 > 0]
    f0 = torch.where(f0 > 0, (f0 - voiced.mean()) / voiced.std(), 0.0)
    return torch.stack([f0[i * 64:(i + 1) * 64] for i in range(8)])[:, None]


def _tiny_f0_trainer(**changes) -> f0_recipe.F0VQVAETrainer:
    raw = json.loads((ORIGINAL / "f0_vq" / "config.json").read_text())
    config = f0_recipe.F0VQVAETrainConfig(model=f0_vqvae_config(raw, where="case"), learning_rate=2e-3,
                                          segment_size=64 * 80, **changes)
    return f0_recipe.build_trainer(config, seed=0)


def test_f0_vqvae_reconstruction_error_falls_on_real_contours(contours):
    trainer = _tiny_f0_trainer(batch_size=8)
    trainer.model.train()
    before = f0_recipe.reconstruction_error(trainer, contours)
    for _ in range(150):
        y_hat, commit, _ = trainer.forward(contours)
        trainer.optim_g.zero_grad()
        (torch.nn.functional.mse_loss(y_hat, contours) + 0.02 * commit).backward()
        trainer.optim_g.step()
    after = f0_recipe.reconstruction_error(trainer, contours)
    assert after < 0.5 * before, (before, after)


def test_f0_vqvae_codebook_restarts_as_jukebox(contours):
    trainer = _tiny_f0_trainer()
    trainer.model.train()
    codebook = trainer.codebook
    assert not codebook.initialised
    trainer.forward(contours)  # first training forward: codes drawn from the batch, unit counts, one EMA step
    assert codebook.initialised
    ((latent, _),) = trainer.model.quantizer.encoder(contours)
    x = latent.detach().permute(0, 2, 1).reshape(-1, latent.shape[1])
    # feed one latent only: every other code's count decays below the threshold and it restarts at that latent
    used = torch.zeros(len(x), dtype=torch.long)
    for _ in range(80):
        metrics = codebook.update(x[:1].expand(len(x), -1).clone(), used)
    k = codebook.k
    assert metrics["usage"] == 1 and metrics["used_curr"] == 1
    assert torch.allclose(k[1:], x[:1].expand(len(k) - 1, -1))  # restarted codes = (the one) batch latent
    # after loading a checkpoint the first training step draws a fresh codebook (init is not in the state dict)
    state = trainer.original_state()
    fresh = _tiny_f0_trainer()
    fresh.load_original({"generator": state}, "memory")
    assert torch.equal(fresh.model.quantizer.codebooks[0].codebook, k) and not fresh.codebook.initialised


def test_f0_vqvae_cli_writes_original_checkpoint_and_export(tmp_path):
    raw = json.loads((ORIGINAL / "f0_vq" / "config.json").read_text())
    raw.update(segment_size=64 * 80, batch_size=1, multispkr="_", f0_stats=str(ORIGINAL / "f0_stats.th"),
               f0_normalize=True)
    (tmp_path / "f0.json").write_text(json.dumps(raw))
    manifest = tmp_path / "f0.txt"
    manifest.write_text(f"{AUDIO}\n")
    assert _train("f0-vqvae", "--config", tmp_path / "f0.json", "--files", manifest, "--max-steps", 2,
                  "--log-jsonl", tmp_path / "log.jsonl", "-o", tmp_path / "out") == 0
    checkpoint = torch.load(tmp_path / "out" / "g_00000001", weights_only=True)
    assert set(checkpoint) == {"generator", "optim_g", "steps", "epoch"} and checkpoint["steps"] == 1
    assert list(checkpoint["generator"]) == original_quantizer_keys(f0_vqvae_config(raw, where="x"))
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 1] and all(np.isfinite(r["loss_recon"]) for r in records)
    model = hubconf.f0_vqvae(weights=tmp_path / "out" / "model")
    recon, codes = model(torch.zeros(1, 1, 64))
    assert recon.shape == (1, 1, 64) and codes.shape == (1, 4)


# ------------------------------------------------------------------------------------------ prepare
def test_prepare_resample_mirrors_the_tree_and_survives_a_bad_file(tmp_path, capsys):
    wav, _ = soundfile.read(AUDIO)
    (tmp_path / "src" / "a" / "b").mkdir(parents=True)
    soundfile.write(tmp_path / "src" / "a" / "b" / "x.wav", wav[:30000], 16000)
    soundfile.write(tmp_path / "src" / "x.wav", np.stack([wav[:44100]] * 2, 1), 22050)
    (tmp_path / "src" / "a" / "bad.wav").write_text("not audio")
    assert main(["prepare", "resample", "--srcdir", str(tmp_path / "src"), "--outdir", str(tmp_path / "out"),
                 "--pad"]) == 2
    assert "bad.wav" in capsys.readouterr().err
    for name, seconds in (("a/b/x.wav", 30000 / 16000), ("x.wav", 2.0)):
        info = soundfile.info(tmp_path / "out" / name)
        assert (info.samplerate, info.channels) == (16000, 1) and info.frames % 1280 == 0
        assert 0 <= info.frames - seconds * 16000 < 1280


def test_prepare_manifest_splits_like_parse_hubert_codes(tmp_path):
    names = [f"spk{i % 3}_{i}.wav" for i in range(40)]
    (tmp_path / "train.tsv").write_text("/data/wavs\n" + "".join(f"{n}\t{16000 + i}\n" for i, n in enumerate(names)))
    (tmp_path / "units.txt").write_text("".join(f"{Path(n).stem}|{i} {i + 1} 7\n" for i, n in enumerate(names)))
    assert main(["prepare", "manifest", "--codes", str(tmp_path / "units.txt"), "--manifest",
                 str(tmp_path / "train.tsv"), "--outdir", str(tmp_path / "m"), "--tt", "0.1", "--cv", "0.1"]) == 0
    splits = [read_manifest(tmp_path / "m" / f"{s}.txt") for s in ("train", "val", "test")]
    assert [len(s) for s in splits] == [32, 4, 4]
    assert sorted(e.audio.name for s in splits for e in s) == sorted(names)
    first = ast.literal_eval((tmp_path / "m" / "train.txt").read_text().splitlines()[0])
    index = names.index(Path(first["audio"]).name)
    assert first == {"audio": f"/data/wavs/{names[index]}", "hubert": f"{index} {index + 1} 7",
                     "duration": (16000 + index) / 16000}
    # a reference split is followed file by file
    samples = [{"audio": f"/x/{n}"} for n in names]
    again = split_samples(samples, reference=tuple(tmp_path / "m" / f"{s}.txt" for s in ("train", "val", "test")))
    assert [[Path(x["audio"]).name for x in s] for s in again] == [
        [n for n in names if n in {e.audio.name for e in split}] for split in splits]


# ------------------------------------------------------------------------------------------ from scratch, tiny
TINY = {"resblock": "1", "batch_size": 1, "learning_rate": 0.0004, "adam_b1": 0.8, "adam_b2": 0.99,
        "lr_decay": 0.999, "seed": 1234, "upsample_rates": [5, 4, 4, 2, 2], "upsample_kernel_sizes": [11, 8, 8, 4, 4],
        "upsample_initial_channel": 32, "resblock_kernel_sizes": [3], "resblock_dilation_sizes": [[1, 3, 5]],
        "num_embeddings": 12, "embedding_dim": 8, "model_in_dim": 16, "segment_size": 2560, "code_hop_size": 320,
        "multispkr": "_", "num_mels": 40, "n_fft": 512, "hop_size": 128, "win_size": 512, "sampling_rate": 16000,
        "fmin": 0, "fmax": 8000, "fmax_for_loss": None, "mpd_channels": [2, 4, 8, 8, 8], "msd_channels": [16] * 7}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny unit + speaker config and a manifest of two real LibriSpeech excerpts (two speakers) with units."""
    tmp = tmp_path_factory.mktemp("tiny")
    wav, _ = soundfile.read(AUDIO, dtype="int16")
    rng = np.random.default_rng(0)
    lines = []
    for name, (start, n) in {"s1_a.wav": (0, 8000), "s2_b.wav": (20000, 12160)}.items():
        soundfile.write(tmp / name, wav[start:start + n], 16000, subtype="PCM_16")
        units = " ".join(map(str, rng.integers(0, 12, n // 320)))
        lines.append(repr({"audio": str(tmp / name), "hubert": units, "duration": n / 16000}))
    (tmp / "train.txt").write_text("\n".join(lines) + "\n")
    (tmp / "config.json").write_text(json.dumps(TINY))
    return tmp / "config.json", tmp / "train.txt"


def _tiny_run(tiny, out: Path, steps: int, *extra) -> list[dict]:
    config, files = tiny
    assert _train("resynthesis", "--config", config, "--files", files, "--max-steps", steps, "--log-jsonl",
                  out / "log.jsonl", "--out", out, *extra) == 0
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_exact_resume_from_the_zoos_state(tiny, tmp_path):
    """4 steps = 3 steps, stop (mid-epoch: 2 files, batch 1), resume from training_state_00000002.safetensors, 1 step."""
    whole = _tiny_run(tiny, tmp_path / "whole", 4)
    first = _tiny_run(tiny, tmp_path / "split", 3)
    rest = _tiny_run(tiny, tmp_path / "split", 1, "--resume", tmp_path / "split" / "training_state_00000002.safetensors")
    assert [r["step"] for r in whole] == [0, 1, 2, 3] and [r["epoch"] for r in whole] == [0, 0, 1, 1]
    assert len(first) == 3 and [(r["step"], r["epoch"]) for r in rest[3:]] == [(3, 1)]  # the log is appended
    for key in ("lr", "loss_disc_all", "loss_gen_all", "mel_error"):
        assert rest[3][key] == pytest.approx(whole[3][key], rel=1e-6, abs=1e-9), key
    a = torch.load(tmp_path / "whole" / "g_00000003", weights_only=True)["generator"]
    b = torch.load(tmp_path / "split" / "g_00000003", weights_only=True)["generator"]
    assert all(torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-7) for k in a)
    # resuming from a folder picks its newest speechzoo state
    again = _tiny_run(tiny, tmp_path / "split", 1, "--resume", tmp_path / "split")
    assert again[-1]["step"] == 4


@pytest.mark.slow
def test_hundred_steps_from_scratch_lower_the_mel_loss_and_export(tiny, tmp_path):
    out = tmp_path / "run"
    records = _tiny_run(tiny, out, 100, "--tensorboard", out / "tb")
    mel = [r["mel_error"] for r in records]
    assert np.mean(mel[-10:]) < 0.8 * np.mean(mel[:10]), (mel[:10], mel[-10:])
    assert list((out / "tb").glob("events.out.tfevents.*"))
    vocoder = hubconf.hifigan_unit_vocoder(weights=out / "model")
    wav = vocoder(torch.tensor([[3, 3, 7, 1, 0]]), speaker=1)
    assert wav.shape == (1, 1, 1600) and torch.isfinite(wav).all()


@pytest.mark.slow
def test_two_gloo_processes_equal_one_with_the_same_global_batch(tmp_path):
    """torchrun --nproc-per-node 2 (batch 1 each) = one process with batch 2 and ``--shuffle``: both read the epoch's
    DistributedSampler permutation, global batch k = its items 2k, 2k+1 whatever the number of processes, so the
    losses (DDP averages the gradients, the log averages the ranks) and the weights agree. 4 files of exactly one
    segment (no random crop: every process would draw its own) and 3 steps, so that an epoch ends, the learning
    rate decays and the next epoch reshuffles."""
    wav, _ = soundfile.read(AUDIO, dtype="int16")
    rng = np.random.default_rng(1)
    lines = []
    for i, name in enumerate(("s1_a.wav", "s2_b.wav", "s1_c.wav", "s2_d.wav")):
        segment = wav[4000 + 5000 * i:4000 + 5000 * i + TINY["segment_size"]]
        soundfile.write(tmp_path / name, segment, 16000, subtype="PCM_16")
        units = " ".join(map(str, rng.integers(0, 12, TINY["segment_size"] // 320)))
        lines.append(repr({"audio": str(tmp_path / name), "hubert": units, "duration": len(segment) / 16000}))
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    runs = {}
    for name, batch_size, nproc, extra in (("one", 2, 1, ["--shuffle"]), ("two", 1, 2, [])):
        config = tmp_path / f"{name}.json"
        config.write_text(json.dumps({**TINY, "batch_size": batch_size * nproc}))
        r = speechzoo_cli("train", "resynthesis", "--config", config, "--files", tmp_path / "train.txt",
                          "--max-steps", 3, "--no-progress", "--log-jsonl", tmp_path / f"{name}.jsonl", "--out",
                          tmp_path / name, *extra, nproc=nproc, master_port=29541)
        assert r.returncode == 0, r.stderr[-2000:]
        runs[name] = [json.loads(line) for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
    one, two = runs["one"], runs["two"]
    assert [(r["step"], r["epoch"]) for r in one] == [(r["step"], r["epoch"]) for r in two] == [(0, 0), (1, 0), (2, 1)]
    for a, b in zip(one, two):
        assert b["lr"] == pytest.approx(a["lr"], rel=1e-12)
        for key in ("loss_disc_all", "loss_gen_all", "loss_mel", "mel_error"):
            assert b[key] == pytest.approx(a[key], rel=1e-4), (a["step"], key)
    ga = torch.load(tmp_path / "one" / "g_00000002", weights_only=True)["generator"]
    gb = torch.load(tmp_path / "two" / "g_00000002", weights_only=True)["generator"]
    for key, value in ga.items():
        torch.testing.assert_close(gb[key], value, rtol=1e-4, atol=1e-5, msg=key)
