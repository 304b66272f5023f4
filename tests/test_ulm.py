"""Mistral-ULM: every fixture number through `python -m conversion ulm` → weights=DIR → hubconf.ulm, plus scoring,
generation, conversion options and errors."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import hubconf
from zoo.errors import ConversionError, InputError
from zoo.formats import ulm as ulm_format
from zoo.models.ulm import WEIGHTS, UnitLanguageModel, zerospeech_loglikelihoods
from zoo.nn.transformer import IncrementalDecoder
from zoo.registry import find

from benchmarks.references import ellav_cached as reference
from harness import conversion_cli, load_case

CASE = load_case("ulm/k20_gqa_ragged_batch3")
ELLAV_PT = load_case("ellav/units_k12_batch2_greedy_and_sampled").original / "ellav.pt"
#: Our log-likelihoods agree with the original's far closer than the case's tolerance (2e-3): assert that.
LL_CLOSE = dict(atol=1e-4, rtol=1e-5)


@pytest.fixture(scope="module")
def io():
    return CASE.io


@pytest.fixture(scope="module")
def converted(convert):
    return convert("ulm", CASE.original / "checkpoint.pt")


@pytest.fixture(scope="module")
def loaded(converted):
    k = json.loads((CASE.original / "model_config.json").read_text())["vocab_size"] - 1
    return hubconf.ulm(k=k, lmbda=0, weights=converted)


@pytest.fixture(scope="module")
def units(io):
    return [u.tolist() for u in io["units_flat"].split(io["units_lengths"].tolist())]


def test_tokenizer_matches_the_original(loaded, io, units):
    _, tokenizer = loaded
    encoded = [tokenizer.encode(u) for u in units]
    assert torch.equal(torch.cat(encoded), io["encoded_ids_flat"])
    assert [tokenizer.decode(ids) for ids in encoded] == units


def test_packed_logits_match_the_original(loaded, io):
    model, _ = loaded
    with torch.inference_mode():
        logits = model(io["input_ids"], io["seqlens"].tolist())
    assert logits.dtype == torch.float32
    CASE.assert_close("logits", logits)


def test_loglikelihood_of_each_sequence(loaded, io, units):
    model, tokenizer = loaded
    got = torch.tensor([model.loglikelihood(tokenizer.encode(u)) for u in units])
    torch.testing.assert_close(got, io["loglikelihood_single"], **LL_CLOSE)


def test_batched_scoring_equals_the_zerospeech_script(loaded, io, units):
    model, tokenizer = loaded
    got = model.loglikelihoods([tokenizer.encode(u) for u in units], batch_size=2)  # as the fixture's script run
    torch.testing.assert_close(got, io["loglikelihood_script"], **LL_CLOSE)
    CASE.assert_close("loglikelihood_single", got, rtol=0)


def test_zerospeech_script_output_file(loaded, io, units, tmp_path):
    model, _ = loaded
    for i, u in enumerate(units):
        np.save(tmp_path / f"utt{i:02d}.npy", np.array(u, dtype=np.int64))
    out = tmp_path / "scores.txt"
    scores = zerospeech_loglikelihoods(model, tmp_path, out, batch_size=2, progress=False)
    lines = out.read_text().split("\n")
    assert [line.split()[0] for line in lines] == ["utt00", "utt01", "utt02"]
    torch.testing.assert_close(torch.tensor([float(line.split()[1]) for line in lines]), io["loglikelihood_script"],
                               **LL_CLOSE)
    assert list(scores) == ["utt00", "utt01", "utt02"]
    assert not out.read_text().endswith("\n")


def test_greedy_generation_with_cache_equals_full_reforward(loaded, units):
    model, _ = loaded
    cached = model.generate(units[0], max_new_tokens=40, temperature=0.0)
    recomputed = model.generate(units[0], max_new_tokens=40, temperature=0.0, use_cache=False)
    assert cached.shape == (40,) and cached.dtype == torch.long
    assert torch.equal(cached, recomputed)
    assert 0 <= int(cached.min()) and int(cached.max()) < 20


def test_generation_continues_the_prompt_greedily(loaded, units):
    """Each greedy unit is the argmax of the full forward over the prompt plus the units before it."""
    model, tokenizer = loaded
    new = model.generate(units[1], max_new_tokens=6, temperature=0.0)
    ids = tokenizer.encode(units[1] + new.tolist())
    with torch.inference_mode():
        logits = model(ids[:-1], [len(ids) - 1])
    start = len(units[1])
    assert torch.equal(logits[start:, 1:].argmax(-1), new)  # BOS (column 0) is never drawn


def test_ragged_batch_generation_equals_one_by_one(loaded, units):
    model, _ = loaded
    batch = model.generate(units, max_new_tokens=12, temperature=0.0)
    assert batch.shape == (3, 12)
    for row, prompt in zip(batch, units):
        assert torch.equal(row, model.generate(torch.tensor(prompt), max_new_tokens=12, temperature=0.0))


def eight_ragged_prompts(units: list[list[int]]) -> list[list[int]]:
    """Eight prompts of six different lengths (1 … 15 units), two of them the same prompt."""
    return [units[0], units[1], units[2], units[0][:1], units[0][:12], units[1][::-1][:3], units[0], units[2][1:]]


def test_eight_ragged_prompts_greedy_equal_one_by_one_and_the_cached_original(loaded, units):
    """Right-aligned rows (one slice write per step, no mask but the fixed key mask) generate what each prompt
    generates alone, and what the original's cached loop (benchmarks/references/ellav_cached.py) generates."""
    model, tokenizer = loaded
    prompts = eight_ragged_prompts(units)
    assert len({len(p) for p in prompts}) == 6
    batch = model.generate(prompts, max_new_tokens=15, temperature=0.0)
    assert batch.shape == (8, 15)
    for row, prompt in zip(batch, prompts):
        assert torch.equal(row, model.generate(prompt, max_new_tokens=15, temperature=0.0))
    original = reference.ReferenceTransformer(model.config).eval()
    original.load_state_dict(model.transformer.state_dict())
    ids = reference.generate_ulm(original, [tokenizer.encode(p).tolist() for p in prompts], 15, 0.0, 1.0)
    assert torch.equal(ids - 1, batch)


