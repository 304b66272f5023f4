"""WavTokenizer against fixtures made by the original (nicolvisser/WavTokenizer @ 02ce308), plus API and errors."""
import json
import shutil
from pathlib import Path

import pytest
import torch

import hubconf
from zoo import audio
from zoo.errors import ConversionError, InputError
from zoo.formats import wavtokenizer as fmt
from zoo.models.wavtokenizer import (
    VARIANTS,
    WEIGHTS,
    BackboneConfig,
    ISTFTHeadConfig,
    WavTokenizer,
    WavTokenizerConfig,
    decode,
    encode,
)
from zoo.registry import find

from harness import load_case

CASE = load_case("wavtokenizer/tiny_2stage_adanorm")
ORIGINAL = CASE.original
RESAMPLE_CASE = load_case("wavtokenizer/hubconf_resample_16k_to_24k")
DATA = Path(__file__).parent / "data" / "wavtokenizer"


@pytest.fixture(scope="module")
def io():
    return CASE.io


@pytest.fixture(scope="module")
def converted(convert):
    return convert("wavtokenizer", ORIGINAL / "model.ckpt", "--config", ORIGINAL / "config.yaml")


@pytest.fixture(scope="module")
def model(converted):
    model, _, _ = hubconf.wavtokenizer(weights=converted)
    return model


# ------------------------------------------------------------------------------------------ fixture numbers
def test_hub_encode_decode_reproduce_original(converted, io):
    model, encode_fn, decode_fn = hubconf.wavtokenizer(weights=converted)
    assert not model.training
    codes = encode_fn(model, io["wav"], 24000)
    assert codes.dtype == torch.int64 and torch.equal(codes, io["enc_codes"])
    wav, sr = decode_fn(model, io["codes"])
    assert sr == 24000
    CASE.assert_close("code_wav", wav)


@pytest.mark.parametrize("bandwidth_id", [0, torch.tensor([0]), torch.tensor(0)])
@torch.no_grad()  # the public methods run in inference mode; their outputs then feed submodules directly
def test_model_methods_reproduce_original(model, io, bandwidth_id):
    CASE.assert_close("encoder_out", model.encoder(io["wav"][:, None]))
    features, codes = model.encode(io["wav"], bandwidth_id=bandwidth_id)
    assert torch.equal(codes, io["enc_codes"])
    assert torch.equal(features, io["enc_features"])
    CASE.assert_close("resynth_wav", model.decode(features, bandwidth_id=bandwidth_id))
    code_features = model.codes_to_features(io["codes"])
    assert torch.equal(code_features, io["code_features"])
    CASE.assert_close("code_backbone_out", model.backbone(code_features, 0))
    CASE.assert_close("code_wav", model.decode(code_features, bandwidth_id=bandwidth_id))


def test_forward_is_copy_synthesis(model, io):
    CASE.assert_close("resynth_wav", model(io["wav"], bandwidth_id=0))


def test_two_dimensional_codes_are_one_item(model, io):
    codes = io["codes"]  # (K=1, B=1, L)
    assert torch.equal(model.codes_to_features(codes[:, 0]), io["code_features"])


def test_bandwidth_id_selects_the_adanorm_row(model, io, converted):
    """Decoding with bandwidth_id 2 equals decoding with 0 after copying row 2 of every AdaLN table into row 0."""
    features = io["code_features"]
    want = model.decode(features, bandwidth_id=torch.tensor([2]))
    assert not torch.allclose(want, model.decode(features, bandwidth_id=0), atol=1e-3)
    moved, _, _ = hubconf.wavtokenizer(weights=converted)
    with torch.no_grad():
        for name, table in moved.named_parameters():
            if name.endswith(("scale.weight", "shift.weight")):
                table[0] = table[2]
    torch.testing.assert_close(moved.decode(features, bandwidth_id=0), want, atol=0, rtol=0)


