"""Training logs: one JSON object per optimisation step (``--log-jsonl``), TensorBoard scalars (the originals' choice,
``torch.utils.tensorboard``, needs the ``train`` extra) and a tqdm progress bar showing the latest losses. Only the
main process writes; the values it writes are already averaged over ranks by the recipe.

Example::

    >>> import json, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with TrainLogger(jsonl=f"{folder}/log.jsonl", total=2, progress=False) as log:
    ...     log.step({"step": 0, "lr": 1e-4, "loss_mel": 3.5})
    >>> json.loads(open(f"{folder}/log.jsonl").read())
    {'step': 0, 'lr': 0.0001, 'loss_mel': 3.5}
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..errors import InputError


class TrainLogger:
    """Writes each step's record to ``jsonl`` (appending, flushed per line), its numbers to TensorBoard under
    ``tensorboard`` (``names`` maps a record key to the original's tag, e.g. ``"train/mel loss"``; unmapped keys go
    under ``train/<key>``), and shows ``show`` keys on a progress bar. ``enabled=False`` (ranks other than 0)
    writes nothing."""

    def __init__(self, *, jsonl: str | os.PathLike | None = None, tensorboard: str | os.PathLike | None = None,
                 names: dict[str, str] | None = None, show: tuple[str, ...] = (), total: int | None = None,
                 initial: int = 0, progress: bool = True, enabled: bool = True) -> None:
        self.enabled, self.names, self.show = enabled, names or {}, show
        self._jsonl = self._writer = self._bar = None
        if not enabled:
            return
        if jsonl is not None:
            Path(jsonl).parent.mkdir(parents=True, exist_ok=True)
            self._jsonl = open(jsonl, "a")  # noqa: SIM115 -- open for the run, closed by close()
        if tensorboard is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise InputError("TensorBoard logging needs the tensorboard package: pip install 'speechzoo[train]' "
                                 "(or pass no --tensorboard folder)") from e
            self._writer = SummaryWriter(str(tensorboard))
        if progress:
            self._bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)

    def step(self, record: dict[str, Any]) -> None:
        """Log one optimisation step (``record["step"]`` is the x axis)."""
        if not self.enabled:
            return
        if self._jsonl is not None:
            self._jsonl.write(json.dumps(record) + "\n")
            self._jsonl.flush()
        step = int(record.get("step", 0))
        if self._writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self._writer.add_scalar(self.names.get(key, f"train/{key}"), value, global_step=step)
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix({k: f"{record[k]:.3g}" for k in self.show if k in record}, refresh=False)

    def scalars(self, values: dict[str, float], step: int) -> None:
        """Other scalars (validation) under their full tags, to TensorBoard and the console (the JSONL log keeps
        exactly one record per optimisation step)."""
        if not self.enabled:
            return
        if self._writer is not None:
            for tag, value in values.items():
                self._writer.add_scalar(tag, value, global_step=step)
        self.write(f"step {step}: " + ", ".join(f"{tag} {value:.4g}" for tag, value in values.items()))

    def write(self, message: str) -> None:
        if self.enabled:
            tqdm.write(message) if self._bar is not None else print(message)

    def close(self) -> None:
        for handle in (self._jsonl, self._writer, self._bar):
            if handle is not None:
                handle.close()

    def __enter__(self) -> TrainLogger:  # noqa: PYI034 -- Self needs Python 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
