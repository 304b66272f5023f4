"""SpeechTokenizer: conversion -> weights=DIR -> hubconf.speechtokenizer against the ORIGINAL's outputs
(tests/fixtures/speechtokenizer), plus batching, frozen codebooks, other layouts, the converter and the CLI."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from safetensors.torch import load_file
from torch import nn

import hubconf
from zoo.cli import main
from zoo.errors import AudioError, ConversionError, InputError
from zoo.formats import speechtokenizer as speechtokenizer_format
from zoo.models import speechtokenizer
from zoo.models.speechtokenizer import (
    MAX_PADDING,
    SpeechTokenizer,
    SpeechTokenizerConfig,
    d_axis_distill_loss,
)
from zoo.nn.ragged import length_buckets
from zoo.registry import find

from harness import FIXTURES, ROOT, case_names, load_case

CASES = case_names("speechtokenizer/*")
CODEBOOK_PT = next((FIXTURES / "wavlm/codebook_argmin/original").glob("codebook-*.pt"))
#: Batched items and their one-by-one runs differ by float rounding only.
BATCH = dict(atol=1e-5, rtol=1e-4)


@pytest.fixture(scope="module", params=CASES)
def loaded(request, convert):
    """(the model that ``python -m conversion speechtokenizer CONFIG.json CKPT.pt`` + the entry point give, its
    reference case, the original state dict)."""
    case = load_case(request.param)
    directory = convert("speechtokenizer", case.original / "config.json", case.original / "SpeechTokenizer.pt")
    original = torch.load(case.original / "SpeechTokenizer.pt", weights_only=True)
    return hubconf.speechtokenizer(weights=directory), case, original


# ------------------------------------------------------------------------------------------ the original's numbers
def test_encode_gives_the_original_codes(loaded):
    model, case, _ = loaded
    io = case.io
    with torch.no_grad():
        assert torch.equal(model.encode(io["input_wav"]), io["codes"])
        for key in case.keys("codes_nq"):
            assert torch.equal(model.encode(io["input_wav"], n_q=int(key[len("codes_nq"):])), io[key])
        case.assert_close("encoder_out", model.encoder(io["input_wav"]))


def test_encode_from_quantizer_st_gives_the_original_codes(loaded):
    """``encode(x, st=i)``: the original restarts the residual at quantizer i (its codes_encst<i> outputs)."""
    model, case, _ = loaded
    with torch.no_grad():
        for key in case.keys("codes_encst"):
            assert torch.equal(model.encode(case.io["input_wav"], st=int(key[len("codes_encst"):])), case.io[key])


def test_decode_gives_the_original_waveforms(loaded):
    model, case, _ = loaded
    io = case.io
    with torch.no_grad():
        case.assert_close("quantized", model.quantizer.decode(io["codes"]))
        case.assert_close("wav_decoded_all", model.decode(io["codes"]))
        for key in case.keys("wav_decoded_st"):
            first, last = map(int, key[len("wav_decoded_st"):].split("_to"))
            case.assert_close(key, model.decode(io["codes"][first:last + 1], st=first))
    assert io["wav_decoded_all"].shape[-1] == model.downsample_rate * io["codes"].shape[-1]


def test_forward_gives_the_original_semantic_feature(loaded):
    model, case, _ = loaded
    io = case.io
    with torch.no_grad():
        wav, commit_loss, feature = model(io["input_wav"])
        layer_outputs = model.forward_feature(io["input_wav"])
    case.assert_close("forward_wav", wav)
    assert commit_loss.ndim == 0 and commit_loss.item() == io["forward_commit_loss"].item() == 0
    case.assert_close("semantic_feature", feature)
    case.assert_close("rvq_layer_outputs", torch.stack(layer_outputs))
    case.assert_close("distill_loss_d_axis", d_axis_distill_loss(feature, io["distill_target"]).reshape(1))


def test_encode_st_restarts_the_residual_at_quantizer_st(loaded):
    """The original's quirk: encode(x, st=1) quantizes the raw latent with quantizer 1 first."""
    model, case, _ = loaded
    io = case.io
    with torch.no_grad():
        latent = model.encoder(io["input_wav"]).transpose(1, 2)[0]             # (T, D)
        restarted = model.encode(io["input_wav"], st=1)
    nearest = torch.cdist(latent, model.quantizer.codebooks[1]).argmin(-1)
    assert restarted.shape[0] == model.n_q - 1
    assert torch.equal(restarted[0, 0], nearest)
    assert not torch.equal(restarted, io["codes"][1:])


