"""speech-resynthesis' F0 VQ-VAE checkpoints (``train_f0_vq.py``): ``g_XXXXXXXX`` =
``torch.save({'generator': Quantizer.state_dict(), 'optim_g': ..., 'steps': int, 'epoch': int})`` with its
``config.json`` (``configs/*/f0_vqvae.json``: ``f0_vq_params``, ``f0_encoder_params``, ``f0_decoder_params``).

``python -m conversion f0_vqvae g_00400000 config.json --out DIR`` (or ``--config config.json``).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ConversionError, WeightsError
from ..modeling import config_from_dict
from ..models.f0_vqvae import F0VQVAE, BottleneckConfig, F0VQVAEConfig, JukeboxConfig
from . import RenameTable, checkpoint_and_config, expect_keys, load_original, read_json, rename


def quantizer_rules(src: str, dst: str, *, decoder: str | None) -> RenameTable:
    """Rules from the original ``Quantizer`` keys under prefix ``src`` (``""`` or ``"quantizer."``) to
    :class:`~zoo.models.f0_vqvae.F0Quantizer` under ``dst``; the decoder goes to ``decoder`` (None drops it).

    The Jukebox Sequentials keep their indices (``layers.<i>``); only the residual blocks' inner
    ``model.{1,3}`` become ``conv_a``/``conv_b``.
    """
    src = re.escape(src)
    enc, vq, dec = (rf"{src}encoder\.level_blocks", rf"{src}vq\.level_blocks", rf"{src}decoder\.level_blocks")
    at = r"\.(\d+)\.model\.(\d+)"                           # level, Sequential index
    conv_a, conv_b = (rf"\.model\.(\d+)\.model\.{i}\.(weight|bias)" for i in (1, 3))  # residual block d
    rules = [
        (rf"{enc}{at}\.0\.(weight|bias)", rf"{dst}encoder.levels.\1.layers.\2.conv.\3"),
        (rf"{enc}{at}\.1{conv_a}", rf"{dst}encoder.levels.\1.layers.\2.resnet.\3.conv_a.\4"),
        (rf"{enc}{at}\.1{conv_b}", rf"{dst}encoder.levels.\1.layers.\2.resnet.\3.conv_b.\4"),
        (rf"{enc}{at}\.(weight|bias)", rf"{dst}encoder.levels.\1.layers.\2.\3"),
        (rf"{vq}\.(\d+)\.k", rf"{dst}codebooks.\1.codebook"),
    ]
    if decoder is None:
        return [*rules, (rf"{src}decoder\..*", None)]
    return [
        *rules,
        (rf"{dec}{at}\.0{conv_a}", rf"{decoder}levels.\1.layers.\2.resnet.\3.conv_a.\4"),
        (rf"{dec}{at}\.0{conv_b}", rf"{decoder}levels.\1.layers.\2.resnet.\3.conv_b.\4"),
        (rf"{dec}{at}\.1\.(weight|bias)", rf"{decoder}levels.\1.layers.\2.conv.\3"),
        (rf"{dec}{at}\.(weight|bias)", rf"{decoder}levels.\1.layers.\2.\3"),
        (rf"{src}decoder\.out\.(weight|bias)", rf"{decoder}out.\1"),
    ]


#: The standalone F0 VQ-VAE: original ``Quantizer`` keys -> :class:`F0VQVAE`.
RENAMES = quantizer_rules("", "quantizer.", decoder="decoder.")


def original_quantizer_keys(config: F0VQVAEConfig) -> list[str]:
    """The state-dict keys of speech-resynthesis' ``Quantizer`` for ``config``, in its registration order (encoder,
    the codebook buffer ``vq.level_blocks.<l>.k``, decoder), which is also the order of its parameters and so of
    its optimiser state's indices."""
    def pair(prefix: str) -> list[str]:
        return [f"{prefix}.weight", f"{prefix}.bias"]

    def resnet(prefix: str, depth: int) -> list[str]:
        return [k for d in range(depth) for i in (1, 3) for k in pair(f"{prefix}.model.{d}.model.{i}")]

    enc, dec, vq = config.f0_encoder_params, config.f0_decoder_params, config.f0_vq_params
    keys = []
    for level in range(enc.levels):
        at = f"encoder.level_blocks.{level}.model"
        for i in range(enc.downs_t[level]):
            keys += pair(f"{at}.{i}.0") + resnet(f"{at}.{i}.1", enc.depth)
        keys += pair(f"{at}.{enc.downs_t[level]}")
    keys += [f"vq.level_blocks.{level}.k" for level in range(vq.levels)]
    for level in range(dec.levels):
        at = f"decoder.level_blocks.{level}.model"
        keys += pair(f"{at}.0")
        for i in range(1, dec.downs_t[level] + 1):
            keys += resnet(f"{at}.{i}.0", dec.depth) + pair(f"{at}.{i}.1")
    return keys + pair("decoder.out")


def f0_vqvae_config(raw: dict[str, Any], *, where: str) -> F0VQVAEConfig:
    """:class:`F0VQVAEConfig` from the original JSON groups (training fields are ignored). A missing decoder group
    (vocoder configs trained jointly only carry the encoder) mirrors the encoder's."""
    try:
        encoder = _group(JukeboxConfig, raw["f0_encoder_params"])
        return F0VQVAEConfig(f0_vq_params=_group(BottleneckConfig, raw["f0_vq_params"]), f0_encoder_params=encoder,
                             f0_decoder_params=_group(JukeboxConfig, raw.get("f0_decoder_params") or
                                                      raw["f0_encoder_params"]))
    except KeyError as e:
        raise ConversionError(f"{where} lacks the F0 VQ-VAE group {e}; it is not an F0 VQ-VAE config") from None
    except (TypeError, ConfigError, WeightsError) as e:
        raise ConversionError(f"{where}: unsupported F0 VQ-VAE parameters ({e})") from e


def _group(cls: type, data: dict[str, Any]) -> Any:
    return config_from_dict(cls, {k: v for k, v in data.items() if k != "checkpoint_res"})


def convert(paths: list[Path], **options) -> F0VQVAE:
    checkpoint, config_path = checkpoint_and_config(paths, options, example="g_00400000 config.json")
    raw = read_json(config_path)
    model = F0VQVAE(f0_vqvae_config(raw, where=str(config_path)))
    container = load_original(checkpoint)
    expect_keys(container, ["generator"], what="a speech-resynthesis checkpoint {'generator': state_dict, ...}",
                path=checkpoint)
    state = container["generator"]
    if any(k.startswith(("conv_pre.", "quantizer.")) for k in state):
        raise ConversionError(f"{checkpoint} is a vocoder checkpoint, not an F0 VQ-VAE: convert it with the "
                              "'hifigan' converter")
    model.load_state_dict_strict(rename(state, RENAMES))
    return model.eval()
