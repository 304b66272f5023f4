"""The WavTokenizer release: a PyTorch-Lightning training checkpoint (``WavTokenizer_small_600_24k_4096.ckpt``...).

Only its ``state_dict`` is read. Besides the generator (``feature_extractor.``, ``backbone.``, ``head.``) it holds
the discriminators and loss buffers, the unused SEANet decoder and the codebooks' k-means/EMA state: the rename
table drops them. The encoder's weight norm is folded. The file pickles nothing but tensors and containers
(Hugging Face's pickle scan of the release), so it loads with no allowlist.

The architecture is not in the checkpoint (Lightning's hyper-parameters leave the modules out), so it comes from,
in this order:

1. ``config=``: upstream's training YAML (``config.yaml``: ``model.init_args.{feature_extractor,backbone,head}``,
   with the ``dowmsamples`` spelling) or the fork's ``args.json`` (``dataclasses.asdict(WavTokenizerArgs)``);
2. ``variant=``: a released variant's name, e.g. "small_600_24k_4096" (the registry passes this);
3. the checkpoint's file name, when it names a released variant.

    python -m conversion wavtokenizer WavTokenizer_small_600_24k_4096.ckpt --out DIR
    python -m conversion wavtokenizer model.ckpt --config config.yaml --out DIR
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, ConversionError, WeightsError
from ..models.wavtokenizer import (
    VARIANTS,
    BackboneConfig,
    ISTFTHeadConfig,
    WavTokenizer,
    WavTokenizerConfig,
)
from . import RenameTable, expect_keys, fold_weight_norms, load_original, read_json, rename
from .encodec import seanet_rules

_ENCODER = r"feature_extractor\.encodec\.encoder\."
_CODEBOOK = r"feature_extractor\.encodec\.quantizer\.vq\.layers\.(\d+)\._codebook\."
_INITED = "feature_extractor.encodec.quantizer.vq.layers.{}._codebook.inited"
_WINDOW = "head.istft.window"
#: Keys every WavTokenizer checkpoint has: their absence means another model's checkpoint.
_SIGNATURE = ("feature_extractor.encodec.quantizer.vq.layers.0._codebook.embed", "backbone.embed.weight",
              "head.out.weight", _WINDOW)

#: Everything but the encoder (whose rules depend on its depth): ordered (regex, replacement | None) rules.
RENAME_TABLE: RenameTable = (
    (_CODEBOOK + r"embed", r"quantizers.\1.codebook"),
    (_CODEBOOK + r"(inited|cluster_size|embed_avg)", None),   # k-means / EMA training state
    (r"feature_extractor\.encodec\.decoder\..*", None),       # EnCodec's SEANet decoder, never run
    (r"(backbone\..*)", r"\1"),
    (r"head\.out\.(weight|bias)", r"head.out.\1"),
    (r"head\.istft\.window", None),                           # rebuilt: the periodic Hann window (checked)
    (r"(multiperioddisc|multiresddisc|dac|dacdiscriminator)\..*", None),  # GAN discriminators
    (r"melspec_loss\..*", None),                              # mel loss buffers
)

#: Where each source keeps the three parts' arguments, and the defaults of the classes it builds them with:
#: upstream's YAML instantiates the training repo's constructors, args.json fills the fork's dataclasses.
_UPSTREAM_DEFAULTS = {
    "feature_extractor": {"encodec_model": "encodec_24khz", "bandwidths": [1.5, 3.0, 6.0, 12.0],
                          "train_codebooks": False, "num_quantizers": 1, "dowmsamples": [6, 5, 5, 4],
                          "vq_bins": 16384, "vq_kmeans": 800},
    "backbone": {"layer_scale_init_value": None, "adanorm_num_embeddings": None},
    "head": {"padding": "same"},
}
#: The upstream constructors' arguments without a default.
_UPSTREAM_REQUIRED = {"feature_extractor": (), "backbone": ("input_channels", "dim", "intermediate_dim", "num_layers"),
                      "head": ("dim", "n_fft", "hop_length")}
_FORK_DEFAULTS = {
    "feature_extractor": {"encodec_model": "encodec_24khz", "bandwidths": [6.6, 6.6, 6.6, 6.6],
                          "train_codebooks": True, "num_quantizers": 1, "downsamples": [8, 5, 4, 2],
                          "vq_bins": 4096, "vq_kmeans": 200},
    "backbone": {"input_channels": 512, "dim": 768, "intermediate_dim": 2304, "num_layers": 12,
                 "layer_scale_init_value": None, "adanorm_num_embeddings": None},
    "head": {"dim": 768, "n_fft": 1280, "hop_length": 320, "padding": "same"},
}
_BACKBONE_KEYS = ("input_channels", "dim", "intermediate_dim", "num_layers", "layer_scale_init_value",
                  "adanorm_num_embeddings")
#: The only classes the YAML may name: other WavTokenizer/Vocos heads and backbones are not implemented.
_UPSTREAM_CLASSES = {"feature_extractor": "EncodecFeatures", "backbone": "VocosBackbone", "head": "ISTFTHead"}


def convert(paths: list[Path], *, config: Path | None = None, variant: str | None = None) -> WavTokenizer:
    """A :class:`WavTokenizer` from the Lightning checkpoint ``paths[0]`` (see the module docstring for where
    the architecture comes from)."""
    if len(paths) != 1:
        raise ConversionError("wavtokenizer conversion takes one file, the Lightning checkpoint (*.ckpt); "
                              "pass its config with --config config.yaml or args.json")
    path = Path(paths[0])
    model_config = _resolve_config(path, config, variant)
    container = load_original(path)
    expect_keys(container, ["state_dict"], what="a PyTorch-Lightning checkpoint", path=path)
    state = dict(container["state_dict"])
    expect_keys(state, _SIGNATURE, what="a WavTokenizer checkpoint (EncodecFeatures + Vocos backbone + ISTFT head)",
                path=path)
    _check_training_state(state, model_config, path)
    table = (*RENAME_TABLE, *encoder_rules(model_config))
    model = WavTokenizer(model_config)
    try:
        model.load_state_dict_strict(fold_weight_norms(rename(state, table)))
    except WeightsError as e:
        raise ConversionError(f"{path} does not fit the given config ({e}); is it the right config for "
                              "this checkpoint?") from e
    return model.eval()


def encoder_rules(config: WavTokenizerConfig) -> RenameTable:
    """EnCodec's ``feature_extractor.encodec.encoder.model.<i>...`` keys onto ``encoder.``."""
    return tuple((_ENCODER + pattern, "encoder." + replacement)
                 for pattern, replacement in seanet_rules(config.encoder, "encoder"))


