"""float32 vs bfloat16 on CPU, every encoder, codec and vocoder in one run: time, and the error against float32.

Each model is built at its released size with random weights (seeded; the released weights are not available
offline) and cast with ``.to(torch.bfloat16)`` — what ``dtype=torch.bfloat16`` on an entry point does: norms,
codebooks, k-means / DPDP distances and the ISTFT head stay float32 (``zoo.nn.precision``). The input is the
LibriSpeech utterance in tests/data (its first ``--seconds``). Errors, all against the float32 run of the same model
on the same input:

* features: relative L2 error ``‖bf16 − f32‖ / ‖f32‖``;
* units: % of frames whose unit equals float32's. The codebooks are k-means fit (``zoo.train.kmeans.fit_torch``) to
  the float32 features of this utterance, so the units are as meaningful as the features; DPDP uses DP-SLM's
  5 %-of-K neighbours and a penalty ``lmbda`` equal to the mean squared distance of a frame to its nearest code
  (with random weights the features' scale is not the trained model's, so DP-SLM's lmbda = 4500 means nothing);
* codec codes: % equal, the codec's codebooks fit the same way (residual k-means for SpeechTokenizer's RVQ);
* waveforms: SNR of the bfloat16 output against float32's, in dB.

Random weights are not noise: every feature is a deterministic function of real speech, so units clustered from
them measure how much rounding moves frames across cluster borders; trained weights would give better separated
clusters, so these agreement numbers are, if anything, pessimistic.

THIS CPU MATTERS: bfloat16 only runs fast where the CPU has bfloat16 units (AVX512_BF16, AMX) or on a GPU. On an
AVX2 CPU PyTorch emulates bfloat16 matrix products (converting to float32 and back), so bfloat16 is SLOWER than
float32 there, and the speed target of issue 16 (WavLM Large layer 11 in bfloat16 ≥ 2× float32) cannot be met; the
header prints the capability PyTorch detected.

    python -m benchmarks.bench_precision                     # every model, the whole 5.9 s utterance
    python -m benchmarks.bench_precision --seconds 1 --models wavlm hubert
"""
from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.timing import timings
from zoo.audio import load, resample
from zoo.models.dpdp import DPDPQuantizer
from zoo.models.hifigan import CodeHiFiGAN, CodeHiFiGANConfig
from zoo.models.hubert import Hubert, HubertConfig, HubertFeatureReader
from zoo.models.speechtokenizer import SpeechTokenizer, SpeechTokenizerConfig
from zoo.models.wavlm import WavLM, WavLMConfig, extract_features
from zoo.models.wavtokenizer import VARIANTS, WavTokenizer
from zoo.nn.quantization import nearest_code
from zoo.train.kmeans import KMeansParams, fit_torch

THREADS = 2
SPEECH = Path(__file__).resolve().parents[1] / "tests" / "data" / "librispeech-1272-128104-0000.flac"
BF16 = torch.bfloat16
WAVLM_LAYER, HUBERT_LAYER = 11, 6       # DP-SLM's and GSLM's layers
#: Codebook sizes, fit to one utterance (293 frames at 50 Hz): at most a quarter of the frames, so that every code
#: stands for several frames (with as many codes as frames each frame would be its own code, trivially stable).
UNITS_K, CODEC_K = 50, 32
FRAMES_PER_CODE = 4
NEIGHBOR_FRACTION = 0.05                # DP-SLM's num_neighbors = 5 % of K


def codebook_size(frames: int, k: int) -> int:
    return max(2, min(k, frames // FRAMES_PER_CODE))


def kmeans(features: torch.Tensor, k: int) -> torch.Tensor:
    """A ``(k, D)`` codebook fit to ``features`` ``(N, D)`` (float32)."""
    params = KMeansParams(num_clusters=k, max_iter=100, n_init=3, batch_size=len(features))
    return fit_torch(features.float(), params).codebook.codebook


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.double() - want.double()).norm() / want.double().norm())


def snr_db(got: torch.Tensor, want: torch.Tensor) -> float:
    noise = (got.double() - want.double()).pow(2).sum()
    return float(10 * torch.log10(want.double().pow(2).sum() / noise)) if noise > 0 else float("inf")


def equal_percent(got: torch.Tensor, want: torch.Tensor) -> float:
    return 100.0 * float((got == want).double().mean())


def units_equal(got: torch.Tensor, want: torch.Tensor, codebook: torch.Tensor) -> float:
    """% of frames whose nearest code in ``codebook`` is the same for ``got`` as for ``want``."""
    return equal_percent(nearest_code(got, codebook), nearest_code(want, codebook))


