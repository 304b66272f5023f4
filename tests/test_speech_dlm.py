"""dGSLM SpeechDLM: every fixture number (made by running fairseq) through `python -m conversion speech_dlm` →
weights=DIR → hubconf.speech_dlm, plus incremental decoding, batching, sampling distributions, the code-file CLI
and bad input."""
from __future__ import annotations

import ast
import itertools
import json

import pytest
import torch
from safetensors.torch import load_file
from scipy.stats import chi2

import hubconf
from zoo.cli import main as cli_main
from zoo.errors import InputError
from zoo.formats.fairseq import read_dictionary
from zoo.models.speech_dlm import (
    SpeechDLM,
    SpeechDLMConfig,
    SpeechDLMHubInterface,
    unit_symbols,
)

from harness import conversion_cli, load_case
from tiny_models import speech_dlm_sources as sources

SHARED = load_case("speech_dlm/tiny_edge_dur_delayed")
ULM_CHECKPOINT = load_case("ulm/k20_gqa_ragged_batch3").original / "checkpoint.pt"


@pytest.fixture(scope="module")
def shared(convert):
    hub = hubconf.speech_dlm(weights=convert("speech_dlm", *sources(SHARED)))
    return hub.eval()


def _argmax_draw(probs, num_samples, replacement=False, *, generator=None, out=None):
    """torch.multinomial as the fixtures' original runs had it: the argmax, repeated."""
    return probs.argmax(-1, keepdim=True).repeat_interleave(num_samples, -1)


# ------------------------------------------------------------------------------------------ fixtures
@pytest.mark.slow
@pytest.mark.cases("speech_dlm/*")
def test_fixture(case, convert, monkeypatch):
    io, meta = case.io, case.meta
    tol = case.tolerance("fwd")  # one tolerance for every output
    hub = hubconf.speech_dlm(weights=convert("speech_dlm", *sources(case)))
    hub.eval()
    model = hub.models[0]
    tokens = {ch: io[f"fwd.src_tokens.{ch}"] for ch in hub.channels}
    with torch.no_grad():
        out = model(dict(tokens))
        lprobs = model.get_normalized_probs(out, log_probs=True)
        features, extra = model.extract_features(dict(tokens), encoder_out=None)
    for ch in hub.channels:
        torch.testing.assert_close(features[ch], io[f"fwd.features.{ch}"], **tol)
        heads = sorted(k.split(".")[3] for k in io if k.startswith(f"fwd.logits.{ch}."))
        assert sorted(out[0][ch]) == heads
        for pred in heads:
            o, lp = out[0][ch][pred], lprobs[ch][pred]
            if f"fwd.duration.{ch}.{pred}" in io:
                torch.testing.assert_close(o["pred_duration"], io[f"fwd.duration.{ch}.{pred}"], **tol)
                o, lp = o["pred_token"], lp["pred_token"]
            else:
                assert isinstance(o, torch.Tensor)
            torch.testing.assert_close(o, io[f"fwd.logits.{ch}.{pred}"], **tol)
            torch.testing.assert_close(lp, io[f"fwd.lprobs.{ch}.{pred}"], **tol)
        for k in range(len(extra["inner_states"])):  # only the shared fixture holds them
            if f"fwd.inner_states.{k}.{ch}" in io:
                torch.testing.assert_close(extra["inner_states"][k][ch].transpose(0, 1),
                                           io[f"fwd.inner_states.{k}.{ch}"], **tol)
    g = meta.get("generation")
    if not g:
        return
    if g["argmax_sampling_patch"]:
        monkeypatch.setattr(torch, "multinomial", _argmax_draw)
        monkeypatch.setattr(torch.Tensor, "multinomial", _argmax_draw)
    with torch.no_grad():
        encoded = [hub.encode(p) for p in g["prompts"]]
        hypos = hub.generate(encoded, beam=g["beam"], **g["kwargs"])
        best = hub.sample(g["prompts"], beam=g["beam"], **g["kwargs"])
    for b, e in enumerate(encoded):
        for ch in hub.channels:
            assert torch.equal(e[ch], io[f"gen.prompt_tokens.{ch}.{b}"])
    assert [len(h) for h in hypos] == [io["gen.score"].shape[1]] * len(encoded)
    for b, hs in enumerate(hypos):
        for k, h in enumerate(hs):
            for ch in hub.channels:
                assert torch.equal(h["tokens"][ch], io[f"gen.tokens.{ch}"][b, k]), (b, k, ch)
            torch.testing.assert_close(h["score"].reshape(()), io["gen.score"][b, k], **tol)
            torch.testing.assert_close(h["positional_scores"], io["gen.positional_scores"][b, k], **tol)
    assert best == g["decoded_best"]


