"""GSLM unit LM: the fixture's numbers through `python -m conversion gslm_ulm` → weights=DIR → hubconf.gslm_ulm;
generation (batched = one by one, KV cache = re-run, sampling by distribution), conversion layouts and errors, the
release fallback from a .tgz, and `speechzoo gslm sample`."""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import io as bytes_io
import os
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from harness import load_case
from omegaconf import OmegaConf
from scipy.stats import chisquare

import hubconf
import zoo.download
from zoo.cli import main as cli_main
from zoo.errors import ConversionError, InputError
from zoo.formats import gslm_ulm as gslm_ulm_format
from zoo.formats.fairseq import Stub, load_checkpoint, read_dictionary
from zoo.models.gslm_ulm import WEIGHTS, GSLMUnitLM
from zoo.nn.fairseq_transformer import sinusoidal_table
from zoo.nn.sequence_generator import generate as sequence_generate
from zoo.registry import SourceFile, find

CASE = load_case("gslm_ulm/k18_2layer_ragged_greedy")
CHECKPOINT, DICT = CASE.original / "checkpoint_best.pt", CASE.original / "dict.txt"
MISTRAL_ULM_PT = load_case("ulm/k20_gqa_ragged_batch3").original / "checkpoint.pt"
GENERATION = CASE.meta["call"]["generation"]
PROMPTS = (CASE.path / "prompts.txt").read_text().splitlines()
EXPECTED = (CASE.path / "expected_output.txt").read_text().splitlines()


@pytest.fixture(scope="module")
def io():
    return CASE.io


@pytest.fixture(scope="module")
def converted(convert) -> Path:
    return convert("gslm_ulm", CHECKPOINT, DICT)


@pytest.fixture(scope="module")
def lm(converted) -> GSLMUnitLM:
    return hubconf.gslm_ulm(weights=converted)


def real_logits(model: GSLMUnitLM, io) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.inference_mode():
        logits = model(io["src_tokens"], src_lengths=io["src_lengths"])
    real = io["src_tokens"].ne(1)
    return logits[real].float(), io["logits"][real]


# ------------------------------------------------------------------------------------------ the fixture
def test_encode_matches_fairseq_encode_line(lm, io):
    ids = [lm.encode(line.split("|", 1)[1]) for line in PROMPTS]
    assert all(x.dtype == torch.long for x in ids)
    assert torch.equal(torch.cat(ids), io["prompt_ids_flat"])
    assert lm.decode(ids[0]) == PROMPTS[0].split("|", 1)[1]


def test_logits_of_a_ragged_batch(lm, io):
    got, want = real_logits(lm, io)
    torch.testing.assert_close(got, want, **CASE.tolerance("logits"))


def test_hub_score(lm, io):
    lengths = io["score_lengths"].tolist()
    scored = lm.score(CASE.meta["call"]["score_lines"])
    for s, tokens, scores in zip(scored, io["score_tokens"].split(lengths), io["positional_scores"].split(lengths)):
        assert torch.equal(s["tokens"], tokens)
        torch.testing.assert_close(s["positional_scores"], scores, **CASE.tolerance("positional_scores"))
        torch.testing.assert_close(s["score"], scores.mean(), **CASE.tolerance("positional_scores"))
    single = lm.score(CASE.meta["call"]["score_lines"][1], batch_size=1)
    torch.testing.assert_close(single["positional_scores"], scored[1]["positional_scores"], atol=1e-6, rtol=0)


def test_greedy_sample_py_lines(lm):
    assert lm.sample_prompts(PROMPTS, **GENERATION) == EXPECTED


# ------------------------------------------------------------------------------------------ generation
def test_batched_generation_equals_one_by_one(lm):
    for beam in (1, 4):
        kwargs = {**GENERATION, "beam": beam}
        together = lm.sample_prompts(PROMPTS, **kwargs)
        alone = [line for p in PROMPTS for line in lm.sample_prompts([p], **{**kwargs, "batch_size": 1})]
        assert together == alone
        assert len(together) == beam * len(PROMPTS)  # sample.py writes every finished beam, best first


