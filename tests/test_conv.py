"""zoo.nn.conv: channels-last 1-D convolutions give nn.Conv1d's numbers, keep its state dict, and chain."""
import pytest
import torch
from torch import nn

from zoo.nn.conv import Conv1d, ConvTranspose1d

CASES = [dict(kernel_size=3), dict(kernel_size=11, dilation=5, padding=25), dict(kernel_size=7, stride=3, padding=2),
         dict(kernel_size=4, groups=2)]


@pytest.mark.parametrize("options", CASES)
def test_conv1d_equals_torch(options):
    torch.manual_seed(0)
    reference = nn.Conv1d(6, 8, **options)
    ours = Conv1d(6, 8, **options)
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(2, 6, 57)
    torch.testing.assert_close(ours(x), reference(x), rtol=1e-5, atol=1e-6)
    assert ours.state_dict().keys() == reference.state_dict().keys()


@pytest.mark.parametrize("options", [dict(kernel_size=11, stride=5, padding=3), dict(kernel_size=4, stride=2),
                                     dict(kernel_size=5, stride=2, output_padding=1, dilation=2)])
def test_conv_transpose1d_equals_torch(options):
    torch.manual_seed(0)
    reference = nn.ConvTranspose1d(6, 4, **options)
    ours = ConvTranspose1d(6, 4, **options)
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(2, 6, 23)
    torch.testing.assert_close(ours(x), reference(x), rtol=1e-5, atol=1e-6)


def test_chained_convs_keep_the_layout_and_the_numbers():
    torch.manual_seed(0)
    first, second = Conv1d(4, 4, 3, padding=1), Conv1d(4, 4, 3, padding=1)
    x = torch.randn(1, 4, 100)
    hidden = torch.nn.functional.leaky_relu(first(x), 0.1)
    assert hidden.unsqueeze(2).is_contiguous(memory_format=torch.channels_last)  # no copy for the next conv
    expected = nn.functional.conv1d(nn.functional.leaky_relu(nn.functional.conv1d(x, first.weight, first.bias,
                                                                                  padding=1), 0.1),
                                    second.weight, second.bias, padding=1)
    torch.testing.assert_close(second(hidden), expected, rtol=1e-5, atol=1e-6)


def test_unsupported_padding_is_refused():
    with pytest.raises(ValueError, match="integer zero padding"):
        Conv1d(2, 2, 3, padding=1, padding_mode="reflect")(torch.randn(1, 2, 10))
