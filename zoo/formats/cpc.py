"""GSLM's CPC checkpoints (``cpc_big_ll6kh_top_ctc.pt``): ``torch.save({"weights": state_dict, "config": dict})``
of CPC_audio's CPCModel, read with ``torch.load(weights_only=True)``.

    python -m conversion cpc cpc_big_ll6kh_top_ctc.pt --out cpc-big-ll6kh

Every LSTM layer in the file is kept (the reader's ``layer`` cuts the LSTM at load time); the shape comes from
``config["hiddenEncoder"]``, ``config["hiddenGar"]`` and the LSTM layers present. Unlike the original loader
(``strict=False``), a missing encoder or LSTM tensor is an error, not a silently random weight; the
prediction heads that CPC_audio checkpoints may also hold are dropped.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..errors import ConversionError
from ..models.cpc import CPC, CPCConfig
from . import RenameTable, expect_keys, load_original, rename

#: CPC_audio names → speechzoo's. Anything else in ``weights`` (CPC criterion heads) is dropped.
RENAME_TABLE: RenameTable = (
    (r"gEncoder\.conv(\d)\.(weight|bias)", r"convs.\1.\2"),
    (r"gEncoder\.batchNorm(\d)\.(weight|bias)", r"norms.\1.\2"),
    (r"gAR\.baseNet\.((weight|bias)_(ih|hh)_l\d+)", r"lstm.\1"),
    (r".*", None),
)
_LSTM_LAYER = re.compile(r"gAR\.baseNet\.weight_ih_l(\d+)")


def convert(paths: list[Path], **options: Any) -> CPC:
    """Read one GSLM CPC checkpoint into a :class:`CPC`."""
    if options:
        raise ConversionError(f"cpc conversion takes no options {sorted(options)}")
    if len(paths) != 1:
        raise ConversionError(f"a GSLM CPC checkpoint is one .pt file; got {len(paths)} files")
    path = Path(paths[0])
    container = load_original(path)
    what = "a GSLM CPC checkpoint {'weights': state dict, 'config': dict}"
    expect_keys(container, ["weights", "config"], what=what, path=path)
    weights, config = container["weights"], container["config"]
    if not isinstance(weights, dict) or not isinstance(config, dict):
        raise ConversionError(f"{path} is not {what}")
    expect_keys(config, ["hiddenEncoder", "hiddenGar"], what=what, path=path)
    layers = sorted(int(m.group(1)) for k in weights if (m := _LSTM_LAYER.fullmatch(k)))
    if not layers or layers != list(range(len(layers))):
        raise ConversionError(f"{path}: the LSTM layers present are {layers}; expected gAR.baseNet.*_l0 ... "
                              "(is this a checkpoint of another model?)")
    try:
        model = CPC(CPCConfig(encoder_dim=config["hiddenEncoder"], ar_dim=config["hiddenGar"],
                              num_layers=len(layers)))
    except (TypeError, ValueError) as e:
        raise ConversionError(f"{path}: {e}") from e
    model.load_state_dict_strict(rename(weights, RENAME_TABLE))
    return model.eval()
