"""Training throughput of the GAN recipes (``speechzoo train ...``): optimisation steps per second and seconds of
audio trained per second, float32 (the originals' precision) beside bf16 autocast, at the released configs.

The float32 row is the reference: it is the original trainers' algorithm step for step (``check_reference.py
train_resynthesis`` reproduces the original's losses and updates with it), run on the same modules the original
builds (weight-normed generator, MPD + MSD at the released widths). Both precisions run interleaved, round by round
(:mod:`benchmarks.timing`), on random audio and units (throughput does not depend on the values).

SpeechTokenizer: ``speechtokenizer`` is the official trainer's step at ``config/spt_base_cfg.json`` (the released
model, MPD + MSD + MS-STFT at the released widths, batch 6 x 3 s) on random audio and teacher features; its float32
row is the algorithm ``check_reference.py train_speechtokenizer`` checks (the original adds only accelerate's
bookkeeping and a mel filterbank rebuilt per loss call).

speech-resynthesis: ``resynthesis`` is ``train.py``'s step at ``configs/VCTK/hubert100_lut.json`` (512 channels,
MPD + MSD at the released widths) without F0, so that ``resynthesis-original-module`` can run the same step with the
original ``CodeGenerator`` written plainly (:mod:`benchmarks.references.hifigan`: ``nn.Conv1d`` with weight norm
recomputed per call) in place of speechzoo's generator (channels-last convolutions): that pair isolates the
generator's training cost. ``f0-vqvae`` is ``train_f0_vq.py``'s step at ``configs/VCTK/f0_vqvae.json`` (EMA codebook
update included; 208 F0 frames = 16640 samples per item). Data loading (YAAPT F0 at ~0.1 s per segment) is not
timed: it overlaps with training in DataLoader workers.

bf16 autocast: on a CPU without bf16 units (AVX2: the header prints the capability and the measured bf16/float32
matmul slowdown) a bf16 step at the released size takes many minutes, so bf16 runs at ``--bf16-batch`` ×
``--bf16-seconds`` (reduced; say so when quoting it) beside float32 at that same size; ``--bf16-released`` runs it at
the released size as well (on CPUs with bf16 units, or GPUs).

    python -m benchmarks.bench_train                          # released configs (batch 16 x 0.56 s, ...)
    python -m benchmarks.bench_train --recipes resynthesis --batch-size 1 --seconds 1 --repeats 2
"""
from __future__ import annotations

import argparse
import itertools
import statistics
from collections.abc import Callable

import torch
import torch.nn.functional as F

from benchmarks.references.hifigan import ReferenceCodeGenerator
from benchmarks.timing import bf16_matmul_slowdown, timings
from zoo.formats.f0_vqvae import f0_vqvae_config
from zoo.models.speechtokenizer import SpeechTokenizerConfig
from zoo.nn.discriminators import MultiPeriodDiscriminator, MultiScaleDiscriminator
from zoo.train import f0_vqvae as f0_recipe
from zoo.train import resynthesis as resynthesis_recipe
from zoo.train.distributed import setup
from zoo.train.loop import Precision
from zoo.train.losses import adversarial_loss, discriminator_loss, feature_loss
from zoo.train.speechtokenizer import SpeechTokenizerTrainer, TrainConfig

#: ``configs/VCTK/hubert100_lut.json`` without F0 (model_in_dim: units + speaker).
HUBERT100_LUT = {
    "resblock": "1", "batch_size": 16, "learning_rate": 0.0002, "adam_b1": 0.8, "adam_b2": 0.99, "lr_decay": 0.999,
    "seed": 1234, "upsample_rates": [5, 4, 4, 2, 2], "upsample_kernel_sizes": [11, 8, 8, 4, 4],
    "upsample_initial_channel": 512, "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]], "num_embeddings": 100, "embedding_dim": 128,
    "model_in_dim": 256, "segment_size": 8960, "code_hop_size": 320, "multispkr": "_", "num_mels": 80,
    "n_fft": 1024, "hop_size": 256, "win_size": 1024, "sampling_rate": 16000, "fmin": 0, "fmax": 8000,
    "fmax_for_loss": None}
