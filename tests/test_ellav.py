"""ELLA-V: every fixture output through `python -m conversion ellav` → weights=DIR → hubconf entry point, plus the
generation rules (cache, chunks, ragged batches), the tokenizer, conversion errors and bad inputs."""
from __future__ import annotations

import pytest
import torch

import hubconf
from zoo.errors import ConversionError, InputError
from zoo.formats import ellav as ellav_format
from zoo.models.ellav import ELLAV, EOP_ID, EOS_ID, WEIGHTS
from zoo.registry import find

from benchmarks.references import ellav_cached as reference
from harness import load_case

CASE = load_case("ellav/units_k12_batch2_greedy_and_sampled")
ULM_PT = load_case("ulm/k20_gqa_ragged_batch3").original / "checkpoint.pt"
META = CASE.meta
PROMPTS = META["literal_inputs"]["prompts"]


def run_kwargs(run: str) -> dict:
    return {k: v for k, v in META["call"][f"{run}_kwargs"].items() if k != "strict"}


@pytest.fixture(scope="module")
def io():
    return CASE.io


@pytest.fixture(scope="module")
def model(convert):
    return hubconf.ellav_units_to_wavtokenizer(k=0, lmbda=0, weights=convert("ellav", CASE.original / "ellav.pt"))


def test_tokenizer_sorts_units_lexicographically_as_the_original(model, io):
    tokenizer = model.tokenizer
    assert tokenizer.token_to_id["u10"] == 6 and tokenizer.token_to_id["u2"] == 8  # u0, u1, u10, u11, u2, …
    for i, prompt in enumerate(PROMPTS):
        assert tokenizer.encode_infer(prompt) == io[f"gen_prompt_ids.{i}"].tolist()
    for i in range(2):
        phones = [f"u{u}" for u in io[f"train_units.{i}"].tolist()]
        ids, user_input = tokenizer.encode_train(phones, io[f"train_codec.{i}"])
        assert torch.equal(ids, io[f"train_ids.{i}"])
        assert torch.equal(user_input.long(), io[f"train_user_input_mask.{i}"])
    assert tokenizer.decode([0, 1, 2, 3, 4, 15, 16, 39]) == [0, 23]


def test_training_forward_logits(model, io):
    with torch.inference_mode():
        logits = model(io["src_ids"], io["seqlens"].tolist())
    CASE.assert_close("logits", logits)


def test_greedy_generation_token_for_token(model, io):
    codec_ids, finished = model.generate(PROMPTS, **run_kwargs("greedy"), strict=False)
    for i, ids in enumerate(codec_ids):
        assert ids.dtype == torch.long
        assert torch.equal(ids, io[f"gen_codec_ids.{i}"])
    assert finished == io["gen_finished"].bool().tolist()
    encoded = [model.tokenizer.encode_infer(p) for p in PROMPTS]
    raw, _ = model.generate_raw(encoded, **run_kwargs("greedy"))
    assert torch.equal(raw, io["gen_raw_ids"])  # every kept id: codec, EOP, forced phones, EOS


