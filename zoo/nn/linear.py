"""``nn.Linear`` whose CPU float32 inference runs through oneDNN instead of the BLAS behind ``F.linear``.

``F.linear`` on CPU calls the BLAS torch was built with (MKL in the PyPI wheels). For the skinny products of
autoregressive decoding — a few rows times a large weight — oneDNN's inner product is much faster on some CPUs.
On this project's AMD EPYC (AVX2, 2 threads), the 85 products of one decode step of a 12 × 1024 Mistral decoder
take (min of several runs on a shared machine):

=========================  ============  ============
rows (tokens in the step)  1             8
=========================  ============  ============
``F.linear`` (MKL)         57 ms         193 ms
oneDNN, ``x @ W.T``        39 ms         91 ms
oneDNN, ``(W @ x.T).T``    43 ms         69 ms
=========================  ============  ============

So one row runs as ``x @ W.T`` and 2 … :data:`SWAP_MAX_ROWS` rows as ``(W @ x.T).T``: oneDNN then treats the
weight as its large input and the few rows as its small weight, which it blocks far better than a 2–32-row input.
The results are the same products summed in another order: they differ from ``F.linear`` by float32 rounding
(about 1e-6 relative), as two BLAS libraries do.

The oneDNN path is taken only where it is known to work: CPU, float32 input and weight, and no autograd graph to
build (the op has no backward). Everything else — training, CUDA, bfloat16/float16 (which this op supports only
on CPUs with native bf16/fp16 units) — is ``F.linear``. Parameter names and the state dict are ``nn.Linear``'s.

Example::

    >>> import torch
    >>> layer = Linear(8, 4)
    >>> with torch.inference_mode():
    ...     for rows in (1, 5, 40):
    ...         x = torch.randn(rows, 8)
    ...         torch.testing.assert_close(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias))
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Whether this torch build has oneDNN's fused linear (x86 and ARM builds with MKLDNN; not every platform).
ONEDNN_LINEAR = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
#: Up to this many rows the product runs transposed (see the module docstring).
SWAP_MAX_ROWS = 32


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight.T + bias`` for ``x`` ``(..., in)``, ``weight`` ``(out, in)`` → ``(..., out)``: oneDNN's inner
    product on CPU float32 without autograd (see the module docstring), ``F.linear`` otherwise."""
    if (ONEDNN_LINEAR and x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
            and not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias)))):
        rows = x.numel() // x.shape[-1]
        if not 2 <= rows <= SWAP_MAX_ROWS:
            return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
        out = torch.ops.mkldnn._linear_pointwise(weight, x.reshape(rows, x.shape[-1]), None, "none", [], "")
        out = out.t().contiguous().view(*x.shape[:-1], weight.shape[0])
        return out if bias is None else out + bias
    return F.linear(x, weight, bias)


class Linear(nn.Linear):
    """``nn.Linear`` computed by :func:`linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
