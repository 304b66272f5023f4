"""DPDP: the original's fixtures, the original O(T²·K) recursion on generated inputs, batching, errors."""
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hubconf
from zoo.errors import InputError
from zoo.models import dpdp as dpdp_module
from zoo.models.dpdp import DPDPQuantizer, dpdp
from zoo.models.codebook import Codebook
from zoo.nn.ragged import PAD_UNIT

from harness import load_case


# ------------------------------------------------------------------------------------------ the original
def original_units(features: torch.Tensor, codebook: torch.Tensor, lmbda: float, num_neighbors=None) -> list[int]:
    """The original ``dpdp`` (nicolvisser/dpdp) transcribed step by step, in float64: for every prefix length t,
    try every start s of the last segment, each with its best code; keep the first minimum; backtrack."""
    distances = torch.cdist(features, codebook, p=2.0) ** 2
    num_frames, num_codes = distances.shape
    if num_neighbors is not None:
        farthest = distances.topk(num_codes - num_neighbors, dim=1, largest=True, sorted=True).indices
        distances[torch.arange(num_frames)[:, None], farthest] = float("inf")
    distances = distances.double()
    alpha = torch.zeros(num_frames + 1, dtype=torch.float64)
    beta, gamma = [0] * (num_frames + 1), [0] * (num_frames + 1)
    for t in range(1, num_frames + 1):
        segment_sums = distances[:t].flip(0).cumsum(0).flip(0)  # [s, k] = sum of D[s:t, k]
        best_per_start, code_per_start = segment_sums.min(1)
        durations = t - torch.arange(t, dtype=torch.float64)
        costs = alpha[:t] + best_per_start + lmbda * (1 - durations)
        alpha[t], start = costs.min(0)
        beta[t], gamma[t] = int(start), int(code_per_start[start])
    units, end = [0] * num_frames, num_frames
    while end > 0:
        units[beta[end]:end] = [gamma[end]] * (end - beta[end])
        end = beta[end]
    return units


# ------------------------------------------------------------------------------------------ fixtures
def fixture_runs(io):
    """(features key, lmbda, num_neighbors, units key, quantized key) of a fixture: a single run (keys lmbda,
    num_neighbors, units, quantized) or a sweep (units[__FEATURES]__lmbdaL[_nnN])."""
    if "lmbda" in io:
        n = int(io["num_neighbors"]) if "num_neighbors" in io else -1
        yield "features", float(io["lmbda"]), (n if n > 0 else None), "units", "quantized"
        return
    for key in io:
        if key.startswith("units__"):
            parts = key.split("__")[1:]
            lmbda, _, n = parts[-1].removeprefix("lmbda").partition("_nn")
            features = parts[0] if len(parts) == 2 else "features"
            yield features, float(lmbda), (int(n) if n else None), key, "quantized__" + "__".join(parts)


@pytest.mark.cases("dpdp/*")
def test_fixture_units_and_quantized(case):
    runs = list(fixture_runs(case.io))
    assert runs
    for features, lmbda, num_neighbors, units_key, quantized_key in runs:
        quantizer = hubconf.dpdp_quantizer_from_codebook(case.io["codebook"], lmbda, num_neighbors)
        with torch.no_grad():
            quantized, units = quantizer(case.io[features])
        assert torch.equal(units, case.io[units_key]), f"{units_key}: {(units != case.io[units_key]).sum()} differ"
        torch.testing.assert_close(quantized, case.io[quantized_key], **case.tolerance("quantized"))


@pytest.mark.cases("dpdp/*")
def test_fixture_codebook_container_converts(case, convert):
    """The original quantizer's state_dict is the WavLM-codebooks container."""
    converted = Codebook.from_pretrained(convert("codebook", case.original / "codebook.pt"))
    assert torch.equal(converted.codebook, case.io["codebook"])