def test_beam_search_hypotheses_are_sorted_and_scored(lm):
    hypos = lm.generate([lm.encode(PROMPTS[1].split("|")[1])], beam=4, max_len_b=12)[0]
    scores = [float(h["score"]) for h in hypos]
    assert scores == sorted(scores, reverse=True)
    for h in hypos:  # score = mean log-prob (lenpen 1), and the log-probs are the model's
        torch.testing.assert_close(h["score"], h["positional_scores"].mean())
        rescored = lm.score(lm.decode(h["tokens"]))["positional_scores"]
        torch.testing.assert_close(h["positional_scores"][:-1], rescored, atol=1e-5, rtol=0)


def test_kv_cache_equals_rerunning_the_prefix(lm):
    prompts = [lm.encode(line.split("|")[1]) for line in PROMPTS]
    for kwargs in ({"beam": 3}, {"beam": 1}, {"sampling": True, "beam": 3, "temperature": 0.8, "seed": 5}):
        cached = lm.generate(prompts, max_len_b=30, **kwargs)
        rerun = lm.generate(prompts, max_len_b=30, use_cache=False, **kwargs)
        assert [[h["tokens"].tolist() for h in s] for s in cached] == [[h["tokens"].tolist() for h in s] for s in rerun]


def test_prompt_prefill_equals_stepping_through_the_prompt(lm):
    """The leading forced steps run as one forward pass; fairseq steps through them one token at a time."""
    src = torch.nn.utils.rnn.pad_sequence([lm._source(lm.encode(p.split("|")[1])) for p in PROMPTS],
                                          batch_first=True, padding_value=1)
    runs = [sequence_generate(lambda rows, length: lm.incremental_decoder(rows, length), src[:, 1:],
                              vocab_size=len(lm.dictionary), max_len=25, beam_size=3, prefill=prefill)
            for prefill in (True, False)]
    for a, b in zip(*runs):
        assert [h["tokens"].tolist() for h in a] == [h["tokens"].tolist() for h in b]
        for x, y in zip(a, b):
            torch.testing.assert_close(x["positional_scores"], y["positional_scores"], atol=1e-5, rtol=0)


def test_prefix_size_max_len_and_max_positions(lm):
    # --prefix-size 3 keeps three units; a prompt longer than max_len is cut there, then </s> is forced
    out = lm.sample_prompts(PROMPTS, beam=1, max_len_b=5, prefix_size=-1)
    for line, prompt in zip(out, PROMPTS):
        units, prompt_units = line.split("|")[1].split(), prompt.split("|")[1].split()
        assert len(units) <= 5 and units[:len(prompt_units)] == prompt_units[:5]
    assert out[2] == "utt_c__0|3 10 7 10 7"
    out = lm.sample_prompts(PROMPTS, beam=1, max_len_b=4, prefix_size=3)
    assert all(o.split("|")[1].split()[:3] == p.split("|")[1].split()[:3] for o, p in zip(out, PROMPTS))
    # max_len is capped at max_target_positions - 1 whatever max_len_b asks for
    hypos = lm.generate([lm.encode("")], beam=1, max_len_b=10_000)[0]
    assert len(hypos[0]["tokens"]) <= lm.max_positions
    with pytest.raises(InputError, match="at most 63"):
        lm.sample_prompts(["x|" + " ".join(["4"] * 64)], prefix_size=-1)


