"""WavLM checkpoints, in either of two layouts.

1. The original container ``torch.save({'cfg': dict, 'model': state_dict})`` of Microsoft's ``unilm/wavlm`` and
   ``nicolvisser/WavLM-codebooks`` (e.g. ``wavlm-large-6fb4b3c3.pt``): one file. The positional conv's weight norm
   is stored either as ``weight_g``/``weight_v`` (Microsoft) or ``parametrizations.weight.original0``/``original1``
   (torch's new API); both are folded over dim 2.
2. The transformers layout (as the ``microsoft/wavlm-large`` Hub repo): a directory, or its files, holding
   ``config.json`` and ``model.safetensors`` or ``pytorch_model.bin`` (``--config`` may name the config.json).

    python -m conversion wavlm wavlm-large-6fb4b3c3.pt --out wavlm-large
    python -m conversion wavlm path/to/microsoft-wavlm-large --out wavlm-large
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, ConversionError
from ..modeling import load_safetensors
from ..models.wavlm import WavLM, WavLMConfig
from ..nn.wav2vec2 import NORM_EPS
from . import RenameTable, expect_keys, fold_weight_norms, load_original, read_json, rename

# ------------------------------------------------------------------------------------------ original container
#: The original WavLMConfig's defaults for the keys that shape the model at inference (it starts from these and
#: updates them with the checkpoint's cfg).
ORIGINAL_DEFAULTS = {
    "extractor_mode": "default",
    "encoder_layers": 12,
    "encoder_embed_dim": 768,
    "encoder_ffn_embed_dim": 3072,
    "encoder_attention_heads": 12,
    "activation_fn": "gelu",
    "layer_norm_first": False,
    "conv_feature_layers": "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2",
    "conv_bias": False,
    "conv_pos": 128,
    "conv_pos_groups": 16,
    "relative_position_embedding": False,
    "num_buckets": 320,
    "max_distance": 1280,
    "gru_rel_pos": False,
}

#: cfg keys that do not change inference: dropouts, layer drop, masking, gradient scaling — and ``normalize``,
#: which the original model never reads (Microsoft's README normalises the waveform outside it; DP-SLM does not).
TRAINING_ONLY_CFG_KEYS = (
    "feature_grad_mult", "normalize",
    "dropout", "attention_dropout", "activation_dropout", "encoder_layerdrop", "dropout_input", "dropout_features",
    "mask_length", "mask_prob", "mask_selection", "mask_other", "no_mask_overlap", "mask_min_space",
    "mask_channel_length", "mask_channel_prob", "mask_channel_selection", "mask_channel_other",
    "no_mask_channel_overlap", "mask_channel_min_space",
)

#: The positional conv's bias and weight-norm pair, in either naming: torch's old API or its parametrizations.
_POS_CONV_TENSORS = r"(bias|weight_g|weight_v|parametrizations\.weight\.original[01])"

#: Original state-dict names → speechzoo's (the positional conv's weight norm is folded afterwards).
ORIGINAL_TABLE: RenameTable = (
    (r"mask_emb", None),  # the training mask embedding
    (r"feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)", r"feature_extractor.blocks.\1.conv.\2"),
    (r"feature_extractor\.conv_layers\.(\d+)\.2\.1\.(weight|bias)", r"feature_extractor.blocks.\1.norm.\2"),  # LN
    (r"feature_extractor\.conv_layers\.0\.2\.(weight|bias)", r"feature_extractor.blocks.0.norm.\1"),  # GroupNorm
    (r"layer_norm\.(weight|bias)", r"feature_norm.\1"),
    (r"post_extract_proj\.(weight|bias)", r"feature_projection.\1"),
    (rf"encoder\.pos_conv\.0\.{_POS_CONV_TENSORS}", r"encoder.pos_conv.conv.\1"),
    (r"encoder\.layers\.0\.self_attn\.relative_attention_bias\.weight", r"encoder.relative_position_bias.embedding.weight"),
    (r"encoder\.layers\.(\d+)\.self_attn\.(q|k|v|out)_proj\.(weight|bias)", r"encoder.layers.\1.attention.\2_proj.\3"),
    (r"encoder\.layers\.(\d+)\.self_attn\.grep_linear\.(weight|bias)", r"encoder.layers.\1.attention.gate_proj.\2"),
    (r"encoder\.layers\.(\d+)\.self_attn\.grep_a", r"encoder.layers.\1.attention.gate_scale"),
    (r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", r"encoder.layers.\1.attention_norm.\2"),
    (r"encoder\.layers\.(\d+)\.fc(1|2)\.(weight|bias)", r"encoder.layers.\1.feed_forward.fc\2.\3"),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"encoder.layers.\1.feed_forward_norm.\2"),
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder.layer_norm.\1"),
)

# ------------------------------------------------------------------------------------------ transformers layout
#: transformers' WavLMModel names → speechzoo's (the positional conv's weight norm is folded afterwards).
TRANSFORMERS_TABLE: RenameTable = (
    (r"masked_spec_embed", None),  # the training mask embedding
    (r"feature_extractor\.conv_layers\.(\d+)\.conv\.(weight|bias)", r"feature_extractor.blocks.\1.conv.\2"),
    (r"feature_extractor\.conv_layers\.(\d+)\.layer_norm\.(weight|bias)", r"feature_extractor.blocks.\1.norm.\2"),
    (r"feature_projection\.layer_norm\.(weight|bias)", r"feature_norm.\1"),
    (r"feature_projection\.projection\.(weight|bias)", r"feature_projection.\1"),
    (rf"encoder\.pos_conv_embed\.conv\.{_POS_CONV_TENSORS}", r"encoder.pos_conv.conv.\1"),
    (r"encoder\.layers\.0\.attention\.rel_attn_embed\.weight", r"encoder.relative_position_bias.embedding.weight"),
    (r"encoder\.layers\.(\d+)\.attention\.(q|k|v|out)_proj\.(weight|bias)", r"encoder.layers.\1.attention.\2_proj.\3"),
    (r"encoder\.layers\.(\d+)\.attention\.gru_rel_pos_linear\.(weight|bias)", r"encoder.layers.\1.attention.gate_proj.\2"),
    (r"encoder\.layers\.(\d+)\.attention\.gru_rel_pos_const", r"encoder.layers.\1.attention.gate_scale"),
    (r"encoder\.layers\.(\d+)\.layer_norm\.(weight|bias)", r"encoder.layers.\1.attention_norm.\2"),
    (r"encoder\.layers\.(\d+)\.feed_forward\.intermediate_dense\.(weight|bias)", r"encoder.layers.\1.feed_forward.fc1.\2"),
    (r"encoder\.layers\.(\d+)\.feed_forward\.output_dense\.(weight|bias)", r"encoder.layers.\1.feed_forward.fc2.\2"),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"encoder.layers.\1.feed_forward_norm.\2"),
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder.layer_norm.\1"),
)

#: transformers' feat_extract_norm → the original's extractor_mode.
TRANSFORMERS_EXTRACTOR_MODES = {"layer": "layer_norm", "group": "default"}
TRANSFORMERS_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_TRANSFORMERS_KEYS = ("feat_extract_norm", "conv_dim", "conv_kernel", "conv_stride", "conv_bias", "hidden_size",
                      "num_hidden_layers", "num_attention_heads", "intermediate_size", "do_stable_layer_norm",
                      "num_conv_pos_embeddings", "num_conv_pos_embedding_groups", "num_buckets",
                      "max_bucket_distance", "hidden_act", "feat_extract_activation", "layer_norm_eps")

#: The positional conv (renamed), whose weight norm runs over dim 2: one gain per kernel tap. Renaming comes
#: first, so only the tensors a table knows reach the fold.
_POS_CONV = "encoder.pos_conv.conv"


def convert(paths: list[Path], **options: Any) -> WavLM:
    """Read an original ``{'cfg', 'model'}`` file, or a transformers directory / its files, into a :class:`WavLM`."""
    paths = [Path(p) for p in paths]
    config_file = options.pop("config", None)
    if options:
        raise ConversionError(f"wavlm conversion takes no options {sorted(options)}")
    if len(paths) == 1 and paths[0].is_dir():
        return _convert_transformers(*_transformers_files(paths[0], config_file))
    named = paths + ([Path(config_file)] if config_file is not None else [])
    configs = [p for p in named if p.suffix == ".json"]
    weights = [p for p in named if p.name.endswith((".safetensors", ".bin"))]
    if configs or weights:
        if len(configs) != 1 or len(weights) != 1 or len(named) != 2:
            raise ConversionError("a transformers-layout WavLM is one config.json plus one model.safetensors or "
                                  f"pytorch_model.bin (or their directory); got {[str(p) for p in named]}")
        return _convert_transformers(configs[0], weights[0])
    if len(paths) != 1:
        raise ConversionError("an original WavLM checkpoint is one file {'cfg', 'model'}, e.g. "
                              f"wavlm-large-6fb4b3c3.pt; got {len(paths)} files")
    return _convert_original(paths[0])


# ------------------------------------------------------------------------------------------ original
def _convert_original(path: Path) -> WavLM:
    container = load_original(path)
    expect_keys(container, ["cfg", "model"], what="an original WavLM checkpoint {'cfg': dict, 'model': state_dict}",
                path=path)
    extra = sorted(set(container) - {"cfg", "model"})
    if extra or not isinstance(container["cfg"], dict) or not isinstance(container["model"], dict):
        kinds = {k: type(v).__name__ for k, v in container.items()}
        raise ConversionError(f"{path} is not an original WavLM checkpoint: it holds {kinds}, not exactly "
                              "{'cfg': dict, 'model': state dict}")
    config = config_from_original(container["cfg"], path=path)
    return _build(config, rename(container["model"], ORIGINAL_TABLE))


def config_from_original(cfg: dict, *, path: Path | str = "cfg") -> WavLMConfig:
    """The :class:`WavLMConfig` of an original cfg dict (missing keys take the original's defaults)."""
    unknown = sorted(set(cfg) - set(ORIGINAL_DEFAULTS) - set(TRAINING_ONLY_CFG_KEYS))
    if unknown:
        raise ConversionError(f"{path}: cfg keys {unknown} are not WavLM's; is this a checkpoint of another model?")
    c = {**ORIGINAL_DEFAULTS, **cfg}
    if c["activation_fn"] != "gelu":
        raise ConversionError(f"{path}: activation_fn {c['activation_fn']!r} is not implemented (every released "
                              "WavLM uses 'gelu')")
    conv_layers = parse_conv_layers(c["conv_feature_layers"])
    return _config(
        path,
        conv_layers=conv_layers,
        extractor_mode=c["extractor_mode"],
        conv_bias=bool(c["conv_bias"]),
        project_features=conv_layers[-1][0] != c["encoder_embed_dim"],
        embed_dim=c["encoder_embed_dim"],
        num_layers=c["encoder_layers"],
        num_heads=c["encoder_attention_heads"],
        ffn_dim=c["encoder_ffn_embed_dim"],
        layer_norm_first=bool(c["layer_norm_first"]),
        pos_conv_kernel=c["conv_pos"],
        pos_conv_groups=c["conv_pos_groups"],
        relative_position_bias=bool(c["relative_position_embedding"]),
        num_buckets=c["num_buckets"],
        max_distance=c["max_distance"],
        gated_position_bias=bool(c["gru_rel_pos"]),
    )


def parse_conv_layers(spec: str) -> tuple[tuple[int, int, int], ...]:
    """The original's ``conv_feature_layers`` string, e.g. ``"[(512,10,5)] + [(512,3,2)] * 4"``, which it
    ``eval``s; here only list/tuple literals of integers joined by ``+`` and ``*`` are read, nothing is run."""

    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [value(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            left, right = value(node.left), value(node.right)
            return left + right if isinstance(node.op, ast.Add) else left * right
        raise ConversionError(f"conv_feature_layers {spec!r} is not a list of (dim, kernel, stride) literals")

    try:
        layers = value(ast.parse(spec, mode="eval").body)
    except (SyntaxError, TypeError) as e:
        raise ConversionError(f"cannot read conv_feature_layers {spec!r}: {e}") from e
    if not isinstance(layers, list) or not layers or not all(
            isinstance(t, tuple) and len(t) == 3 and all(isinstance(v, int) for v in t) for t in layers):
        raise ConversionError(f"conv_feature_layers {spec!r} is not a list of (dim, kernel, stride) triples")
    return tuple(layers)


# ------------------------------------------------------------------------------------------ transformers
def _transformers_files(directory: Path, config_file: Path | None) -> tuple[Path, Path]:
    config = Path(config_file) if config_file is not None else directory / "config.json"
    for name in TRANSFORMERS_WEIGHT_FILES:
        if (directory / name).is_file():
            return config, directory / name
    raise ConversionError(f"{directory} holds none of {TRANSFORMERS_WEIGHT_FILES}: not a transformers-layout "
                          "WavLM directory (sharded checkpoints are not supported)")


def _convert_transformers(config_path: Path, weights_path: Path) -> WavLM:
    config = config_from_transformers(config_path)
    if weights_path.suffix == ".safetensors":
        state = load_safetensors(weights_path)
    else:
        state = load_original(weights_path)
        if not isinstance(state, dict):
            raise ConversionError(f"{weights_path} is not a state dict")
    return _build(config, rename(state, TRANSFORMERS_TABLE))


def config_from_transformers(path: Path) -> WavLMConfig:
    """The :class:`WavLMConfig` of a transformers ``config.json`` of a WavLMModel."""
    if not path.is_file():
        raise ConversionError(f"{path} does not exist; a transformers-layout WavLM needs its config.json")
    c = read_json(path)
    if c.get("model_type") != "wavlm":
        raise ConversionError(f"{path} describes a {c.get('model_type')!r} model, not transformers' 'wavlm'")
    missing = [k for k in _TRANSFORMERS_KEYS if k not in c]
    if missing:
        raise ConversionError(f"{path} lacks {missing}; save the config with transformers' save_pretrained")
    unsupported = {
        "hidden_act": c["hidden_act"] != "gelu", "feat_extract_activation": c["feat_extract_activation"] != "gelu",
        "layer_norm_eps": c["layer_norm_eps"] != NORM_EPS, "add_adapter": bool(c.get("add_adapter")),
        "feat_extract_norm": c["feat_extract_norm"] not in TRANSFORMERS_EXTRACTOR_MODES,
        "conv_kernel": len(c["conv_kernel"]) != len(c["conv_dim"]),
        "conv_stride": len(c["conv_stride"]) != len(c["conv_dim"]),
    }
    bad = {k: c.get(k) for k, flag in unsupported.items() if flag}
    if bad:
        raise ConversionError(f"{path}: {bad} are not WavLM's released settings and are not implemented "
                              f"(gelu, eps {NORM_EPS}, no adapter, feat_extract_norm 'layer' or 'group', one "
                              "kernel and stride per conv_dim)")
    return _config(
        path,
        conv_layers=tuple(zip(c["conv_dim"], c["conv_kernel"], c["conv_stride"])),
        extractor_mode=TRANSFORMERS_EXTRACTOR_MODES[c["feat_extract_norm"]],
        conv_bias=bool(c["conv_bias"]),
        project_features=True,
        embed_dim=c["hidden_size"],
        num_layers=c["num_hidden_layers"],
        num_heads=c["num_attention_heads"],
        ffn_dim=c["intermediate_size"],
        layer_norm_first=bool(c["do_stable_layer_norm"]),
        pos_conv_kernel=c["num_conv_pos_embeddings"],
        pos_conv_groups=c["num_conv_pos_embedding_groups"],
        relative_position_bias=True,
        num_buckets=c["num_buckets"],
        max_distance=c["max_bucket_distance"],
        gated_position_bias=True,
    )


def _config(path: Path | str, **fields: Any) -> WavLMConfig:
    try:
        return WavLMConfig(**fields)
    except ConfigError as e:
        raise ConversionError(f"{path}: {e}") from e


def _build(config: WavLMConfig, state: dict[str, torch.Tensor]) -> WavLM:
    model = WavLM(config)
    model.load_state_dict_strict(fold_weight_norms(state, dims={_POS_CONV: 2}))
    return model.eval()