@pytest.mark.parametrize("run", ["sample", "top1"])
def test_seeded_sampling_draws_what_the_original_drew(model, io, run):
    torch.manual_seed(META["call"][f"{run}_seed"])
    codec_ids, finished = model.generate(PROMPTS, **run_kwargs(run), strict=False)
    for i, ids in enumerate(codec_ids):
        assert torch.equal(ids, io[f"{run}_codec_ids.{i}"])
    assert finished == io[f"{run}_finished"].bool().tolist()
    torch.manual_seed(META["call"][f"{run}_seed"])
    raw, _ = model.generate_raw([model.tokenizer.encode_infer(p) for p in PROMPTS], **run_kwargs(run))
    want = io[f"{run}_raw_ids"]
    assert raw.shape == want.shape
    # after a row finished, EOP and EOS tie at 1e9 and which is drawn is the kernels' business (case.json note)
    for row, finish in enumerate(META["call"][f"{run}_info"]["row_finish_index"]):
        end = want.shape[1] if finish is None else finish + 1
        assert torch.equal(raw[row, :end], want[row, :end])


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_sampling_at_a_temperature_draws_from_logits_divided_by_it(model, temperature):
    """Temperature T draws what T = 1 draws from logits / T (exactly: T is a power of two), seed for seed; forced
    tokens stay forced (their 1e9 logits dominate at any temperature)."""
    scaled = ELLAV(model.config)
    scaled.load_state_dict(model.state_dict())
    with torch.no_grad():
        for p in scaled.transformer.output.parameters():  # weight and bias: logits / temperature
            p.div_(temperature)
    encoded = [model.tokenizer.encode_infer(p) for p in PROMPTS]
    kwargs = {**run_kwargs("sample"), "temperature": temperature}
    torch.manual_seed(11)
    hot, hot_finished = model.generate_raw(encoded, **kwargs)
    torch.manual_seed(11)
    plain, plain_finished = scaled.eval().generate_raw(encoded, **{**kwargs, "temperature": 1.0})
    assert torch.equal(hot, plain) and hot_finished == plain_finished


def test_forcing_rules_hold_on_the_raw_ids(model, io):
    """Every phone after the first is announced right after an EOP, and no phone runs past its codec budget."""
    limit = run_kwargs("greedy")["max_codec_tokens_per_phone"]
    for row, prompt in zip(io["gen_raw_ids"].tolist(), PROMPTS):
        encoded = model.tokenizer.encode_infer(prompt)
        phones = encoded[: len(encoded) - 2]
        since_eop, phone = 0, 0
        for prev, token in zip([None] + row, row):
            if prev == EOP_ID and phone + 1 < len(phones):
                phone += 1
                assert token == phones[phone]
            since_eop = 0 if token == EOP_ID else since_eop + 1
            assert since_eop <= limit + 2  # phone 0: limit + 2 tokens; later ones: forced phone + (limit + 1)
        assert phone == len(phones) - 1  # every phone was reached


def test_cache_and_full_reforward_generate_the_same(model):
    encoded = [model.tokenizer.encode_infer(p) for p in PROMPTS]
    cached, done = model.generate_raw(encoded, **run_kwargs("greedy"))
    recomputed, done_too = model.generate_raw(encoded, **run_kwargs("greedy"), use_cache=False)
    assert torch.equal(cached, recomputed) and done == done_too


def test_chunked_prefill_equals_one_chunk(model):
    prompts = [PROMPTS[0], PROMPTS[0][::-1]]  # same number of distinct phones -> same chunk count
    one = model.generate(prompts, **run_kwargs("greedy"), strict=False)
    chunked = model.generate(prompts, **{**run_kwargs("greedy"), "chunk_size": 4}, strict=False)
    assert all(torch.equal(a, b) for a, b in zip(one[0], chunked[0])) and one[1] == chunked[1]
    with pytest.raises(InputError, match="every prompt must be non-empty in every chunk"):
        model.generate(PROMPTS, **{**run_kwargs("greedy"), "chunk_size": 5})


def test_ragged_batch_rows_equal_rows_alone(model):
    batch, _ = model.generate(PROMPTS, **run_kwargs("greedy"), strict=False)
    for prompt, codec_ids in zip(PROMPTS, batch):
        alone, finished = model.generate([prompt], **run_kwargs("greedy"), strict=False)
        assert torch.equal(alone[0], codec_ids) and finished == [True]


def cached_original(model: ELLAV) -> reference.ReferenceTransformer:
    """The original's cached inference transformer (benchmarks/references/ellav_cached.py) with ``model``'s weights."""
    original = reference.ReferenceTransformer(model.config.transformer).eval()
    original.load_state_dict(model.transformer.state_dict())
    return original


def original_generate(original: reference.ReferenceTransformer, encoded: list[list[int]], seed: int,
                      **kwargs) -> tuple[torch.Tensor, list[bool]]:
    torch.manual_seed(seed)
    raw, finished = reference.generate(original, encoded, **kwargs, eop_id=EOP_ID, eos_id=EOS_ID)
    return torch.tensor(raw, dtype=torch.long).view(len(encoded), -1), finished