def test_unconditional_sampling_and_unknown_prompt_units(lm):
    out = lm.sample_prompts(["a|9 8", "b|1 2 3"], sampling=True, samples_per_prompt=3, max_len_b=6, seed=3)
    assert [line.split("|")[0] for line in out] == ["a__0", "a__1", "a__2", "b__0", "b__1", "b__2"]
    assert out == lm.sample_prompts(["a|9 8", "b|1 2 3"], sampling=True, samples_per_prompt=3, max_len_b=6, seed=3)
    # batches continue one seeded stream, as sample.py's: the same lines again, and not the first batch's twice
    in_batches = lm.sample_prompts(["a|", "a|"], sampling=True, samples_per_prompt=3, max_len_b=6, seed=3,
                                   batch_size=1)
    assert in_batches == lm.sample_prompts(["a|", "a|"], sampling=True, samples_per_prompt=3, max_len_b=6, seed=3,
                                           batch_size=1)
    assert [line.split("|")[1] for line in in_batches[:3]] != [line.split("|")[1] for line in in_batches[3:]]
    forced = lm.sample_prompts(["u|9 999 8"], beam=1, max_len_b=3, prefix_size=-1)
    assert forced == ["u__0|9 <unk> 8"]
    with pytest.raises(InputError, match="is not 'id"):
        lm.sample_prompts(["no separator"])


def test_temperature_scales_scores_not_the_greedy_choice(lm):
    ids = [lm.encode(PROMPTS[0].split("|")[1])]
    cold = lm.generate(ids, beam=1, max_len_b=15, temperature=0.5)[0][0]
    warm = lm.generate(ids, beam=1, max_len_b=15, temperature=1.0)[0][0]
    assert torch.equal(cold["tokens"], warm["tokens"])
    assert not torch.allclose(cold["positional_scores"], warm["positional_scores"])


def first_step_probabilities(lm: GSLMUnitLM, temperature: float, top_k: int = -1) -> torch.Tensor:
    """p(first unit | </s>) as fairseq's sampler sees it: logits / T, pad and </s> (min_len) excluded."""
    with torch.no_grad():
        lprobs = torch.log_softmax(lm(torch.tensor([[2]]))[0, -1] / temperature, -1)
    lprobs[[1, 2]] = -torch.inf
    if top_k > 0:
        lprobs[lprobs < lprobs.topk(top_k).values[-1]] = -torch.inf
    probs = lprobs.double().exp()
    return probs / probs.sum()


@pytest.mark.parametrize(("temperature", "top_k"), [(1.0, -1), (0.7, -1), (1.5, 4)])
def test_sampling_draws_follow_the_model_distribution(lm, temperature, top_k):
    lines = lm.sample_prompts([f"p{i}|" for i in range(200)], sampling=True, samples_per_prompt=20,
                              temperature=temperature, sampling_topk=top_k, max_len_b=1, seed=0)
    drawn = torch.tensor([lm.dictionary.index(line.split("|")[1] or "<s>") for line in lines])
    counts = torch.bincount(drawn, minlength=len(lm.dictionary)).double()
    expected = first_step_probabilities(lm, temperature, top_k) * len(drawn)
    support = expected > 0
    assert counts[~support].sum() == 0, "a unit outside the support was drawn"
    assert chisquare(counts[support], expected[support]).pvalue > 1e-3
    # the test has power: the draws reject a distribution at another temperature
    other = first_step_probabilities(lm, temperature / 3, top_k)
    assert chisquare(counts[support], other[support] / other[support].sum() * len(drawn)).pvalue < 1e-6


def test_half_precision(converted, io):
    for dtype in (torch.float16, torch.bfloat16):
        half = hubconf.gslm_ulm(weights=converted).to(dtype)
        got, want = real_logits(half, io)
        torch.testing.assert_close(got, want, atol=0.1, rtol=0.05)
        assert half.sample_prompts(PROMPTS[:1], **GENERATION)[0].startswith(PROMPTS[0].replace("|", "__0|"))


