"""Tiny models standing in for each system's released ones, under the registry entries they replace.

The pipeline tests and the notebooks (tests/test_notebooks.py) serve them through the loopback Hub
(:meth:`hub_server.FakeHub.add_models`), so ``from_pretrained()`` and the torch.hub one-liners resolve the real
registry names and download them as users would. Each builder takes the ``convert`` fixture (original checkpoint →
``python -m conversion`` → directory) and a folder for the random models it saves, and returns ``{name: (registry
entry, directory)}``; the original fixtures' models are converted, the others are random models of the released
layouts with consistent sizes.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch

from zoo.models.codebook import Codebook
from zoo.models.ellav import ELLAV, ELLAVConfig, ELLAVTokenizerConfig
from zoo.models.gslm_ulm import GSLMUnitLM, GSLMUnitLMConfig
from zoo.models.hifigan import CodeHiFiGAN, CodeHiFiGANConfig
from zoo.models.ulm import UnitLanguageModel
from zoo.nn.transformer import TransformerConfig
from zoo.registry import Weights, find

from benchmarks.references import gslm_u2s as u2s_reference  # the original Tacotron2, to write its checkpoint format
from harness import FIXTURES, load_case

Convert = Callable[..., Path]
Models = dict[str, tuple[Weights, Path]]

# ------------------------------------------------------------------------------------------ DP-SLM
DPSLM_K, DPSLM_LMBDA = 500, 4500
WAVLM_FEATURE_DIM = 64      # the tiny WavLM fixture's
WAVTOKENIZER_CODEBOOK = 64  # the tiny WavTokenizer fixture's


def tiny_transformer(vocab_size: int, output_bias: bool = False) -> TransformerConfig:
    return TransformerConfig(dim=32, n_layers=2, head_dim=8, hidden_dim=64, n_heads=4, n_kv_heads=2,
                             vocab_size=vocab_size, output_bias=output_bias)


def dpslm(convert: Convert, root: Path, k: int = DPSLM_K, lmbda: int = DPSLM_LMBDA) -> Models:
    """WavLM and WavTokenizer from the original fixtures, a k-code codebook of the WavLM's dimension, and random
    ULM / ELLA-V over k units and the WavTokenizer's codebook."""
    torch.manual_seed(0)
    tokenizer = ELLAVTokenizerConfig(phones=tuple(sorted(f"u{n}" for n in range(k))), phone_token_rate=50.0,
                                     num_codec_types=WAVTOKENIZER_CODEBOOK, codec_token_rate=40.0)
    ellav = ELLAV(ELLAVConfig(tiny_transformer(4 + k + WAVTOKENIZER_CODEBOOK, output_bias=True), tokenizer))
    wavtokenizer = FIXTURES / "wavtokenizer/tiny_2stage_adanorm/original"
    return {
        "wavlm": (find("wavlm_large"),
                  convert("wavlm", *(FIXTURES / "wavlm/tiny_large_like_speech/original").glob("*.pt"))),
        "codebook": (find("codebook", layer=11, k=k), Codebook.from_tensor(torch.randn(k, WAVLM_FEATURE_DIM), layer=11)
                     .save_pretrained(root / "codebook")),
        "ulm": (find("ulm", k=k, lmbda=lmbda),
                UnitLanguageModel(tiny_transformer(k + 1)).save_pretrained(root / "ulm")),
        "ellav": (find("ellav_units_to_wavtokenizer", k=k, lmbda=lmbda), ellav.save_pretrained(root / "ellav")),
        "wavtokenizer": (find("wavtokenizer", variant="small_600_24k_4096"),
                         convert("wavtokenizer", wavtokenizer / "model.ckpt", "--config", wavtokenizer / "config.yaml")),
    }


# ------------------------------------------------------------------------------------------ GSLM
HUBERT_CASE = load_case("gslm/hubert_tiny_layer2")
U2S_CASE = load_case("gslm_u2s/tiny_sos_eos_collapse_gate_stop")
HUBERT_LAYER = 2   # the tiny HuBERT has 3 blocks; its k-means clusters block 2
HUBERT_DIM = 48
GSLM_K = 100


