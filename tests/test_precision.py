"""Half precision: every hubconf entry point loads with ``dtype=torch.bfloat16`` (and ``torch_dtype=``), runs, and
gives what float32 gives within bfloat16's rounding, while the parts kept in float32 (norms, codebooks, k-means and
DPDP, mel filterbanks) really are float32.

Tolerance: bfloat16 keeps 8 significant bits, so each weight and each activation is off by up to 2^-9 ≈ 0.2 %
relative. A tiny fixture model stacks a few dozen such roundings, which mostly cancel (they are independent and
zero-mean): its outputs land 0.3–2 % (relative L2 norm) from float32's. ``REL_TOL`` = 5 % fails on a real bug (a part
running on the wrong data, a lost scale, a norm in bfloat16 over a large sum — those give 10 % to 100 %) while
leaving room for rounding. Discrete outputs of the parts kept in float32 (k-means and DPDP units, codec codes of a
given latent) are compared exactly on the same input.
"""
from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from harness import load_case

import hubconf
from zoo.errors import WeightsError
from zoo.models.codebook import Codebook
from zoo.models.speechtokenizer import ResidualVectorQuantizer
from zoo.nn.precision import KeepFloat32, LayerNorm

BF16 = torch.bfloat16
REL_TOL = 0.05
#: WavTokenizer's waveform is exp(log-magnitude) with log-magnitudes up to 6.3 in the tiny model: an absolute error
#: δ there is a relative error δ of the waveform, and rounding only the float32 input features to bfloat16 already
#: moves its output by 2.9 % (7.2 % with the whole backbone in bfloat16).
LOOSER = {"wavtokenizer": 0.10}


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.double(), want.double()
    return float((got - want).norm() / want.norm())