# ------------------------------------------------------------------------------------------ conversion
def legacy_checkpoint(tmp_path: Path) -> Path:
    """The fixture rewritten in the pre-hydra layout: every setting in one argparse.Namespace, no cfg."""
    container = torch.load(CHECKPOINT, weights_only=True)
    cfg = container["cfg"]
    settings = {**cfg["task"], **cfg["model"], "arch": cfg["model"]["_name"], "task": cfg["task"]["_name"]}
    settings.pop("_name")
    settings["max_target_positions"] = None  # old files leave it to tokens_per_sample
    container.update(args=argparse.Namespace(**settings), cfg=None)
    container["model"]["decoder.embed_positions._float_tensor"] = torch.zeros(1)
    path = tmp_path / "legacy.pt"
    torch.save(container, path)
    return path


def test_legacy_args_layout_converts_to_the_same_model(tmp_path, io, lm):
    model = gslm_ulm_format.convert([legacy_checkpoint(tmp_path), DICT])
    assert model.config == lm.config
    got, want = real_logits(model, io)
    torch.testing.assert_close(got, want, **CASE.tolerance("logits"))


#: A stand-in for fairseq's config dataclasses (fairseq/dataclass/configs.py, transformer_lm.py) as they were when
#: checkpoints pickled cfg as an omegaconf DictConfig (Oct 2020 - Mar 2021): typed fields, an enum, interpolations.
FAKE_FAIRSEQ_CONFIGS = """
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from omegaconf import II


class LogFormat(Enum):
    json = "json"
    simple = "simple"


@dataclass
class CommonConfig:
    log_format: LogFormat = LogFormat.simple
    seed: int = 100501


@dataclass
class LanguageModelingConfig:
    _name: str = "language_modeling"
    tokens_per_sample: int = 1024
    max_target_positions: Optional[int] = None
    add_bos_token: bool = False


@dataclass
class TransformerLanguageModelConfig:
    _name: str = "transformer_lm_big"
    activation_fn: str = "relu"
    decoder_embed_dim: int = 1024
    decoder_ffn_embed_dim: int = 4096
    decoder_layers: int = 12
    decoder_attention_heads: int = 16
    decoder_normalize_before: bool = False
    share_decoder_input_output_embed: bool = False
    tokens_per_sample: int = II("task.tokens_per_sample")
    max_target_positions: Optional[int] = II("task.max_target_positions")


@dataclass
class FairseqConfig:
    common: CommonConfig = field(default_factory=CommonConfig)
    task: Any = None
    model: Any = None
"""