def test_codebooks_never_change(loaded):
    model, case, original = loaded
    io = case.io
    embeds = torch.stack([original[f"quantizer.vq.layers.{i}._codebook.embed"] for i in range(model.n_q)])
    assert torch.equal(model.quantizer.codebooks, embeds)
    wav = io["input_wav"]
    for mode in (model.eval, model.train):
        mode()
        codes = model.encode(wav)
        model.decode(codes)
        model.forward_feature(wav)
        out, commit_loss, feature = model(wav)
        (out.square().mean() + commit_loss + feature.square().mean()).backward()
        assert torch.equal(model.quantizer.codebooks, embeds)
    model.eval().zero_grad()
    assert all(not b.requires_grad for b in model.buffers())


def test_training_mode_passes_gradients_straight_through_and_reports_commitment(loaded):
    model, case, _ = loaded
    io = case.io
    model.train()
    try:
        _, commit_loss, feature = model(io["input_wav"])
        with torch.no_grad():
            latent = model.encoder(io["input_wav"])
        expected = torch.stack([nn.functional.mse_loss(q, r) for _, q, r in
                                model.quantizer.quantize(latent, 0, model.n_q)]).mean()
        torch.testing.assert_close(commit_loss, expected)
        feature.sum().backward()
        assert model.encoder.conv_in.weight.grad.abs().sum() > 0
    finally:
        model.eval().zero_grad()


