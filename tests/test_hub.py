"""save_pretrained / from_pretrained: round trips, strict loading and the errors for wrong or broken files."""
from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
from safetensors.torch import save_file

from zoo.errors import WeightsError
from zoo.hub import sha256_of, verify_sha256
from zoo.modeling import PretrainedModel, config_from_dict, config_to_dict
from zoo.models.codebook import Codebook


@pytest.fixture
def codebook():
    return Codebook.from_tensor(torch.randn(7, 5, generator=torch.Generator().manual_seed(0)), layer=4)


def test_round_trip_is_exact(codebook, tmp_path):
    codebook.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text()) == {"model_type": "codebook", "num_codes": 7, "dim": 5,
                                                                   "layer": 4, "dense_model": None}
    loaded = Codebook.from_pretrained(tmp_path)
    assert loaded.config == codebook.config
    assert torch.equal(loaded.codebook, codebook.codebook)
    assert not loaded.training


@dataclass(frozen=True)
class Inner:
    sizes: tuple[int, ...]


@dataclass(frozen=True)
class Outer:
    name: str
    inner: Inner
    ratios: tuple[tuple[int, int], ...]
    optional: Inner | None = None


def test_config_tuples_and_nested_dataclasses_survive_json():
    config = Outer("x", Inner((1, 2)), ((3, 4), (5, 6)), Inner(()))
    assert config_from_dict(Outer, json.loads(json.dumps(config_to_dict(config)))) == config


def test_unknown_config_field_is_an_error():
    with pytest.raises(WeightsError, match=r"fields \['extra'\]"):
        config_from_dict(Inner, {"sizes": [1], "extra": 3})


def test_wrong_model_type(codebook, tmp_path):
    codebook.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "model_type": "wavlm"}))
    with pytest.raises(WeightsError, match="holds a 'wavlm' model, not a 'codebook' model"):
        Codebook.from_pretrained(tmp_path)


def test_missing_unexpected_and_misshapen_tensors_are_named(codebook, tmp_path):
    codebook.save_pretrained(tmp_path)
    save_file({"codebooks": torch.zeros(7, 5)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(WeightsError, match=r"missing \(1\): codebook; unexpected \(1\): codebooks"):
        Codebook.from_pretrained(tmp_path)
    save_file({"codebook": torch.zeros(7, 6)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(WeightsError, match=r"wrong shape \(1\): codebook: \(7, 6\) != \(7, 5\)"):
        Codebook.from_pretrained(tmp_path)


@dataclass(frozen=True)
class PairConfig:
    size: int


class Pair(PretrainedModel):
    """Two tensors, so that one can be missing while the file still holds the other."""
    config_class = PairConfig
    model_type = "pair"

    def __init__(self, config):
        super().__init__(config)
        self.first = torch.nn.Parameter(torch.randn(config.size))
        self.second = torch.nn.Parameter(torch.randn(config.size))


def test_a_checkpoint_missing_one_tensor_and_nothing_else_is_refused(tmp_path):
    model = Pair(PairConfig(3))
    model.save_pretrained(tmp_path)
    save_file({"first": model.first.detach()}, str(tmp_path / "model.safetensors"))
    with pytest.raises(WeightsError, match=r"Pair — missing \(1\): second$"):
        Pair.from_pretrained(tmp_path)


def test_verify_sha256_takes_full_digests_and_prefixes(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(b"speechzoo")
    digest = sha256_of(path)
    verify_sha256(path, digest)
    verify_sha256(path, digest[:8].upper())
    with pytest.raises(WeightsError, match="corrupt or was tampered with"):
        verify_sha256(path, ("0" if digest[0] != "0" else "1") + digest[1:])


@pytest.mark.parametrize("expected", ["", "   ", "abc", "not-a-hex-digest", "g" * 64])
def test_verify_sha256_refuses_an_empty_short_or_non_hex_digest(tmp_path, expected):
    path = tmp_path / "blob"
    path.write_bytes(b"speechzoo")
    with pytest.raises(WeightsError, match="is not 8 to 64 hex digits"):
        verify_sha256(path, expected)


def test_truncated_weights_and_config(codebook, tmp_path):
    codebook.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8])
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        Codebook.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "codebook", "num_co')
    with pytest.raises(WeightsError, match="not valid JSON"):
        Codebook.from_pretrained(tmp_path)


def test_directory_without_config(tmp_path):
    with pytest.raises(WeightsError, match="no config.json"):
        Codebook.from_pretrained(tmp_path)


def test_tied_weights_are_saved(tmp_path):
    @dataclass(frozen=True)
    class TiedConfig:
        size: int

    class Tied(PretrainedModel):
        config_class = TiedConfig
        model_type = "tied"

        def __init__(self, config):
            super().__init__(config)
            self.embed = torch.nn.Embedding(config.size, 3)
            self.out = torch.nn.Linear(3, config.size, bias=False)
            self.out.weight = self.embed.weight

    model = Tied(TiedConfig(4))
    model.save_pretrained(tmp_path)
    loaded = Tied.from_pretrained(tmp_path)
    assert torch.equal(loaded.out.weight, model.embed.weight)


def test_fold_weight_norm_matches_torch_and_checks_shapes():
    from zoo.errors import ConversionError
    from zoo.formats import fold_weight_norm

    conv = torch.nn.utils.parametrizations.weight_norm(torch.nn.Conv1d(4, 6, 3), dim=0)
    with torch.no_grad():
        conv.parametrizations.weight.original0.mul_(torch.rand(6, 1, 1) + 0.5)
    g, v = conv.parametrizations.weight.original0, conv.parametrizations.weight.original1
    assert torch.equal(fold_weight_norm(g, v, 0), conv.weight)
    with pytest.raises(ConversionError, match=r"gain of shape \(1, 1, 3\) does not fit"):
        fold_weight_norm(torch.ones(1, 1, 3), v, 0)


@pytest.mark.parametrize("key", ["dtype", "torch_dtype"])
def test_dtype_casts_floating_tensors(tmp_path, key):
    model = Pair(PairConfig(5))  # a plain model: codebooks (Codebook) stay float32 whatever the dtype
    model.save_pretrained(tmp_path)
    loaded = Pair.from_pretrained(tmp_path, **{key: torch.bfloat16})
    assert loaded.first.dtype == torch.bfloat16
    assert torch.equal(loaded.first, model.first.detach().to(torch.bfloat16))
    assert Pair.from_pretrained(tmp_path, **{key: "float16"}).first.dtype == torch.float16


def test_a_model_saved_in_half_precision_reloads_in_it_unless_told_otherwise(tmp_path):
    model = Pair(PairConfig(5))
    model.to(torch.float16).save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["torch_dtype"] == "float16"
    assert Pair.from_pretrained(tmp_path).first.dtype == torch.float16
    assert Pair.from_pretrained(tmp_path, torch_dtype="auto").first.dtype == torch.float16
    assert Pair.from_pretrained(tmp_path, dtype=torch.float32).first.dtype == torch.float32
    model.float().save_pretrained(tmp_path / "fp32")  # float32, the default, is not recorded
    assert "torch_dtype" not in json.loads((tmp_path / "fp32" / "config.json").read_text())


def test_bad_dtype_is_refused(codebook, tmp_path):
    codebook.save_pretrained(tmp_path)
    with pytest.raises(WeightsError, match="not a floating-point torch dtype"):
        Codebook.from_pretrained(tmp_path, dtype="int8")
    with pytest.raises(WeightsError, match="disagree"):
        Codebook.from_pretrained(tmp_path, dtype=torch.float16, torch_dtype=torch.bfloat16)