#: ``configs/VCTK/f0_vqvae.json``'s model.
_JUKEBOX = {"input_emb_width": 1, "output_emb_width": 128, "levels": 1, "downs_t": [4], "strides_t": [2],
            "width": 32, "depth": 4, "m_conv": 1.0, "dilation_growth_rate": 3}
F0_VQVAE = {"f0_vq_params": {"l_bins": 20, "emb_width": 128, "mu": 0.99, "levels": 1},
            "f0_encoder_params": _JUKEBOX, "f0_decoder_params": _JUKEBOX}


def _resynthesis_batch(batch_size: int, seconds: float) -> tuple[dict, torch.Tensor, int]:
    hop = HUBERT100_LUT["code_hop_size"]
    samples = int(seconds * 16000) // hop * hop
    generator = torch.Generator().manual_seed(0)
    feats = {"code": torch.randint(0, HUBERT100_LUT["num_embeddings"], (batch_size, samples // hop),
                                   generator=generator),
             "spkr": torch.zeros(batch_size, 1, dtype=torch.long)}
    return feats, torch.randn(batch_size, samples, generator=generator).clamp(-3, 3) * 0.1, samples


def resynthesis(precision: str, batch_size: int, seconds: float) -> tuple[Callable[[], object], float]:
    """One ``train.py`` step of speechzoo's unit HiFi-GAN trainer (hubert100_lut without F0)."""
    feats, y, samples = _resynthesis_batch(batch_size, seconds)
    trainer = resynthesis_recipe.build_trainer(
        resynthesis_recipe.config_from_raw({**HUBERT100_LUT, "segment_size": samples}), seed=0)
    batch, amp = (feats, y, None, trainer.mel(y)), Precision(precision, torch.device("cpu"))
    return (lambda: resynthesis_recipe.train_step(trainer, batch, trainer.generator, trainer.mpd, trainer.msd, amp),
            batch_size * samples / 16000)


def resynthesis_original_module(precision: str, batch_size: int, seconds: float
                                ) -> tuple[Callable[[], object], float]:
    """The same ``train.py`` step with the original ``CodeGenerator`` module as the generator."""
    feats, y, samples = _resynthesis_batch(batch_size, seconds)
    config = resynthesis_recipe.config_from_raw({**HUBERT100_LUT, "segment_size": samples})
    torch.manual_seed(0)
    generator = ReferenceCodeGenerator({**HUBERT100_LUT, "f0": False})
    mpd, msd, mel = MultiPeriodDiscriminator(), MultiScaleDiscriminator(), config.log_mel()
    betas = (config.adam_b1, config.adam_b2)
    optim_g = torch.optim.AdamW(generator.parameters(), config.learning_rate, betas=betas)
    optim_d = torch.optim.AdamW(itertools.chain(msd.parameters(), mpd.parameters()), config.learning_rate, betas=betas)
    amp, y_mel, real = Precision(precision, torch.device("cpu")), mel(y), y.unsqueeze(1)

    def step() -> None:
        with amp.autocast():
            y_g_hat = generator(feats["code"], spkr=feats["spkr"])
        y_g_hat_mel = mel(y_g_hat.squeeze(1).float())
        optim_d.zero_grad()
        with amp.autocast():
            loss_d = (discriminator_loss(*mpd(real, y_g_hat.detach())[:2]) +
                      discriminator_loss(*msd(real, y_g_hat.detach())[:2]))
        amp.backward(loss_d)
        amp.step(optim_d)
        optim_g.zero_grad()
        with amp.autocast():
            _, f_g, f_maps_r, f_maps_g = mpd(real, y_g_hat)
            _, s_g, s_maps_r, s_maps_g = msd(real, y_g_hat)
            loss_g = (adversarial_loss(s_g) + adversarial_loss(f_g) + feature_loss(s_maps_r, s_maps_g) +
                      feature_loss(f_maps_r, f_maps_g) + F.l1_loss(y_mel, y_g_hat_mel) * 45)
        amp.backward(loss_g)
        amp.step(optim_g)
        amp.update()

    return step, batch_size * samples / 16000


def f0_vqvae(precision: str, batch_size: int, seconds: float) -> tuple[Callable[[], object], float]:
    """One ``train_f0_vq.py`` step (EMA codebook update included) on random contours of ``seconds``."""
    frames = int(seconds * 200) // 16 * 16
    config = f0_recipe.F0VQVAETrainConfig(model=f0_vqvae_config(F0_VQVAE, where="bench"), segment_size=frames * 80)
    trainer = f0_recipe.build_trainer(config, seed=0)
    trainer.model.train()
    f0 = torch.randn(batch_size, 1, frames, generator=torch.Generator().manual_seed(0))
    amp = Precision(precision, torch.device("cpu"))

    def step() -> None:
        with amp.autocast():
            y_g_hat, commit, _ = trainer.forward(f0)
        trainer.optim_g.zero_grad()
        (F.mse_loss(y_g_hat.float(), f0) + config.lambda_commit * commit.float()).backward()
        trainer.optim_g.step()

    return step, batch_size * frames * 80 / 16000


def speechtokenizer(precision: str, batch_size: int, seconds: float) -> tuple[Callable[[], object], float]:
    """One step of the official SpeechTokenizer trainer at the released config (spt_base_cfg.json)."""
    model_config, config = SpeechTokenizerConfig(), TrainConfig(batch_size=batch_size)
    trainer = SpeechTokenizerTrainer(model_config, config, setup("cpu"), precision=precision)
    hop = trainer.generator.downsample_rate
    samples = int(seconds * config.sample_rate) // hop * hop
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, samples, generator=generator) * 0.1
    semantic = torch.randn(batch_size, samples // hop, model_config.semantic_dimension, generator=generator)
    return (lambda: trainer.train_step(x, semantic, trainer.generator, trainer.discriminators),
            batch_size * samples / config.sample_rate)


#: recipe -> builder of (one step, audio seconds per step).
RECIPES: dict[str, Callable[[str, int, float], tuple[Callable[[], object], float]]] = {
    "speechtokenizer": speechtokenizer,
    "resynthesis": resynthesis,
    "resynthesis-original-module": resynthesis_original_module,
    "f0-vqvae": f0_vqvae,
}
#: The released configs' batch and segment (seconds).
RELEASED = {"speechtokenizer": (6, 3.0), "resynthesis": (16, 0.56), "resynthesis-original-module": (16, 0.56),
            "f0-vqvae": (16, 1.04)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--batch-size", type=int, help="override the released batch size")
    parser.add_argument("--seconds", type=float, help="override the released segment length")
    parser.add_argument("--bf16-batch", type=int, default=1, help="batch of the reduced bf16 comparison")
    parser.add_argument("--bf16-seconds", type=float, default=0.2, help="segment of the reduced bf16 comparison")
    parser.add_argument("--bf16-released", action="store_true", help="also run bf16 at the released size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, {args.threads} "
          f"threads; bf16/float32 time of a 256x1024x1024 matmul here: {bf16_matmul_slowdown():.0f}x; min / median "
          f"of {args.repeats} steps each (1 at the reduced bf16 size)\n")
    print("| recipe | batch x segment | precision | s/step | steps/s | audio s/s |")
    print("|---|---|---|---|---|---|")
    for recipe in args.recipes:
        batch, seconds = RELEASED[recipe]
        batch, seconds = args.batch_size or batch, args.seconds or seconds
        runs = [(batch, seconds, ("fp32", "bf16") if args.bf16_released else ("fp32",), args.repeats),
                (args.bf16_batch, args.bf16_seconds, ("fp32", "bf16"), 1)]
        for size_batch, size_seconds, precisions, repeats in runs:
            steps = {p: RECIPES[recipe](p, size_batch, size_seconds) for p in precisions}
            results = timings(*(fn for fn, _ in steps.values()), repeats=repeats)
            for (precision, (_, audio)), times in zip(steps.items(), results):
                best, median = min(times), statistics.median(times)
                label = ("float32 (reference: the original's algorithm)" if precision == "fp32" else "bf16 autocast")
                print(f"| {recipe} | {size_batch} x {size_seconds:g} s | {label} | {best:.2f} / {median:.2f} | "
                      f"{1 / median:.3f} | {audio / median:.2f} |")


if __name__ == "__main__":
    main()
