"""Process set-up for training: one process (``python -m zoo.cli train ...``) or many launched by ``torchrun``
(DDP over ``torch.distributed``: NCCL on GPUs, gloo on CPUs), and the few collectives the recipes need.

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; without them the run
is a single process and nothing is initialised. No process management of our own::

    torchrun --nproc-per-node 8 -m zoo.cli train speechtokenizer --config cfg.json --files train.txt --out run/
    torchrun --nnodes 2 --node-rank 0 --master-addr HOST --master-port 29500 --nproc-per-node 8 \\
        -m zoo.cli train speechtokenizer ...

Example (one process)::

    >>> env = setup()
    >>> env.rank, env.world_size, env.is_main
    (0, 1, True)
    >>> all_reduce_mean({"loss": 2.0}, env)
    {'loss': 2.0}
"""
from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class ProcessEnv:
    """Where this process sits: its rank among ``world_size`` processes and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device: str | None = None) -> ProcessEnv:
    """Join the torchrun process group if there is one (once per process). ``device`` None: this process's GPU
    (``cuda:LOCAL_RANK``) when CUDA is available, else the CPU."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return ProcessEnv(rank, world_size, local_rank, dev)


def teardown() -> None:
    """Leave the process group (call it in a ``finally``). After a run that ended without an exception, every rank
    first waits for the others, so that none closes its connections while another still uses them (gloo aborts a
    process whose peer went away, e.g. while rank 0 still writes the export); while an exception propagates it leaves
    at once, since the other ranks may be stuck in a collective."""
    if dist.is_initialized():
        if sys.exc_info()[0] is None:
            dist.barrier()
        dist.destroy_process_group()


def seed_all(seed: int) -> None:
    """Seed torch, numpy and Python's ``random`` (every rank the same: ranks differ by the data they read)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def wrap(module: nn.Module, env: ProcessEnv) -> nn.Module:
    """``module`` on the device, in DDP when there are several processes (gradients averaged over ranks)."""
    module = module.to(env.device)
    if not env.distributed:
        return module
    ids = [env.device.index] if env.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


def all_reduce_mean(values: dict[str, float], env: ProcessEnv) -> dict[str, float]:
    """The mean over ranks of each value (logged losses: each rank's is the mean over its share of the batch)."""
    if not env.distributed or not values:
        return dict(values)
    t = torch.tensor(list(values.values()), dtype=torch.float64, device=env.device)
    dist.all_reduce(t)
    return dict(zip(values, (t / env.world_size).tolist()))


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (a no-op in one process)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor)
    return tensor


def broadcast_(tensors: list[torch.Tensor], src: int = 0) -> None:
    """Copy rank ``src``'s ``tensors`` to every rank, in place (a no-op in one process)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        for t in tensors:
            dist.broadcast(t, src)


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