def test_resampling_encode_matches_torchaudio_path(model):
    """encode(model, wav16k, 16000) resamples exactly like torchaudio.functional.resample, then encodes."""
    wav16k = RESAMPLE_CASE.io["wav16k"][:, 20000:26000]  # a slice keeps the encoder cheap; the kernel is the same
    RESAMPLE_CASE.assert_close("wav24k_functional", audio.resample(RESAMPLE_CASE.io["wav16k"], 16000, 24000))
    codes = encode(model, wav16k, 16000)
    assert codes.shape == (1, 1, -(-9000 // model.config.hop_length))
    _, want = model.encode(audio.resample(wav16k, 16000, 24000))
    assert torch.equal(codes, want)


# ------------------------------------------------------------------------------------------ batching and shapes
def test_batched_encode_equals_one_by_one(model, io):
    wav = io["wav"][0]
    batch = torch.stack([wav, wav.flip(0), 0.5 * wav])
    features, codes = model.encode(batch)
    assert codes.shape == (1, 3, 121) and features.shape == (3, 512, 121)
    for b in range(3):
        one_features, one_codes = model.encode(batch[b:b + 1])
        assert torch.equal(codes[:, b:b + 1], one_codes)
        assert torch.equal(features[b:b + 1], one_features)


def test_batched_decode_equals_one_by_one(model, io):
    codes = torch.cat([io["codes"], io["codes"].flip(-1)], dim=1)  # (1, 2, 40)
    wav, _ = decode(model, codes)
    assert wav.shape == (2, 40 * 20)
    CASE.assert_close("code_wav", wav[:1])
    for b in range(2):  # batched matrix products round differently: equal within the float32 tolerance
        alone = decode(model, codes[:, b:b + 1])[0]
        torch.testing.assert_close(wav[b:b + 1], alone, **CASE.tolerance("code_wav"))


def test_a_one_dimensional_waveform_is_one_item(model, io):
    features, codes = model.encode(io["wav"][0])
    assert torch.equal(codes, io["enc_codes"])


def test_multichannel_input_is_a_batch_without_downmix(model, io):
    stereo = torch.cat([io["wav"], -io["wav"]])
    codes = encode(model, stereo, 24000)
    assert codes.shape == (1, 2, 121)
    assert torch.equal(codes[:, :1], io["enc_codes"])


@pytest.mark.parametrize("samples", [1, 3, 19, 21])
def test_short_inputs_give_ceil_frames(model, samples):
    features, codes = model.encode(torch.randn(1, samples) * 0.1)
    assert codes.shape == (1, 1, -(-samples // 20)) and torch.isfinite(features).all()


def test_double_precision_matches_float(model, io, converted):
    double, _, _ = hubconf.wavtokenizer(weights=converted)
    double = double.double()
    wav = double.decode(double.codes_to_features(io["codes"]))
    assert wav.dtype == torch.float64
    torch.testing.assert_close(wav.float(), io["code_wav"], atol=2e-4, rtol=1e-4)


def test_center_padding_and_plain_layernorm():
    """The non-default options build and give the original's output lengths: (L-1)·hop with "center"."""
    config = WavTokenizerConfig(downsamples=(4,), codebook_size=8,
                                backbone=BackboneConfig(dim=32, intermediate_dim=64, num_layers=1,
                                                        layer_scale_init_value=-1.0),
                                head=ISTFTHeadConfig(n_fft=16, hop_length=4, padding="center"))
    model = WavTokenizer(config).eval()
    assert model.backbone.convnext[0].gamma is None and isinstance(model.backbone.norm, torch.nn.LayerNorm)
    assert model.decode(torch.randn(2, 512, 10)).shape == (2, 9 * 4)


@pytest.mark.parametrize("scale, has_gamma", [(None, True), (0.0, True), (0.3, True), (-0.1, False)])
def test_layer_scale_rules(scale, has_gamma):
    config = BackboneConfig(dim=32, intermediate_dim=32, num_layers=4, layer_scale_init_value=scale)
    block = WavTokenizer(WavTokenizerConfig(downsamples=(2,), codebook_size=4, backbone=config,
                                            head=ISTFTHeadConfig(8, 2))).backbone.convnext[0]
    assert (block.gamma is not None) == has_gamma
    if has_gamma:
        assert torch.allclose(block.gamma, torch.full((32,), scale or 0.25))


# ------------------------------------------------------------------------------------------ bad inputs
@pytest.mark.parametrize("codes, message", [
    (torch.full((1, 1, 5), 64), r"\[0, 64\)"),
    (torch.tensor([[[3, -1, 2]]]), r"\[0, 64\)"),
    (torch.zeros(5, dtype=torch.long), "codes must be a"),
    (torch.zeros(1, 1, 1, 5, dtype=torch.long), "codes must be a"),
    (torch.zeros(1, 1, 5), "integer codec ids"),
    (torch.zeros(2, 1, 5, dtype=torch.long), "2 codebooks"),
    (torch.zeros(1, 1, 0, dtype=torch.long), "empty"),
])
def test_bad_codes(model, codes, message):
    with pytest.raises(InputError, match=message):
        model.codes_to_features(codes)
    with pytest.raises(InputError, match=message):
        decode(model, codes)


@pytest.mark.parametrize("wav, message", [
    (torch.zeros(1, 0), "empty"),
    (torch.tensor([[0.1, float("nan"), 0.2]]), "NaN"),
    (torch.tensor([[0.1, float("inf")]]), "NaN or infinite"),
    (torch.zeros(1, 1, 100), "shape"),
    (torch.zeros(1, 100, dtype=torch.int16), "floating-point"),
])
def test_bad_waveforms(model, wav, message):
    with pytest.raises(InputError, match=message):
        model.encode(wav)
    with pytest.raises(InputError, match=message):
        encode(model, wav, 24000)


@pytest.mark.parametrize("bandwidth_id", [4, -1, torch.tensor([0, 1]), torch.tensor([0.0]), 1.0])
def test_bad_bandwidth_id(model, io, bandwidth_id):
    with pytest.raises(InputError, match="bandwidth_id"):
        model.encode(io["wav"], bandwidth_id=bandwidth_id)
    with pytest.raises(InputError, match="bandwidth_id"):
        model.decode(io["code_features"], bandwidth_id=bandwidth_id)


@pytest.mark.parametrize("features", [torch.zeros(1, 64, 5), torch.zeros(512, 5), torch.zeros(1, 512, 0)])
def test_bad_features(model, features):
    with pytest.raises(InputError, match="features"):
        model.decode(features)


def test_center_padding_needs_two_frames():
    config = WavTokenizerConfig(downsamples=(4,), codebook_size=8,
                                backbone=BackboneConfig(dim=32, intermediate_dim=64, num_layers=1),
                                head=ISTFTHeadConfig(n_fft=16, hop_length=4, padding="center"))
    with pytest.raises(InputError, match="at least 2 frame"):
        WavTokenizer(config).decode(torch.zeros(1, 512, 1))


@pytest.mark.parametrize("make, message", [
    (lambda: BackboneConfig(dim=48), "multiple of 32"),
    (lambda: BackboneConfig(adanorm_num_embeddings=0), "adanorm_num_embeddings"),
    (lambda: ISTFTHeadConfig(n_fft=81, hop_length=20), "even"),
    (lambda: ISTFTHeadConfig(n_fft=80, hop_length=80), "hop_length < n_fft"),
    (lambda: ISTFTHeadConfig(padding="valid"), "padding"),
    (lambda: WavTokenizerConfig(backbone=BackboneConfig(input_channels=256)), "input_channels"),
])
def test_bad_configs(make, message):
    with pytest.raises(InputError, match=message):
        make()


# ------------------------------------------------------------------------------------------ conversion
@pytest.mark.parametrize("config", ["config.yaml", "args.json"])
def test_yaml_and_args_json_give_the_same_model(converted, convert, config):
    model = WavTokenizer.from_pretrained(convert("wavtokenizer", ORIGINAL / "model.ckpt", "--config",
                                                 ORIGINAL / config))
    reference = WavTokenizer.from_directory(converted)
    assert model.config == reference.config
    assert model.config.downsamples == (5, 4) and model.config.backbone.adanorm_num_embeddings == 4
    for (name, got), (_, want) in zip(model.state_dict().items(), reference.state_dict().items()):
        assert torch.equal(got, want), name


def _write_checkpoint(tmp_path, state, name="model.ckpt"):
    path = tmp_path / name
    torch.save({"epoch": 0, "global_step": 0, "state_dict": state}, path)
    return path


@pytest.fixture(scope="module")
def state():
    return torch.load(ORIGINAL / "model.ckpt", weights_only=True)["state_dict"]


def test_unmapped_key_is_an_error(tmp_path, state):
    path = _write_checkpoint(tmp_path, {**state, "generator_ema.weight": torch.zeros(1)})
    with pytest.raises(ConversionError, match="generator_ema.weight"):
        fmt.convert([path], config=ORIGINAL / "args.json")


def test_checkpoint_of_another_model_is_an_error(tmp_path):
    path = _write_checkpoint(tmp_path, {"encoder.weight": torch.zeros(2)})
    with pytest.raises(ConversionError, match="not a WavTokenizer checkpoint"):
        fmt.convert([path], config=ORIGINAL / "args.json")
    other = next((Path(__file__).parent / "fixtures" / "dpdp").glob("*/original/codebook.pt"))
    with pytest.raises(ConversionError, match="Lightning"):
        fmt.convert([other], config=ORIGINAL / "args.json")


def test_uninitialised_codebook_is_an_error(tmp_path, state):
    inited = "feature_extractor.encodec.quantizer.vq.layers.0._codebook.inited"
    path = _write_checkpoint(tmp_path, {**state, inited: torch.zeros(1)})
    with pytest.raises(ConversionError, match="never initialised"):
        fmt.convert([path], config=ORIGINAL / "args.json")


def test_config_that_does_not_fit_is_an_error(tmp_path):
    """The file name selects a released variant's config, which this tiny checkpoint does not fit."""
    path = tmp_path / "WavTokenizer_small_600_24k_4096.ckpt"
    shutil.copy(ORIGINAL / "model.ckpt", path)
    with pytest.raises(ConversionError, match="config does not match|does not fit"):
        fmt.convert([path])


def test_missing_config_and_unknown_variant_are_errors():
    with pytest.raises(ConversionError, match="--config"):
        fmt.convert([ORIGINAL / "model.ckpt"])
    with pytest.raises(ConversionError, match="small_600_24k_4096"):
        fmt.convert([ORIGINAL / "model.ckpt"], variant="large_75")


@pytest.mark.parametrize("edit, message", [
    (lambda a: a["feature_extractor"].update(encodec_model="encodec_48khz"), "encodec_24khz"),
    (lambda a: a["backbone"].update(heads=4), "heads"),
    (lambda a: a["head"].update(dim=32), "head dim"),
    (lambda a: a["head"].update(padding="valid"), "padding"),
    (lambda a: a.pop("head"), "WavTokenizerArgs"),
])
def test_bad_args_json(tmp_path, edit, message):
    args = json.loads((ORIGINAL / "args.json").read_text())
    edit(args)
    (tmp_path / "args.json").write_text(json.dumps(args))
    with pytest.raises(ConversionError, match=message):
        fmt.convert([ORIGINAL / "model.ckpt"], config=tmp_path / "args.json")


@pytest.mark.parametrize("old, new, message", [
    ("decoder.heads.ISTFTHead", "decoder.heads.IMDCTSymExpHead", "ISTFTHead"),
    ("        dim: 64\n        n_fft", "        n_fft", "'dim'"),
    ("model:", "trainer:", "model.init_args"),
])
def test_bad_yaml(tmp_path, old, new, message):
    text = (ORIGINAL / "config.yaml").read_text()
    assert old in text
    (tmp_path / "config.yaml").write_text(text.replace(old, new))
    with pytest.raises(ConversionError, match=message):
        fmt.convert([ORIGINAL / "model.ckpt"], config=tmp_path / "config.yaml")


def test_yaml_uses_the_upstream_defaults(tmp_path):
    """Arguments the YAML leaves out take the upstream constructors' defaults (no AdaLN, gamma 1/num_layers)."""
    text = (ORIGINAL / "config.yaml").read_text().replace("        adanorm_num_embeddings: 4\n", "")
    (tmp_path / "config.yaml").write_text(text)
    config = fmt.read_config(tmp_path / "config.yaml")
    assert config.backbone.adanorm_num_embeddings is None and config.backbone.layer_scale == 0.5


# ------------------------------------------------------------------------------------------ registry and entries
def test_registry_lists_both_releases():
    assert {w.kwargs["variant"] for w in WEIGHTS} == set(VARIANTS)
    w = find("wavtokenizer", variant="small_320_24k_4096")
    assert w.frame_rate == 75 and w.sample_rate == 24000 and w.converter_options == {"variant": "small_320_24k_4096"}
    assert find("wavtokenizer", variant="small_600_24k_4096").frame_rate == 40
    with pytest.raises(InputError, match="small_600_24k_4096"):
        hubconf.wavtokenizer("medium_75", pretrained=False)


def test_entry_points_place_the_model_on_map_location():
    model, _, _ = hubconf.small_320_24k_4096(pretrained=False, map_location="meta")
    assert all(p.is_meta for p in model.parameters()) and not model.training


@pytest.mark.slow
@pytest.mark.parametrize("variant, inference_values, frames", [
    ("small_600_24k_4096", 74_208_866, 235), ("small_320_24k_4096", 73_847_298, 440)])
def test_released_architectures_decode_the_real_tokens(variant, inference_values, frames):
    """Random weights of the released architecture: the spec's tensor count (weight norm's g counted apart, as
    the original stores it) and the length the real model's tokens decode to."""
    model, _, decode_fn = getattr(hubconf, variant)(pretrained=False)
    convs = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv1d)]
    values = sum(p.numel() for p in model.parameters()) + sum(c.out_channels for c in convs)
    values += sum(q.codebook.numel() for q in model.quantizers)
    assert values == inference_values
    codes = torch.load(DATA / f"codes_{variant}.pt", weights_only=True)
    assert codes.shape == (1, 1, frames)
    wav, sr = decode_fn(model, codes)
    assert wav.shape == (1, frames * model.config.hop_length) and sr == 24000 and torch.isfinite(wav).all()