# ------------------------------------------------------------------------------------------ batches
def test_batch_with_lengths_equals_one_by_one(loaded):
    model, case, _ = loaded
    io = case.io
    full = io["input_wav"]
    lengths = [full.shape[-1], 4321, 640, 5]
    batch = torch.zeros(len(lengths), 1, max(lengths))
    for b, n in enumerate(lengths):
        batch[b, :, :n] = full[..., -n:]  # different content per item
    with torch.no_grad():
        codes, frames = model.encode(batch, lengths=torch.tensor(lengths))
        assert frames.tolist() == [-(-n // model.downsample_rate) for n in lengths]
        wavs, samples = model.decode(codes, lengths=frames)
        assert samples.tolist() == [model.downsample_rate * t for t in frames.tolist()]
        for b, n in enumerate(lengths):
            t = frames[b]
            alone = model.encode(full[..., -n:])
            assert torch.equal(codes[:, b, :t], alone[:, 0])
            assert not codes[:, b, t:].any()  # padding frames hold 0
            torch.testing.assert_close(wavs[b, :, :samples[b]], model.decode(alone)[0], **BATCH)
            assert not wavs[b, :, samples[b]:].any()


def test_ragged_batch_in_any_order_runs_in_buckets_and_equals_one_by_one(loaded, monkeypatch):
    """Items come back in their order whatever buckets of similar lengths they ran in; within a bucket they are
    still ragged (4321 and 4000 share one), and a bucket is cut to its longest item."""
    model, case, _ = loaded
    monkeypatch.setattr(speechtokenizer, "BATCH_ON_CPU", True)
    full = case.io["input_wav"]
    lengths = [640, 4321, full.shape[-1], 5, 4000, 4321]
    assert [len(b) for b in length_buckets(lengths, MAX_PADDING)] == [1, 1, 3, 1]
    batch = torch.zeros(len(lengths), 1, max(lengths))
    for b, n in enumerate(lengths):
        batch[b, :, :n] = full[..., b * 7: b * 7 + n] if b * 7 + n <= full.shape[-1] else full[..., -n:]
    widths = []
    encoder = model.encoder.forward
    monkeypatch.setattr(model.encoder, "forward", lambda x, n=None: widths.append(x.shape[-1]) or encoder(x, n))
    with torch.no_grad():
        codes, frames = model.encode(batch, lengths=lengths)
        wavs, samples = model.decode(codes, lengths=frames)
        assert sorted(widths) == sorted({5, 640, 4321, full.shape[-1]})
        for b, n in enumerate(lengths):
            alone = model.encode(batch[b:b + 1, :, :n])
            assert torch.equal(codes[:, b, : frames[b]], alone[:, 0]) and not codes[:, b, frames[b]:].any()
            torch.testing.assert_close(wavs[b, :, : samples[b]], model.decode(alone)[0], **BATCH)


def test_cpu_runs_a_ragged_batch_item_by_item(loaded, monkeypatch):
    """On the CPU (BATCH_ON_CPU off: batches did not pay there) each item of a ragged batch runs alone, in encode and
    decode; the results are the bucketed batch's."""
    model, case, _ = loaded
    full = case.io["input_wav"]
    lengths = [3000, 3100, 3200, full.shape[-1]]
    batch = torch.zeros(len(lengths), 1, max(lengths))
    for b, n in enumerate(lengths):
        batch[b, :, :n] = full[..., -n:]
    rows = []
    encoder, decoder = model.encoder.forward, model.decoder.forward
    monkeypatch.setattr(model.encoder, "forward", lambda x, n=None: rows.append(x.shape[0]) or encoder(x, n))
    monkeypatch.setattr(model.decoder, "forward", lambda x, n=None: rows.append(x.shape[0]) or decoder(x, n))
    with torch.no_grad():
        codes, frames = model.encode(batch, lengths=lengths)
        wavs, _ = model.decode(codes, lengths=frames)
        assert rows == [1] * 8
        monkeypatch.setattr(speechtokenizer, "BATCH_ON_CPU", True)
        rows.clear()
        batched_codes, batched_frames = model.encode(batch, lengths=lengths)
        batched_wavs, _ = model.decode(batched_codes, lengths=batched_frames)
        assert rows == [len(b) for b in length_buckets(lengths, MAX_PADDING)] * 2 and max(rows) == 3
    assert torch.equal(codes, batched_codes) and torch.equal(frames, batched_frames)
    torch.testing.assert_close(wavs, batched_wavs, **BATCH)


def test_batch_of_equal_lengths_needs_no_lengths(loaded):
    model, case, _ = loaded
    io = case.io
    wav = io["input_wav"][..., :3000]
    two = torch.cat([wav, wav.flip(-1)])
    with torch.no_grad():
        codes = model.encode(two)
        assert torch.equal(codes[:, :1], model.encode(wav))
        assert torch.equal(codes[:, 1:], model.encode(wav.flip(-1)))


def test_dtype_flows_through(loaded):
    model, case, _ = loaded
    io = case.io
    double = SpeechTokenizer(model.config)
    double.load_state_dict(model.state_dict())
    double = double.double().eval()
    with torch.no_grad():
        codes = double.encode(io["input_wav"].double())
        assert torch.equal(codes, io["codes"])
        assert double.decode(codes).dtype == torch.float64


# ------------------------------------------------------------------------------------------ bad input
def test_bad_audio_is_a_clear_error(loaded):
    model, case, _ = loaded
    io = case.io
    wav = io["input_wav"]
    with pytest.raises(AudioError, match="mono audio shaped"):
        model.encode(wav.repeat(1, 2, 1))                      # 2 channels
    with pytest.raises(AudioError, match="mono audio shaped"):
        model.encode(wav[0])                                   # (1, N): no batch axis
    with pytest.raises(AudioError, match="empty"):
        model.encode(wav[..., :0])
    with pytest.raises(AudioError, match="NaN"):
        model.encode(torch.full((1, 1, 400), float("nan")))
    with pytest.raises(AudioError, match="mono audio shaped"):
        model(wav.repeat(1, 2, 1))
    with pytest.raises(InputError, match="lengths"):
        model.encode(wav, lengths=[10, 20])                    # 2 lengths for 1 item
    with pytest.raises(InputError, match="lengths"):
        model.encode(wav, lengths=[wav.shape[-1] + 1])
    with pytest.raises(InputError, match="lengths"):
        model.encode(wav, lengths=[0])


def test_bad_quantizer_selection_is_a_clear_error(loaded):
    model, case, _ = loaded
    io = case.io
    wav = io["input_wav"][..., :1000]
    with pytest.raises(InputError, match="end index"):
        model.encode(wav, n_q=model.n_q + 1)
    with pytest.raises(InputError, match="end index"):
        model.encode(wav, n_q=2, st=2)
    with pytest.raises(InputError, match="layers"):
        model(wav, n_q=2, layers=[2])
    with pytest.raises(InputError, match="layers"):
        model.forward_feature(wav, layers=[model.n_q])


def test_bad_codes_are_a_clear_error(loaded):
    model, case, _ = loaded
    io = case.io
    codes = io["codes"]
    size = model.config.codebook_size
    with pytest.raises(InputError, match=f"0..{size - 1}"):
        model.decode(torch.where(codes == codes[0, 0, 0], size, codes))
    with pytest.raises(InputError, match=f"0..{size - 1}"):
        model.decode(codes - codes.max() - 1)
    with pytest.raises(InputError, match="quantizers 0.."):
        model.decode(codes, st=1)                              # st + n_q beyond the quantizers
    with pytest.raises(InputError, match="quantizers 0.."):
        model.decode(codes[:1], st=model.n_q)
    with pytest.raises(InputError, match="integer tensor"):
        model.decode(codes.float())
    with pytest.raises(InputError, match="integer tensor"):
        model.decode(codes[:, 0])                              # (n_q, T) without the batch axis
    with pytest.raises(InputError, match="empty"):
        model.decode(codes[..., :0])
    with pytest.raises(InputError, match="lengths"):
        model.decode(codes, lengths=[codes.shape[-1] + 1])


# ------------------------------------------------------------------------------------------ other layouts
def original_checkpoint(model: SpeechTokenizer, g_scale: float = 1.3) -> dict[str, torch.Tensor]:
    """The state dict the ORIGINAL class would hold for ``model``'s numbers: EnCodec's ``model.<idx>`` layout
    (walked here from the architecture description, independently of the converter's rules), weight norm as
    ``weight_g``/``weight_v`` (with g != ||v||), and the RVQ buffers."""
    state = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for part in ("encoder", "decoder"):
        config = getattr(model, part).config
        stages = range(len(config.ratios))
        residual = [f"residuals.{j}" for j in range(config.n_residual_layers)]
        if part == "encoder":
            walk = ["conv_in"] + [f"blocks.{i}.{m}" for i in stages for m in [*residual, "act", "downsample"]]
            walk += ["lstm"] * bool(config.lstm_layers) + ["act_out", "conv_out"]
        else:
            walk = ["conv_in"] + ["lstm"] * bool(config.lstm_layers)
            walk += [f"blocks.{i}.{m}" for i in stages for m in ["act", "upsample", *residual]]
            walk += ["act_out", "conv_out"]
        inner = {"act1": "block.0", "conv1": "block.1.conv.conv", "act2": "block.2", "conv2": "block.3.conv.conv",
                 "shortcut": "shortcut.conv.conv"}
        for index, ours in enumerate(walk):
            for key, value in state.items():
                if not key.startswith(f"{part}.{ours}."):
                    continue
                rest = key[len(f"{part}.{ours}."):]
                if "residuals" in ours:
                    sub, _, rest = rest.partition(".")
                    original = f"{part}.model.{index}.{inner[sub]}.{rest}"
                elif ours == "lstm":
                    original = f"{part}.model.{index}.lstm.{rest}"
                elif rest == "alpha":
                    original = f"{part}.model.{index}.alpha"
                elif ours.endswith("upsample"):
                    original = f"{part}.model.{index}.convtr.convtr.{rest}"
                else:
                    original = f"{part}.model.{index}.conv.conv.{rest}"
                if original.endswith(".weight") and value.ndim == 3:
                    v = value
                    g = v.flatten(1).norm(dim=1).view(-1, 1, 1) * g_scale
                    out[original[:-len("weight")] + "weight_g"], out[original[:-len("weight")] + "weight_v"] = g, v
                else:
                    out[original] = value
    out.update({k: v for k, v in state.items() if k.startswith("transform.")})
    for i, embed in enumerate(model.quantizer.codebooks):
        prefix = f"quantizer.vq.layers.{i}._codebook."
        out.update({prefix + "inited": torch.ones(1), prefix + "cluster_size": torch.ones(len(embed)),
                    prefix + "embed": embed.clone(), prefix + "embed_avg": embed.clone()})
    return out


def original_config(config: SpeechTokenizerConfig) -> dict:
    """The original schema: the model keys plus some of the HiFi-GAN leftovers the release carries."""
    return {"resblock": "1", "num_gpus": 3, **dataclasses.asdict(config), "strides": list(config.strides),
            "hop_size": 240, "sampling_rate": config.sample_rate, "dist_config": {"world_size": 1}}


TINY = SpeechTokenizerConfig(n_filters=2, strides=(4, 2), dimension=8, semantic_dimension=6, codebook_size=16, n_q=3)
LAYOUTS = {
    "snake_bilstm": dataclasses.replace(TINY, activation="Snake"),
    "elu_unilstm": dataclasses.replace(TINY, bidirectional=False, lstm_layers=1),
    "snake_no_lstm_two_residuals": dataclasses.replace(TINY, activation="Snake", bidirectional=False,
                                                       lstm_layers=0, n_residual_layers=2),
    "identity_transform_odd_strides": dataclasses.replace(TINY, strides=(5, 3), semantic_dimension=8),
}


def random_model(config: SpeechTokenizerConfig, seed: int = 0) -> SpeechTokenizer:
    torch.manual_seed(seed)
    model = SpeechTokenizer(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.rand_like(p) + 0.5 if name.endswith("alpha") else torch.randn_like(p) * 0.3)
        model.quantizer.codebooks.normal_()
    return model.eval()


def write_original(model: SpeechTokenizer, directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(original_config(model.config), indent=4))
    torch.save(original_checkpoint(model), directory / "SpeechTokenizer.pt")
    return directory / "config.json", directory / "SpeechTokenizer.pt"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_other_layouts_convert_and_run(layout, tmp_path):
    """Snake, forward-only / no LSTM, two residual blocks, odd strides, D == S: an original-layout checkpoint
    converts to the model whose folded weights it holds, and encode/decode keep their shapes down to 1 sample."""
    reference = random_model(LAYOUTS[layout])
    with torch.no_grad():
        for name, p in reference.named_parameters():  # the weights the original computes from g * v / ||v||
            if p.ndim == 3 and not name.endswith("alpha"):
                p.mul_(1.3)
    model = speechtokenizer_format.convert(list(write_original(random_model(LAYOUTS[layout]), tmp_path)))
    assert model.state_dict().keys() == reference.state_dict().keys()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, reference.state_dict()[key], atol=1e-6, rtol=1e-6, msg=key)
    if layout == "identity_transform_odd_strides":
        assert isinstance(model.transform, nn.Identity)
    hop = model.downsample_rate
    with torch.no_grad():
        for n in (1, 2, 7, hop, hop + 1, 5 * hop - 3):
            wav = torch.randn(2, 1, n)
            codes = model.encode(wav)
            frames = -(-n // hop)
            assert codes.shape == (model.n_q, 2, frames) and codes.dtype == torch.int64
            assert model.decode(codes).shape == (2, 1, hop * frames)
            assert model.decode(codes[1:2], st=1).shape == (2, 1, hop * frames)
            _, _, feature = model(wav)
            assert feature.shape == (2, frames, model.config.semantic_dimension)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_other_layouts_batch_like_one_by_one(layout):
    model = random_model(LAYOUTS[layout])
    lengths = [50, 3, 1, 31]
    items = [torch.randn(1, 1, n) for n in lengths]
    batch = torch.zeros(len(items), 1, max(lengths))
    for b, item in enumerate(items):
        batch[b, :, : lengths[b]] = item
    with torch.no_grad():
        codes, frames = model.encode(batch, lengths=lengths)
        wavs, samples = model.decode(codes, lengths=frames)
        for b, item in enumerate(items):
            alone = model.encode(item)
            assert torch.equal(codes[:, b, : frames[b]], alone[:, 0])
            torch.testing.assert_close(wavs[b, :, : samples[b]], model.decode(alone)[0], **BATCH)


def test_save_and_load_round_trip(tmp_path):
    model = random_model(LAYOUTS["snake_bilstm"])
    loaded = SpeechTokenizer.from_pretrained(model.save_pretrained(tmp_path))
    wav = torch.randn(1, 1, 100)
    with torch.no_grad():
        assert torch.equal(loaded.encode(wav), model.encode(wav))
    assert loaded.config == model.config and loaded.sample_rate == 16000 and loaded.downsample_rate == 8


# ------------------------------------------------------------------------------------------ converter errors
def test_converter_refuses_a_checkpoint_of_another_model(tmp_path):
    config, _ = write_original(random_model(TINY), tmp_path)
    with pytest.raises(ConversionError, match="not a SpeechTokenizer state dict"):
        speechtokenizer_format.convert([config, CODEBOOK_PT])


def test_converter_refuses_unmapped_keys(tmp_path):
    config, checkpoint = write_original(random_model(TINY), tmp_path)
    state = torch.load(checkpoint, weights_only=True)
    torch.save({**state, "discriminator.conv.weight": torch.zeros(1)}, checkpoint)
    with pytest.raises(ConversionError, match="not covered by the rename table: discriminator.conv.weight"):
        speechtokenizer_format.convert([config, checkpoint])


def test_converter_refuses_a_config_that_does_not_fit(tmp_path):
    config, checkpoint = write_original(random_model(TINY), tmp_path)
    data = json.loads(config.read_text())
    config.write_text(json.dumps({**data, "n_filters": 4}))
    with pytest.raises(ConversionError, match="does not fit"):
        speechtokenizer_format.convert([config, checkpoint])
    config.write_text(json.dumps({**data, "n_q": 4}))
    with pytest.raises(ConversionError, match="3 quantizers but its config says n_q=4"):
        speechtokenizer_format.convert([config, checkpoint])
    config.write_text(json.dumps({k: v for k, v in data.items() if k != "dimension"}))
    with pytest.raises(ConversionError, match="lacks the SpeechTokenizer model keys"):
        speechtokenizer_format.convert([config, checkpoint])
    config.write_text(json.dumps({**data, "activation": "ReLU"}))
    with pytest.raises(ConversionError, match="activation"):
        speechtokenizer_format.convert([config, checkpoint])


def test_converter_refuses_codebooks_that_were_never_trained(tmp_path):
    config, checkpoint = write_original(random_model(TINY), tmp_path)
    state = torch.load(checkpoint, weights_only=True)
    state["quantizer.vq.layers.1._codebook.inited"] = torch.zeros(1)
    torch.save(state, checkpoint)
    with pytest.raises(ConversionError, match="codebook 1 was never initialised"):
        speechtokenizer_format.convert([config, checkpoint])


def test_converter_takes_the_config_as_option_and_refuses_wrong_arguments(tmp_path):
    config, checkpoint = write_original(random_model(TINY), tmp_path)
    assert isinstance(speechtokenizer_format.convert([checkpoint], config=config), SpeechTokenizer)
    with pytest.raises(ConversionError, match="takes the original config.json and checkpoint"):
        speechtokenizer_format.convert([checkpoint])
    with pytest.raises(ConversionError, match="no options"):
        speechtokenizer_format.convert([config, checkpoint], strict=False)


# ------------------------------------------------------------------------------------------ registry
def test_registry_entry_points_at_the_release():
    w = find("speechtokenizer", variant="speechtokenizer_hubert_avg")
    assert w.converter == "speechtokenizer" and w.sample_rate == 16000 and w.frame_rate == 50.0
    assert [Path(f.url).name for f in w.source_files] == ["config.json", "SpeechTokenizer.pt"]
    assert w.source_files[1].sha256 == "d04593b6c9a4b475f91ca481141a6ef5b23e6ac112f347dd2b2717f193c1c728"
    with pytest.raises(InputError, match="never released"):
        hubconf.speechtokenizer(variant="speechtokenizer_nonexistent")


# ------------------------------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def cli_setup(tmp_path_factory, convert):
    """Converted weights of the first fixture and three audio files (one stereo, one at 8 kHz with a dot in its name)."""
    root = tmp_path_factory.mktemp("cli")
    original = load_case(CASES[0]).original
    weights = convert("speechtokenizer", original / "config.json", original / "SpeechTokenizer.pt")
    speech, rate = soundfile.read(ROOT / "tests/data/librispeech-1272-128104-0000.flac", dtype="float32")
    soundfile.write(root / "short.wav", speech[:1000], rate)
    soundfile.write(root / "stereo.flac", np.stack([speech[:7000], speech[7000:14000]], 1), rate)
    soundfile.write(root / "narrow.band.wav", speech[:4000], 8000)
    return root, weights


def test_tokenize_and_detokenize_round_trip(cli_setup, tmp_path):
    root, weights = cli_setup
    model = hubconf.speechtokenizer(weights=weights)
    audio_files = [root / "short.wav", root / "stereo.flac", root / "narrow.band.wav"]
    args = ["--weights", str(weights), "--batch-size", "2"]
    assert main(["tokenize", *map(str, audio_files), "-o", str(tmp_path / "codes"), *args]) == 0
    assert main(["detokenize", str(tmp_path / "codes"), "-o", str(tmp_path / "wavs"), *args]) == 0
    from zoo import audio
    for path in audio_files:
        wav, rate = audio.load(path, mono=False)
        wav = audio.resample(wav[:1], rate, 16000)[None]     # channel 0 at 16 kHz, as (1, 1, N)
        with torch.no_grad():
            expected = model.encode(wav)
            resynthesised = model.decode(expected)[0, :, : wav.shape[-1]]
        stored = load_file(tmp_path / "codes" / f"{path.stem}.safetensors")["codes"]
        assert torch.equal(stored, expected[:, 0])
        decoded, rate = audio.load(tmp_path / "wavs" / f"{path.stem}.wav")
        assert rate == 16000 and decoded.shape == resynthesised.shape
        torch.testing.assert_close(decoded, resynthesised, atol=1e-4, rtol=0)  # 16-bit PCM wav


def test_tokenize_npy_with_quantizer_selection(cli_setup, tmp_path):
    root, weights = cli_setup
    model = hubconf.speechtokenizer(weights=weights)
    out = tmp_path / "codes"
    assert main(["tokenize", str(root / "short.wav"), "-o", str(out), "--format", "npy", "--n-q", "3",
                 "--weights", str(weights)]) == 0
    meta = json.loads((out / "short.json").read_text())
    assert {k: meta[k] for k in ("model", "sample_rate", "st", "n_q", "num_samples")} == {
        "model": "speechtokenizer", "sample_rate": 16000, "st": 0, "n_q": 3, "num_samples": 1000}
    codes = torch.from_numpy(np.load(out / "short.npy"))
    from zoo import audio
    wav, _ = audio.load(root / "short.wav")
    with torch.no_grad():
        assert torch.equal(codes, model.encode(wav[None], n_q=3)[:, 0])
        acoustic = model.decode(codes[1:, None], st=1)[0, :, :1000]
    assert main(["detokenize", str(out), "-o", str(tmp_path / "wavs"), "--st", "1"]) == 0
    decoded, _ = audio.load(tmp_path / "wavs" / "short.wav")
    torch.testing.assert_close(decoded, acoustic, atol=1e-4, rtol=0)


def test_codec_cli_errors(cli_setup, tmp_path, capsys):
    root, weights = cli_setup
    out = tmp_path / "codes"
    assert main(["tokenize", str(root / "short.wav"), "-o", str(out), "--n-q", "2", "--weights", str(weights)]) == 0
    assert main(["detokenize", str(out), "-o", str(tmp_path / "w"), "--n-q", "3"]) == 2
    assert "holds quantizers 0..1" in capsys.readouterr().err
    assert main(["tokenize", str(root / "missing.wav"), "-o", str(out), "--weights", str(weights)]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as rejected:  # by argparse, before any model is loaded
        main(["tokenize", str(root / "short.wav"), "-o", str(out), "--batch-size", "0"])
    assert rejected.value.code == 2 and "--batch-size: must be at least 1" in capsys.readouterr().err
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    assert main(["detokenize", str(tmp_path / "junk.npy"), "-o", str(tmp_path / "w")]) == 2
    assert "not a codes file" in capsys.readouterr().err