def tiny_tacotron2(directory: Path, k: int = GSLM_K):
    """A random Tacotron2 over the codes 0..k-1 with the fixture WaveGlow's 6 mel bins, in GSLM's checkpoint format,
    converted; its gate bias keeps it from ever stopping."""
    hparams = argparse.Namespace(**{**u2s_reference.QUICK_TACOTRON2, "n_symbols": k + 3, "n_mel_channels": 6,
                                    "prenet_dim": 16, "attention_rnn_dim": 24, "decoder_rnn_dim": 24})
    torch.manual_seed(0)
    original = u2s_reference.randomise(u2s_reference.Tacotron2(hparams), seed=4, scale=0.2)
    with torch.no_grad():
        original.decoder.gate_layer.linear_layer.bias.fill_(-1e4)
    codes = [str(u) for u in torch.randperm(k, generator=torch.Generator().manual_seed(1)).tolist()]
    return u2s_reference.converted_tacotron2(original, directory, codes)


def tiny_unit_lm(k: int = GSLM_K) -> GSLMUnitLM:
    symbols = ("<s>", "<pad>", "</s>", "<unk>", *map(str, range(k)), *(f"madeupword{i:04d}" for i in range(4)))
    torch.manual_seed(2)
    return GSLMUnitLM(GSLMUnitLMConfig(symbols=symbols, embed_dim=16, ffn_embed_dim=32, layers=2, attention_heads=2,
                                       max_target_positions=512)).eval()


def tiny_hubert(convert: Convert) -> Path:
    return convert("hubert", next(HUBERT_CASE.original.glob("*.pt")))


def hubert_kmeans(directory: Path, k: int, dense_model: str, seed: int = 0) -> Path:
    """A random k-means of the tiny HuBERT's block-2 features, labelled as a release of ``dense_model``."""
    codebook = torch.randn(k, HUBERT_DIM, generator=torch.Generator().manual_seed(seed))
    return Codebook.from_tensor(codebook, layer=HUBERT_LAYER, dense_model=dense_model).save_pretrained(directory)


def gslm(convert: Convert, root: Path) -> Models:
    """GSLM's HuBERT / k-means 100 chain: the tiny HuBERT and WaveGlow of the original fixtures (converted), a random
    k-means, unit LM and Tacotron2 (through its original checkpoint format and converter)."""
    (root / "tts").mkdir(parents=True, exist_ok=True)
    return {
        "dense": (find("hubert_feature_reader", checkpoint="hubert-base-ls960"), tiny_hubert(convert)),
        "kmeans": (find("gslm_kmeans", dense_model="hubert-base-ls960", vocab_size=GSLM_K),
                   hubert_kmeans(root / "kmeans", GSLM_K, "hubert-base-ls960")),
        "ulm": (find("gslm_ulm", dense="hubert", vocab_size=GSLM_K), tiny_unit_lm().save_pretrained(root / "ulm")),
        "tacotron2": (find("tacotron2", dense="hubert", vocab_size=GSLM_K),
                      tiny_tacotron2(root / "tts").save_pretrained(root / "tacotron2")),
        "waveglow": (find("waveglow"), convert("waveglow", U2S_CASE.original / "waveglow_standalone.pt")),
    }


# ------------------------------------------------------------------------------------------ dGSLM
SPEECH_DLM_CASE = load_case("speech_dlm/tiny_edge_dur_delayed")
DGSLM_K, DGSLM_HOP = 20, 320   # the SpeechDLM's 20 units; 20 ms frames at 16 kHz


def speech_dlm_sources(case=SPEECH_DLM_CASE) -> list[Path]:
    """The original checkpoint and its dict.<channel>.txt files, as ``python -m conversion speech_dlm`` takes them."""
    return [next(case.original.glob("*.pt")), *sorted(case.original.glob("dict.*.txt"))]


