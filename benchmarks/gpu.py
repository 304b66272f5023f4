"""Every model on one device (CUDA by default) in float32 / bfloat16 / float16 at several batch sizes: × real time for
the encoders, codecs and vocoders, tokens/s for the language models, and peak memory.

Released sizes with random weights (the configs' defaults are the released architectures: WavLM Large, HuBERT Base,
SpeechTokenizer, WavTokenizer small_600_24k_4096, the mHuBERT km1000 unit HiFi-GAN, the DP-SLM ULM and ELLA-V
(12 × 1024), GSLM's ``transformer_lm_big`` unit LM, dGSLM's SpeechDLM, GSLM's Tacotron2 + WaveGlow). Each model is
built once per dtype (``model.to(dtype)``, the inputs in that dtype too), run once as warm-up, then ``--repeats``
times; the table gives the median. Audio rows: ``batch × seconds of audio / wall seconds`` (input audio for the
encoders, output audio for decoders and vocoders; an encoder + decoder row counts the audio once); LM rows: tokens
generated per second over the whole batch (SpeechDLM: both channels' units). Peak memory is
``torch.cuda.max_memory_allocated`` during the timed calls (weights included); ``—`` on the CPU. A cell that fails
(out of memory, a dtype a model does not run in) says why instead of a number, and the others go on.

There is no reference column: this script measures the GPU throughput of speechzoo itself (the per-model
benchmarks compare with the originals on the CPU). ``--compile`` wraps each model (encoders, codecs, vocoders) or each
decoder block (LMs: the decode step) in ``torch.compile``.

    python -m benchmarks.gpu                                  # CUDA, released sizes, float32/bf16/fp16
    python -m benchmarks.gpu --models wavlm,ulm --batch-sizes 1,32 --dtypes bfloat16
    python -m benchmarks.gpu --device cpu --quick             # tiny configs on the CPU: checks that it runs
"""
from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from benchmarks.timing import timed
from zoo.models.ellav import ELLAV, ELLAVConfig, ELLAVTokenizerConfig
from zoo.models.gslm_ulm import GSLMUnitLM, GSLMUnitLMConfig
from zoo.models.hifigan import CodeHiFiGAN, CodeHiFiGANConfig
from zoo.models.hubert import Hubert, HubertConfig
from zoo.models.speech_dlm import SpeechDLM, SpeechDLMConfig, _options, generate_batch
from zoo.models.speechtokenizer import SpeechTokenizer, SpeechTokenizerConfig
from zoo.models.tacotron2 import Tacotron2, Tacotron2Config
from zoo.models.ulm import UnitLanguageModel
from zoo.models.waveglow import WaveGlow, WaveGlowConfig
from zoo.models.wavlm import WavLM, WavLMConfig, extract_features
from zoo.models.wavtokenizer import (
    VARIANTS,
    BackboneConfig,
    WavTokenizer,
    WavTokenizerConfig,
)
from zoo.nn.dictionary import FairseqDictionary
from zoo.nn.transformer import TransformerConfig

#: What each run processes: seconds of audio per item, new tokens per sequence (--quick: much less).
SECONDS, QUICK_SECONDS = 10.0, 1.0
TOKENS, QUICK_TOKENS = 200, 8
#: Batch sizes of the full run: encoders, codecs and vocoders / language models.
AUDIO_BATCHES, LM_BATCHES = (1, 8, 32), (1, 8, 64)
DTYPES = ("float32", "bfloat16", "float16")
SEED = 0

#: make(quick) -> the model, float32 on the CPU, in eval mode
Make = Callable[[bool], nn.Module]
#: prepare(model, batch, quick, device, dtype) -> a call that runs the model once and returns what it processed
Prepare = Callable[[nn.Module, int, bool, torch.device, torch.dtype], Callable[[], float]]


@dataclass(frozen=True)
class Case:
    """One row group of the table: a model and the work it is timed on."""

    name: str
    key: str           # --models selects by it
    unit: str          # "× real time" or "tokens/s"
    make: Make
    prepare: Prepare
    compile_blocks: bool = False   # --compile: compile the decoder blocks (LMs) instead of the whole model