def test_converted_directory_holds_safetensors_and_the_dictionary(convert):
    out = convert("speech_dlm", *sources(SHARED))
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "speech_dlm" and config["channels"] == ["unitA", "unitB"]
    assert tuple(config["symbols"]) == read_dictionary(SHARED.original / "dict.unitA.txt")
    weights = load_file(str(out / "model.safetensors"))
    assert not any("_float_tensor" in k or k.endswith("version") for k in weights)
    assert torch.equal(weights["output_projection.0.weight"], weights["embed_tokens.weight"])  # tied, stored twice
    assert all(v.dtype == torch.float32 for v in weights.values())


def test_fp16_checkpoint_without_optimizer_state(tmp_path, convert):
    original = SHARED.original
    state = torch.load(next(original.glob("*.pt")), weights_only=True)
    state.pop("last_optimizer_state")
    state["model"] = {k: v.half() if v.is_floating_point() else v for k, v in state["model"].items()}
    torch.save(state, tmp_path / "fp16.pt")
    out = convert("speech_dlm", tmp_path / "fp16.pt", *sorted(original.glob("dict.*")))
    got = load_file(str(out / "model.safetensors"))["layers.0.fc1.weight"]
    assert torch.equal(got, state["model"]["decoder.layers.0.fc1.weight"].float())


# ------------------------------------------------------------------------------------------ decoding
def _random_hub(**overrides) -> SpeechDLMHubInterface:
    torch.manual_seed(0)
    config = {"symbols": unit_symbols(50), "embed_dim": 32, "input_dim": 32, "output_dim": 32, "ffn_embed_dim": 64,
              "layers": 3, "cross_layers": 2, "attention_heads": 4}
    model = SpeechDLM(SpeechDLMConfig(**{**config, **overrides})).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(0, 0.3 if p.ndim > 1 else 0.1)
            if name.endswith("output_duration_prediction.0.bias"):
                p.fill_(2.0)   # durations of about 2 frames, so that the copy logic runs
    return SpeechDLMHubInterface(model)


