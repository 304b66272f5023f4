"""Unit HiFi-GAN vocoder checkpoints, as speech-resynthesis, fairseq and textlesslib save them.

Containers (all ``torch.save({'generator': state_dict, ...})`` with weight norm NOT removed, plus a JSON config):

* speech-resynthesis ``g_XXXXXXXX`` + ``config.json`` (``CodeGenerator``; the F0 VQ-VAE models also hold the frozen
  quantizer under ``quantizer.*`` — exactly the ``f0_quantizer_path`` file's weights — so nothing beside the
  checkpoint is needed; the unused decoder half is dropped);
* fairseq/textlesslib vocoders (``g_00500000``, ``hifigan_vocoder``, ``checkpoint.pt``, ``generator.pt``,
  ``vocoder_<lang>.pt``) + their config JSON;
* fairseq hub archives ``<id>.tar.gz`` holding ``model.pt`` + ``config.json`` (one argument).

``python -m conversion hifigan CKPT CONFIG.json --out DIR`` (or ``--config CONFIG.json``, or ``ARCHIVE.tar.gz``).

Which optional parts a vocoder has is read from the checkpoint's keys (the originals decide it from config fields
that differ between the repositories, and fairseq ignores ``resblock``), and their sizes from the config.
"""
from __future__ import annotations

import math
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, ConversionError, WeightsError
from ..modeling import config_from_dict
from ..models.hifigan import CodeHiFiGAN, CodeHiFiGANConfig, VariancePredictorConfig
from . import RenameTable, checkpoint_and_config, expect_keys, fold_weight_norms, load_original, read_json, rename
from .f0_vqvae import f0_vqvae_config, quantizer_rules

#: Original generator keys (after folding weight norm) -> :class:`CodeHiFiGAN`.
RENAMES: RenameTable = [
    (r"dict\.weight", "unit_embedding.weight"),
    (r"code_vq\.level_blocks\.0\.k", "unit_embedding.weight"),  # units looked up in a waveform VQ-VAE's codebook
    (r"code_encoder\..*", None),                                 # that VQ-VAE's encoder: training only
    (r"conv_pre\.(weight|bias)", r"generator.conv_pre.\1"),
    (r"ups\.(\d+)\.(weight|bias)", r"generator.upsamples.\1.\2"),
    (r"resblocks\.(\d+)\.(convs1|convs2|convs)\.(\d+)\.(weight|bias)", r"generator.resblocks.\1.\2.\3.\4"),
    (r"conv_post\.(weight|bias)", r"generator.conv_post.\1"),
    (r"dur_predictor\.(conv1|conv2)\.0\.(weight|bias)", r"duration_predictor.\1.\2"),
    (r"dur_predictor\.(ln1|ln2|proj)\.(weight|bias)", r"duration_predictor.\1.\2"),
    (r"spkr\.(weight|bias)", r"speaker_embedding.\1"),
    (r"style\.weight", "style_embedding.weight"),
    (r"(f0_quant_embed|f0_dict)\.weight", "f0_embedding.weight"),
    *quantizer_rules("quantizer.", "f0_quantizer.", decoder=None),  # F0 VQ-VAE codes (f0_quantizer_path)
    *quantizer_rules("", "f0_quantizer.", decoder=None),            # jointly trained F0 VQ (lambda_commit)
]

#: Original generator keys -> the modules of :class:`zoo.train.resynthesis.TrainingVocoder` (weight norm kept as
#: a parametrization, the frozen F0 VQ-VAE's unused decoder kept so that a checkpoint written back loads in the
#: original): the weight-norm pairs are renamed through their folded ``weight`` (see :func:`training_names`).
TRAINING_RENAMES: RenameTable = [*quantizer_rules("quantizer.", "f0_quantizer.", decoder="f0_decoder."), *RENAMES]
#: The original's weight-norm tensors -> torch's ``parametrizations`` names.
_WEIGHT_NORM_NAMES = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1"}