def omegaconf_checkpoint(tmp_path: Path, monkeypatch) -> Path:
    """The fixture with its cfg pickled as fairseq did for a while: a structured omegaconf DictConfig whose classes
    live in fairseq, and numpy scalars among the training metrics."""
    package = tmp_path / "fake_fairseq/fairseq/dataclass"
    package.mkdir(parents=True)
    (package.parent / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "configs.py").write_text(FAKE_FAIRSEQ_CONFIGS)
    monkeypatch.syspath_prepend(str(tmp_path / "fake_fairseq"))
    for name in ("fairseq", "fairseq.dataclass", "fairseq.dataclass.configs"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    configs = importlib.import_module("fairseq.dataclass.configs")
    container = torch.load(CHECKPOINT, weights_only=True)
    fields = set(configs.TransformerLanguageModelConfig.__dataclass_fields__) - {"tokens_per_sample",
                                                                                 "max_target_positions"}
    model = {k: v for k, v in container["cfg"]["model"].items() if k in fields}
    task = {k: container["cfg"]["task"][k] for k in ("tokens_per_sample", "max_target_positions", "add_bos_token")}
    cfg = OmegaConf.structured(configs.FairseqConfig(
        task=OmegaConf.structured(configs.LanguageModelingConfig(**task)),
        model=OmegaConf.structured(configs.TransformerLanguageModelConfig(**model))))
    container.update(cfg=cfg, extra_state={"metrics": {"train": [("loss", np.float64(3.5), np.int64(7))]}})
    path = tmp_path / "omegaconf.pt"
    torch.save(container, path)
    for name in ("fairseq.dataclass.configs", "fairseq.dataclass", "fairseq"):
        sys.modules.pop(name, None)  # the converter must not find them
    return path


def test_omegaconf_era_checkpoint_converts_without_importing_its_classes(tmp_path, monkeypatch, io, lm):
    path = omegaconf_checkpoint(tmp_path, monkeypatch)
    assert isinstance(load_checkpoint(path)["cfg"], Stub)
    model = gslm_ulm_format.convert([path, DICT])
    assert "fairseq" not in sys.modules and model.config == lm.config  # interpolated max_target_positions: 64
    got, want = real_logits(model, io)
    torch.testing.assert_close(got, want, **CASE.tolerance("logits"))


class _RunsACommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_malicious_checkpoint_runs_nothing(tmp_path):
    container = torch.load(CHECKPOINT, weights_only=True)
    container["extra_state"] = {"payload": _RunsACommand(tmp_path / "ran")}
    torch.save(container, tmp_path / "evil.pt")
    with pytest.raises(ConversionError, match="system.*never holds"):
        gslm_ulm_format.convert([tmp_path / "evil.pt", DICT])
    assert not (tmp_path / "ran").exists()


def test_learned_positions(tmp_path, io):
    """decoder_learned_pos: the positions are a weight. Holding fairseq's sinusoidal table, it must give the
    fixture's logits, and generation through the KV cache must read the same rows."""
    container = torch.load(CHECKPOINT, weights_only=True)
    model_cfg = container["cfg"]["model"]
    model_cfg["decoder_learned_pos"] = True
    rows = model_cfg["max_target_positions"] + 2  # + padding_idx + 1
    container["model"]["decoder.embed_positions.weight"] = sinusoidal_table(rows, model_cfg["decoder_embed_dim"], 1)
    torch.save(container, tmp_path / "learned.pt")
    model = gslm_ulm_format.convert([tmp_path / "learned.pt", DICT])
    assert model.config.learned_pos
    got, want = real_logits(model, io)
    torch.testing.assert_close(got, want, **CASE.tolerance("logits"))
    assert model.sample_prompts(PROMPTS, **GENERATION) == EXPECTED


def test_release_archive_converts(tmp_path, io):
    archive = tmp_path / "hubert100_lm.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(CHECKPOINT, "hubert100_lm/checkpoint_best.pt")
        tar.add(DICT, "hubert100_lm/dict.txt")
    got, want = real_logits(gslm_ulm_format.convert([archive]), io)
    torch.testing.assert_close(got, want, **CASE.tolerance("logits"))


def test_conversion_errors(tmp_path):
    with pytest.raises(ConversionError, match="not a fairseq checkpoint"):
        gslm_ulm_format.convert([MISTRAL_ULM_PT, DICT])
    container = torch.load(CHECKPOINT, weights_only=True)
    container["cfg"]["model"]["_name"] = "hubert"
    torch.save(container, tmp_path / "hubert.pt")
    with pytest.raises(ConversionError, match="'hubert' model, not a fairseq transformer_lm"):
        gslm_ulm_format.convert([tmp_path / "hubert.pt", DICT])
    container["cfg"]["model"].update(_name="transformer_lm_big", layernorm_embedding=True)
    torch.save(container, tmp_path / "layernorm_embedding.pt")
    with pytest.raises(ConversionError, match="layernorm_embedding=True is not supported"):
        gslm_ulm_format.convert([tmp_path / "layernorm_embedding.pt", DICT])
    short = tmp_path / "dict.txt"
    short.write_text("\n".join(DICT.read_text().splitlines()[:-2]) + "\n")
    with pytest.raises(ConversionError, match="defines 22 symbols .* embeds 24"):
        gslm_ulm_format.convert([CHECKPOINT, short])
    with pytest.raises(ConversionError, match="CHECKPOINT.pt DICT.txt"):
        gslm_ulm_format.convert([CHECKPOINT])


def test_dictionary_reader(tmp_path):
    symbols = read_dictionary(DICT)
    assert symbols[:4] == ("<s>", "<pad>", "</s>", "<unk>") and list(symbols[4:]) == CASE.meta["config"]["dict_txt_order"]
    path = tmp_path / "dict.txt"
    path.write_text("a 5\nb 3\na 1 #fairseq:overwrite\n")
    assert read_dictionary(path)[4:] == ("a", "b", "a")
    path.write_text("a 5\na 3\n")
    with pytest.raises(ConversionError, match="appears twice"):
        read_dictionary(path)
    path.write_text("a five\n")
    with pytest.raises(ConversionError, match="is not '<symbol> <count>"):
        read_dictionary(path)


# ------------------------------------------------------------------------------------------ releases, CLI
def test_registry_lists_the_twelve_released_lms():
    assert len(WEIGHTS) == 12
    entry = find("gslm_ulm", dense="w2v2", vocab_size=200)
    assert entry.source_url == "https://dl.fbaipublicfiles.com/textless_nlp/gslm/w2v2/lm_km200/w2v2_200_lm.tgz"
    assert find("gslm_ulm", dense="hubert", vocab_size=50).source_url.endswith("/hubert/lm_km50/hubert50_lm.tgz")
    with pytest.raises(InputError, match="never released"):
        find("gslm_ulm", dense="hubert", vocab_size=500)


def test_release_archive_is_converted_when_not_mirrored(loopback_hub, io):
    data = bytes_io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as tar:
        tar.add(CHECKPOINT, "checkpoint_best.pt")
        tar.add(DICT, "dict.txt")
    url = loopback_hub.add_raw("textless_nlp/gslm/hubert/lm_km100/hubert100_lm.tgz", data.getvalue())
    entry = dataclasses.replace(find("gslm_ulm", dense="hubert", vocab_size=100),
                                source_files=(SourceFile(url, None),), repo_id="speechzoo/not-mirrored-yet")
    with pytest.warns(UserWarning, match="no published checksum"):
        model = zoo.download.load_release(GSLMUnitLM, entry, progress=False)
    got, want = real_logits(model, io)
    torch.testing.assert_close(got, want, **CASE.tolerance("logits"))


def test_cli_sample(converted, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    out = tmp_path / "deep/out.txt"
    flags = ["--beam", "1", "--max-len-b", "40", "--prefix-size", "-1", "--batch-size", "4"]
    assert cli_main(["gslm", "sample", str(prompts), "-o", str(out), "--weights", str(converted), *flags]) == 0
    assert out.read_text().splitlines() == EXPECTED
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["deep", "out.txt", "prompts.txt"]

    prompts.write_text("ok|1 2\nbroken line\n")
    assert cli_main(["gslm", "sample", str(prompts), "-o", str(tmp_path / "bad.txt"), "--weights",
                     str(converted)]) == 2
    assert "line 2" in capsys.readouterr().err
    assert not (tmp_path / "bad.txt").exists()
    with pytest.raises(SystemExit):
        cli_main(["gslm", "sample", str(prompts), "-o", str(out), "--beam", "0"])


def test_cli_sample_skip_errors_samples_the_good_lines(converted, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    too_long = "long|" + " ".join(["1"] * 5000)
    prompts.write_text("\n".join([*PROMPTS, "broken line", too_long]) + "\n")
    out = tmp_path / "out.txt"
    flags = ["--beam", "1", "--max-len-b", "40", "--prefix-size", "-1", "--batch-size", "4", "--skip-errors"]
    assert cli_main(["gslm", "sample", str(prompts), "-o", str(out), "--weights", str(converted), *flags]) == 2
    assert out.read_text().splitlines() == EXPECTED
    err = capsys.readouterr().err
    assert f"line {len(PROMPTS) + 1}" in err and "not 'id|u1 u2 ...'" in err
    assert f"prompt line {len(PROMPTS) + 2} has 5000 units" in err
    assert "2 inputs failed" in err