@pytest.mark.parametrize("channels", [("unitA", "unitB"), ("a", "b", "c"), ("solo",)])
def test_incremental_decoding_equals_the_full_forward(channels):
    """Cross-attention reads the other channel (N = 2), the others interleaved in time (N > 2), itself (N = 1)."""
    hub = _random_hub(channels=channels)
    model = hub.models[0]
    tokens = torch.randint(4, 54, (len(channels), 3, 12))
    tokens[:, :, 0] = 2
    with torch.no_grad():
        full = model({ch: tokens[i] for i, ch in enumerate(hub.channels)})[0]
        state = model.new_state(3, 12)
        pieces = [model.decode_step(tokens[:, :, :5], state)]
        pieces += [model.decode_step(tokens[:, :, t:t + 1], state) for t in range(5, 12)]
    logits = torch.cat([p[0] for p in pieces], 2)
    durations = torch.cat([p[1] for p in pieces], 2)
    for i, ch in enumerate(hub.channels):
        torch.testing.assert_close(logits[i], full[ch][ch]["pred_token"], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(durations[i], full[ch][ch]["pred_duration"][..., 0], atol=1e-5, rtol=1e-5)


PROMPTS = [{"unitA": "3 3 12 0 0 8 8", "unitB": "6 6 <unk> <unk> 40 40 40"},
           {"unitA": "1 7", "unitB": "5 5"},
           {"unitA": "9 9 9 9 30", "unitB": "17 17 2 2 2"}]


@pytest.mark.slow
@pytest.mark.parametrize("options", [{"beam": 1}, {"beam": 3}, {"beam": 2, "duration_temperature": 0.5}])
def test_batched_generation_equals_one_by_one(options):
    hub = _random_hub()
    encoded = [hub.encode(p) for p in PROMPTS]
    batched = hub.generate(encoded, max_len_b=16, **options)
    for e, hypos in zip(encoded, batched):
        alone = hub.generate([e], max_len_b=16, **options)[0]
        assert len(alone) == len(hypos) == options["beam"]
        for a, b in zip(alone, hypos):
            assert all(torch.equal(a["tokens"][ch], b["tokens"][ch]) for ch in hub.channels)
            torch.testing.assert_close(a["score"], b["score"])
            torch.testing.assert_close(a["positional_scores"], b["positional_scores"])
        assert hypos[0]["score"] >= hypos[-1]["score"]


def test_generation_keeps_the_prompt_and_fills_unk_positions():
    hub = _random_hub()
    (best,) = hub.sample([PROMPTS[0]], beam=1, max_len_b=14)
    units = {ch: best[ch].split() for ch in hub.channels}
    assert all(len(u) == 14 for u in units.values())
    assert units["unitA"][:7] == PROMPTS[0]["unitA"].split()
    assert units["unitB"][:2] == ["6", "6"] and units["unitB"][4:7] == ["40", "40", "40"]
    assert "<unk>" not in units["unitB"][2:4]          # the <unk> positions were generated


def test_durations_repeat_each_new_unit():
    """Delayed durations: once a new unit is fed, it is repeated until it has lasted round(duration) frames (a unit
    chosen again freely afterwards adds single frames)."""
    hub = _random_hub(duration_prediction=True)
    model = hub.models[0]
    with torch.no_grad():
        model.output_duration_prediction[0].weight.zero_()
        model.output_duration_prediction[0].bias.fill_(3.0)    # every unit lasts 3 frames
    (best,) = hub.sample([{"unitA": "5", "unitB": "6"}], beam=1, max_len_b=30)
    for ch in hub.channels:
        runs = [len(list(g)) for _, g in itertools.groupby(best[ch].split())]
        assert len(runs) > 2 and min(runs[:-1]) >= 3, runs


@pytest.mark.slow
def test_seeded_sampling_is_reproducible():
    hub = _random_hub()
    runs = []
    for _ in range(2):
        torch.manual_seed(123)
        runs.append(hub.sample(PROMPTS, beam=3, sampling=True, sampling_topk=10, max_len_b=20))
    assert runs[0] == runs[1]
    torch.manual_seed(124)
    assert hub.sample(PROMPTS, beam=3, sampling=True, sampling_topk=10, max_len_b=20) != runs[0]


def _first_free_draws(hub, prompt, n, **options):
    """Units drawn at the first step after ``prompt`` by ``n`` independent samples (one per beam)."""
    torch.manual_seed(0)
    length = len(prompt["unitA"].split())
    hypos = hub.generate([hub.encode(prompt)], beam=n, sampling=True, max_len_b=length + 1, **options)[0]
    return torch.stack([torch.stack([h["tokens"][ch][length] for ch in hub.channels]) for h in hypos])


def _step_probabilities(hub, prompt, temperature=1.0):
    """The model's distribution of the unit after ``prompt``: softmax(logits / T) with <pad> and </s> zeroed and
    NOT renormalised (fairseq's top-p counts mass that way)."""
    model = hub.models[0]
    tokens = {ch: torch.cat([torch.tensor([2]), hub.encode(prompt)[ch][:-1]])[None] for ch in hub.channels}
    with torch.no_grad():
        out = model(tokens)[0]
    logits = torch.stack([out[ch][ch][0, -1] for ch in hub.channels])
    probs = torch.softmax(logits / temperature, -1)
    probs[:, [1, 2]] = 0
    return probs


def _chi_square_pvalue(draws: torch.Tensor, probs: torch.Tensor) -> float:
    n = len(draws)
    counts = torch.bincount(draws, minlength=len(probs)).double()
    expected = probs.double() / probs.double().sum() * n
    big = expected >= 5                     # pool the rare units into one bin
    obs = torch.cat([counts[big], counts[~big].sum()[None]])
    exp = torch.cat([expected[big], expected[~big].sum()[None]])
    keep = exp > 0
    stat = float(((obs[keep] - exp[keep]) ** 2 / exp[keep]).sum())
    return float(chi2.sf(stat, int(keep.sum()) - 1))


@pytest.mark.slow
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampling_draws_follow_the_model_distribution(temperature):
    hub = _random_hub(duration_prediction=False)
    prompt = {"unitA": "3 9 9", "unitB": "4 4 20"}
    draws = _first_free_draws(hub, prompt, 2000, temperature=temperature)
    probs = _step_probabilities(hub, prompt, temperature)
    for i in range(len(hub.channels)):
        assert _chi_square_pvalue(draws[:, i], probs[i]) > 1e-3


@pytest.mark.slow
def test_top_k_and_top_p_sample_from_their_supports():
    hub = _random_hub(duration_prediction=False)
    prompt = {"unitA": "3 9 9", "unitB": "4 4 20"}
    probs = _step_probabilities(hub, prompt)
    draws = _first_free_draws(hub, prompt, 2000, sampling_topk=4)
    for i in range(len(hub.channels)):
        top = probs[i].topk(4).indices
        assert set(draws[:, i].tolist()) <= set(top.tolist())
        assert _chi_square_pvalue(draws[:, i], torch.zeros_like(probs[i]).index_copy(0, top, probs[i][top])) > 1e-3
    draws = _first_free_draws(hub, prompt, 2000, sampling_topp=0.5)
    for i in range(len(hub.channels)):
        p, order = probs[i].sort(descending=True)
        size = int((p.cumsum(0) < 0.5).sum()) + 1          # the smallest prefix whose mass reaches 0.5
        assert set(draws[:, i].tolist()) <= set(order[:size].tolist())


# ------------------------------------------------------------------------------------------ text, files, CLI
def test_encode_maps_unknown_units_to_unk(shared):
    encoded = shared.encode({"unitA": "3 999 12", "unitB": "6 6  x"})
    assert encoded["unitA"][1].item() == 3 and encoded["unitB"][2].item() == 3
    assert encoded["unitA"][-1].item() == 2
    assert shared.decode(encoded) == {"unitA": "3 <unk> 12", "unitB": "6 6 <unk>"}


@pytest.mark.parametrize("prompt, message", [
    ({"unitA": "", "unitB": ""}, "empty"),
    ({"unitA": "3 3", "unitB": "6"}, "same number of units"),
    ({"unitA": "3 3"}, "one unit string per channel"),
    ({"unitA": "3 </s> 3", "unitB": "6 6 6"}, "'</s>'"),
])
def test_bad_prompts(shared, prompt, message):
    with pytest.raises(InputError, match=message):
        shared.sample([prompt], max_len_b=10)


def test_bad_options(shared):
    prompt = [{"unitA": "3 3", "unitB": "6 6"}]
    with pytest.raises(InputError, match="unknown generation options"):
        shared.sample(prompt, max_length=10)
    with pytest.raises(InputError, match="need sampling=True"):
        shared.sample(prompt, sampling_topk=5)
    with pytest.raises(InputError, match="min_len"):
        shared.sample(prompt, max_len_b=5, min_len=9)


def test_checkpoint_of_another_model_is_refused(tmp_path):
    dicts = sorted(SHARED.original.glob("dict.*"))
    refused = conversion_cli("speech_dlm", ULM_CHECKPOINT, *dicts, "--out", tmp_path)
    assert refused.returncode == 2 and "not a fairseq checkpoint" in refused.stderr
    refused = conversion_cli("speech_dlm", next(SHARED.original.glob("*.pt")), "--out", tmp_path)
    assert refused.returncode == 2 and "dict.<channel>.txt" in refused.stderr


def test_dialogue_sample_cli_reads_and_writes_fairseqs_code_files(shared, tmp_path, capsys, convert):
    converted = convert("speech_dlm", *sources(SHARED))
    codes = tmp_path / "codes.txt"
    codes.write_text(str({"audio": "dialog_1", "unitA": "3 3 12 0 0 8", "unitB": "6 6 6 4 10 10"}) + "\n"
                     + str({"audio": "dialog_2", "unitA": "1 7 7 7 2 2", "unitB": "5 5 11 11 11 9"}) + "\n")
    out = tmp_path / "out/generated.txt"
    assert cli_main(["dialogue-sample", "--in-file", str(codes), "--out-file", str(out), "--weights", str(converted),
                     "--beam-search", "--beam-size", "1", "--max-len-b", "20"]) == 0
    lines = [ast.literal_eval(line) for line in out.read_text().splitlines()]
    assert [line["audio"] for line in lines] == ["dialog_1-generated", "dialog_2-generated"]
    assert [{ch: line[ch] for ch in ("unitA", "unitB")} for line in lines] == SHARED.meta["generation"]["decoded_best"]

    codes.write_text("{'audio': 'x', 'unitA': '3 3'}\n")
    assert cli_main(["dialogue-sample", "--in-file", str(codes), "--out-file", str(out), "--weights",
                     str(converted)]) == 2
    assert "line 1 lacks ['unitB']" in capsys.readouterr().err

    # --skip-errors: the bad lines (a malformed one, channels of unequal length) are reported, the good ones continued
    good = [str({"audio": "dialog_1", "unitA": "3 3 12 0 0 8", "unitB": "6 6 6 4 10 10"}),
            str({"audio": "dialog_2", "unitA": "1 7 7 7 2 2", "unitB": "5 5 11 11 11 9"})]
    codes.write_text("\n".join([good[0], "{'audio': 'x', 'unitA': '3 3'}",
                                str({"audio": "uneven", "unitA": "3 3 3", "unitB": "6"}), good[1]]) + "\n")
    assert cli_main(["dialogue-sample", "--in-file", str(codes), "--out-file", str(out), "--weights", str(converted),
                     "--beam-search", "--beam-size", "1", "--max-len-b", "20", "--skip-errors"]) == 2
    lines = [ast.literal_eval(line) for line in out.read_text().splitlines()]
    assert [line["audio"] for line in lines] == ["dialog_1-generated", "dialog_2-generated"]
    assert [{ch: line[ch] for ch in ("unitA", "unitB")} for line in lines] == SHARED.meta["generation"]["decoded_best"]
    err = capsys.readouterr().err
    assert "line 2 lacks ['unitB']" in err and "uneven: every channel needs the same number of units" in err
    assert "2 inputs failed" in err
    # without it, a bad prompt stops the command before any generation; a wav is not a code file
    assert cli_main(["dialogue-sample", "--in-file", str(codes), "--out-file", str(tmp_path / "none.txt"),
                     "--weights", str(converted)]) == 2
    assert not (tmp_path / "none.txt").exists()
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"RIFF\xff\xfe\x00\x00WAVEfmt ")
    assert cli_main(["dialogue-sample", "--in-file", str(wav), "--out-file", str(out), "--weights",
                     str(converted)]) == 2
    assert "not UTF-8 text" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("beam, options", [(3, {}), (2, {"sampling": True, "sampling_topk": 5})])
def test_kv_cache_equals_rerunning_the_prefix(beam, options):
    from zoo.models.speech_dlm import _options, generate_batch

    hub = _random_hub()
    model = hub.models[0]
    prompts = [hub._prompt(hub.encode(p), i) for i, p in enumerate(PROMPTS)]
    runs = []
    for use_cache in (True, False):
        torch.manual_seed(5)
        runs.append(generate_batch(model, prompts, _options(model, beam, {"max_len_b": 14, **options}),
                                   use_cache=use_cache))
    for cached, rerun in zip(*runs):
        for a, b in zip(cached, rerun):
            assert torch.equal(a["tokens"], b["tokens"])
            torch.testing.assert_close(a["positional_scores"], b["positional_scores"], atol=1e-5, rtol=1e-5)