def test_sampled_batch_draws_what_the_cached_original_draws(loaded, units):
    """One multinomial per step over the (B, vocab) batch, as the original's loop: same seed, same units — the
    three copies of one prompt (the DP-SLM README's three samples per prompt) each get their own."""
    model, tokenizer = loaded
    prompts = [units[0]] * 3 + [units[1]] * 3 + [units[2][:4], units[2]]
    torch.manual_seed(5)
    ours = model.generate(prompts, max_new_tokens=20, temperature=1.0, top_p=0.9)
    original = reference.ReferenceTransformer(model.config).eval()
    original.load_state_dict(model.transformer.state_dict())
    torch.manual_seed(5)
    theirs = reference.generate_ulm(original, [tokenizer.encode(p).tolist() for p in prompts], 20, 1.0, 0.9)
    assert torch.equal(ours, theirs - 1)
    assert not torch.equal(ours[0], ours[1]) and not torch.equal(ours[3], ours[4])


def test_bfloat16_generation_end_to_end(converted, units):
    """dtype=bfloat16 from loading to the cache: the batch runs in bfloat16 (logits float32, as the original's
    ``.float()``) and its first logits agree with float32's to bfloat16 precision."""
    model32 = UnitLanguageModel.from_pretrained(converted)
    model16 = UnitLanguageModel.from_pretrained(converted, dtype=torch.bfloat16)
    assert {p.dtype for p in model16.parameters()} == {torch.bfloat16}
    prompts = eight_ragged_prompts(units)
    decoder = IncrementalDecoder(model16.transformer, len(prompts), 20)
    ids = [model16.tokenizer.encode(p) for p in prompts]
    logits16 = decoder(torch.cat(ids), [len(i) for i in ids])
    assert decoder.cache.keys.dtype == torch.bfloat16 and logits16.dtype == torch.float32
    with torch.inference_mode():
        logits32 = IncrementalDecoder(model32.transformer, len(prompts), 20)(torch.cat(ids), [len(i) for i in ids])
    torch.testing.assert_close(logits16, logits32, atol=0.05 * float(logits32.abs().max()), rtol=0)
    continuation = model16.generate(prompts, max_new_tokens=10, temperature=1.0, top_p=0.9)
    assert continuation.shape == (8, 10) and 0 <= int(continuation.min()) and int(continuation.max()) < 20


def test_zero_new_tokens_gives_empty_continuations(loaded, units):
    model, _ = loaded
    assert model.generate(units[0], max_new_tokens=0).shape == (0,)
    assert model.generate(units, max_new_tokens=0).shape == (3, 0)


def test_seeded_sampling_is_reproducible_and_never_draws_bos(converted, units):
    model = UnitLanguageModel.from_pretrained(converted)
    with torch.no_grad():  # make BOS the most likely token everywhere: masking it must still yield units
        model.transformer.output.weight[0] = 10 * model.transformer.output.weight.abs().max()
    draws = []
    for _ in range(2):
        torch.manual_seed(7)
        draws.append(model.generate([units[2], units[0]], max_new_tokens=25, temperature=1.0, top_p=0.9))
    assert torch.equal(draws[0], draws[1])
    assert int(draws[0].min()) >= 0


