"""fairseq's optimisation step for the LM recipes: its own Adam (``fairseq/optim/adam.py``), the ``inverse_sqrt``
schedule with ``warmup_init_lr`` and gradient-norm clipping as ``fairseq.utils.clip_grad_norm_`` measures it.

fairseq's Adam is not ``torch.optim.Adam``: ``eps`` is added to ``sqrt(v)`` BEFORE the bias correction, and weight
decay is decoupled, ``p ← p − weight_decay · lr · p`` before the Adam step (``torch.optim.Adam`` adds it to the
gradient). The learning rate of update ``n`` (1-based) is :func:`inverse_sqrt` ``(n − 1)``; fairseq logs
:func:`inverse_sqrt` ``(n)`` with update ``n`` (the rate the next update will use).

Example::

    >>> p = torch.nn.Parameter(torch.ones(2))
    >>> opt = FairseqAdam([p], lr=0.1, betas=(0.9, 0.98), eps=1e-8, weight_decay=0.0)
    >>> p.grad = torch.tensor([0.5, -2.0]); opt.step()
    >>> p.data                                          # the first step moves every weight by about lr
    tensor([0.9000, 1.1000])
    >>> [inverse_sqrt(n, lr=5e-4, warmup_updates=4, warmup_init_lr=2e-4) for n in (0, 1, 4, 16)]
    [0.0002, 0.000275, 0.0005, 0.00025]
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn


class FairseqAdam(torch.optim.Optimizer):
    """fairseq's ``Adam`` (no amsgrad): float32 moments, ``eps`` outside the bias correction, decoupled decay."""

    def __init__(self, params: Iterable[nn.Parameter], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})

    def set_lr(self, lr: float) -> None:
        for group in self.param_groups:
            group["lr"] = lr

    @torch.no_grad()
    def step(self, closure: None = None) -> None:
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad.float()
                weights = p.data.float() if p.dtype in (torch.float16, torch.bfloat16) else p.data
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(weights)
                    state["exp_avg_sq"] = torch.zeros_like(weights)
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                state["step"] += 1
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = exp_avg_sq.sqrt().add_(group["eps"])
                step_size = group["lr"] * math.sqrt(1 - beta2 ** state["step"]) / (1 - beta1 ** state["step"])
                if group["weight_decay"] != 0:
                    weights.add_(weights, alpha=-group["weight_decay"] * group["lr"])
                weights.addcdiv_(exp_avg, denom, value=-step_size)
                if weights is not p.data:
                    p.data.copy_(weights)


def inverse_sqrt(num_updates: int, lr: float, warmup_updates: int, warmup_init_lr: float = -1.0) -> float:
    """fairseq's ``inverse_sqrt`` rate after ``num_updates`` updates: linear from ``warmup_init_lr`` (negative: 0
    with warm-up, else ``lr``) to ``lr`` over ``warmup_updates``, then ``lr · sqrt(warmup_updates / n)``."""
    if warmup_init_lr < 0:
        warmup_init_lr = 0.0 if warmup_updates > 0 else lr
    if num_updates < warmup_updates:
        return warmup_init_lr + num_updates * (lr - warmup_init_lr) / warmup_updates
    return lr * warmup_updates ** 0.5 * num_updates ** -0.5


def clip_grad_norm(parameters: Iterable[nn.Parameter], max_norm: float) -> torch.Tensor:
    """``fairseq.utils.clip_grad_norm_``: the L2 norm of every gradient (float32 norm of the per-tensor float32
    norms; a shared parameter counted once), returned BEFORE clipping; with ``max_norm > 0`` every gradient is
    multiplied by ``min(1, max_norm / (norm + 1e-6))``."""
    grads = [p.grad for p in dict.fromkeys(parameters) if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    if len(grads) == 1:
        total = torch.linalg.vector_norm(grads[0], dtype=torch.float32)
    else:
        total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g, dtype=torch.float32).cpu()
                                                      for g in grads]))
    if max_norm > 0:
        coef = (max_norm / (total + 1e-6)).clamp_(max=1)
        torch._foreach_mul_(grads, coef.to(grads[0].device))
    return total