def test_long_fixture_needs_more_than_float32_accumulation():
    """At λ=0 the units are the per-frame nearest codes, which the long fixture reproduces."""
    io = load_case("dpdp/long_T2000").io
    nearest = torch.cdist(io["features"], io["codebook"]).argmin(1)
    assert torch.equal(nearest, io["units__lmbda0"])


# ------------------------------------------------------------------------------------------ against the original
@st.composite
def integer_problems(draw):
    """Small integer features and codebooks (duplicated rows included): every distance and every sum is exact in
    float64, so exact ties between segmentations are common and only the tie-breaking rules decide."""
    dim = draw(st.integers(1, 3))
    num_codes = draw(st.integers(1, 6))
    num_frames = draw(st.integers(0, 40))  # > 25 frames: cdist switches to its matrix-multiplication form
    values = st.integers(-2, 2)
    codebook = torch.tensor(draw(st.lists(st.lists(values, min_size=dim, max_size=dim), min_size=num_codes,
                                          max_size=num_codes)), dtype=torch.float32)
    if num_codes > 1 and draw(st.booleans()):
        codebook[draw(st.integers(1, num_codes - 1))] = codebook[0]
    features = torch.tensor(draw(st.lists(st.lists(values, min_size=dim, max_size=dim), min_size=num_frames,
                                          max_size=num_frames)), dtype=torch.float32).reshape(num_frames, dim)
    lmbda = float(draw(st.sampled_from([0, 1, 2, 3, 7, 30, 10**6])))
    num_neighbors = draw(st.one_of(st.none(), st.just(1), st.just(num_codes), st.integers(1, num_codes)))
    return features, codebook, lmbda, num_neighbors


BLOCK_SIZES = st.sampled_from([1, 5, 64, dpdp_module._BLOCK_ELEMENTS])  # frames × codes per decision block


@pytest.mark.slow
@settings(max_examples=300, deadline=None, derandomize=True)  # the same 300 problems in every run
@given(integer_problems(), BLOCK_SIZES)
def test_same_units_as_original_recursion_with_exact_ties(problem, block_elements):
    features, codebook, lmbda, num_neighbors = problem
    with mock.patch.object(dpdp_module, "_BLOCK_ELEMENTS", block_elements):
        units = dpdp(features, codebook, lmbda, num_neighbors)
    assert units.tolist() == original_units(features, codebook, lmbda, num_neighbors)


@settings(max_examples=100, deadline=None)
@given(num_frames=st.integers(1, 60), num_codes=st.integers(1, 30), dim=st.integers(1, 8),
       lmbda=st.sampled_from([0.0, 0.5, 3.0, 20.0, 1e4]), seed=st.integers(0, 2**31), data=st.data())
def test_same_units_as_original_recursion_on_random_features(num_frames, num_codes, dim, lmbda, seed, data):
    generator = torch.Generator().manual_seed(seed)
    codebook = torch.randn(num_codes, dim, generator=generator)
    true_codes = torch.randint(num_codes, (num_frames,), generator=generator)
    features = codebook[true_codes] + 0.7 * torch.randn(num_frames, dim, generator=generator)
    num_neighbors = data.draw(st.one_of(st.none(), st.integers(1, num_codes)))
    units = DPDPQuantizer.from_codebook(codebook, lmbda, num_neighbors)(features)[1]
    assert units.tolist() == original_units(features, codebook, lmbda, num_neighbors)