@pytest.mark.parametrize("run", ["greedy", "sample", "top1"])
def test_cached_original_reference_reproduces_the_fixtures(model, io, run):
    """The benchmark's baseline is the original: it draws the fixture's ids (up to each row's finishing EOP, as in
    test_seeded_sampling_draws_what_the_original_drew)."""
    encoded = [model.tokenizer.encode_infer(p) for p in PROMPTS]
    raw, finished = original_generate(cached_original(model), encoded, META["call"].get(f"{run}_seed", 0),
                                      **run_kwargs(run))
    prefix = "gen" if run == "greedy" else run
    want = io[f"{prefix}_raw_ids"]
    assert raw.shape == want.shape and finished == io[f"{prefix}_finished"].bool().tolist()
    for row, finish in enumerate(META["call"][f"{run}_info"]["row_finish_index"]):
        end = want.shape[1] if finish is None else finish + 1
        assert torch.equal(raw[row, :end], want[row, :end])


def eight_prompts() -> list[list[str]]:
    """Eight prompts of five different lengths, the first three the same prompt (three samples, as DP-SLM)."""
    a, b = PROMPTS
    return [a, a, a, b, a[: len(a) // 2], b[::-1], [b[0]], a + b]


def test_eight_ragged_prompts_equal_one_by_one_and_the_cached_original(model):
    """Greedy, and top-p 0 at temperature 1 (deterministic yet drawing from the RNG): the batch of eight keeps
    each row's tokens as it would alone, and the original's cached loop draws the same raw ids."""
    prompts = eight_prompts()
    encoded = [model.tokenizer.encode_infer(p) for p in prompts]
    assert len({len(e) for e in encoded}) >= 5
    original = cached_original(model)
    for run in ("greedy", "top1"):
        kwargs = {**run_kwargs(run), "max_tokens": 60}
        torch.manual_seed(0)
        batch, finished = model.generate_raw(encoded, **kwargs)
        original_ids, original_finished = original_generate(original, encoded, 0, **kwargs)
        assert torch.equal(batch, original_ids) and finished == original_finished
        codec_ids, _ = model.generate(prompts, **kwargs, strict=False)
        for prompt, ids in zip(prompts, codec_ids):
            alone, _ = model.generate([prompt], **kwargs, strict=False)
            assert torch.equal(alone[0], ids)


def test_sampled_batch_and_chunked_prefill_draw_what_the_cached_original_draws(model):
    prompts = [PROMPTS[0]] * 3 + [PROMPTS[0][::-1]] * 3  # same number of distinct phones: chunkable
    encoded = [model.tokenizer.encode_infer(p) for p in prompts]
    original = cached_original(model)
    for chunk_size in (None, 4):
        kwargs = {**run_kwargs("sample"), "max_tokens": 60, "chunk_size": chunk_size}
        torch.manual_seed(9)
        ours, finished = model.generate_raw(encoded, **kwargs)
        original_ids, original_finished = original_generate(original, encoded, 9, **kwargs)
        assert torch.equal(ours, original_ids) and finished == original_finished
        assert not torch.equal(ours[0], ours[1])  # three samples of one prompt differ


def test_bfloat16_generation_end_to_end(model):
    """``.to(torch.bfloat16)``: weights, cache and attention in bfloat16, logits float32; the forcing rules hold."""
    model16 = ELLAV(model.config)
    model16.load_state_dict(model.state_dict())
    model16 = model16.to(torch.bfloat16).eval()
    encoded = [model.tokenizer.encode_infer(p) for p in eight_prompts()]
    with torch.inference_mode():
        ids = torch.tensor(encoded[3])
        logits16, logits32 = model16(ids, [len(ids)]), model(ids, [len(ids)])
    assert logits16.dtype == torch.float32
    torch.testing.assert_close(logits16, logits32, atol=0.05 * float(logits32.abs().max()), rtol=0)
    raw, finished = model16.generate_raw(encoded, **{**run_kwargs("greedy"), "max_tokens": 60})
    assert raw.shape[0] == 8 and len(finished) == 8
    for row, prompt in zip(raw.tolist(), encoded):  # a forced phone follows every EOP that leaves phones to speak
        phones, phone = prompt[: len(prompt) - 2], 0
        for prev, token in zip(row, row[1:]):
            if prev == EOP_ID and phone + 1 < len(phones):
                phone += 1
                assert token == phones[phone]


def test_running_out_of_steps(model):
    with pytest.warns(UserWarning, match="did not reach EOS"):
        codec_ids, finished = model.generate(PROMPTS, max_tokens=5, max_codec_tokens_per_phone=3, temperature=0.0,
                                             top_p=0.8)
    assert finished == [False, False] and all(len(c) <= 5 for c in codec_ids)
    assert model.generate(PROMPTS, max_tokens=0, max_codec_tokens_per_phone=3, temperature=0.0, top_p=0.8) == ([], [])


def test_bad_inputs_are_clear_errors(model):
    greedy = run_kwargs("greedy")
    with pytest.raises(InputError, match="empty prompt"):
        model.generate([PROMPTS[0], []], **greedy)
    with pytest.raises(InputError, match=r"pass \[prompt\]"):
        model.generate(PROMPTS[0], **greedy)
    with pytest.raises(InputError, match="phone/unit strings"):
        model.generate([[3, 10, 1]], **greedy)
    with pytest.raises(InputError, match="non-empty list"):
        model.generate([], **greedy)
    with pytest.raises(InputError, match="must be >= 0"):
        model.generate(PROMPTS, **{**greedy, "max_tokens": -1})
    with pytest.raises(InputError, match="top_p"):
        model.generate(PROMPTS, **{**greedy, "temperature": 1.0, "top_p": 2.0})
    with pytest.warns(UserWarning, match=r"\['u12'\] are not phones of this model"):  # k=12: u0 … u11
        model.generate([["u3", "u12"]], **greedy, strict=False)
    with pytest.raises(InputError, match="more than 0.1 s apart"):
        model.tokenizer.encode_train(["u1"] * 50, torch.zeros(10, dtype=torch.long))


def test_unreleased_k_lmbda_lists_the_released_ones():
    with pytest.raises(InputError, match=r"ellav_units_to_wavtokenizer\(k=500, lmbda=1\) was never released; "
                                         r"available: .*\(k=1000, lmbda=6000\)"):
        hubconf.ellav_units_to_wavtokenizer(k=500, lmbda=1)


def test_wrong_checkpoints_are_refused(tmp_path):
    with pytest.raises(ConversionError, match="not an ELLA-V checkpoint"):
        ellav_format.convert([ULM_PT])
    container = torch.load(CASE.original / "ellav.pt", weights_only=True)
    vocab = dict(container["tokenizer"]["token_to_id_dict"])
    vocab["u0"], vocab["0"] = vocab["0"], vocab["u0"]  # codec id 0 no longer after the phones
    torch.save({**container, "tokenizer": {**container["tokenizer"], "token_to_id_dict": vocab}}, tmp_path / "bad.pt")
    with pytest.raises(ConversionError, match="is not UNK, BOS, EOP, EOS, 12 phones"):
        ellav_format.convert([tmp_path / "bad.pt"])


def test_registry_has_every_release_with_its_hash():
    assert len(WEIGHTS) == 4 * 6 + 1
    for w in WEIGHTS:
        (source,) = w.source_files
        assert source.url.endswith(f"-{source.sha256}.pt") and w.converter == "ellav" and w.frame_rate == 40.0
    assert find("ellav_units_to_wavtokenizer", k=200, lmbda=700).source_url.endswith(
        "ella-v-wavlm-layer-11-k-200-lmbda-700-clean-10k-40hz-32e22dc4.pt")
    phones = find("ellav_phones_to_wavtokenizer")
    assert phones.source_url.endswith("ella-v-phonemes-us-arpa-clean-10k-40hz-e06af002.pt")
