"""``nn.Linear`` whose CPU float32 inference runs through oneDNN instead of the BLAS behind ``F.linear``.

``F.linear`` on CPU calls the BLAS torch was built with (MKL in the PyPI wheels). For the skinny products of
autoregressive decoding — a few rows times a large weight — oneDNN's inner product is much faster on some CPUs:
on this project's AMD EPYC (AVX2) a decode step of a 12 × 1024 Mistral decoder takes about 36 ms with oneDNN and
61 ms with MKL at one row, 91 ms and 200 ms at eight rows (``benchmarks/bench_generation.py`` shows the
end-to-end effect). The results are the same product summed in another order: they differ from ``F.linear`` by
float32 rounding (about 1e-6 relative), as two BLAS libraries do.

The oneDNN path is taken only where it is known to work: CPU, float32 input and weight, and no autograd graph to
build (the op has no backward). Everything else — training, CUDA, bfloat16/float16 (which this op supports only
on CPUs with native bf16/fp16 units) — is ``F.linear``. Parameter names and the state dict are ``nn.Linear``'s.

Example::

    >>> import torch
    >>> layer = Linear(8, 4)
    >>> x = torch.randn(3, 8)
    >>> with torch.inference_mode():
    ...     y = layer(x)
    >>> torch.testing.assert_close(y, torch.nn.functional.linear(x, layer.weight, layer.bias))
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Whether this torch build has oneDNN's fused linear (x86 and ARM builds with MKLDNN; not every platform).
ONEDNN_LINEAR = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight.T + bias`` for ``x`` ``(..., in)``, ``weight`` ``(out, in)`` → ``(..., out)``: oneDNN's inner
    product on CPU float32 without autograd (see the module docstring), ``F.linear`` otherwise."""
    if (ONEDNN_LINEAR and x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
            and not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias)))):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return F.linear(x, weight, bias)


class Linear(nn.Linear):
    """``nn.Linear`` computed by :func:`linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