def report(title: str, runs: dict[str, Callable[[], torch.Tensor]], repeats: int,
           metrics: Callable[[torch.Tensor, torch.Tensor], dict[str, str]]) -> None:
    """Time the float32 and bfloat16 calls interleaved; print a table with ``metrics(bf16_out, f32_out)``."""
    want, got = runs["float32"](), runs["bfloat16"]()  # also the warm-up
    seconds = dict(zip(runs, timings(*runs.values(), repeats=repeats, warmup=False)))
    values = metrics(got, want)
    print(f"\n#### {title}\n")
    print("| dtype | min / median (s) | speed vs float32 | " + " | ".join(values) + " |")
    print("|---|---|---|" + "---|" * len(values))
    base = statistics.median(seconds["float32"])
    for dtype, times in seconds.items():
        cells = [v if dtype == "bfloat16" else "(reference)" for v in values.values()]
        print(f"| {dtype} | {min(times):.2f} / {statistics.median(times):.2f} | "
              f"{base / statistics.median(times):.2f}x | " + " | ".join(cells) + " |")


# ------------------------------------------------------------------------------------------ models
def bench_wavlm(wav: torch.Tensor, repeats: int) -> None:
    torch.manual_seed(0)
    model = WavLM(WavLMConfig()).eval()
    half = WavLM(WavLMConfig()).eval()
    half.load_state_dict(model.state_dict())
    half.to(BF16)

    def features(net: WavLM) -> Callable[[], torch.Tensor]:
        return lambda: extract_features(net, wav, 16000, layer=WAVLM_LAYER)

    def metrics(got: torch.Tensor, want: torch.Tensor) -> dict[str, str]:
        k = codebook_size(len(want), UNITS_K)
        codebook = kmeans(want, k)
        lmbda = float(torch.cdist(want, codebook).min(1).values.pow(2).mean())
        dpdp = DPDPQuantizer.from_codebook(codebook, lmbda, max(1, round(NEIGHBOR_FRACTION * k)))
        return {"feature rel. error": f"{relative_error(got, want):.2%}",
                f"DPDP units equal (K={k}, lmbda={lmbda:.3g})": f"{equal_percent(dpdp(got)[1], dpdp(want)[1]):.1f} %",
                f"k-means units equal (K={k})": f"{units_equal(got, want, codebook):.1f} %"}

    report(f"WavLM Large, layer {WAVLM_LAYER} features ({len(wav[0]) / 16000:.1f} s)",
           {"float32": features(model), "bfloat16": features(half)}, repeats, metrics)


def bench_hubert(wav: torch.Tensor, repeats: int) -> None:
    torch.manual_seed(0)
    model = Hubert(HubertConfig()).eval()
    half = Hubert(HubertConfig()).eval()
    half.load_state_dict(model.state_dict())
    readers = {"float32": HubertFeatureReader(model, HUBERT_LAYER),
               "bfloat16": HubertFeatureReader(half.to(BF16), HUBERT_LAYER)}

    def metrics(got: torch.Tensor, want: torch.Tensor) -> dict[str, str]:
        k = codebook_size(len(want), UNITS_K)
        km = kmeans(want, k)
        return {"feature rel. error": f"{relative_error(got, want):.2%}",
                f"k-means units equal (K={k})": f"{units_equal(got, want, km):.1f} %"}

    report(f"HuBERT Base, layer {HUBERT_LAYER} features ({len(wav[0]) / 16000:.1f} s)",
           {name: (lambda r=r: r(wav[0])) for name, r in readers.items()}, repeats, metrics)


def fit_rvq(model: SpeechTokenizer, latent: torch.Tensor) -> None:
    """Residual k-means: quantizer i's codebook fit to what quantizers 0..i-1 leave of the latent ``(1, D, T)``."""
    residual = latent[0].T.float()
    for i in range(model.config.n_q):
        codebook = kmeans(residual, model.config.codebook_size)
        model.quantizer.codebooks[i] = codebook
        residual = residual - codebook[nearest_code(residual, codebook)]


