"""nicolvisser/ELLA-V checkpoints: ``torch.save({"model_args": {...}, "tokenizer": {...}, "model_state": {...}})``,
released as ``ella-v-...-clean-10k-40hz-<sha8>.pt`` and read by the original's ``from_pretrained_checkpoint``.

``model_args`` are the Mistral args (plus an unused ``max_batch_size``); ``model_state`` has the Mistral-ULM keys
(:data:`zoo.formats.ulm.RENAME`) plus ``output.bias``. ``tokenizer`` is ``ELLAVTokenizer.to_dict()``: its
``token_to_id_dict`` must have the layout the original builds (special tokens, phones, then ``str(c)`` for each
codec id), so that it is kept as the phone strings in id order.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConversionError
from ..models.ellav import ELLAV, SPECIAL_TOKENS, ELLAVConfig, ELLAVTokenizerConfig
from . import RenameTable, expect_keys, load_original, rename
from .ulm import RENAME as ULM_RENAME
from .ulm import transformer_config

RENAME: RenameTable = (*ULM_RENAME, (r"output\.bias", r"transformer.output.bias"))

#: ``ELLAVTokenizer.to_dict()`` fields that are data; the others are its fixed constants (ids of UNK, BOS, …).
TOKENIZER_FIELDS = ("token_to_id_dict", "num_phone_types", "phone_token_rate", "num_codec_types", "codec_token_rate",
                    "tokens_not_to_sandwich")


def tokenizer_config(data: Any, source: Path) -> ELLAVTokenizerConfig:
    """The phone list and rates of an original tokenizer dict, refusing a vocabulary laid out otherwise."""
    expect_keys(data, TOKENIZER_FIELDS, what="an ELLA-V tokenizer", path=source)
    token_to_id = data["token_to_id_dict"]
    num_phones, num_codec = int(data["num_phone_types"]), int(data["num_codec_types"])
    by_id = sorted(token_to_id, key=token_to_id.get)
    phones = tuple(by_id[len(SPECIAL_TOKENS): len(SPECIAL_TOKENS) + num_phones])
    expected = list(SPECIAL_TOKENS) + list(phones) + [str(c) for c in range(num_codec)]
    if by_id != expected or sorted(token_to_id.values()) != list(range(len(expected))):
        raise ConversionError(f"{source}: the tokenizer's token_to_id_dict ({len(token_to_id)} tokens) is not "
                              f"UNK, BOS, EOP, EOS, {num_phones} phones, then codec ids 0 … {num_codec - 1}")
    return ELLAVTokenizerConfig(phones=phones, phone_token_rate=float(data["phone_token_rate"]),
                                num_codec_types=num_codec, codec_token_rate=float(data["codec_token_rate"]),
                                tokens_not_to_sandwich=tuple(data["tokens_not_to_sandwich"]))


def convert(paths: list[Path], **options) -> ELLAV:
    if len(paths) != 1 or options:
        raise ConversionError("ellav conversion takes one checkpoint (its config is inside), e.g. "
                              "ella-v-wavlm-layer-11-k-500-lmbda-4500-clean-10k-40hz-3815b3ab.pt")
    path = Path(paths[0])
    container = load_original(path)
    expect_keys(container, ["model_args", "tokenizer", "model_state"],
                what="an ELLA-V checkpoint {'model_args', 'tokenizer', 'model_state'}", path=path)
    config = ELLAVConfig(transformer=transformer_config(container["model_args"], output_bias=True, source=path),
                         tokenizer=tokenizer_config(container["tokenizer"], path))
    model = ELLAV(config)
    model.load_state_dict_strict(rename(container["model_state"], RENAME))
    return model