def assert_half(model: torch.nn.Module) -> None:
    """Cast to bfloat16 except its KeepFloat32 parts, which are float32 (and there is at least one of each)."""
    kept = {id(t) for m in model.modules() if isinstance(m, KeepFloat32) for t in (*m.parameters(), *m.buffers())}
    floating = [(id(t), t.dtype) for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    assert {dtype for i, dtype in floating if i in kept} <= {torch.float32}
    assert {dtype for i, dtype in floating if i not in kept} == {BF16}


# ------------------------------------------------------------------------------------------ per entry point
def _wavlm(convert, **dtype):
    case = load_case("wavlm/tiny_large_like_speech")
    model, extract = hubconf.wavlm_large(weights=convert("wavlm", *case.original.glob("*.pt")), **dtype)
    wav = case.io["wav"]
    return model, lambda: extract(model, wav, 16000, layer=3)


def _hubert(convert, **dtype):
    case = load_case("gslm/hubert_tiny_layer2")
    reader = hubconf.hubert_feature_reader(layer=2, weights=convert("hubert", *case.original.glob("*.pt")), **dtype)
    return reader.model, lambda: reader(case.io["wav"])


def _cpc(convert, **dtype):
    case = load_case("gslm/cpc_tiny_layer2_fullfile")
    reader = hubconf.cpc_feature_reader(layer=2, weights=convert("cpc", *case.original.glob("*.pt")), **dtype)
    return reader.model, lambda: reader(case.io["wav"][:16000])


def _ulm(convert, **dtype):
    case = load_case("ulm/k20_gqa_ragged_batch3")
    model, _ = hubconf.ulm(k=19, lmbda=0, weights=convert("ulm", case.original / "checkpoint.pt"), **dtype)
    return model, lambda: model(case.io["input_ids"], case.io["seqlens"].tolist())


def _ellav(convert, **dtype):
    case = load_case("ellav/units_k12_batch2_greedy_and_sampled")
    model = hubconf.ellav_units_to_wavtokenizer(k=0, lmbda=0, weights=convert("ellav", case.original / "ellav.pt"),
                                               **dtype)
    return model, lambda: model(case.io["src_ids"], case.io["seqlens"].tolist())


def _gslm_ulm(convert, **dtype):
    case = load_case("gslm_ulm/k18_2layer_ragged_greedy")
    model = hubconf.gslm_ulm(weights=convert("gslm_ulm", case.original / "checkpoint_best.pt",
                                             case.original / "dict.txt"), **dtype)
    return model, lambda: model(case.io["src_tokens"])


def _speech_dlm(convert, **dtype):
    case = load_case("speech_dlm/tiny_edge_dur_delayed")
    hub = hubconf.speech_dlm(weights=convert("speech_dlm", *sorted(case.original.glob("*.pt")),
                                             *sorted(case.original.glob("dict.*"))), **dtype)
    model = hub.models[0]
    tokens = {ch: case.io[f"fwd.src_tokens.{ch}"] for ch in hub.channels}
    return model, lambda: torch.cat([f for f in model.extract_features(tokens, encoder_out=None)[0].values()])


def _speechtokenizer(convert, **dtype):
    case = load_case("speechtokenizer/tiny_hop320_bilstm")
    model = hubconf.speechtokenizer(weights=convert("speechtokenizer", case.original / "config.json",
                                                    case.original / "SpeechTokenizer.pt"), **dtype)
    return model, lambda: model.decode(model.encode(case.io["input_wav"]))


def _wavtokenizer(convert, **dtype):
    case = load_case("wavtokenizer/tiny_2stage_adanorm")
    original = case.original
    model, _, _ = hubconf.wavtokenizer(weights=convert("wavtokenizer", original / "model.ckpt", "--config",
                                                       original / "config.yaml"), **dtype)
    return model, lambda: model.decode(model.codes_to_features(case.io["codes"]), bandwidth_id=0)


def _hifigan(convert, **dtype):
    case = load_case("hifigan/fairseq_units_dur")
    vocoder = hubconf.hifigan_unit_vocoder(weights=convert("hifigan", case.original / "g_00500000",
                                                           case.original / "config.json"), **dtype)
    return vocoder, lambda: vocoder(case.io["code_full"])


def _hifigan_f0(convert, **dtype):
    case = load_case("hifigan/sr_units_f0vq_spkr")
    vocoder = hubconf.hifigan_unit_vocoder(weights=convert("hifigan", case.original / "g_00400000",
                                                           case.original / "config.json"), **dtype)
    return vocoder, lambda: vocoder(case.io["code"], speaker=case.io["spkr"], f0=case.io["f0"])


def _f0_vqvae(convert, **dtype):
    case = load_case("hifigan/sr_units_f0vq_spkr")
    f0_vq = case.original / "f0_vq"
    model = hubconf.f0_vqvae(weights=convert("f0_vqvae", f0_vq / "g_00400000", f0_vq / "config.json"), **dtype)
    return model, lambda: model(case.io["f0"])[0]


def _tacotron2(convert, **dtype):
    case = load_case("gslm_u2s/tiny_sos_eos_collapse_gate_stop")
    model = hubconf.tacotron2(weights=convert("tacotron2", case.original / "tts_checkpoint_best.pt",
                                              case.original / "code_dict"), **dtype)
    masks = case.io["prenet_masks"].bool()
    return model, lambda: model.inference(case.io["input_ids"][None], prenet_dropout_masks=masks)[1]


def _waveglow(convert, **dtype):
    case = load_case("gslm_u2s/tiny_sos_eos_collapse_gate_stop")
    model = hubconf.waveglow(weights=convert("waveglow", case.original / "waveglow_standalone.pt"), **dtype)
    io = case.io
    return model, lambda: model.infer(io["mel_outputs_postnet"], sigma=0.666, noise=io["waveglow_noise"])


MODELS: dict[str, Callable] = {
    "wavlm_large": _wavlm, "hubert_feature_reader": _hubert, "cpc_feature_reader": _cpc, "ulm": _ulm,
    "ellav_units_to_wavtokenizer": _ellav, "gslm_ulm": _gslm_ulm, "speech_dlm": _speech_dlm,
    "speechtokenizer": _speechtokenizer, "wavtokenizer": _wavtokenizer, "hifigan_unit_vocoder": _hifigan,
    "hifigan_unit_vocoder[f0]": _hifigan_f0, "f0_vqvae": _f0_vqvae, "tacotron2": _tacotron2, "waveglow": _waveglow,
}


@pytest.mark.parametrize("name", sorted(MODELS))
@torch.no_grad()
def test_bfloat16_runs_close_to_float32(name, convert):
    _, run32 = MODELS[name](convert)
    model16, run16 = MODELS[name](convert, dtype=BF16)
    assert_half(model16)
    want, got = run32(), run16()
    assert want.dtype == torch.float32 and torch.isfinite(got).all()
    tolerance = LOOSER.get(name, REL_TOL)
    assert relative_error(got, want) < tolerance, f"{name}: {relative_error(got, want):.3%} from float32"


# ------------------------------------------------------------------------------------------ kept in float32
@torch.no_grad()
def test_codebooks_kmeans_and_dpdp_stay_float32_and_give_float32_units(convert):
    case = load_case("wavlm/codebook_argmin")
    features = case.io["features"].bfloat16()  # what a bfloat16 WavLM hands them
    codebook = hubconf.codebook(layer=3, k=20, weights=convert("codebook", *case.original.glob("*.pt")), dtype=BF16)
    assert codebook.dtype == torch.float32
    units = torch.cdist(features.float(), codebook).argmin(1)
    quantizer = hubconf.dpdp_quantizer_from_codebook(codebook, lmbda=0.0, dtype=BF16)
    assert quantizer.codebook.dtype == torch.float32
    quantized, dpdp_units = quantizer(features)
    assert torch.equal(dpdp_units, units) and quantized.dtype == BF16  # lmbda 0: DPDP is the nearest code

    km_case = load_case("gslm/kmeans_k32_d16")
    km = hubconf.gslm_kmeans(weights=convert("kmeans", km_case.original / "km.bin"), torch_dtype="bfloat16")
    assert km.codebook.dtype == torch.float32
    half = torch.randn(50, km.codebook.shape[1]).bfloat16()
    assert torch.equal(km(half), km(half.float()))


@torch.no_grad()
def test_codec_codes_are_searched_in_float32():
    """The same latent gives the same codes whatever the model's dtype: codebooks and residuals stay float32."""
    rvq = ResidualVectorQuantizer(4, 64, 8)
    rvq.codebooks.normal_()
    latent = torch.randn(2, 8, 30)
    codes = rvq.encode(latent, 0, 4)
    rvq.to(BF16)
    assert rvq.codebooks.dtype == torch.float32
    assert torch.equal(rvq.encode(latent, 0, 4), codes)


def test_logmel_filterbank_is_float32():
    wav = torch.randn(16000)
    reader = hubconf.logmel_feature_reader(dtype=BF16)
    torch.testing.assert_close(reader(wav), hubconf.logmel_feature_reader()(wav), rtol=0, atol=0)
    assert reader(wav).dtype == torch.float32


@torch.no_grad()
def test_norms_compute_in_float32_and_return_the_input_dtype():
    norm = LayerNorm(64).to(BF16)
    x = torch.randn(3, 64) * 100 + 1000  # a large mean: bfloat16 statistics would lose the variance
    assert norm.weight.dtype == torch.float32 and norm(x.bfloat16()).dtype == BF16
    want = torch.nn.functional.layer_norm(x.bfloat16().float(), (64,))
    torch.testing.assert_close(norm(x.bfloat16()).float(), want, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("name", ["wavlm_large", "speechtokenizer"])  # speechtokenizer: its LSTMs too
@torch.no_grad()
def test_autocast_runs_the_float32_model_in_bfloat16(name, convert):
    _, run = MODELS[name](convert)
    want = run()
    with torch.autocast("cpu", dtype=BF16):
        got = run()
    assert relative_error(got.float(), want) < REL_TOL


def test_dtype_and_torch_dtype_must_agree(convert):
    case = load_case("wavlm/codebook_argmin")
    directory = convert("codebook", next(case.original.glob("*.pt")))
    with pytest.raises(WeightsError, match="disagree"):
        hubconf.codebook(layer=3, k=20, weights=directory, dtype=torch.float16, torch_dtype=BF16)


@torch.no_grad()
def test_speech_encoder_in_bfloat16(convert, tmp_path):
    """The GSLM encoder with its dense model in bfloat16 and its k-means in float32."""
    hubert = load_case("gslm/hubert_tiny_layer2")
    kmeans = Codebook.from_tensor(torch.randn(20, 48, generator=torch.Generator().manual_seed(0)), layer=2,
                                  dense_model="hubert-base-ls960")
    options = {"vocab_size": 20, "progress": False, "weights": kmeans.save_pretrained(tmp_path),
               "dense_weights": convert("hubert", *hubert.original.glob("*.pt"))}
    wav = hubert.io["wav"]
    encoder = hubconf.speech_encoder(**options, dtype=BF16)
    assert next(encoder.dense_model.model.parameters()).dtype == BF16
    assert encoder.quantizer_model.codebook.dtype == torch.float32
    encoded, reference = encoder(wav), hubconf.speech_encoder(**options)(wav)
    assert encoded["dense"].dtype == BF16 and relative_error(encoded["dense"], reference["dense"]) < REL_TOL