def with_logits_scaled(model: UnitLanguageModel, factor: float) -> UnitLanguageModel:
    """A copy of ``model`` whose logits are ``factor`` times the original's (its output layer scaled)."""
    scaled = UnitLanguageModel(model.config)
    scaled.load_state_dict(model.state_dict())
    with torch.no_grad():
        for p in scaled.transformer.output.parameters():
            p.mul_(factor)
    return scaled.eval()


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_sampling_at_a_temperature_draws_from_logits_divided_by_it(loaded, units, temperature):
    """Temperature T draws what T = 1 draws from logits / T (exactly: T is a power of two), seed for seed."""
    model, _ = loaded
    scaled = with_logits_scaled(model, 1 / temperature)
    torch.manual_seed(3)
    hot = model.generate([units[2], units[0]], max_new_tokens=30, temperature=temperature, top_p=0.9)
    torch.manual_seed(3)
    assert torch.equal(hot, scaled.generate([units[2], units[0]], max_new_tokens=30, temperature=1.0, top_p=0.9))


def test_model_config_json_beside_an_args_less_checkpoint(tmp_path, convert, io):
    container = torch.load(CASE.original / "checkpoint.pt", weights_only=True)
    torch.save({"model_state_dict": container["model_state_dict"]}, tmp_path / "checkpoint.pt")
    refused = conversion_cli("ulm", tmp_path / "checkpoint.pt", "--out", tmp_path / "refused")
    assert refused.returncode == 2 and "pass the model_config.json" in refused.stderr
    shutil.copy(CASE.original / "model_config.json", tmp_path / "elsewhere.json")
    from_option = convert("ulm", tmp_path / "checkpoint.pt", "--config", tmp_path / "elsewhere.json")
    shutil.copy(CASE.original / "model_config.json", tmp_path / "model_config.json")
    beside = convert("ulm", tmp_path / "checkpoint.pt")
    with torch.inference_mode():
        for directory in (from_option, beside):
            CASE.assert_close("logits", UnitLanguageModel.from_pretrained(directory)(io["input_ids"],
                                                                                    io["seqlens"].tolist()))


def test_wrong_model_checkpoint_is_refused():
    with pytest.raises(ConversionError, match="not a Mistral-ULM checkpoint"):
        ulm_format.convert([ELLAV_PT])


def test_bad_inputs_are_clear_errors(loaded):
    model, tokenizer = loaded
    with pytest.raises(InputError, match=r"units \[20\] lie outside .* k=20"):
        tokenizer.encode([3, 20])
    with pytest.raises(InputError, match="outside"):
        model.generate([[1, 2], [-1]], max_new_tokens=3)
    with pytest.raises(InputError, match="integers"):
        tokenizer.encode([0.5, 1.0])
    with pytest.raises(InputError, match="empty prompt"):
        model.generate([], max_new_tokens=3)
    with pytest.raises(InputError, match="empty prompt"):
        model.generate([[1, 2], []], max_new_tokens=3)
    with pytest.raises(InputError, match="max_new_tokens"):
        model.generate([1, 2], max_new_tokens=-1)
    with pytest.raises(InputError, match="8000 positions"):
        model.generate([1] * 7990, max_new_tokens=20)
    with pytest.raises(InputError, match="BOS plus at least one unit"):
        model.loglikelihood(tokenizer.encode([]))
    with pytest.raises(InputError, match=r"token ids \[21\]"):
        model(torch.tensor([0, 21]), [2])


def test_unreleased_k_lmbda_lists_the_released_ones():
    with pytest.raises(InputError, match=r"ulm\(k=500, lmbda=4000\) was never released; available: .*"
                                         r"\(k=500, lmbda=4500\)"):
        hubconf.ulm(k=500, lmbda=4000)
    with pytest.raises(InputError, match=r"available: \(k=500, lmbda=4500\)$"):
        hubconf.ulm_wavlm_layer_11_dpdp_hours_60k_steps_200k(k=100, lmbda=0)


def test_registry_has_every_release_with_its_hash():
    assert len(WEIGHTS) == 4 * 6 + 1
    assert len({w.name for w in WEIGHTS}) == len(WEIGHTS)
    for w in WEIGHTS:
        (source,) = w.source_files
        assert source.url.endswith(f"-{source.sha256}.pt") and len(source.sha256) == 8
        assert w.converter == "ulm"
    assert find("ulm", k=100, lmbda=9000).source_url.endswith("hours-1k-steps-10k-92bc9c97.pt")
    assert find("ulm_wavlm_layer_11_dpdp_hours_60k_steps_200k", k=500, lmbda=4500).source_url.endswith(
        "mistral-ulm-k-500-lmbda-4500-hours-60k-steps-200k-09759305.pt")