def _check_training_state(state: dict[str, torch.Tensor], config: WavTokenizerConfig, path: Path) -> None:
    """The buffers the table drops must hold what inference assumes."""
    for layer in range(config.num_quantizers):
        inited = state.get(_INITED.format(layer))
        if inited is None or not bool((inited == 1).all()):
            raise ConversionError(f"{path}: codebook {layer} was never initialised (inited != 1): the original "
                                  "would run k-means on its first input; this is not a trained checkpoint")
    window = state[_WINDOW]
    if window.shape != (config.head.n_fft,) or not torch.allclose(window, torch.hann_window(config.head.n_fft)):
        raise ConversionError(f"{path}: head.istft.window ({tuple(window.shape)}) is not the periodic Hann window "
                              f"of n_fft={config.head.n_fft}; the config does not match the checkpoint")


# ------------------------------------------------------------------------------------------ configs
def _resolve_config(path: Path, config: Path | None, variant: str | None) -> WavTokenizerConfig:
    if config is not None:
        return read_config(Path(config))
    if variant is None:
        variant = next((name for name in VARIANTS if name in path.name), None)
    if variant is None:
        raise ConversionError(f"the architecture of {path.name} is not in the checkpoint: pass its config with "
                              f"--config config.yaml (upstream) or args.json (nicolvisser fork), or convert a "
                              f"released file whose name holds one of {sorted(VARIANTS)}")
    if variant not in VARIANTS:
        raise ConversionError(f"unknown WavTokenizer variant {variant!r}; released: {sorted(VARIANTS)}")
    return VARIANTS[variant]