#: Generator fields every config has (the rest have the originals' defaults).
_REQUIRED = ("upsample_rates", "upsample_kernel_sizes", "upsample_initial_channel", "resblock_kernel_sizes",
             "resblock_dilation_sizes", "embedding_dim")
#: ``model_in_dim`` when the config has none (the original ``Generator``'s default).
DEFAULT_MODEL_IN_DIM = 128
_ARCHIVE_MEMBERS = ("model.pt", "config.json")


def convert(paths: list[Path], **options) -> CodeHiFiGAN:
    if len(paths) == 1 and not options and tarfile.is_tarfile(paths[0]):
        with tempfile.TemporaryDirectory() as tmp:
            return convert(_extract_archive(Path(paths[0]), Path(tmp)))
    checkpoint, config_path = checkpoint_and_config(paths, options, example="g_00500000 config.json")
    raw = read_json(config_path)
    container = load_original(checkpoint)
    expect_keys(container, ["generator"], what="a HiFi-GAN vocoder checkpoint {'generator': state_dict}",
                path=checkpoint)
    state = container["generator"]
    if not any(k.startswith("conv_pre.") for k in state):
        hint = " (an F0 VQ-VAE: use the 'f0_vqvae' converter)" if any(k.startswith("encoder.") for k in state) else ""
        raise ConversionError(f"{checkpoint} holds no HiFi-GAN generator (no conv_pre){hint}")
    model = CodeHiFiGAN(vocoder_config(raw, state, where=str(config_path)))
    try:
        model.load_state_dict_strict(rename(fold_weight_norms(state), RENAMES))
    except WeightsError as e:
        raise ConversionError(f"{checkpoint} does not match {config_path}: {e}") from e
    return model.eval()


def vocoder_config(raw: dict[str, Any], state: dict[str, torch.Tensor], *, where: str) -> CodeHiFiGANConfig:
    """:class:`CodeHiFiGANConfig` from an original config JSON and the checkpoint's keys."""
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise ConversionError(f"{where} lacks {missing}: it is not a HiFi-GAN vocoder config")
    fields: dict[str, Any] = {k: raw[k] for k in _REQUIRED}
    fields["resblock"] = "2" if any(".convs." in k for k in state if k.startswith("resblocks.")) else "1"
    fields["model_in_dim"] = raw.get("model_in_dim", DEFAULT_MODEL_IN_DIM)
    fields["sampling_rate"] = raw.get("sampling_rate", 16000)
    fields["code_hop_size"] = raw.get("code_hop_size") or math.prod(raw["upsample_rates"])
    if "code_vq.level_blocks.0.k" in state:
        fields["num_embeddings"], fields["embedding_dim"] = state["code_vq.level_blocks.0.k"].shape
    elif "num_embeddings" in raw:
        fields["num_embeddings"] = raw["num_embeddings"]
    else:
        raise ConversionError(f"{where} lacks num_embeddings")
    if any(k.startswith("dur_predictor.") for k in state):
        if not raw.get("dur_predictor_params"):
            raise ConversionError(f"the checkpoint has a duration predictor but {where} has no dur_predictor_params")
        fields["dur_predictor_params"] = _dataclass(VariancePredictorConfig, raw["dur_predictor_params"], where)
    fields.update(_f0_fields(raw, state, where))
    if "spkr.bias" in state:  # a projected speaker vector (fairseq embedder_params, voidful's x-vectors)
        fields["embedder_dim"] = state["spkr.weight"].shape[1]
        fields["multispkr"] = raw.get("multispkr") or None
    elif "spkr.weight" in state:
        fields["multispkr"] = str(raw.get("multispkr") or "from_checkpoint")
        fields["num_speakers"] = state["spkr.weight"].shape[0]
    if "style.weight" in state:
        fields["multistyle"] = str(raw.get("multistyle") or "from_checkpoint")
        fields["num_styles"] = state["style.weight"].shape[0]
    fields["f0_feats"] = bool(raw.get("f0_feats"))
    fields["f0_normalize"] = bool(raw.get("f0_normalize"))
    return _dataclass(CodeHiFiGANConfig, fields, where)


