"""The trainer foundation (zoo/train/): discriminators in the originals' checkpoint layout, GAN losses, atomic
checkpoints, training states without pickle, the resumable sharded sampler, precision."""
from __future__ import annotations

import json
import math

import pytest
import torch

from zoo.errors import InputError
from zoo.formats.discriminators import build, to_original, widths
from zoo.nn.discriminators import (
    MultiPeriodDiscriminator,
    MultiScaleDiscriminator,
    MultiScaleSTFTDiscriminator,
)
from zoo.train import checkpoint
from zoo.train.logger import TrainLogger
from zoo.train.loop import Precision, ShardedSampler
from zoo.train.losses import LogMel, discriminator_loss, feature_loss, mel_filterbank


@pytest.mark.cases("train_speechtokenizer/*")
def test_discriminators_load_and_save_the_original_layout(case):
    """The fixture's narrow discriminators rebuild from their tensors and save back key for key, in order (the
    order of ``optim_d``'s state), with the released layer structure."""
    pkg = torch.load(case.original / "SpeechTokenizerTrainer_00000002", weights_only=True)
    n_params = 0
    for kind, state in pkg["discriminators"].items():
        module = build(kind, state)
        back = to_original(module.state_dict(), kind)
        assert list(back) == list(state)
        for key, value in state.items():
            assert torch.equal(back[key], value), key
        n_params += sum(1 for _ in module.parameters())
    assert n_params == len(pkg["optim_d"]["state"])
    assert widths("mpd", pkg["discriminators"]["mpd"]) == {"channels": (2, 4, 8, 8, 8)}


def test_released_discriminator_widths():
    mpd, msd, stft = MultiPeriodDiscriminator(), MultiScaleDiscriminator(), MultiScaleSTFTDiscriminator()
    assert widths("mpd", to_original(mpd.state_dict(), "mpd"))["channels"] == (32, 128, 512, 1024, 1024)
    assert widths("msd", to_original(msd.state_dict(), "msd"))["channels"] == (128, 128, 256, 512, 1024, 1024, 1024)
    assert widths("mstftd", to_original(stft.state_dict()))["filters"] == 32
    # spectral norm on MSD's first scale only, as in HiFi-GAN
    keys = to_original(msd.state_dict(), "msd")
    assert "discriminators.0.convs.0.weight_orig" in keys and "discriminators.1.convs.0.weight_g" in keys


def test_spectral_norm_iterates_on_every_training_forward():
    msd = MultiScaleDiscriminator(channels=(16,) * 7)
    u = msd.discriminators[0].convs[0].weight_u.clone()
    x = torch.randn(1, 1, 800)
    msd(x, x)
    assert not torch.equal(u, msd.discriminators[0].convs[0].weight_u)
    msd.eval()
    u = msd.discriminators[0].convs[0].weight_u.clone()
    msd(x, x)
    assert torch.equal(u, msd.discriminators[0].convs[0].weight_u)


def test_gan_losses():
    real, fake = [torch.full((2, 3), 0.5)], [torch.full((2, 3), 0.25)]
    assert discriminator_loss(real, fake).item() == pytest.approx(0.25 + 0.0625)
    maps = [[torch.zeros(2, 3), torch.ones(4)]]
    assert feature_loss(maps, [[torch.ones(2, 3), torch.ones(4)]]).item() == 2.0


def test_mel_filterbank_matches_slaney_normalised_htk_triangles():
    fb = mel_filterbank(513, 0.0, 8000.0, 80, 16000)
    assert fb.shape == (513, 80) and fb.min() >= 0
    # slaney norm: each triangle's area (in Hz) is 1
    area = fb.sum(0) * (8000.0 / 512)
    assert torch.allclose(area[5:], torch.ones(75), rtol=0.05)
    mel = LogMel(1024, 80, 16000, 240, 1024)
    assert mel(torch.zeros(1, 4800)).min().item() == pytest.approx(torch.log(torch.tensor(1e-5)).item())