def read_config(path: Path) -> WavTokenizerConfig:
    """The model config from upstream's YAML (``.yaml``/``.yml``) or the fork's ``args.json``."""
    if not path.is_file():
        raise ConversionError(f"config {path} does not exist")
    if path.suffix in (".yaml", ".yml"):
        return _from_parts(*_upstream_parts(path), downsamples_key="dowmsamples")
    if path.suffix == ".json":
        data = read_json(path)
        expect_keys(data, _FORK_DEFAULTS, what="a WavTokenizerArgs dict (args.json)", path=path)
        return _from_parts(*(_merge(_FORK_DEFAULTS[part], (), data[part], part, path) for part in _FORK_DEFAULTS),
                           downsamples_key="downsamples")
    raise ConversionError(f"{path}: a WavTokenizer config is upstream's YAML (.yaml) or the fork's args.json")


def _upstream_parts(path: Path) -> tuple[dict, dict, dict]:
    try:
        import yaml
    except ImportError as e:
        raise ConversionError("reading upstream's YAML needs PyYAML (pip install pyyaml); or pass args.json") from e
    try:
        init = yaml.safe_load(path.read_text())["model"]["init_args"]
    except (yaml.YAMLError, KeyError, TypeError) as e:
        raise ConversionError(f"{path} is not a WavTokenizer training config (model.init_args): {e}") from e
    parts = []
    for part, class_name in _UPSTREAM_CLASSES.items():
        spec = init.get(part)
        if not isinstance(spec, dict) or not str(spec.get("class_path", "")).endswith("." + class_name):
            found = spec.get("class_path") if isinstance(spec, dict) else spec
            raise ConversionError(f"{path}: model.init_args.{part} must be a {class_name}, found {found!r}; "
                                  "speechzoo implements the EncodecFeatures + VocosBackbone + ISTFTHead WavTokenizer")
        given = spec.get("init_args") or {}
        parts.append(_merge(_UPSTREAM_DEFAULTS[part], _UPSTREAM_REQUIRED[part], given, part, path))
    return tuple(parts)


def _merge(defaults: dict, required: tuple[str, ...], given: Any, part: str, path: Path) -> dict:
    """``given`` arguments over ``defaults``; an argument the original does not take is an error."""
    if not isinstance(given, dict):
        raise ConversionError(f"{path}: {part} must be a mapping of arguments, got {type(given).__name__}")
    unknown = sorted(set(given) - set(defaults) - set(required))
    if unknown:
        raise ConversionError(f"{path}: {part} has arguments {unknown} that the original does not take")
    return {**defaults, **given}


def _from_parts(feature_extractor: dict, backbone: dict, head: dict, *, downsamples_key: str) -> WavTokenizerConfig:
    if feature_extractor["encodec_model"] != "encodec_24khz":
        raise ConversionError(f"encodec_model {feature_extractor['encodec_model']!r} is not supported; "
                              "the original only builds 'encodec_24khz'")
    try:
        if head["dim"] != backbone["dim"]:
            raise ConversionError(f"head dim {head['dim']} differs from backbone dim {backbone['dim']}")
        return WavTokenizerConfig(
            downsamples=tuple(int(r) for r in feature_extractor[downsamples_key]),
            codebook_size=int(feature_extractor["vq_bins"]),
            num_quantizers=int(feature_extractor["num_quantizers"]),
            bandwidths=tuple(float(b) for b in feature_extractor["bandwidths"]),
            backbone=BackboneConfig(**{key: backbone[key] for key in _BACKBONE_KEYS}),
            head=ISTFTHeadConfig(n_fft=int(head["n_fft"]), hop_length=int(head["hop_length"]),
                                 padding=head["padding"]),
        )
    except KeyError as e:
        raise ConversionError(f"the config lacks the required argument {e.args[0]!r}") from e
    except ConfigError as e:
        raise ConversionError(f"the config describes no valid WavTokenizer: {e}") from e
