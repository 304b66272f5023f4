"""Half precision: the parts of a model that stay float32 when the rest runs in bfloat16 or float16.

``model.to(torch.bfloat16)`` (or ``from_pretrained(..., dtype=torch.bfloat16)``, ``model.half()``) casts every
floating parameter and buffer. Most of a model's compute — the matrix products of convolutions, attention and
feed-forward layers — loses little in half precision, but a few operations decide discrete outcomes or sum many
numbers, and there half precision (8 bits of mantissa for bfloat16) changes results: normalisation statistics
(means and variances over hundreds of channels), nearest-code searches (a squared distance ‖x‖² − 2x·E + ‖E‖² is a
difference of large, nearly equal numbers), k-means and DPDP costs, mel filterbanks and F0. Those modules derive
from :class:`KeepFloat32`: their parameters and buffers stay float32 through any cast, and they compute in float32
and hand back the dtype they were given. Under ``torch.autocast`` the same holds, since they cast their inputs up.

In float32 every function here is the plain operation (the casts are no-ops), so float32 results are unchanged.

Example::

    >>> import torch
    >>> block = torch.nn.Sequential(torch.nn.Linear(4, 4), LayerNorm(4)).to(torch.bfloat16)
    >>> block[0].weight.dtype, block[1].weight.dtype
    (torch.bfloat16, torch.float32)
    >>> block(torch.randn(2, 4, dtype=torch.bfloat16)).dtype
    torch.bfloat16
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: The floating dtypes that :class:`KeepFloat32` modules refuse (float64 is kept: it only adds precision).
HALF_DTYPES = (torch.float16, torch.bfloat16)


class KeepFloat32(nn.Module):
    """A module whose floating parameters and buffers (its submodules' too) stay float32 when the model around it
    is cast to half precision; moves between devices apply as usual. Put it first among the base classes."""

    def _apply(self, fn, recurse: bool = True):
        def keep_float32(t: torch.Tensor) -> torch.Tensor:
            out = fn(t)
            # the float32 tensor itself, moved: casting down and back up would round it to half precision
            return t.to(out.device) if t.dtype == torch.float32 and out.dtype in HALF_DTYPES else out

        return super()._apply(keep_float32, recurse)


class LayerNorm(KeepFloat32, nn.LayerNorm):
    """``nn.LayerNorm`` with float32 statistics and gains: ``(..., C)`` in any dtype → the same dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = at_least_float32(x, *self.parameters())  # float64 stays float64
        weight, bias = (None if p is None else p.to(dtype) for p in (self.weight, self.bias))
        return F.layer_norm(x.to(dtype), self.normalized_shape, weight, bias, self.eps).to(x.dtype)



class GroupNorm(KeepFloat32, nn.GroupNorm):
    """``nn.GroupNorm`` with float32 statistics and gains: ``(B, C, ...)`` in any dtype → the same dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = at_least_float32(x, *self.parameters())
        weight, bias = (None if p is None else p.to(dtype) for p in (self.weight, self.bias))
        return F.group_norm(x.to(dtype), self.num_groups, weight, bias, self.eps).to(x.dtype)


def at_least_float32(*tensors: torch.Tensor) -> torch.dtype:
    """The dtype to compute with ``tensors`` in: their promoted dtype, float32 if that is a half type."""
    dtype = torch.float32
    for t in tensors:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def compute_dtype(module: nn.Module) -> torch.dtype:
    """The dtype ``module`` computes in: that of its lowest-precision floating parameter or buffer (the float32
    parts that :class:`KeepFloat32` keeps do not decide it), float32 when it has none."""
    dtypes = {t.dtype for t in (*module.parameters(), *module.buffers()) if t.is_floating_point()}
    return min(dtypes, key=lambda d: (torch.finfo(d).bits, d != torch.bfloat16), default=torch.float32)