def bench_speechtokenizer(wav: torch.Tensor, repeats: int) -> None:
    torch.manual_seed(0)
    k = codebook_size(-(-wav.shape[-1] // 320), CODEC_K)
    config = SpeechTokenizerConfig(codebook_size=k)
    model = SpeechTokenizer(config).eval()
    with torch.inference_mode():
        fit_rvq(model, model.encoder(wav[None]))
    half = SpeechTokenizer(config).eval()
    half.load_state_dict(model.state_dict())
    half.to(BF16)
    outputs = {}

    def roundtrip(net: SpeechTokenizer, name: str) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            codes = net.encode(wav[None])
            outputs[name] = codes
            return net.decode(codes)
        return run

    def metrics(got: torch.Tensor, want: torch.Tensor) -> dict[str, str]:
        codes16, codes32 = outputs["bfloat16"], outputs["float32"]
        return {"codebook-0 codes equal": f"{equal_percent(codes16[0], codes32[0]):.1f} %",
                f"all {config.n_q} codebooks equal": f"{equal_percent(codes16, codes32):.1f} %",
                "encode+decode SNR": f"{snr_db(got, want):.1f} dB"}

    report(f"SpeechTokenizer, encode + decode ({len(wav[0]) / 16000:.1f} s; RVQ {config.n_q} x {k} codes "
           "fit to the float32 latents)", {"float32": roundtrip(model, "float32"),
                                             "bfloat16": roundtrip(half, "bfloat16")}, repeats, metrics)


def bench_wavtokenizer(wav: torch.Tensor, repeats: int) -> None:
    torch.manual_seed(0)
    config = VARIANTS["small_600_24k_4096"]
    model = WavTokenizer(config).eval()
    audio = resample(wav, 16000, 24000)
    with torch.inference_mode():
        frames = model._encoder_frames(audio)[0]
        k = codebook_size(len(frames), CODEC_K)
        model.quantizers[0].codebook[:k] = kmeans(frames, k)
        model.quantizers[0].codebook[k:] = 1e4  # unused rows, far from every frame
    half = WavTokenizer(config).eval()
    half.load_state_dict(model.state_dict())
    half.to(BF16)
    outputs = {}

    def roundtrip(net: WavTokenizer, name: str) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            features, codes = net.encode(audio)
            outputs[name] = codes
            return net.decode(features)
        return run

    def metrics(got: torch.Tensor, want: torch.Tensor) -> dict[str, str]:
        return {"codes equal": f"{equal_percent(outputs['bfloat16'], outputs['float32']):.1f} %",
                "encode+decode SNR": f"{snr_db(got, want):.1f} dB"}

    report(f"WavTokenizer small_600_24k_4096, encode + decode ({len(wav[0]) / 16000:.1f} s; {k} codes fit "
           "to the float32 frames)", {"float32": roundtrip(model, "float32"), "bfloat16": roundtrip(half, "bfloat16")},
           repeats, metrics)


def bench_hifigan(wav: torch.Tensor, repeats: int) -> None:
    """The fairseq mHuBERT km1000 vocoder's config, on random units (50 per second, as many as the audio's)."""
    torch.manual_seed(0)
    config = CodeHiFiGANConfig(upsample_rates=(5, 4, 4, 2, 2), upsample_kernel_sizes=(11, 8, 8, 4, 4),
                               upsample_initial_channel=512, resblock_kernel_sizes=(3, 7, 11),
                               resblock_dilation_sizes=((1, 3, 5),) * 3, num_embeddings=1000, embedding_dim=128,
                               model_in_dim=128, code_hop_size=320)
    model = CodeHiFiGAN(config).eval()
    half = CodeHiFiGAN(config).eval()
    half.load_state_dict(model.state_dict())
    half.to(BF16)
    units = torch.randint(0, 1000, (1, wav.shape[-1] // 320), generator=torch.Generator().manual_seed(0))

    def metrics(got: torch.Tensor, want: torch.Tensor) -> dict[str, str]:
        return {"waveform SNR": f"{snr_db(got, want):.1f} dB"}

    report(f"unit HiFi-GAN (mHuBERT km1000 config), {units.shape[1]} units ({units.shape[1] / 50:.1f} s)",
           {"float32": lambda: model(units), "bfloat16": lambda: half(units)}, repeats, metrics)


BENCHES = {"wavlm": bench_wavlm, "hubert": bench_hubert, "speechtokenizer": bench_speechtokenizer,
           "wavtokenizer": bench_wavtokenizer, "hifigan": bench_hifigan}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=None, help="clip of the utterance (default: all 5.9 s)")
    parser.add_argument("--repeats", type=int, default=2, help="timed calls of each dtype after the warm-up")
    parser.add_argument("--models", nargs="+", choices=sorted(BENCHES), default=list(BENCHES))
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    wav, _ = load(SPEECH, sample_rate=16000)
    if args.seconds is not None:
        wav = wav[:, : int(args.seconds * 16000)]
    capability = torch.backends.cpu.get_cpu_capability()
    print(f"### float32 vs bfloat16, CPU ({capability}), torch {torch.__version__}, {THREADS} threads, "
          f"min / median of {args.repeats} runs after a warm-up; input: {SPEECH.name}, {wav.shape[-1] / 16000:.2f} s")
    if "AVX512" not in capability and "AMX" not in capability:
        print(f"\nThis CPU ({capability}) has no bfloat16 units: PyTorch emulates bfloat16 arithmetic, so bfloat16 "
              "is slower than float32 here and no speed target for bfloat16 can be met on it. The error columns "
              "do not depend on the CPU.")
    with torch.inference_mode():
        for name in args.models:
            BENCHES[name](wav, args.repeats)


if __name__ == "__main__":
    main()