def dgslm_vocoder() -> CodeHiFiGAN:
    """A random dGSLM-layout vocoder: K units, a speaker table (multi-speaker, speaker 4 included), 320× upsampling."""
    config = CodeHiFiGANConfig(resblock="1", upsample_rates=(8, 5, 4, 2), upsample_kernel_sizes=(16, 15, 8, 4),
                               upsample_initial_channel=16, resblock_kernel_sizes=(3,),
                               resblock_dilation_sizes=((1, 3),), num_embeddings=DGSLM_K, embedding_dim=8,
                               model_in_dim=16, multispkr="from_input_file", num_speakers=5,
                               code_hop_size=DGSLM_HOP, sampling_rate=16000)
    torch.manual_seed(3)
    return CodeHiFiGAN(config).eval()


def dgslm(convert: Convert, root: Path) -> Models:
    """dGSLM's Fisher HuBERT (the tiny HuBERT fixture), a random 20-centroid k-means over its features (the
    SpeechDLM's 20 units), the tiny SpeechDLM fixture and a random vocoder of the released layout."""
    return {
        "dense": (find("hubert_feature_reader", checkpoint="hubert-fisher"), tiny_hubert(convert)),
        "kmeans": (find("gslm_kmeans", dense_model="hubert-fisher", vocab_size=500),
                   hubert_kmeans(root / "kmeans", DGSLM_K, "hubert-fisher")),
        "speech_dlm": (find("speech_dlm", variant="speech_dlm_base"), convert("speech_dlm", *speech_dlm_sources())),
        "vocoder": (find("hifigan_unit_vocoder", variant="dgslm_fisher_hubert_km500"),
                    dgslm_vocoder().save_pretrained(root / "vocoder")),
    }


# ------------------------------------------------------------------------------------------ codecs, vocoders
SPEECHTOKENIZER_CASE = load_case("speechtokenizer/tiny_hop320_bilstm")
EXPRESSO_SPEAKERS, EXPRESSO_STYLES = 4, 3


def speechtokenizer(convert: Convert) -> Models:
    original = SPEECHTOKENIZER_CASE.original
    return {"speechtokenizer": (find("speechtokenizer", variant="speechtokenizer_hubert_avg"),
                                convert("speechtokenizer", original / "config.json", original / "SpeechTokenizer.pt"))}


def expresso(convert: Convert, root: Path) -> Models:
    """The Expresso HuBERT chain: the tiny HuBERT as HuBERT Base, a random 500-centroid k-means of its block-2
    features standing in for the layer-9 one (a k-means names the layer it clusters; the pipeline reads it) and
    a random multi-speaker, multi-style vocoder of the Expresso layout (k-means-500 units at 50 Hz)."""
    config = CodeHiFiGANConfig(upsample_rates=(8, 5, 4, 2), upsample_kernel_sizes=(16, 15, 8, 4),
                               upsample_initial_channel=16, resblock_kernel_sizes=(3,),
                               resblock_dilation_sizes=((1, 3),), num_embeddings=500, embedding_dim=8,
                               model_in_dim=24, multispkr="from_input_file", num_speakers=EXPRESSO_SPEAKERS,
                               multistyle="from_input_file", num_styles=EXPRESSO_STYLES, code_hop_size=320)
    torch.manual_seed(5)
    return {
        "dense": (find("hubert_feature_reader", checkpoint="hubert-base-ls960"), tiny_hubert(convert)),
        "kmeans": (find("gslm_kmeans", dense_model="hubert-base-ls960-layer-9", vocab_size=500),
                   hubert_kmeans(root / "kmeans", 500, "hubert-base-ls960", seed=1)),
        "vocoder": (find("hifigan_unit_vocoder", variant="expresso_hubert_km500"),
                    CodeHiFiGAN(config).eval().save_pretrained(root / "vocoder")),
    }
