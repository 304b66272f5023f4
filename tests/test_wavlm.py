"""WavLM: the original's fixtures through conversion → weights=DIR → hubconf, parity with transformers' WavLMModel,
ragged batches, chunking, checkpoint layouts, and the errors for bad input and bad checkpoints."""
import itertools
import json

import pytest
import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import load_file, save_file

import hubconf
from zoo import audio
from zoo.errors import AudioError, ConversionError, InputError, WeightsError
from zoo.formats import wavlm as wavlm_format
from zoo.models.wavlm import (
    EDGE_PADDING,
    HOP_LENGTH,
    WavLM,
    extract_features,
)
from zoo.nn import wav2vec2 as backbone_module
from zoo.nn.wav2vec2 import RelativePositionBias
from zoo.registry import find

from harness import FIXTURES, ROOT, Case, case_names, conversion_cli, load_case

CASES = [name for name in case_names("wavlm/*") if any((FIXTURES / name / "original").glob("wavlm-*.pt"))]
CODEBOOK_PT = next(FIXTURES.glob("wavlm/*/original/codebook-*.pt"))
HF_ATOL = 1e-4
#: Batched and unbatched runs use different conv / matmul shapes, so they agree to float32 rounding only.
BATCH_ATOL = 1e-5


def checkpoint_of(case: Case):
    return next(case.original.glob("wavlm-*.pt"))


# ------------------------------------------------------------------------------------------ the original's fixtures
@pytest.fixture(scope="module", params=CASES)
def loaded(request, convert):
    """(model, extract_features) that ``python -m conversion wavlm CKPT`` + ``hubconf.wavlm_large`` give, the case."""
    case = load_case(request.param)
    model, extract = hubconf.wavlm_large(weights=convert("wavlm", checkpoint_of(case)))
    return model, extract, case


def test_fixture_features_at_every_layer(loaded):
    model, extract, case = loaded
    io = case.io
    for key in case.keys("features_"):
        tag = key.removeprefix("features_")
        wav = io["wav_min"] if tag.endswith("_min") else io["wav"]
        tag = tag.removesuffix("_min")
        layer = None if tag == "final" else int(tag.removeprefix("layer_"))
        case.assert_close(key, extract(model, wav, 16000, layer=layer))
    if "conv_features" in io:  # the encoder input before the positional conv (the original's ret_conv=True)
        with torch.inference_mode():
            got, _ = model.conv_features(F.pad(io["wav"], (EDGE_PADDING, EDGE_PADDING)))
        case.assert_close("conv_features", got)


def test_output_layer_quirks(loaded):
    """0, negatives and layers past N give block N's output without the final LayerNorm; None adds it (pre-LN)."""
    model, extract, case = loaded
    wav = case.io["wav"][:1]
    n = model.config.num_layers
    last = extract(model, wav, 16000, layer=n)
    for layer in (0, -1):
        assert torch.equal(extract(model, wav, 16000, layer=layer), last)
    with pytest.warns(UserWarning, match=f"output layer {n + 3} of a {n}-block encoder: every block runs"):
        assert torch.equal(extract(model, wav, 16000, layer=n + 3), last)  # the original's quirk, now with a word
    final = extract(model, wav, 16000)
    if model.config.layer_norm_first:
        assert (final - last).abs().max() > 0.1
    else:
        assert torch.equal(final, last)


def test_frames_are_samples_over_hop(loaded):
    model, extract, _ = loaded
    torch.manual_seed(0)
    for samples in (320, 400, 639, 640, 16_001):
        assert extract(model, torch.randn(1, samples), 16000, layer=1).shape[0] == samples // HOP_LENGTH


@pytest.mark.slow
def test_legacy_weight_norm_names(tmp_path, convert):
    """Microsoft's checkpoints name the positional conv's weight norm weight_g / weight_v."""
    case = load_case("wavlm/tiny_large_like_speech")
    checkpoint = torch.load(checkpoint_of(case), weights_only=True)
    legacy = {"parametrizations.weight.original0": "weight_g", "parametrizations.weight.original1": "weight_v"}
    state = {}
    for key, value in checkpoint["model"].items():
        for new, old in legacy.items():
            key = key.replace(new, old)
        state[key] = value
    assert "encoder.pos_conv.0.weight_g" in state
    torch.save({"cfg": checkpoint["cfg"], "model": state}, tmp_path / "legacy.pt")
    model, extract = hubconf.wavlm_large(weights=convert("wavlm", tmp_path / "legacy.pt"))
    case.assert_close("features_layer_3", extract(model, case.io["wav"], 16000, layer=3))