#: Problems whose optimal segmentations tie exactly (integer distances), the units the original's rule picks, and
#: why: for every prefix it takes the FIRST minimum over segment starts (the longest last segment), and for every
#: start the first minimum over codes (the lowest code).
TIES = {
    # the middle frame is as far from both codes: [0 | 1 1] and [0 0 | 1] both cost 1 - λ; the longest last
    # segment takes the tied frame
    "start_tie_goes_to_the_last_segment": ([[0.0], [1.0], [2.0]], [[0.0], [2.0]], 1.0, [0, 1, 1]),
    # mirrored, the tied frame still joins the last segment (so the rule is about starts, not codes)
    "start_tie_goes_to_the_last_segment_mirrored": ([[2.0], [1.0], [0.0]], [[0.0], [2.0]], 1.0, [1, 0, 0]),
    # at λ = 0 every boundary is free: the same tie, settled the same way
    "start_tie_at_zero_lambda": ([[0.0], [1.0], [2.0]], [[0.0], [2.0]], 0.0, [0, 1, 1]),
    # both codes cost 2 for the one segment and for two: one segment (longest) of the lowest code
    "code_tie_goes_to_the_lowest_code": ([[1.0], [1.0]], [[0.0], [2.0]], 1.0, [0, 0]),
    "code_tie_at_zero_lambda": ([[1.0], [1.0]], [[2.0], [0.0]], 0.0, [0, 0]),
    # a later tie inside a longer run: [0 0 | 1 1 1] and [0 0 0 | 1 1] cost the same
    "start_tie_after_a_settled_segment": ([[0.0], [0.0], [1.0], [2.0], [2.0]], [[0.0], [2.0]], 1.0, [0, 0, 1, 1, 1]),
}


@pytest.mark.parametrize("block_elements", [1, 5, 64, dpdp_module._BLOCK_ELEMENTS])
@pytest.mark.parametrize("name", TIES)
def test_exact_ties_follow_the_originals_rule(name, block_elements):
    features, codebook, lmbda, expected = TIES[name]
    features, codebook = torch.tensor(features), torch.tensor(codebook)
    assert original_units(features, codebook, lmbda) == expected
    with mock.patch.object(dpdp_module, "_BLOCK_ELEMENTS", block_elements):
        assert dpdp(features, codebook, lmbda).tolist() == expected
        batch = torch.stack([features, features.flip(0)])  # batched: each item keeps its own tie
        assert dpdp(batch, codebook, lmbda)[0].tolist() == expected


def test_duplicated_code_resolves_to_lowest_index():
    codebook = torch.tensor([[0.0, 0.0], [3.0, 3.0], [3.0, 3.0]])
    features = torch.tensor([[0.0, 0.1], [2.9, 3.0], [3.1, 3.0], [0.1, 0.0]])
    for lmbda in (0.0, 1.0):
        assert dpdp(features, codebook, lmbda).tolist() == [0, 1, 1, 0]


def test_extremes_of_lambda_and_neighbors():
    generator = torch.Generator().manual_seed(1)
    codebook = torch.randn(16, 4, generator=generator)
    features = torch.randn(50, 4, generator=generator)
    nearest = torch.cdist(features, codebook).argmin(1)
    assert torch.equal(dpdp(features, codebook, 0.0), nearest)
    assert torch.equal(dpdp(features, codebook, 1e6, num_neighbors=1), nearest)  # only the nearest code allowed
    one_segment = (torch.cdist(features, codebook) ** 2).sum(0).argmin()
    assert dpdp(features, codebook, 1e6).tolist() == [int(one_segment)] * 50
    assert torch.equal(dpdp(features, codebook, 5.0, num_neighbors=16), dpdp(features, codebook, 5.0))


def test_one_and_zero_frames():
    quantizer = DPDPQuantizer.from_codebook(torch.eye(3), lmbda=1.0)
    quantized, units = quantizer(torch.tensor([[0.0, 0.9, 0.0]]))
    assert units.tolist() == [1] and quantized.tolist() == [[0.0, 1.0, 0.0]]
    quantized, units = quantizer(torch.zeros(0, 3))
    assert units.shape == (0,) and units.dtype == torch.int64 and quantized.shape == (0, 3)


