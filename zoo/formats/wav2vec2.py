"""fairseq wav2vec 2.0 pretraining checkpoints (``wav2vec_vox_new.pt``, ``wav2vec_small.pt``, ...), read as
:mod:`zoo.formats.hubert` reads HuBERT's: same network, same renaming (the quantizer, ``project_q`` and
``final_proj`` are dropped). The task's ``normalize`` is kept for the record; GSLM's w2v2 reader never uses it.

    python -m conversion wav2vec2 wav2vec_vox_new.pt --out wav2vec2-large-lv60-vox-new
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..models.hubert import Wav2Vec2
from .hubert import convert_fairseq

#: fairseq model names (cfg.model._name / args.arch) of wav2vec 2.0 pretraining.
MODEL_NAMES = ("wav2vec2",)


def convert(paths: list[Path], **options: Any) -> Wav2Vec2:
    """Read one fairseq wav2vec 2.0 pretraining checkpoint into a :class:`Wav2Vec2`."""
    return convert_fairseq(paths, Wav2Vec2, MODEL_NAMES, "a fairseq wav2vec 2.0 pretraining checkpoint", options)
