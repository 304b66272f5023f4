"""zoo.nn.seanet: EnCodec's padding rules, folded weight norm, Snake / LSTM layouts and per-item lengths.

Numbers against the ORIGINAL come from the SpeechTokenizer fixture (tests/test_speechtokenizer.py); here the blocks
are checked against their definitions: torch's own weight-norm parametrization, EnCodec's float padding formula,
and one-by-one runs for batches.
"""
from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from zoo.formats import fold_weight_norms
from zoo.nn.seanet import (
    SConv1d,
    SConvTranspose1d,
    SEANetConfig,
    SEANetDecoder,
    SEANetEncoder,
    Snake1d,
    conv_paddings,
    pad_reflect,
)

TINY = dict(n_filters=2, dimension=6, ratios=(4, 2))
LAYOUTS = {
    "elu_bilstm": SEANetConfig(**TINY, bidirectional=True),
    "snake_unilstm": SEANetConfig(**TINY, activation="Snake", lstm_layers=1),
    "elu_no_lstm_two_residuals": SEANetConfig(**TINY, lstm_layers=0, n_residual_layers=2),
    "snake_true_skip": SEANetConfig(**TINY, activation="Snake", true_skip=True, bidirectional=True),
}


def randomised(module: nn.Module, seed: int = 0) -> nn.Module:
    """``module`` with every tensor (incl. Snake alphas, which start at 1) redrawn, so no layout hides a bug."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("alpha"):  # Snake divides by it: keep it away from 0
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return module.eval()


def decoder_config(config: SEANetConfig) -> SEANetConfig:
    return dataclasses.replace(config, bidirectional=False)


# ------------------------------------------------------------------------------------------ padding
def encodec_extra_padding(length: int, kernel: int, stride: int, dilation: int) -> int:
    """EnCodec's ``get_extra_padding_for_conv1d``, as it is written there (float frame count)."""
    kernel = (kernel - 1) * dilation + 1
    total = kernel - stride
    n_frames = (length - kernel + total) / stride + 1
    return (math.ceil(n_frames) - 1) * stride + (kernel - total) - length