# ------------------------------------------------------------------------------------------ batching
@settings(max_examples=40, deadline=None)
@given(lengths=st.lists(st.integers(0, 30), min_size=1, max_size=4), lmbda=st.sampled_from([0.0, 2.0, 50.0]),
       num_neighbors=st.sampled_from([None, 2]), seed=st.integers(0, 2**31), block_elements=BLOCK_SIZES)
def test_batched_equals_one_by_one(lengths, lmbda, num_neighbors, seed, block_elements):
    generator = torch.Generator().manual_seed(seed)
    quantizer = DPDPQuantizer.from_codebook(torch.randn(6, 3, generator=generator), lmbda, num_neighbors)
    items = [torch.randn(n, 3, generator=generator) for n in lengths]
    batch = torch.full((len(lengths), max(lengths), 3), float("nan"))  # padding is never looked at
    for i, item in enumerate(items):
        batch[i, :len(item)] = item
    with mock.patch.object(dpdp_module, "_BLOCK_ELEMENTS", block_elements):
        quantized, units = quantizer(batch, torch.tensor(lengths))
    for i, item in enumerate(items):
        item_quantized, item_units = quantizer(item)
        assert torch.equal(units[i, :len(item)], item_units)
        assert torch.equal(quantized[i, :len(item)], item_quantized)
        assert (units[i, len(item):] == PAD_UNIT).all() and (quantized[i, len(item):] == 0).all()


def test_batch_without_lengths_is_full_length():
    generator = torch.Generator().manual_seed(2)
    quantizer = DPDPQuantizer.from_codebook(torch.randn(5, 2, generator=generator), lmbda=1.0)
    batch = torch.randn(3, 12, 2, generator=generator)
    quantized, units = quantizer(batch)
    assert units.shape == (3, 12) and quantized.shape == (3, 12, 2)
    for i in range(3):
        assert torch.equal(units[i], quantizer(batch[i])[1])


# ------------------------------------------------------------------------------------------ module
def test_straight_through_output():
    codebook = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    features = torch.tensor([[0.1, 0.2], [0.8, 0.9], [1.1, 1.0]], requires_grad=True)
    quantized, units = DPDPQuantizer.from_codebook(codebook, lmbda=0.0)(features)
    assert units.tolist() == [0, 1, 1]
    assert torch.equal(quantized, features - (features - codebook[units]))  # value: the codes, up to rounding
    quantized.mul(torch.tensor([2.0, 3.0])).sum().backward()
    assert features.grad.tolist() == [[2.0, 3.0]] * 3  # gradient: straight through to the features


def test_quantizer_holds_a_movable_codebook(tmp_path):
    codebook = torch.randn(4, 3, generator=torch.Generator().manual_seed(3))
    quantizer = DPDPQuantizer.from_codebook(codebook, lmbda=2.5, num_neighbors=2)
    assert list(quantizer.state_dict()) == ["codebook"] and torch.equal(quantizer.codebook, codebook)
    assert quantizer.lmbda == 2.5 and quantizer.num_neighbors == 2
    features = torch.randn(9, 3, dtype=torch.float64)
    quantized, units = quantizer.double()(features)
    assert quantizer.codebook.dtype == quantized.dtype == torch.float64
    loaded = DPDPQuantizer.from_pretrained(quantizer.float().save_pretrained(tmp_path))
    assert loaded.config == quantizer.config and torch.equal(loaded(features)[1], units)


def test_hub_random_quantizer_like_the_original():
    torch.manual_seed(4)
    expected = torch.randn(7, 5)
    torch.manual_seed(4)
    quantizer = hubconf.dpdp_quantizer(7, 5, lmbda=3.0)
    assert torch.equal(quantizer.codebook, expected) and quantizer.lmbda == 3.0


