"""The original SpeechTokenizer release: ``config.json`` and ``SpeechTokenizer.pt``.

``python -m conversion speechtokenizer CONFIG.json CKPT.pt --out DIR`` (the config may also come as
``--config CONFIG.json``). The config is the original schema: the model keys of
:class:`~zoo.models.speechtokenizer.SpeechTokenizerConfig` plus HiFi-GAN leftovers that the original never reads.
The checkpoint is ``torch.save(model.state_dict())``: weight-normed convs as ``weight_g``/``weight_v`` under
EnCodec's ``encoder.model.<idx>`` / ``decoder.model.<idx>`` layout, the LSTMs, ``transform`` and the RVQ buffers
``quantizer.vq.layers.<i>._codebook.{inited,cluster_size,embed,embed_avg}``. Weight norm is folded here, once;
the codebooks (``embed``) are stacked into one ``(n_q, K, D)`` buffer and the k-means/EMA training state dropped.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ConfigError, ConversionError, WeightsError
from ..models.speechtokenizer import SpeechTokenizer, SpeechTokenizerConfig
from . import (
    RenameTable,
    checkpoint_and_config,
    expect_keys,
    fold_weight_norms,
    load_original,
    read_json,
    rename,
)
from .encodec import seanet_modules, seanet_rules

#: Keys of the original config.json that the model reads with ``config.get`` and cannot do without.
REQUIRED_KEYS = ("n_filters", "strides", "dimension", "semantic_dimension", "dilation_base",
                 "residual_kernel_size", "n_residual_layers", "activation", "sample_rate", "codebook_size", "n_q")
#: Keys it reads but may miss: ``config.get`` then gives None, which the original takes as "off".
OPTIONAL_KEYS = {"lstm_layers": 0, "bidirectional": False}

_CODEBOOK = "quantizer.vq.layers.{}._codebook.{}"
#: Tensors whose presence marks a SpeechTokenizer checkpoint.
_SIGNATURE = ("encoder.model.0.conv.conv.weight_v", "decoder.model.0.conv.conv.weight_v",
              _CODEBOOK.format(0, "embed"))


def config_from_original(data: dict, path: str | Path = "config.json") -> SpeechTokenizerConfig:
    """The model part of an original ``config.json``; the training and HiFi-GAN leftovers are ignored."""
    missing = [k for k in REQUIRED_KEYS if data.get(k) is None]
    if missing:
        raise ConversionError(f"{path} lacks the SpeechTokenizer model keys {missing}: is it the config.json "
                              "that came with the checkpoint?")
    values = {k: data[k] for k in REQUIRED_KEYS}
    values.update({k: data.get(k) or default for k, default in OPTIONAL_KEYS.items()})
    values["strides"] = tuple(values["strides"])
    try:
        return SpeechTokenizerConfig(**values)
    except ConfigError as e:  # e.g. an activation the model does not have
        raise ConversionError(f"{path}: {e}") from e


def rename_table(config: SpeechTokenizerConfig) -> RenameTable:
    """Original key -> speechzoo key, for everything but the codebooks (stacked separately)."""
    table: list[tuple[str, str | None]] = []
    for part, bidirectional in (("encoder", config.bidirectional), ("decoder", False)):
        seanet = config.seanet(bidirectional=bidirectional)
        table += [(rf"{part}\.{pattern}", f"{part}.{replacement}")
                  for pattern, replacement in seanet_rules(seanet, part)]
    table += [
        (r"transform\.(weight|bias)", r"transform.\1"),
        # k-means / EMA training state of the RVQ; only `embed` is used at inference
        (r"quantizer\.vq\.layers\.\d+\._codebook\.(inited|cluster_size|embed_avg)", None),
    ]
    return table


def convert(paths: list[Path], **options) -> SpeechTokenizer:
    checkpoint_path, config_path = checkpoint_and_config(
        paths, options, example="`python -m conversion speechtokenizer config.json SpeechTokenizer.pt --out DIR`",
        any_order=True)
    config = config_from_original(read_json(config_path), config_path)
    return model_from_state(load_original(checkpoint_path), config, checkpoint_path, config_path)


def model_from_state(state: dict[str, torch.Tensor], config: SpeechTokenizerConfig, path: str | Path = "checkpoint",
                     config_path: str | Path = "config.json") -> SpeechTokenizer:
    """The model of an original generator state dict (the release, ``SpeechTokenizer_best_dev.pt``, or the
    ``generator`` of a trainer checkpoint): weight norm folded, codebooks stacked, EMA state dropped."""
    expect_keys(state, _SIGNATURE, what="a SpeechTokenizer state dict", path=path)
    state = dict(state)
    codebooks = _pop_codebooks(state, config, path)
    state = rename(fold_weight_norms(state), rename_table(config))
    state["quantizer.codebooks"] = codebooks

    model = SpeechTokenizer(config)
    try:
        model.load_state_dict_strict(state)
    except WeightsError as e:
        raise ConversionError(f"{path} does not fit {config_path}: {e}") from e
    return model.eval()


def _pop_codebooks(state: dict[str, torch.Tensor], config: SpeechTokenizerConfig, path: str | Path) -> torch.Tensor:
    """Remove and stack the ``embed`` buffers; a quantizer count that differs from the config, or a codebook
    the original would still initialise by k-means (``inited`` 0), is an error."""
    found = sum(1 for k in state if k.endswith("._codebook.embed"))
    if found != config.n_q:
        raise ConversionError(f"{path} has {found} quantizers but its config says n_q={config.n_q}")
    for i in range(config.n_q):
        inited = state.get(_CODEBOOK.format(i, "inited"))
        if inited is not None and not bool(inited.all()):
            raise ConversionError(f"{path}: codebook {i} was never initialised (inited=0); the original would "
                                  "re-run k-means on the first input. This is not a trained checkpoint.")
    return torch.stack([state.pop(_CODEBOOK.format(i, "embed")) for i in range(config.n_q)])


# ------------------------------------------------------------------------------------------ training layout
#: The RVQ's per-quantizer EMA state in the original (``quantizer.vq.layers.<i>._codebook.<name>``), in its order.
CODEBOOK_BUFFERS = ("inited", "cluster_size", "embed", "embed_avg")
#: Weight-norm tensor names: the original's hook and torch's parametrisation, which the trainer uses.
WEIGHT_NORM_NAMES = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1"}


def training_modules(config: SpeechTokenizerConfig) -> list[tuple[str, str]]:
    """``(original module path, speechzoo module path)`` of every module of the generator holding trainable
    tensors, in the original's parameter order (encoder, transform, decoder): the trainer saves and resumes the
    original's checkpoints, optimiser state included, through it."""
    pairs = []
    for part, bidirectional in (("encoder", config.bidirectional), ("decoder", False)):
        seanet = config.seanet(bidirectional=bidirectional)
        pairs += [(f"{part}.{original}", f"{part}.{ours}") for original, ours in seanet_modules(seanet, part)]
        if part == "encoder":
            pairs.append(("transform", "transform"))
    return pairs


def codebook_key(layer: int, name: str) -> str:
    """The original key of quantizer ``layer``'s EMA buffer ``name`` (one of :data:`CODEBOOK_BUFFERS`)."""
    return _CODEBOOK.format(layer, name)