@given(length=st.integers(1, 5000), kernel=st.integers(1, 16), stride=st.integers(1, 10), dilation=st.integers(1, 4))
def test_conv_paddings_follow_encodec(length, kernel, stride, dilation):
    if (kernel - 1) * dilation + 1 < stride:
        return  # EnCodec never strides past its kernel
    left, right = conv_paddings(length, kernel, stride, dilation)
    total = (kernel - 1) * dilation + 1 - stride
    assert right == total // 2 + encodec_extra_padding(length, kernel, stride, dilation)
    assert left == total - total // 2
    out_frames = (left + length + right - ((kernel - 1) * dilation + 1)) // stride + 1
    assert out_frames == -(-length // stride)


def test_pad_reflect_is_reflect_for_long_input():
    x = torch.arange(10.0).reshape(1, 1, 10)
    assert torch.equal(pad_reflect(x, 3, 2), nn.functional.pad(x, (3, 2), mode="reflect"))


def test_pad_reflect_zero_extends_short_input():
    # [1, 2] is too short to reflect 3 samples: EnCodec reflects [1, 2, 0, 0] and drops the 2 added samples
    # from the end:  [0 0 2 | 1 2 0 0 | 0 2 1] -> [0 0 2 1 2 0 0 0]
    x = torch.tensor([[[1.0, 2.0]]])
    assert pad_reflect(x, 3, 3).flatten().tolist() == [0, 0, 2, 1, 2, 0, 0, 0]


# ------------------------------------------------------------------------------------------ folded weight norm
def test_folded_conv_equals_weight_normed_conv():
    torch.manual_seed(0)
    reference = weight_norm(nn.Conv1d(5, 7, 3, dilation=2), dim=0)
    with torch.no_grad():  # make g differ from ||v||, as in trained checkpoints
        reference.parametrizations.weight.original0.mul_(torch.rand(7, 1, 1) + 0.5)
    ours = SConv1d(5, 7, 3, dilation=2)
    ours.load_state_dict(fold_weight_norms(reference.state_dict()))
    x = torch.randn(2, 5, 40)
    left, right = conv_paddings(40, 3, 1, 2)
    want = reference(nn.functional.pad(x, (left, right), mode="reflect"))
    assert torch.equal(ours(x), want)


def test_folded_transposed_conv_normalises_over_input_channels():
    torch.manual_seed(0)
    reference = weight_norm(nn.ConvTranspose1d(6, 3, 8, stride=4), dim=0)  # weight (in, out, k): g is (6, 1, 1)
    with torch.no_grad():
        reference.parametrizations.weight.original0.mul_(torch.rand(6, 1, 1) + 0.5)
    ours = SConvTranspose1d(6, 3, 8, stride=4)
    ours.load_state_dict(fold_weight_norms(reference.state_dict()))
    x = torch.randn(2, 6, 9)
    full = reference(x)  # 4 * 9 + 4 samples; the non-causal trim drops 2 left, 2 right
    assert torch.equal(ours(x), full[..., 2:-2])
    assert ours(x).shape[-1] == 4 * 9


@pytest.mark.parametrize("layout", LAYOUTS)
def test_folding_a_whole_encoder_and_decoder_changes_nothing(layout):
    config = LAYOUTS[layout]
    for cls, cfg in ((SEANetEncoder, config), (SEANetDecoder, decoder_config(config))):
        ours = randomised(cls(cfg))
        normed = copy.deepcopy(ours)
        for module in normed.modules():
            if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
                weight_norm(module, dim=0)
                with torch.no_grad():
                    module.parametrizations.weight.original0.mul_(1.7)
        ours.load_state_dict(fold_weight_norms(normed.state_dict()))
        x = torch.randn(2, cfg.channels if cls is SEANetEncoder else cfg.dimension, 77)
        with torch.no_grad():
            assert torch.equal(ours(x), normed(x))


# ------------------------------------------------------------------------------------------ layouts
def test_snake_is_x_plus_sin_squared_over_alpha():
    snake = Snake1d(3)
    with torch.no_grad():
        snake.alpha.copy_(torch.tensor([0.5, 1.0, 2.0]).view(1, 3, 1))
    x = torch.randn(2, 3, 5, dtype=torch.float64)
    alpha = snake.alpha.double()
    assert torch.allclose(snake.double()(x), x + torch.sin(alpha * x) ** 2 / alpha)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("length", [1, 2, 3, 7, 8, 9, 60])
def test_shapes_for_every_layout_and_very_short_input(layout, length):
    config = LAYOUTS[layout]
    encoder = randomised(SEANetEncoder(config))
    decoder = randomised(SEANetDecoder(decoder_config(config)))
    with torch.no_grad():
        latent = encoder(torch.randn(2, 1, length))
        frames = -(-length // config.hop_length)
        assert latent.shape == (2, config.dimension, frames)
        wav = decoder(latent)
    assert wav.shape == (2, 1, frames * config.hop_length)
    assert torch.isfinite(wav).all()


def test_state_dict_names_say_what_things_are():
    keys = set(SEANetEncoder(LAYOUTS["snake_unilstm"]).state_dict())
    assert {"conv_in.weight", "blocks.0.residuals.0.conv1.weight", "blocks.0.residuals.0.act1.alpha",
            "blocks.1.downsample.bias", "lstm.weight_ih_l0", "act_out.alpha", "conv_out.weight"} <= keys
    assert "lstm.weight_ih_l0_reverse" not in keys


def test_bidirectional_without_lstm_is_refused():
    with pytest.raises(ValueError, match="bidirectional"):
        SEANetConfig(lstm_layers=0, bidirectional=True)
    with pytest.raises(ValueError, match="activation"):
        SEANetConfig(activation="ReLU")


# ------------------------------------------------------------------------------------------ batches
@pytest.mark.parametrize("layout", LAYOUTS)
@settings(max_examples=8, deadline=None)
@given(lengths=st.lists(st.integers(1, 70), min_size=2, max_size=4))
def test_batch_with_lengths_equals_one_by_one(layout, lengths):
    config = LAYOUTS[layout]
    encoder = randomised(SEANetEncoder(config))
    decoder = randomised(SEANetDecoder(decoder_config(config)))
    items = [torch.randn(1, 1, n) for n in lengths]
    batch = torch.zeros(len(items), 1, max(lengths))
    for b, item in enumerate(items):
        batch[b, :, : lengths[b]] = item
    frames = encoder.output_lengths(lengths)
    with torch.no_grad():
        latents = encoder(batch, lengths)
        wavs = decoder(latents, frames)
        for b, item in enumerate(items):
            alone = encoder(item)
            assert torch.allclose(latents[b, :, : frames[b]], alone[0], atol=1e-5, rtol=1e-4)
            valid = frames[b] * config.hop_length
            assert torch.allclose(wavs[b, :, :valid], decoder(latents[b:b + 1, :, : frames[b]])[0],
                                  atol=1e-5, rtol=1e-4)