def test_hub_quantizer_from_saved_weights_and_device(tmp_path):
    codebook = torch.randn(7, 5, generator=torch.Generator().manual_seed(5))
    saved = DPDPQuantizer.from_codebook(codebook, lmbda=1.0).save_pretrained(tmp_path / "q")
    quantizer = hubconf.dpdp_quantizer(7, 5, lmbda=3.0, num_neighbors=2, weights=saved)
    assert torch.equal(quantizer.codebook, codebook) and quantizer.lmbda == 3.0 and quantizer.num_neighbors == 2
    with pytest.raises(InputError, match=r"holds a \(7, 5\) codebook, not \(7, 4\)"):
        hubconf.dpdp_quantizer(7, 4, lmbda=3.0, weights=saved)
    assert hubconf.dpdp_quantizer(7, 5, lmbda=3.0, map_location="meta").codebook.is_meta
    assert hubconf.dpdp_quantizer_from_codebook(codebook, 3.0, map_location="meta").codebook.is_meta
    assert hubconf.dpdp_quantizer_from_codebook(codebook.to("meta"), 3.0).codebook.is_meta  # the codebook's device


# ------------------------------------------------------------------------------------------ errors
@pytest.fixture
def quantizer():
    return DPDPQuantizer.from_codebook(torch.eye(4), lmbda=1.0)


@pytest.mark.parametrize("features, lengths, match", [
    (torch.zeros(5, 3), None, "dimension 3 but the codebook has 4"),
    (torch.zeros(4), None, r"\(T, D\) or \(B, T, D\), got shape \(4,\)"),
    (torch.zeros(1, 1, 5, 4), None, "got shape"),
    (torch.tensor([[0.0, float("nan"), 0.0, 0.0]]), None, "^features hold NaN"),
    (torch.tensor([[[0.0, 0.0, float("inf"), 0.0]]] * 2), [1, 1], r"features\[0\] hold NaN or infinite"),
    (torch.zeros(3, 4, dtype=torch.long), None, "floating point"),
    (torch.zeros(3, 4), [3], "lengths go with batched"),
    (torch.zeros(2, 3, 4), [3], "2 integers"),
    (torch.zeros(2, 3, 4), [1.0, 2.0], "2 integers"),
    (torch.zeros(2, 3, 4), [True, True], "2 integers"),
    (torch.zeros(2, 3, 4), [1, 4], r"0\.\.3"),
    (np.zeros((3, 4), dtype=np.float32), None, "torch.Tensor"),
    (torch.zeros(3, 4, device="meta"), None, "move the quantizer"),
])
def test_bad_features(quantizer, features, lengths, match):
    with pytest.raises(InputError, match=match):
        quantizer(features, lengths)


@pytest.mark.parametrize("num_neighbors", [0, -1, 5, 2.0, True])
def test_bad_num_neighbors(num_neighbors):
    with pytest.raises(InputError, match=r"num_neighbors must be None or an integer in 1\.\.4"):
        DPDPQuantizer.from_codebook(torch.eye(4), lmbda=1.0, num_neighbors=num_neighbors)
    with pytest.raises(InputError, match=r"num_neighbors must be None or an integer in 1\.\.4"):
        hubconf.dpdp_quantizer_from_codebook(torch.eye(4), lmbda=1.0, num_neighbors=num_neighbors)


@pytest.mark.parametrize("lmbda", [float("nan"), float("inf"), -1.0, -1e-9])
def test_bad_lambda(lmbda):
    with pytest.raises(InputError, match="lmbda must be a finite number ≥ 0"):
        DPDPQuantizer.from_codebook(torch.eye(4), lmbda=lmbda)
    with pytest.raises(InputError, match="lmbda must be a finite number ≥ 0"):
        hubconf.dpdp_quantizer_from_codebook(torch.eye(4), lmbda=lmbda)


def test_bad_codebook():
    with pytest.raises(InputError, match=r"\(K, D\); got shape \(4,\)"):
        DPDPQuantizer.from_codebook(torch.zeros(4), lmbda=1.0)
    with pytest.raises(InputError, match=r"\(K, D\)"):
        dpdp(torch.zeros(3, 4), torch.zeros(4), 1.0)
