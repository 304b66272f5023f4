"""fairseq HuBERT checkpoints (``hubert_base_ls960.pt``, ``hubert_fisher.pt``, ``mhubert_base_vp_en_es_fr_it3.pt``,
HuBERT Large...): hydra ``cfg`` or legacy ``args``, read without fairseq (:mod:`zoo.formats.fairseq`); or a
transformers ``HubertModel`` directory (``config.json`` + ``model.safetensors``, e.g. ``facebook/hubert-base-ls960``).

    python -m conversion hubert hubert_base_ls960.pt --out hubert-base-ls960
    python -m conversion hubert path/to/facebook-hubert-base-ls960 --out hubert-base-ls960

The task's ``normalize`` is kept (the GSLM reader layer-norms the waveform when it is set); pretraining-only
tensors are dropped; the positional conv's weight norm is folded over dim 2 (one gain per kernel tap).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..errors import ConversionError
from ..modeling import load_safetensors
from ..models.hubert import Hubert, HubertConfig, Wav2Vec2
from . import RenameTable, fold_weight_norms, rename
from .fairseq import checkpoint_config, load_checkpoint
from .wavlm import parse_conv_layers

#: fairseq model names (cfg.model._name / args.arch) that this format reads.
MODEL_NAMES = ("hubert",)
#: Task names of HuBERT pretraining.
TASK_NAMES = ("hubert_pretraining",)

#: The fairseq defaults of the fields that shape the network (``HubertConfig`` / ``Wav2Vec2Config``; legacy
#: ``args`` may omit those its run left at their default).
DEFAULTS: dict[str, Any] = {
    "extractor_mode": "default",
    "encoder_layers": 12,
    "encoder_embed_dim": 768,
    "encoder_ffn_embed_dim": 3072,
    "encoder_attention_heads": 12,
    "activation_fn": "gelu",
    "layer_type": "transformer",
    "layer_norm_first": False,
    "conv_feature_layers": "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2",
    "conv_bias": False,
    "conv_pos": 128,
    "conv_pos_groups": 16,
    "pos_conv_depth": 1,
    "conv_pos_batch_norm": False,
}
#: Values of those fields that no released model uses and that are not implemented.
SUPPORTED = {"activation_fn": ("gelu",), "layer_type": ("transformer",), "pos_conv_depth": (1,),
             "conv_pos_batch_norm": (False,)}

#: The positional conv's bias and weight-norm pair, in either naming: torch's old API or its parametrizations.
_POS_CONV_TENSORS = r"(bias|weight_g|weight_v|parametrizations\.weight\.original[01])"

#: fairseq state-dict names → speechzoo's (the names WavLM's converted weights use too).
RENAME_TABLE: RenameTable = (
    (r"mask_emb|label_embs_concat|label_embs|final_proj\.(weight|bias)", None),  # HuBERT pretraining heads
    (r"quantizer\..*|project_q\.(weight|bias)|target_glu\..*|project_inp\..*", None),  # wav2vec 2.0 targets
    (r"feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)", r"feature_extractor.blocks.\1.conv.\2"),
    (r"feature_extractor\.conv_layers\.(\d+)\.2\.1\.(weight|bias)", r"feature_extractor.blocks.\1.norm.\2"),  # LN
    (r"feature_extractor\.conv_layers\.0\.2\.(weight|bias)", r"feature_extractor.blocks.0.norm.\1"),  # GroupNorm
    (r"layer_norm\.(weight|bias)", r"feature_norm.\1"),
    (r"post_extract_proj\.(weight|bias)", r"feature_projection.\1"),
    (rf"encoder\.pos_conv\.0\.{_POS_CONV_TENSORS}", r"encoder.pos_conv.conv.\1"),
    (r"encoder\.layers\.(\d+)\.self_attn\.(q|k|v|out)_proj\.(weight|bias)", r"encoder.layers.\1.attention.\2_proj.\3"),
    (r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", r"encoder.layers.\1.attention_norm.\2"),
    (r"encoder\.layers\.(\d+)\.fc(1|2)\.(weight|bias)", r"encoder.layers.\1.feed_forward.fc\2.\3"),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"encoder.layers.\1.feed_forward_norm.\2"),
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder.layer_norm.\1"),
)
#: transformers' HubertModel / Wav2Vec2Model names → speechzoo's.
TRANSFORMERS_TABLE: RenameTable = (
    (r"masked_spec_embed", None),
    (r"feature_extractor\.conv_layers\.(\d+)\.conv\.(weight|bias)", r"feature_extractor.blocks.\1.conv.\2"),
    (r"feature_extractor\.conv_layers\.(\d+)\.layer_norm\.(weight|bias)", r"feature_extractor.blocks.\1.norm.\2"),
    (r"feature_projection\.layer_norm\.(weight|bias)", r"feature_norm.\1"),
    (r"feature_projection\.projection\.(weight|bias)", r"feature_projection.\1"),
    (rf"encoder\.pos_conv_embed\.conv\.{_POS_CONV_TENSORS}", r"encoder.pos_conv.conv.\1"),
    (r"encoder\.layers\.(\d+)\.attention\.(q|k|v|out)_proj\.(weight|bias)", r"encoder.layers.\1.attention.\2_proj.\3"),
    (r"encoder\.layers\.(\d+)\.layer_norm\.(weight|bias)", r"encoder.layers.\1.attention_norm.\2"),
    (r"encoder\.layers\.(\d+)\.feed_forward\.intermediate_dense\.(weight|bias)",
     r"encoder.layers.\1.feed_forward.fc1.\2"),
    (r"encoder\.layers\.(\d+)\.feed_forward\.output_dense\.(weight|bias)", r"encoder.layers.\1.feed_forward.fc2.\2"),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"encoder.layers.\1.feed_forward_norm.\2"),
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder.layer_norm.\1"),
)
#: transformers' model_type of each class, and its feat_extract_norm values.
TRANSFORMERS_TYPES = {Hubert: "hubert", Wav2Vec2: "wav2vec2"}
TRANSFORMERS_EXTRACTOR_MODES = {"layer": "layer_norm", "group": "default"}

#: The renamed positional conv, whose weight norm runs over dim 2.
_POS_CONV = "encoder.pos_conv.conv"


def convert(paths: list[Path], **options: Any) -> Hubert:
    """Read one fairseq HuBERT checkpoint into a :class:`Hubert`."""
    return convert_fairseq(paths, Hubert, MODEL_NAMES, "a fairseq HuBERT checkpoint", options)


def convert_fairseq(paths: list[Path], cls: type[Hubert], model_names: tuple[str, ...], what: str,
                    options: dict[str, Any]) -> Hubert:
    """The converter of both kinds: ``cls`` is :class:`Hubert` or :class:`Wav2Vec2`."""
    if options:
        raise ConversionError(f"{what} takes no options {sorted(options)}")
    if len(paths) != 1:
        raise ConversionError(f"{what} is one .pt file (or a transformers directory); got {len(paths)} files")
    if Path(paths[0]).is_dir():
        return _convert_transformers(Path(paths[0]), cls)
    path = Path(paths[0])
    container = load_checkpoint(path)
    model_cfg, task_cfg = checkpoint_config(container, path)
    name = model_cfg.get("_name")
    if name not in model_names:
        hint = " (the other kind: use `python -m conversion wav2vec2`)" if name == "wav2vec2" else (
            " (the other kind: use `python -m conversion hubert`)" if name == "hubert" else "")
        raise ConversionError(f"{path} holds a fairseq {name!r} model (task {task_cfg.get('_name')!r}), not {what}: "
                              f"is this a checkpoint of another model?{hint}")
    state = container["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConversionError(f"{path}: 'model' is not a state dict of tensors")
    model = cls(config_from_fairseq(model_cfg, task_cfg, path))
    state = fold_weight_norms(rename(state, RENAME_TABLE), dims={_POS_CONV: 2})
    model.load_state_dict_strict(state)
    return model.eval()


def config_from_fairseq(model: dict[str, Any], task: dict[str, Any], path: Path | str = "cfg") -> HubertConfig:
    """The :class:`HubertConfig` of a fairseq HuBERT / wav2vec 2.0 model and task configuration."""
    c = {k: default if model.get(k) is None else model[k] for k, default in DEFAULTS.items()}
    bad = {k: c[k] for k, allowed in SUPPORTED.items() if c[k] not in allowed}
    if bad:
        raise ConversionError(f"{path}: {bad} are not implemented (released models use "
                              f"{ {k: v[0] for k, v in SUPPORTED.items()} })")
    rate = task.get("sample_rate", 16000)
    if rate != 16000:
        raise ConversionError(f"{path}: the task reads {rate} Hz audio; only 16 kHz models are supported")
    conv_layers = parse_conv_layers(c["conv_feature_layers"])
    try:
        return HubertConfig(
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
            normalize=bool(task.get("normalize", False)),
        )
    except (TypeError, ValueError) as e:
        raise ConversionError(f"{path}: {e}") from e


def _convert_transformers(directory: Path, cls: type[Hubert]) -> Hubert:
    """A transformers ``HubertModel`` / ``Wav2Vec2Model`` saved with ``save_pretrained`` (safetensors)."""
    config_path, weights_path = directory / "config.json", directory / "model.safetensors"
    if not config_path.is_file() or not weights_path.is_file():
        raise ConversionError(f"{directory} is not a transformers model directory with config.json and "
                              "model.safetensors")
    try:
        c = json.loads(config_path.read_text())
    except json.JSONDecodeError as e:
        raise ConversionError(f"{config_path} is not valid JSON ({e})") from e
    if c.get("model_type") != TRANSFORMERS_TYPES[cls]:
        raise ConversionError(f"{config_path} describes a {c.get('model_type')!r} model, not transformers' "
                              f"{TRANSFORMERS_TYPES[cls]!r}: is this a checkpoint of another model?")
    unsupported = {k: c.get(k) for k, ok in {
        "hidden_act": c.get("hidden_act") == "gelu",
        "feat_extract_activation": c.get("feat_extract_activation") == "gelu",
        "feat_extract_norm": c.get("feat_extract_norm") in TRANSFORMERS_EXTRACTOR_MODES,
        "conv_pos_batch_norm": not c.get("conv_pos_batch_norm", False), "add_adapter": not c.get("add_adapter", False),
        "feat_proj_layer_norm": c.get("feat_proj_layer_norm", True)}.items() if not ok}
    if unsupported:
        raise ConversionError(f"{config_path}: {unsupported} are not implemented")
    try:
        config = HubertConfig(
            conv_layers=tuple(zip(c["conv_dim"], c["conv_kernel"], c["conv_stride"])),
            extractor_mode=TRANSFORMERS_EXTRACTOR_MODES[c["feat_extract_norm"]], conv_bias=bool(c["conv_bias"]),
            project_features=True, embed_dim=c["hidden_size"], num_layers=c["num_hidden_layers"],
            num_heads=c["num_attention_heads"], ffn_dim=c["intermediate_size"],
            layer_norm_first=bool(c["do_stable_layer_norm"]), pos_conv_kernel=c["num_conv_pos_embeddings"],
            pos_conv_groups=c["num_conv_pos_embedding_groups"])
    except (KeyError, TypeError, ValueError) as e:
        raise ConversionError(f"{config_path}: {type(e).__name__} {e}") from e
    model = cls(config)
    state = fold_weight_norms(rename(load_safetensors(weights_path), TRANSFORMERS_TABLE), dims={_POS_CONV: 2})
    model.load_state_dict_strict(state)
    return model.eval()