# ------------------------------------------------------------------------------------------ transformers parity
HF_VARIANTS = {
    # WavLM Large's layout: LayerNorm conv blocks, pre-LN, even positional kernel
    "large_like": {"feat_extract_norm": "layer", "do_stable_layer_norm": True, "conv_bias": False,
                   "num_conv_pos_embeddings": 16, "num_buckets": 320, "max_bucket_distance": 800},
    # Base's layout: GroupNorm in conv block 0, post-LN, conv bias; an odd kernel and a small bucket table
    "base_like": {"feat_extract_norm": "group", "do_stable_layer_norm": False, "conv_bias": True,
                  "num_conv_pos_embeddings": 15, "num_buckets": 64, "max_bucket_distance": 100},
}


@pytest.fixture(scope="module", params=sorted(HF_VARIANTS))
def hf_model(request, tmp_path_factory):
    """A random tiny transformers WavLMModel, every parameter perturbed so gate and bias mistakes show, saved in
    the transformers layout."""
    torch.manual_seed(1)
    config = transformers.WavLMConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                                      intermediate_size=64, conv_dim=(16,) * 7, num_conv_pos_embedding_groups=4,
                                      **HF_VARIANTS[request.param])
    model = transformers.WavLMModel(config).eval()
    noise = {"rel_attn_embed": 1.0, "gru_rel_pos": 0.3}
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(torch.randn_like(p) * next((s for k, s in noise.items() if k in name), 0.05))
    directory = tmp_path_factory.mktemp(f"hf-{request.param}")
    model.save_pretrained(directory)
    return model, directory


def assert_matches_transformers(ours, reference, wav):
    with torch.inference_mode():
        expected = reference(wav, output_hidden_states=True)
        for layer in range(1, ours.config.num_layers + 1):  # hidden_states[L] is block L's output
            got, _ = ours(wav, output_layer=layer)
            torch.testing.assert_close(got, expected.hidden_states[layer], atol=HF_ATOL, rtol=HF_ATOL,
                                       msg=f"layer {layer}")
        got, _ = ours(wav)
        torch.testing.assert_close(got, expected.last_hidden_state, atol=HF_ATOL, rtol=HF_ATOL)


@pytest.mark.slow
def test_transformers_directory(hf_model, convert):
    reference, directory = hf_model
    ours = WavLM.from_pretrained(convert("wavlm", directory))
    assert_matches_transformers(ours, reference, torch.randn(2, 12_000))


@pytest.mark.slow
def test_transformers_files_and_legacy_bin(hf_model, tmp_path, convert):
    """config.json + model.safetensors given as files, and an old-style pytorch_model.bin whose weight norm is
    named weight_g / weight_v."""
    reference, directory = hf_model
    wav = torch.randn(1, 8_000)
    ours = WavLM.from_pretrained(convert("wavlm", directory / "config.json", directory / "model.safetensors"))
    assert_matches_transformers(ours, reference, wav)
    state = {k.replace("parametrizations.weight.original0", "weight_g")
              .replace("parametrizations.weight.original1", "weight_v"): v
             for k, v in load_file(directory / "model.safetensors").items()}
    torch.save(state, tmp_path / "pytorch_model.bin")
    ours = WavLM.from_pretrained(convert("wavlm", tmp_path / "pytorch_model.bin",
                                         "--config", directory / "config.json"))
    assert_matches_transformers(ours, reference, wav)


# ------------------------------------------------------------------------------------------ batching
@pytest.fixture(scope="module")
def models(loaded, hf_model, convert):
    """The fixture's model (layer_norm, pre-LN) and one converted from transformers (either variant)."""
    return loaded[0], WavLM.from_pretrained(convert("wavlm", hf_model[1]))


def assert_batched_equals_unbatched(model, batch, lengths, sr, **kwargs):
    features, frame_lengths = extract_features(model, batch, sr, layer=2, lengths=lengths, **kwargs)
    for b, length in enumerate(lengths):
        alone = extract_features(model, batch[b: b + 1, :length], sr, layer=2, **kwargs)
        assert frame_lengths[b] == alone.shape[0]
        torch.testing.assert_close(features[b, : frame_lengths[b]], alone, atol=BATCH_ATOL, rtol=BATCH_ATOL)
        assert not features[b, frame_lengths[b]:].any()
    return frame_lengths


