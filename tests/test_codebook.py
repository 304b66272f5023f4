"""k-means codebooks: the original container through conversion and ``hubconf.codebook``, batched units, errors."""
import pytest
import torch

import hubconf
from conversion import model_cards
from zoo.errors import ConversionError, InputError
from zoo.formats import codebook as codebook_format
from zoo.models.codebook import Codebook

from harness import load_case

CASE = load_case("wavlm/codebook_argmin")
ORIGINAL = CASE.original / "codebook-layer-3-k-20-0dd7c1fe.pt"


@pytest.fixture(scope="module")
def io():
    return CASE.io


@pytest.fixture(scope="module")
def converted(convert):
    """``python -m conversion codebook ORIGINAL --out DIR``."""
    return convert("codebook", ORIGINAL)


def test_converted_codebook_equals_the_original(converted, io):
    codebook = hubconf.codebook(layer=3, k=20, weights=converted)
    assert codebook.dtype == torch.float32 and torch.equal(codebook, io["codebook"])
    distances = torch.cdist(io["features"], codebook)
    CASE.assert_close("distances", distances)
    assert torch.equal(distances.argmin(1), io["units"])


def test_layer_is_read_from_the_file_name(converted):
    assert Codebook.from_pretrained(converted).config.layer == 3


def test_forward_gives_the_original_units_batched(converted, io):
    model = Codebook.from_pretrained(converted)
    assert torch.equal(model(io["features"]), io["units"])
    batched = model(io["features"].reshape(4, 25, 64))
    assert batched.shape == (4, 25) and torch.equal(batched.reshape(-1), io["units"])


def test_save_load_round_trip(converted, tmp_path):
    model = Codebook.from_pretrained(converted)
    loaded = Codebook.from_pretrained(model.save_pretrained(tmp_path))
    assert loaded.config == model.config and torch.equal(loaded.codebook, model.codebook)


# ------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("container, match", [
    ({"model": torch.zeros(3, 2)}, r"lacks \['codebook'\]"),
    ({"codebook": torch.zeros(3, 2), "optimizer": {}}, r"holds \['optimizer'\] besides 'codebook'"),
    ({"codebook": torch.zeros(6)}, r"must be a \(K, D\) tensor"),
    (torch.zeros(3, 2), "lacks"),
])
def test_wrong_container(tmp_path, container, match):
    path = tmp_path / "codebook-layer-11-k-3-00000000.pt"
    torch.save(container, path)
    with pytest.raises(ConversionError, match=match):
        codebook_format.convert([path])


def test_conversion_takes_one_file():
    with pytest.raises(ConversionError, match="takes one file"):
        codebook_format.convert([ORIGINAL, ORIGINAL])


def test_unreleased_codebook_lists_the_released_ones():
    with pytest.raises(InputError, match=r"codebook\(layer=3, k=20\) was never released; available: .*"
                                         r"\(layer=11, k=100\).*\(layer=11, k=2000\)"):
        hubconf.codebook(layer=3, k=20)


def test_forward_rejects_features_of_another_dimension(converted):
    with pytest.raises(InputError, match="dimension 32, the codebook 64"):
        Codebook.from_pretrained(converted)(torch.zeros(5, 32))


def test_from_tensor_needs_a_matrix():
    with pytest.raises(InputError, match=r"\(K, D\)"):
        Codebook.from_tensor(torch.zeros(5))


def test_model_cards_are_generated_and_current():
    assert model_cards.main(["--check"]) == 0
    card = model_cards.cards()[model_cards.CARDS / "wavlm-large-layer11-kmeans500.md"]
    assert 'torch.hub.load("speechzoo/speechzoo", "codebook", layer=11, k=500, trust_repo=True)' in card
    assert "codebook-layer-11-k-500-2c2dee95.pt" in card and "λ ∈ {0, 600, 1500, 2800, 4500, 7000}" in card
