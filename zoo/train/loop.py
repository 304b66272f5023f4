"""The pieces of a training loop that every recipe shares: a resumable sharded sampler, the data loader, mixed
precision with gradient scaling, gradient clipping.

:class:`ShardedSampler` is ``DistributedSampler`` (the permutation depends only on seed and epoch; rank r of R reads
every R-th index) that can start part-way through an epoch, so a run resumed from the zoo's own checkpoint reads
the same batches as one that never stopped, and R processes with batch B read the same global batches as one
process with batch R·B.

Example::

    >>> sampler = ShardedSampler(list(range(6)), rank=0, world_size=1, shuffle=False)
    >>> sampler.set_position(epoch=0, batches_done=1, batch_size=2); list(sampler)
    [2, 3, 4, 5]
    >>> precision = Precision("bf16", torch.device("cpu"))
    >>> with precision.autocast():
    ...     (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
    torch.bfloat16
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..errors import InputError

PRECISIONS = ("fp32", "bf16", "fp16")


class ShardedSampler(DistributedSampler):
    """``DistributedSampler`` (``drop_last=False``: the last indices repeat so every rank gets as many) that skips
    the first ``batches_done`` batches of its epoch."""

    def __init__(self, dataset: Sequence | Dataset, rank: int = 0, world_size: int = 1, shuffle: bool = True,
                 seed: int = 0) -> None:
        super().__init__(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed)
        self.skip = 0

    def set_position(self, epoch: int, batches_done: int = 0, batch_size: int = 1) -> None:
        self.set_epoch(epoch)
        self.skip = batches_done * batch_size

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.skip:])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.skip)


def make_loader(dataset: Dataset, sampler: ShardedSampler, batch_size: int, *, collate_fn: Callable | None = None,
                drop_last: bool = True, num_workers: int = 0) -> DataLoader:
    """A ``DataLoader`` over ``sampler`` (worker processes persist across epochs when there are any)."""
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate_fn, drop_last=drop_last,
                      num_workers=num_workers, persistent_workers=num_workers > 0)


class Precision:
    """Autocast to ``bf16``/``fp16`` (or nothing for ``fp32``) plus, for fp16, one ``GradScaler`` shared by all
    optimisers of a step (``backward`` each loss, ``step`` each optimiser, then ``update`` once)."""

    def __init__(self, name: str, device: torch.device, clip_grad_norm: float | None = None) -> None:
        if name not in PRECISIONS:
            raise InputError(f"precision must be one of {PRECISIONS}, got {name!r}")
        self.name, self.device, self.clip_grad_norm = name, device, clip_grad_norm
        self.dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]
        self.scaler = torch.amp.GradScaler(device.type, enabled=name == "fp16")

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def step(self, optimizer: torch.optim.Optimizer, parameters: Sequence[nn.Parameter] = ()) -> None:
        """Unscale, clip (when ``clip_grad_norm`` is set) and step ``optimizer``."""
        if self.clip_grad_norm is not None:
            self.scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(parameters or [p for g in optimizer.param_groups for p in g["params"]],
                                     self.clip_grad_norm)
        self.scaler.step(optimizer)

    def update(self) -> None:
        self.scaler.update()

    def state_dict(self) -> dict:
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.scaler.load_state_dict(state)