def test_batched_with_padding_equals_unbatched(models):
    torch.manual_seed(2)
    batch = torch.randn(3, 20_000)
    lengths = [20_000, 7_001, 12_345]
    for model in models:
        frame_lengths = assert_batched_equals_unbatched(model, batch, lengths, 16000)
        assert frame_lengths.tolist() == [n // HOP_LENGTH for n in lengths]


def test_batched_padding_values_do_not_matter(models):
    torch.manual_seed(3)
    batch = torch.randn(2, 9_000)
    noisy = batch.clone()
    noisy[1, 5_000:] = 7.0
    for model in models:
        a, _ = extract_features(model, batch, 16000, layer=1, lengths=[9_000, 5_000])
        b, _ = extract_features(model, noisy, 16000, layer=1, lengths=[9_000, 5_000])
        assert torch.equal(a, b)


def test_batched_with_resampling_equals_unbatched(models):
    torch.manual_seed(4)
    assert_batched_equals_unbatched(models[0], torch.randn(2, 6_000), [6_000, 2_999], 8000)


def test_equal_rows_without_lengths_are_a_plain_batch(models):
    """The original's batch: rows of one length, no mask; each row as it is alone."""
    torch.manual_seed(5)
    batch = torch.randn(2, 8_000)
    features = extract_features(models[0], batch, 16000, layer=3)
    assert features.shape == (2, 25, models[0].config.embed_dim)
    for b in range(2):
        torch.testing.assert_close(features[b], extract_features(models[0], batch[b: b + 1], 16000, layer=3),
                                   atol=BATCH_ATOL, rtol=BATCH_ATOL)


# ------------------------------------------------------------------------------------------ resampling, dtype
def test_other_sample_rates_are_resampled_like_torchaudio(models):
    torch.manual_seed(6)
    wav = torch.randn(1, 8_000)
    expected = extract_features(models[0], audio.resample(wav, 8000, 16000), 16000, layer=2)
    assert torch.equal(extract_features(models[0], wav, 8000, layer=2), expected)
    assert expected.shape[0] == 16_000 // HOP_LENGTH


def test_float64_model_matches_float32(models):
    model = models[0]
    wav = torch.randn(1, 6_000)
    wide = WavLM(model.config).to(torch.float64).eval()
    wide.load_state_dict(model.state_dict())
    got = extract_features(wide, wav, 16000, layer=2)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got.float(), extract_features(model, wav, 16000, layer=2), atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------ chunking
def test_audio_within_one_chunk_is_the_unchunked_result(models):
    torch.manual_seed(7)
    for samples in (16_000, 16_000 + HOP_LENGTH - 1):  # 50 frames: exactly one 1 s chunk
        wav = torch.randn(1, samples)
        for model in models:
            single = extract_features(model, wav, 16000, layer=2, chunk_seconds=None)
            assert torch.equal(extract_features(model, wav, 16000, layer=2, chunk_seconds=1.0), single)
            assert torch.equal(extract_features(model, wav, 16000, layer=2), single)  # the default chunk


def test_long_audio_is_encoded_chunk_by_chunk(models):
    """3.3 s in chunks of at most 1 s: 165 frames in four chunks of 41, 41, 41 and 42 frames, each computed from
    exactly its own samples."""
    torch.manual_seed(8)
    model = models[0]
    wav = torch.randn(1, 52_800)
    chunked = extract_features(model, wav, 16000, layer=2, chunk_seconds=1.0)
    assert chunked.shape == extract_features(model, wav, 16000, layer=2, chunk_seconds=None).shape == (165, 64)
    padded = F.pad(wav, (EDGE_PADDING, EDGE_PADDING))
    bounds = [0, 41, 82, 123, 165]
    with torch.inference_mode():
        for first, last in itertools.pairwise(bounds):
            stop = padded.shape[1] if last == 165 else (last - 1) * HOP_LENGTH + model.receptive_field
            alone, _ = model(padded[:, first * HOP_LENGTH: stop], output_layer=2)
            torch.testing.assert_close(chunked[first:last], alone[0], atol=BATCH_ATOL, rtol=BATCH_ATOL)


def test_conv_stack_in_segments_gives_the_same_frames(models, monkeypatch):
    """Frame-local (LayerNorm) conv stacks run long inputs in segments; GroupNorm ones always whole."""
    torch.manual_seed(10)
    wav = torch.randn(2, 16_000)
    with torch.inference_mode():
        whole = [model.conv_features(wav)[0] for model in models]
        monkeypatch.setattr(backbone_module, "CONV_SEGMENT_FRAMES", 7)
        segmented = [model.conv_features(wav)[0] for model in models]
    for model, a, b in zip(models, whole, segmented):
        assert a.shape == b.shape == (2, 49, model.config.embed_dim)
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def test_attention_in_query_blocks_gives_the_same_features(models, monkeypatch):
    """Long inputs attend in blocks of query rows; 2 x 4 heads x 49 keys x 10 rows per block here."""
    torch.manual_seed(11)
    wav, lengths = torch.randn(2, 16_000), torch.tensor([16_000, 9_000])
    with torch.inference_mode():
        whole = [model(wav, lengths)[0] for model in models]
        monkeypatch.setattr(backbone_module, "ATTENTION_BLOCK_VALUES", 2 * 4 * 49 * 10)
        blocked = [model(wav, lengths)[0] for model in models]
    for a, b in zip(whole, blocked):
        torch.testing.assert_close(a, b, atol=BATCH_ATOL, rtol=BATCH_ATOL)


def test_ragged_batch_of_long_audio_is_chunked_per_item(models):
    torch.manual_seed(9)
    assert_batched_equals_unbatched(models[1], torch.randn(2, 40_000), [40_000, 23_456], 16000,
                                    chunk_seconds=0.5)


# ------------------------------------------------------------------------------------------ relative positions
def test_relative_position_buckets_of_wavlm_large():
    bias = RelativePositionBias(num_buckets=320, max_distance=800, num_heads=1)
    offsets = torch.tensor([0, 1, -1, 79, 80, -80, 777, 778, -778, 5000])
    assert bias.bucket(offsets).tolist() == [0, 161, 1, 239, 240, 80, 318, 319, 159, 319]


# ------------------------------------------------------------------------------------------ bad input
@pytest.fixture(scope="module")
def tiny(loaded):
    return loaded[0]


BAD_AUDIO = {
    "empty": (torch.zeros(1, 0), "empty"),
    "shorter than one frame": (torch.zeros(1, 319), "fewer than the 320"),
    "nan": (torch.tensor([[0.0] * 399 + [float("nan")]]), "NaN or infinite"),
    "inf": (torch.tensor([[float("inf")] + [0.0] * 399]), "NaN or infinite"),
    "3-D": (torch.zeros(1, 1, 400), "must be 2-D"),
    "1-D": (torch.zeros(400), "must be 2-D"),
    "integer": (torch.zeros(1, 400, dtype=torch.int16), "floating-point"),
}


@pytest.mark.parametrize("name", sorted(BAD_AUDIO))
def test_bad_audio_is_refused(tiny, name):
    wav, message = BAD_AUDIO[name]
    with pytest.raises(AudioError, match=message):
        extract_features(tiny, wav, 16000)


def test_too_short_at_another_rate_is_refused(tiny):
    with pytest.raises(AudioError, match="fewer than the 160"):  # 159 samples at 8 kHz resample to 318
        extract_features(tiny, torch.zeros(1, 159), 8000)
    assert extract_features(tiny, torch.randn(1, 160), 8000).shape[0] == 1


@pytest.mark.parametrize("lengths, message", [
    ([400], "one sample count per row"),
    ([400, 401, 402], "one sample count per row"),
    ([400, 1_001], "between 320"),
    ([400, 100], "between 320"),
    ([400.0, 500.0], "whole numbers"),
])
def test_bad_lengths_are_refused(tiny, lengths, message):
    with pytest.raises(InputError, match=message):
        extract_features(tiny, torch.zeros(2, 1_000), 16000, lengths=lengths)


def test_bad_chunk_length_and_rate_are_refused(tiny):
    with pytest.raises(InputError, match="shorter than one frame"):
        extract_features(tiny, torch.zeros(1, 1_000), 16000, chunk_seconds=0.01)
    with pytest.raises(AudioError, match="sample rates must be positive"):
        extract_features(tiny, torch.zeros(1, 1_000), 0)


def test_model_refuses_audio_without_a_frame(tiny):
    with pytest.raises(InputError, match="at least 400 samples"):
        tiny(torch.zeros(1, 399))


# ------------------------------------------------------------------------------------------ bad checkpoints
@pytest.fixture(scope="module")
def original():
    return torch.load(checkpoint_of(load_case("wavlm/tiny_large_like_speech")), weights_only=True)


def save(tmp_path, container, name="ckpt.pt"):
    torch.save(container, tmp_path / name)
    return tmp_path / name


def test_not_a_wavlm_container(tmp_path):
    codebook = CODEBOOK_PT
    with pytest.raises(ConversionError, match=r"lacks \['cfg', 'model'\]"):
        wavlm_format.convert([codebook])
    with pytest.raises(ConversionError, match="not exactly"):
        wavlm_format.convert([save(tmp_path, {"cfg": {}, "model": {}, "optimizer": {}})])


def test_foreign_cfg_keys_are_refused(tmp_path, original):
    cfg = {**original["cfg"], "label_rate": 50}
    with pytest.raises(ConversionError, match=r"cfg keys \['label_rate'\] are not WavLM's"):
        wavlm_format.convert([save(tmp_path, {"cfg": cfg, "model": original["model"]})])


def test_cfg_maps_onto_the_config(original):
    """Missing keys take the original WavLMConfig's defaults; post_extract_proj exists only when the conv channels
    differ from the embedding width."""
    config = wavlm_format.config_from_original(original["cfg"])
    assert (config.embed_dim, config.num_layers, config.num_heads, config.pos_conv_kernel) == (64, 4, 4, 16)
    assert config.project_features and config.layer_norm_first and config.gated_position_bias
    base = wavlm_format.config_from_original({"conv_feature_layers": "[(48,10,5)] + [(48,3,2)] * 6",
                                              "encoder_embed_dim": 48, "encoder_attention_heads": 4})
    assert not base.project_features
    assert (base.extractor_mode, base.num_layers, base.max_distance, base.relative_position_bias) == (
        "default", 12, 1280, False)
    assert isinstance(WavLM(base).feature_projection, torch.nn.Identity)


def test_unimplemented_activation_is_refused(tmp_path, original):
    cfg = {**original["cfg"], "activation_fn": "relu"}
    with pytest.raises(ConversionError, match="activation_fn 'relu'"):
        wavlm_format.convert([save(tmp_path, {"cfg": cfg, "model": original["model"]})])


def test_conv_layers_string_is_parsed_not_run(tmp_path, original):
    assert wavlm_format.parse_conv_layers("[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2")[1:3] == (
        (512, 3, 2), (512, 3, 2))
    cfg = {**original["cfg"], "conv_feature_layers": "__import__('os').getcwd()"}
    with pytest.raises(ConversionError, match="not a list of"):
        wavlm_format.convert([save(tmp_path, {"cfg": cfg, "model": original["model"]})])


def test_unmapped_and_missing_tensors_are_refused(tmp_path, original):
    extra = {**original["model"], "encoder.layers.0.self_attn.bias_k": torch.zeros(64)}
    with pytest.raises(ConversionError, match="not covered by the rename table: encoder.layers.0.self_attn.bias_k"):
        wavlm_format.convert([save(tmp_path, {"cfg": original["cfg"], "model": extra})])
    missing = {k: v for k, v in original["model"].items() if not k.startswith("encoder.layers.2.fc1")}
    with pytest.raises(WeightsError, match="missing"):
        wavlm_format.convert([save(tmp_path, {"cfg": original["cfg"], "model": missing})])


def test_bad_transformers_layouts_are_refused(hf_model, tmp_path):
    _, directory = hf_model
    config = json.loads((directory / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "model_type": "hubert"}))
    with pytest.raises(ConversionError, match="'hubert' model"):
        wavlm_format.convert([tmp_path / "config.json", directory / "model.safetensors"])
    (tmp_path / "config.json").write_text(json.dumps({**config, "hidden_act": "relu"}))
    with pytest.raises(ConversionError, match="hidden_act"):
        wavlm_format.convert([tmp_path / "config.json", directory / "model.safetensors"])
    with pytest.raises(ConversionError, match="holds none of"):
        wavlm_format.convert([tmp_path])
    with pytest.raises(ConversionError, match="one config.json plus one"):
        wavlm_format.convert([directory / "model.safetensors"])
    state = load_file(directory / "model.safetensors")
    save_file({f"wavlm.{k}": v for k, v in state.items()}, tmp_path / "model.safetensors")
    with pytest.raises(ConversionError, match="not covered by the rename table"):
        wavlm_format.convert([directory / "config.json", tmp_path / "model.safetensors"])


@pytest.mark.slow
def test_conversion_cli_reports_errors(tmp_path):
    result = conversion_cli("wavlm", CODEBOOK_PT, "--out", tmp_path)
    assert result.returncode == 2
    assert "is not an original WavLM checkpoint" in result.stderr
    assert not (tmp_path / "model.safetensors").exists()


# ------------------------------------------------------------------------------------------ registry
def test_registry_points_at_the_original_release():
    weights = find("wavlm_large")
    assert weights.name == "wavlm-large"
    assert weights.source_url == ("https://github.com/nicolvisser/WavLM-codebooks/releases/download/v0.1.0/"
                                  "wavlm-large-6fb4b3c3.pt")
    assert weights.source_files[0].sha256 == "6fb4b3c3"
    assert (weights.converter, weights.sample_rate, weights.frame_rate) == ("wavlm", 16000, 50.0)
    assert (ROOT / "model_cards" / f"{weights.name}.md").is_file()