def test_atomic_write_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "state.safetensors"
    checkpoint.save_state(path, {"w": torch.ones(3)}, {"step": 1})

    def crash(tmp):  # the process dies half-way through writing
        with open(tmp, "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        checkpoint.atomic_write(path, crash)
    tensors, meta = checkpoint.load_state(path)
    assert meta == {"step": 1} and torch.equal(tensors["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["state.safetensors"]


def test_training_state_round_trips_optimisers_and_schedulers(tmp_path):
    p = torch.nn.Parameter(torch.randn(3, 2))
    opt = torch.optim.Adam([p], lr=0.1, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    for _ in range(2):
        p.grad = torch.randn(3, 2)
        opt.step()
        sched.step()
    tensors, meta = checkpoint.flatten_state({"optim": opt.state_dict(), "sched": sched.state_dict()}, "s")
    path = checkpoint.save_state(tmp_path / "s.safetensors", {**tensors, **checkpoint.flatten_state(
        checkpoint.rng_state(), "rng")[0]}, {"s": meta})
    t, m = checkpoint.load_state(path)
    back = checkpoint.unflatten_state(t, m["s"])
    assert back["sched"] == sched.state_dict()
    assert back["optim"]["param_groups"] == opt.state_dict()["param_groups"]
    assert torch.equal(back["optim"]["state"][0]["exp_avg_sq"], opt.state_dict()["state"][0]["exp_avg_sq"])
    opt2 = torch.optim.Adam([torch.nn.Parameter(torch.zeros(3, 2))], lr=0.5)
    opt2.load_state_dict(back["optim"])
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


def test_rng_state_round_trip():
    state = checkpoint.rng_state()
    tensors, skeleton = checkpoint.flatten_state(state, "rng")
    a = torch.rand(3)
    checkpoint.set_rng_state(checkpoint.unflatten_state(tensors, skeleton))
    assert torch.equal(torch.rand(3), a)


def test_load_state_refuses_foreign_files(tmp_path):
    (tmp_path / "x.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(InputError, match="not a readable"):
        checkpoint.load_state(tmp_path / "x.safetensors")


def test_newest_ignores_unfinished_files(tmp_path):
    for name in ("ckpt_00000002", "ckpt_00000010", ".ckpt_00000012.tmp-abc"):
        (tmp_path / name).write_text("x")
    assert checkpoint.newest(tmp_path, r"ckpt_(\d{8})").name == "ckpt_00000010"
    checkpoint.keep_newest(tmp_path, r"ckpt_(\d{8})", 1)
    assert not (tmp_path / "ckpt_00000002").exists()


def test_sharded_sampler_two_ranks_read_one_rank_global_batches():
    data = list(range(8))
    one = list(ShardedSampler(data, shuffle=True, seed=3))
    ranks = [list(ShardedSampler(data, rank=r, world_size=2, shuffle=True, seed=3)) for r in range(2)]
    # global batch of 2: one process reads one[0:2]; rank r reads its r-th item
    assert [ranks[0][i] for i in range(4)] == one[0::2] and [ranks[1][i] for i in range(4)] == one[1::2]
    resumed = ShardedSampler(data, shuffle=True, seed=3)
    resumed.set_position(epoch=0, batches_done=2, batch_size=2)
    assert list(resumed) == one[4:]


def test_precision_and_logger(tmp_path):
    with pytest.raises(InputError, match="precision"):
        Precision("fp8", torch.device("cpu"))
    with TrainLogger(jsonl=tmp_path / "log.jsonl", tensorboard=tmp_path / "tb", progress=False) as log:
        log.step({"step": 3, "lr": 0.5, "loss": 1.0})
        log.scalars({"dev/mel error": 2.0}, 3)
    assert [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()] == [
        {"step": 3, "lr": 0.5, "loss": 1.0}]
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


@pytest.mark.parametrize("name", ["fp16", "bf16"])
def test_mixed_precision_step_on_cpu(name):
    """Autocast steps of a tiny model on the CPU: float32 master weights move; fp16 goes through a GradScaler
    (initial scale 2^16, halved on every overflowing step, whose update is skipped)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    amp = Precision(name, torch.device("cpu"), clip_grad_norm=1.0)
    x, y = torch.randn(4, 8), torch.randn(4, 1)
    before = [p.detach().clone() for p in model.parameters()]

    def step(scale_output: float = 1.0) -> None:
        optimizer.zero_grad()
        with amp.autocast():
            out = model(x)
        assert out.dtype == {"fp16": torch.float16, "bf16": torch.bfloat16}[name]
        amp.backward(torch.nn.functional.mse_loss(out.float() * scale_output, y))
        amp.step(optimizer)
        amp.update()

    for _ in range(3):
        step()
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    if name == "fp16":
        scale = amp.scaler.get_scale()
        assert scale <= 2.0 ** 16 and math.log2(scale).is_integer()
        moved = [p.detach().clone() for p in model.parameters()]
        step(float("inf"))  # an overflowing gradient: no update, the scale halves
        assert all(torch.equal(a, b) for a, b in zip(moved, model.parameters()))
        assert amp.scaler.get_scale() == scale / 2