def original_generator_keys(config: CodeHiFiGANConfig, quantizer_keys: list[str] = ()) -> list[str]:
    """The state-dict keys of speech-resynthesis' ``CodeGenerator`` for ``config``, in its registration order
    (which is also the order of ``generator.parameters()``, hence of the optimiser state's indices).

    Weight-normed convolutions register ``bias`` then ``weight_g``, ``weight_v``. ``quantizer_keys`` are the frozen
    F0 VQ-VAE's own keys (the ``f0_quantizer_path`` file's ``generator``), placed under ``quantizer.``.
    """
    def normed(prefix: str) -> list[str]:
        return [f"{prefix}.bias", f"{prefix}.weight_g", f"{prefix}.weight_v"]

    keys = normed("conv_pre")
    for i in range(len(config.upsample_rates)):
        keys += normed(f"ups.{i}")
    groups = (("convs1", 3), ("convs2", 3)) if config.resblock == "1" else (("convs", 2),)
    for r in range(len(config.upsample_rates) * len(config.resblock_kernel_sizes)):
        keys += [k for group, n in groups for j in range(n) for k in normed(f"resblocks.{r}.{group}.{j}")]
    keys += normed("conv_post") + ["dict.weight"]
    if config.embedder_dim is not None:
        keys += ["spkr.weight", "spkr.bias"]
    elif config.multispkr:
        keys += ["spkr.weight"]
    if config.f0_quantizer is not None:
        keys += [f"quantizer.{k}" for k in quantizer_keys] + ["f0_dict.weight"]
    return keys


def training_names(original_keys: list[str]) -> dict[str, str]:
    """original key -> name in :class:`zoo.train.resynthesis.TrainingVocoder`, by :data:`TRAINING_RENAMES`."""
    names = {}
    for key in original_keys:
        stem, _, leaf = key.rpartition(".")
        if leaf in _WEIGHT_NORM_NAMES:
            (folded,) = rename({f"{stem}.weight": key}, TRAINING_RENAMES)
            names[key] = folded[: -len("weight")] + _WEIGHT_NORM_NAMES[leaf]
        else:
            (names[key],) = rename({key: key}, TRAINING_RENAMES)
    return names


def _f0_fields(raw: dict[str, Any], state: dict[str, torch.Tensor], where: str) -> dict[str, Any]:
    if not raw.get("f0"):
        return {}
    fields: dict[str, Any] = {"f0": True}
    if "f0_quant_embed.weight" in state:
        fields["f0_quant_num_bin"] = state["f0_quant_embed.weight"].shape[0]
    elif any(k.startswith("quantizer.") for k in state):
        if not isinstance(raw.get("f0_quantizer"), dict):
            raise ConversionError(f"the checkpoint holds an F0 VQ-VAE but {where} has no f0_quantizer group")
        fields["f0_quantizer"] = f0_vqvae_config(raw["f0_quantizer"], where=f"{where} (f0_quantizer)")
    elif any(k.startswith("encoder.") for k in state):
        fields["f0_quantizer"] = f0_vqvae_config(raw, where=where)
        fields["f0_vq_latent"] = True
    return fields


def _dataclass(cls: type, data: dict[str, Any], where: str) -> Any:
    try:
        return config_from_dict(cls, data)
    except (TypeError, ConfigError, WeightsError) as e:
        raise ConversionError(f"{where}: cannot build {cls.__name__} ({e})") from e


def _extract_archive(archive: Path, into: Path) -> list[Path]:
    """``model.pt`` and ``config.json`` of a fairseq hub archive, copied out without trusting member paths."""
    found: dict[str, Path] = {}
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            name = Path(member.name).name
            if member.isfile() and name in _ARCHIVE_MEMBERS and name not in found:
                found[name] = into / name
                found[name].write_bytes(tar.extractfile(member).read())
    missing = [m for m in _ARCHIVE_MEMBERS if m not in found]
    if missing:
        raise ConversionError(f"{archive} lacks {missing}: not a fairseq vocoder archive")
    return [found[m] for m in _ARCHIVE_MEMBERS]