def _audio(batch: int, seconds: float, rate: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    generator = torch.Generator().manual_seed(SEED)
    return (0.1 * torch.randn(batch, int(seconds * rate), generator=generator)).to(device, dtype)


def _seconds(quick: bool) -> float:
    return QUICK_SECONDS if quick else SECONDS


def _tokens(quick: bool) -> int:
    return QUICK_TOKENS if quick else TOKENS


# ------------------------------------------------------------------------------------------ encoders
WAVLM_LAYER = 11  # DP-SLM's
TINY_CONV = ((32, 10, 5),) + ((32, 3, 2),) * 4 + ((32, 2, 2),) * 2  # the released strides: 20 ms frames


def make_wavlm(quick: bool) -> nn.Module:
    config = (WavLMConfig(conv_layers=TINY_CONV, embed_dim=64, num_layers=WAVLM_LAYER + 1, num_heads=4, ffn_dim=128,
                          pos_conv_kernel=16, pos_conv_groups=4) if quick else WavLMConfig())
    return WavLM(config).eval()


def prepare_wavlm(model, batch, quick, device, dtype):
    wav = _audio(batch, _seconds(quick), 16000, device, dtype)
    return lambda: (extract_features(model, wav, 16000, layer=WAVLM_LAYER), batch * _seconds(quick))[1]


HUBERT_LAYER = 6  # GSLM's


def make_hubert(quick: bool) -> nn.Module:
    config = (HubertConfig(conv_layers=TINY_CONV, embed_dim=64, num_layers=HUBERT_LAYER, num_heads=4, ffn_dim=128,
                           pos_conv_kernel=16, pos_conv_groups=4) if quick else HubertConfig())
    return Hubert(config).eval()


def prepare_hubert(model, batch, quick, device, dtype):
    wav = _audio(batch, _seconds(quick), 16000, device, dtype)
    return lambda: (model(wav, output_layer=HUBERT_LAYER), batch * _seconds(quick))[1]


# ------------------------------------------------------------------------------------------ codecs
def make_speechtokenizer(quick: bool) -> nn.Module:
    config = (SpeechTokenizerConfig(n_filters=4, dimension=32, semantic_dimension=16, codebook_size=64, n_q=8)
              if quick else SpeechTokenizerConfig())
    return SpeechTokenizer(config).eval()


def prepare_speechtokenizer_encode(model, batch, quick, device, dtype):
    wav = _audio(batch, _seconds(quick), model.sample_rate, device, dtype)[:, None]
    return lambda: (model.encode(wav), batch * _seconds(quick))[1]


def prepare_speechtokenizer_decode(model, batch, quick, device, dtype):
    wav = _audio(batch, _seconds(quick), model.sample_rate, device, dtype)[:, None]
    codes = model.encode(wav)
    return lambda: (model.decode(codes), batch * _seconds(quick))[1]


def make_wavtokenizer(quick: bool) -> nn.Module:
    released = VARIANTS["small_600_24k_4096"]
    if not quick:
        return WavTokenizer(released).eval()
    backbone = BackboneConfig(dim=32, intermediate_dim=64, num_layers=2, adanorm_num_embeddings=4)
    return WavTokenizer(WavTokenizerConfig(downsamples=released.downsamples, codebook_size=64, backbone=backbone,
                                           head=released.head)).eval()


def prepare_wavtokenizer(model, batch, quick, device, dtype):
    """Encode then decode (resynthesis): × real time counts the audio once."""
    wav = _audio(batch, _seconds(quick), model.sample_rate, device, dtype)

    def run() -> float:
        _, codes = model.encode(wav)
        model.decode(model.codes_to_features(codes))
        return batch * _seconds(quick)
    return run


# ------------------------------------------------------------------------------------------ vocoders
def make_hifigan(quick: bool) -> nn.Module:
    """The unit HiFi-GAN of the mHuBERT km1000 (speech-to-speech) release, without its duration predictor."""
    width, units, embedding = (32, 50, 16) if quick else (512, 1000, 128)
    return CodeHiFiGAN(CodeHiFiGANConfig(
        upsample_rates=(5, 4, 4, 2, 2), upsample_kernel_sizes=(11, 8, 8, 4, 4), upsample_initial_channel=width,
        resblock_kernel_sizes=(3, 7, 11), resblock_dilation_sizes=((1, 3, 5),) * 3, num_embeddings=units,
        embedding_dim=embedding, model_in_dim=embedding, code_hop_size=320)).eval()


def prepare_hifigan(model, batch, quick, device, dtype):
    units_per_second = 50  # 320-sample hops at 16 kHz
    generator = torch.Generator().manual_seed(SEED)
    units = torch.randint(model.config.num_embeddings, (batch, int(_seconds(quick) * units_per_second)),
                          generator=generator).to(device)
    return lambda: (model(units), batch * _seconds(quick))[1]


def make_tacotron2_waveglow(quick: bool) -> nn.Module:
    """GSLM's unit-to-speech pair (HuBERT km100 code dictionary); the gate never stops, so every row decodes
    exactly the frames of ``SECONDS``."""
    codes = tuple(str(u) for u in range(100))
    if quick:
        taco = Tacotron2Config(codes=codes, symbols_embedding_dim=16, encoder_embedding_dim=16, attention_rnn_dim=24,
                               decoder_rnn_dim=24, prenet_dim=16, attention_dim=12, postnet_embedding_dim=16,
                               gate_threshold=1.0)
        glow = WaveGlowConfig(n_flows=4, n_layers=2, n_channels=16)
    else:
        taco, glow = Tacotron2Config(codes=codes, gate_threshold=1.0), WaveGlowConfig()
    return nn.ModuleDict({"tacotron2": Tacotron2(taco), "waveglow": WaveGlow(glow)}).eval()


def prepare_tacotron2_waveglow(model, batch, quick, device, dtype):
    taco, glow = model["tacotron2"], model["waveglow"]
    hop, rate = 256, glow.config.sampling_rate
    steps = int(_seconds(quick) * rate / hop)
    taco.max_decoder_steps = steps
    generator = torch.Generator().manual_seed(SEED)
    units = torch.randint(100, (int(_seconds(quick) * 25),), generator=generator)
    ids = taco.encode(" ".join(map(str, units.tolist())))[None].expand(batch, -1).to(device)

    def run() -> float:
        mel = taco.inference(ids, generator=torch.Generator(device).manual_seed(SEED))[1]
        glow.infer(mel, sigma=0.666, generator=torch.Generator(device).manual_seed(SEED))
        return batch * steps * hop / rate
    return run


# ------------------------------------------------------------------------------------------ language models
def _transformer(vocab_size: int, output_bias: bool, quick: bool) -> TransformerConfig:
    if quick:
        return TransformerConfig(dim=32, n_layers=2, head_dim=8, hidden_dim=64, n_heads=4, n_kv_heads=4,
                                 vocab_size=vocab_size, output_bias=output_bias)
    return TransformerConfig(dim=1024, n_layers=12, head_dim=64, hidden_dim=4096, n_heads=16, n_kv_heads=16,
                             vocab_size=vocab_size, output_bias=output_bias)


ULM_UNITS, PROMPT = 500, 10


def make_ulm(quick: bool) -> nn.Module:
    return UnitLanguageModel(_transformer(ULM_UNITS + 1, False, quick)).eval()


def prepare_ulm(model, batch, quick, device, dtype):
    prompts = torch.randint(ULM_UNITS, (batch, PROMPT), generator=torch.Generator().manual_seed(SEED))
    return lambda: model.generate(prompts, _tokens(quick), 1.0, 1.0).numel()


def make_ellav(quick: bool) -> nn.Module:
    codec = 64 if quick else 4096  # WavTokenizer small_600_24k_4096
    tokenizer = ELLAVTokenizerConfig(phones=tuple(sorted(f"u{n}" for n in range(ULM_UNITS))), phone_token_rate=50.0,
                                     num_codec_types=codec, codec_token_rate=40.0)
    return ELLAV(ELLAVConfig(_transformer(4 + ULM_UNITS + codec, True, quick), tokenizer)).eval()


def prepare_ellav(model, batch, quick, device, dtype):
    prompt = model.tokenizer.encode_infer([f"u{n}" for n in range(4 * PROMPT)])
    return lambda: model.generate_raw([prompt] * batch, _tokens(quick), 10, 1.0, 1.0)[0].numel()


def make_gslm_ulm(quick: bool) -> nn.Module:
    symbols = FairseqDictionary.SPECIALS + tuple(str(u) for u in range(100))
    config = (GSLMUnitLMConfig(symbols=symbols, embed_dim=32, ffn_embed_dim=64, layers=2, attention_heads=4)
              if quick else GSLMUnitLMConfig(symbols=symbols))  # transformer_lm_big
    model = GSLMUnitLM(config).eval()
    nn.init.normal_(model.embed_tokens.weight, std=config.embed_dim ** -0.5)  # fairseq's init: sane tied logits
    return model


def prepare_gslm_ulm(model, batch, quick, device, dtype):
    units = torch.randint(100, (PROMPT,), generator=torch.Generator().manual_seed(SEED))
    prompt = model.encode(" ".join(map(str, units.tolist())))
    n = _tokens(quick)

    def run() -> int:
        hypotheses = model.generate([prompt] * batch, beam=1, sampling=True, max_len_b=PROMPT + n, min_len=PROMPT + n,
                                    seed=SEED)
        return sum(len(h[0]["tokens"]) - len(prompt) for h in hypotheses)
    return run


def make_speech_dlm(quick: bool) -> nn.Module:
    config = (SpeechDLMConfig(embed_dim=32, input_dim=32, output_dim=32, ffn_embed_dim=64, layers=2, cross_layers=1,
                              attention_heads=4) if quick else SpeechDLMConfig())
    return SpeechDLM(config).eval()


def prepare_speech_dlm(model, batch, quick, device, dtype):
    prompts = [torch.tensor([[7, 9]])] * batch
    options = _options(model, 1, {"sampling": True, "max_len_b": _tokens(quick)})
    channels = len(model.channels)

    def run() -> int:
        hypotheses = generate_batch(model, prompts, options)
        return sum(h[0]["tokens"].shape[0] - 1 for h in hypotheses) * channels
    return run


CASES = (
    Case("WavLM Large → layer 11", "wavlm", "× real time", make_wavlm, prepare_wavlm),
    Case("HuBERT Base → layer 6", "hubert", "× real time", make_hubert, prepare_hubert),
    Case("SpeechTokenizer encode", "speechtokenizer", "× real time", make_speechtokenizer,
         prepare_speechtokenizer_encode),
    Case("SpeechTokenizer decode", "speechtokenizer", "× real time", make_speechtokenizer,
         prepare_speechtokenizer_decode),
    Case("WavTokenizer small_600 encode + decode", "wavtokenizer", "× real time", make_wavtokenizer,
         prepare_wavtokenizer),
    Case("unit HiFi-GAN (mHuBERT km1000)", "hifigan", "× real time", make_hifigan, prepare_hifigan),
    Case("Tacotron2 + WaveGlow (GSLM)", "tacotron2", "× real time", make_tacotron2_waveglow,
         prepare_tacotron2_waveglow),
    Case("ULM generation (DP-SLM, 12 × 1024)", "ulm", "tokens/s", make_ulm, prepare_ulm, compile_blocks=True),
    Case("ELLA-V generation (12 × 1024)", "ellav", "tokens/s", make_ellav, prepare_ellav, compile_blocks=True),
    Case("GSLM unit LM generation (transformer_lm_big)", "gslm_ulm", "tokens/s", make_gslm_ulm, prepare_gslm_ulm,
         compile_blocks=True),
    Case("SpeechDLM generation (dGSLM, 2 channels)", "speech_dlm", "tokens/s", make_speech_dlm, prepare_speech_dlm,
         compile_blocks=True),
)


# ------------------------------------------------------------------------------------------ measuring
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _synced(run: Callable[[], float], device: torch.device) -> float:
    """``run()`` once the device has finished it (CUDA calls return before the work is done)."""
    amount = run()
    _sync(device)
    return amount


def _compiled(model: nn.Module, blocks: bool) -> nn.Module:
    """``torch.compile`` on the model, or on each decoder block (``layers``) of a language model."""
    if not blocks:
        model.compile()
        return model
    for module in model.modules():
        for name in ("layers", "cross_layers"):
            children = getattr(module, name, None)
            if isinstance(children, nn.ModuleList):
                for child in children:
                    child.compile(dynamic=True)
    return model


def measure(case: Case, batch: int, dtype: torch.dtype, device: torch.device, quick: bool, repeats: int,
            compile: bool) -> tuple[float, float, float | None]:
    """(throughput in ``case.unit``, median seconds per call, peak GB or None on the CPU)."""
    torch.manual_seed(SEED)
    model = case.make(quick).to(device=device, dtype=dtype)
    if compile:
        model = _compiled(model, case.compile_blocks)
    with torch.inference_mode():
        run = case.prepare(model, batch, quick, device, dtype)
        run()  # warm-up: kernels, allocator, compilation
        _sync(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds, amount = [], 0.0
        for _ in range(repeats):
            took, amount = timed(lambda: _synced(run, device))
            seconds.append(took)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    median = statistics.median(seconds)
    return amount / median, median, peak


def _failure(error: Exception) -> str:
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return "out of memory"
    text = str(error).splitlines()[0] if str(error) else ""
    return f"fails: {type(error).__name__}: {text[:80]}".replace("|", "/")


def main(argv: list[str] | None = None) -> list[str]:
    """Print the table; returns its lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--quick", action="store_true",
                        help="tiny configs, 1 s of audio / 8 tokens, one batch size (2), float32 and bfloat16")
    parser.add_argument("--dtypes", help=f"comma-separated (default {','.join(DTYPES)}; --quick: float32,bfloat16)")
    parser.add_argument("--batch-sizes", help="comma-separated, for every model (default: encoders, codecs and "
                                              f"vocoders {AUDIO_BATCHES}, LMs {LM_BATCHES}; --quick: 2)")
    parser.add_argument("--models", help=f"comma-separated keys ({', '.join(dict.fromkeys(c.key for c in CASES))}; "
                                         "default all)")
    parser.add_argument("--repeats", type=int, help="timed calls per cell after a warm-up (default 3; --quick 1)")
    parser.add_argument("--compile", action="store_true", help="torch.compile each model (LMs: each decoder block)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device here; use --device cpu (with --quick for a short check)")
    dtypes = [getattr(torch, d) for d in (args.dtypes or ("float32,bfloat16" if args.quick else ",".join(DTYPES))
                                          ).split(",")]
    given = [int(b) for b in args.batch_sizes.split(",")] if args.batch_sizes else None
    keys = set(args.models.split(",")) if args.models else None
    repeats = args.repeats or (1 if args.quick else 3)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    header = (f"speechzoo on {name}, torch {torch.__version__}, CPU capability "
              f"{torch.backends.cpu.get_cpu_capability()}, "
              f"{'tiny configs (--quick)' if args.quick else 'released sizes'}, random weights, "
              f"{_seconds(args.quick):g} s of audio per item / {_tokens(args.quick)} new tokens per sequence, median "
              f"of {repeats}{', torch.compile' if args.compile else ''}")
    lines = [header,
             "| model | dtype | batch | throughput | unit | s per call | peak memory |",
             "|---|---|---|---|---|---|---|"]
    for line in lines:
        print(line, flush=True)
    for case in CASES:
        if keys is not None and case.key not in keys:
            continue
        batches = given or ((2,) if args.quick else LM_BATCHES if case.unit == "tokens/s" else AUDIO_BATCHES)
        for dtype in dtypes:
            for batch in batches:
                try:
                    rate, seconds, peak = measure(case, batch, dtype, device, args.quick, repeats, args.compile)
                    cells = f"{rate:,.1f} | {case.unit} | {seconds:.3f} | " + (
                        "—" if peak is None else f"{peak:.2f} GB")
                except Exception as e:  # one cell's failure (OOM, an unsupported dtype) must not stop the table
                    cells = f"{_failure(e)} | {case.unit} | — | —"
                finally:
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                line = f"| {case.name} | {str(dtype).removeprefix('torch.')} | {batch} | {cells} |"
                lines.append(line)
                print(line, flush=True)
    return lines


if __name__ == "__main__":
    main()
