"""Unit HiFi-GAN vocoders, the F0 VQ-VAE, their converters, F0 extraction and the vocode CLI.

Numbers against the ORIGINAL code come from tests/fixtures/hifigan (fairseq ``CodeHiFiGANVocoder`` with duration
prediction; speech-resynthesis ``CodeGenerator`` with F0 VQ-VAE codes + speaker table; the standalone F0 VQ-VAE).
Variants the fixtures do not show (resblock type 2, odd ``kernel - rate``, speaker vectors, styles, raw and binned
F0, F0 statistics) are checked against ``benchmarks/references/hifigan.py``, a plain re-implementation of the
original module with torch's weight-norm parametrization (unfolded), converted through the same conversion CLI.
"""
from __future__ import annotations

import dataclasses
import json
import math
import tarfile
from pathlib import Path

import pytest
import torch

import hubconf
from zoo.audio import load
from zoo.cli import main as cli
from zoo.errors import AudioError, ConversionError, InputError
from zoo.f0 import (
    F0Stats,
    normalize_f0,
    peak_normalize,
    rescale_f0,
    samples_per_frame,
    yaapt_f0,
)
from zoo.formats import f0_vqvae as f0_vqvae_format
from zoo.formats import hifigan as hifigan_format
from zoo.models.hifigan import WEIGHTS
from zoo.pipelines.resynthesis import deduplicate, trim_to_f0, voice_convert
from zoo.registry import find

from benchmarks.references.hifigan import ReferenceCodeGenerator, randomise, write_original
from harness import ROOT, conversion_cli, load_case

FAIRSEQ, RESYNTHESIS = load_case("hifigan/fairseq_units_dur"), load_case("hifigan/sr_units_f0vq_spkr")
FLAC = ROOT / "tests" / "data" / "librispeech-1272-128104-0000.flac"
#: Batched rows and their one-by-one runs differ by float rounding only.
BATCH_ATOL = 1e-5
#: The CLI writes 16-bit PCM .wav files (as fairseq's generate_waveform_from_code does).
PCM16_ATOL = 2.0 ** -15 + BATCH_ATOL


@pytest.fixture(scope="module")
def fairseq(convert):
    """fairseq's CodeHiFiGANVocoder (with a duration predictor) converted as users do, and its case's io."""
    directory = convert("hifigan", FAIRSEQ.original / "g_00500000", FAIRSEQ.original / "config.json")
    return hubconf.hifigan_unit_vocoder(weights=directory), FAIRSEQ.io


@pytest.fixture(scope="module")
def resynthesis(convert):
    """speech-resynthesis' CodeGenerator (F0 VQ-VAE codes, speaker table) converted as users do, and its io."""
    directory = convert("hifigan", RESYNTHESIS.original / "g_00400000", RESYNTHESIS.original / "config.json")
    return hubconf.hifigan_unit_vocoder(weights=directory), RESYNTHESIS.io


def converted(reference: ReferenceCodeGenerator, directory: Path, convert):
    """The reference's weights saved as an original release, through ``python -m conversion hifigan``."""
    return hubconf.hifigan_unit_vocoder(weights=convert("hifigan", *write_original(reference, directory)))


# ------------------------------------------------------------------------------------------ original numbers
@torch.no_grad()
def test_fairseq_vocoder_matches_original(fairseq):
    vocoder, io = fairseq
    FAIRSEQ.assert_close("gen_input_full", vocoder.conditioning(io["code_full"])[0])
    FAIRSEQ.assert_close("wav_full", vocoder(io["code_full"]).flatten())


@torch.no_grad()
def test_fairseq_duration_prediction_matches_original(fairseq):
    vocoder, io = fairseq
    log_durations = vocoder.duration_predictor(vocoder.unit_embedding(io["code_dedup"]))
    FAIRSEQ.assert_close("log_dur_pred", log_durations)
    assert torch.equal(vocoder.durations(io["code_dedup"]), io["dur_out"])  # two of them clamped from 0 to 1
    FAIRSEQ.assert_close("gen_input_dur", vocoder.conditioning(io["code_dedup"], dur_prediction=True)[0])
    wav = vocoder(io["code_dedup"], dur_prediction=True)
    assert wav.shape[-1] == int(io["dur_out"].sum()) * vocoder.config.code_hop_size
    FAIRSEQ.assert_close("wav_dur", wav.flatten())
    assert torch.equal(deduplicate(io["code_full"][0]), io["code_dedup"][0])


@torch.no_grad()
def test_resynthesis_generator_matches_original(resynthesis):
    vocoder, io = resynthesis
    latent, codes, _ = vocoder.f0_quantizer.encode(io["f0"])[0]
    RESYNTHESIS.assert_close("f0_latent", latent)
    assert torch.equal(codes, io["f0_codes"])
    RESYNTHESIS.assert_close("gen_input", vocoder.conditioning(io["code"], speaker=io["spkr"], f0=io["f0"])[0])
    RESYNTHESIS.assert_close("wav", vocoder(io["code"], speaker=io["spkr"], f0=io["f0"]))
    RESYNTHESIS.assert_close("wav_vc", vocoder(io["code"], speaker=io["spkr_vc"], f0=io["f0"]))


@torch.no_grad()
def test_f0_vqvae_matches_original(convert):
    f0_vq = RESYNTHESIS.original / "f0_vq"
    model = hubconf.f0_vqvae(weights=convert("f0_vqvae", f0_vq / "g_00400000", f0_vq / "config.json"))
    io = RESYNTHESIS.io
    reconstruction, codes = model(io["f0"])
    RESYNTHESIS.assert_close("f0_recon", reconstruction)
    assert torch.equal(codes, io["f0_codes"])
    assert torch.equal(model(io["f0"][:, 0])[1], codes)  # (B, T) F0 works too


def test_conversion_cli_and_hub_entry_points(tmp_path):
    """The checkpoint with ``--config``, and the entry points on the converted directories."""
    io, orig = RESYNTHESIS.io, RESYNTHESIS.original
    result = conversion_cli("hifigan", orig / "g_00400000", "--config", orig / "config.json", "--out",
                            tmp_path / "vocoder")
    assert result.returncode == 0, result.stderr
    assert "CodeHiFiGAN" in result.stdout
    result = conversion_cli("f0_vqvae", orig / "f0_vq" / "g_00400000", orig / "f0_vq" / "config.json", "--out",
                            tmp_path / "f0_vq")
    assert result.returncode == 0, result.stderr
    vocoder = hubconf.hifigan_unit_vocoder(weights=tmp_path / "vocoder")
    with torch.no_grad():
        RESYNTHESIS.assert_close("wav", vocoder(io["code"], speaker=io["spkr"], f0=io["f0"]))
        RESYNTHESIS.assert_close("f0_recon", hubconf.f0_vqvae(weights=tmp_path / "f0_vq")(io["f0"])[0])
    assert vocoder.sample_rate == 16000 and vocoder.config.f0_normalize


# ------------------------------------------------------------------------------------------ batches
@torch.no_grad()
def test_padded_batch_equals_one_by_one(fairseq):
    vocoder, io = fairseq
    full, dedup = io["code_full"][0], io["code_dedup"][0]
    for rows, dur in (([full, full[:13], full[4:9]], False), ([dedup, dedup[:5]], True)):
        units = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=-1)
        wav, lengths = vocoder.synthesize(units, dur_prediction=dur)
        for row, w, n in zip(rows, wav, lengths):
            alone = vocoder(row, dur_prediction=dur)[0]
            assert alone.shape[-1] == n
            torch.testing.assert_close(w[:, :n], alone, atol=BATCH_ATOL, rtol=0)
            assert not w[:, n:].any()  # the padded tail is silent


@torch.no_grad()
def test_padded_batch_with_f0_codes_and_speakers(resynthesis):
    vocoder, io = resynthesis
    code, f0 = io["code"][0], io["f0"][0, 0]
    units = torch.full((2, 16), -1)
    units[0], units[1, :8] = code, code.flip(0)[:8]
    f0s = torch.zeros(2, 1, 64)
    f0s[0, 0], f0s[1, 0, :32] = f0, f0.flip(0)[:32]
    speakers = torch.tensor([[3], [7]])
    wav, lengths = vocoder.synthesize(units, speaker=speakers, f0=f0s)
    assert lengths == [256, 128]
    for b, n in enumerate(lengths):
        alone = vocoder(units[b, : n // 16], speaker=speakers[b], f0=f0s[b:b + 1, :, : n // 4])[0]
        torch.testing.assert_close(wav[b, :, :n], alone, atol=BATCH_ATOL, rtol=0)


# ------------------------------------------------------------------------------------------ other variants
VARIANTS = {
    # 12 channels halve to 6, 3, then 1 (integer division, as the original); 10 - 5 is odd: one extra sample
    "resblock2_odd_upsampling": dict(resblock="2", upsample_rates=[3, 5, 2], upsample_kernel_sizes=[7, 10, 4],
                                     upsample_initial_channel=12, resblock_kernel_sizes=[3, 5],
                                     resblock_dilation_sizes=[[1, 2], [2, 6]]),
    "speaker_table_and_styles": dict(multispkr="from_input_file", num_speakers=6, multistyle="from_input_file",
                                     num_styles=4, model_in_dim=24),
    "speaker_vectors": dict(multispkr="_", embedder_params={"dim": 5}, embedder_dim=5, model_in_dim=16),
    "raw_f0_and_stats": dict(f0=True, model_in_dim=11, resblock="2", resblock_kernel_sizes=[3],
                             resblock_dilation_sizes=[[1, 3]]),
    "f0_bins": dict(f0=True, f0_quant_num_bin=7, model_in_dim=16),
}
BASE = dict(resblock="1", upsample_rates=[4, 2], upsample_kernel_sizes=[8, 4], upsample_initial_channel=16,
            resblock_kernel_sizes=[3, 5], resblock_dilation_sizes=[[1, 3, 5], [1, 2, 3]], num_embeddings=10,
            embedding_dim=8, model_in_dim=8, code_hop_size=8, sampling_rate=16000)


def variant_inputs(config: dict, g: torch.Generator) -> dict:
    kwargs = {"code": torch.randint(0, 10, (2, 6), generator=g)}
    if config.get("f0_quant_num_bin"):
        kwargs["f0"] = torch.randint(0, 7, (2, 24), generator=g).float()
    elif config.get("f0"):
        kwargs["f0"] = torch.randn(2, 12, generator=g)  # coarser than the units: repeated up to them
        kwargs["f0_stats"] = torch.randn(2, 2, generator=g)
    if config.get("embedder_params"):
        kwargs["spkr"] = torch.randn(2, 1, 5, generator=g)
    elif config.get("multispkr"):
        kwargs["spkr"] = torch.tensor([[5], [0]])
    if config.get("multistyle"):
        kwargs["style"] = torch.tensor([[1], [3]])
    return kwargs


@pytest.mark.parametrize("name", sorted(VARIANTS))
@torch.no_grad()
def test_variants_match_unfolded_weight_norm_reference(name, tmp_path, convert):
    config = {**BASE, **VARIANTS[name]}
    if name == "raw_f0_and_stats":
        config["f0_feats"] = True
    torch.manual_seed(0)
    reference = randomise(ReferenceCodeGenerator(config), seed=1)
    ours = converted(reference, tmp_path, convert)
    kwargs = variant_inputs(config, torch.Generator().manual_seed(2))
    want = reference(**kwargs)
    got = ours(kwargs["code"], speaker=kwargs.get("spkr"), f0=kwargs.get("f0"), style=kwargs.get("style"),
               f0_stats=kwargs.get("f0_stats"))
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert isinstance(ours.generator.conv_pre, torch.nn.Conv1d)
    assert not any("parametrizations" in k or k.endswith("weight_g") for k in ours.state_dict())


def test_odd_kernel_minus_rate_gives_one_extra_sample(tmp_path, convert):
    config = {**BASE, **VARIANTS["resblock2_odd_upsampling"]}
    ours = converted(randomise(ReferenceCodeGenerator(config)), tmp_path, convert)
    length = 6
    for rate, kernel in zip(config["upsample_rates"], config["upsample_kernel_sizes"]):
        length = (length - 1) * rate - 2 * ((kernel - rate) // 2) + kernel
    assert length == 2 * (3 * 5 * 6 + 1)
    with torch.no_grad():
        assert ours(torch.zeros(1, 6, dtype=torch.long)).shape[-1] == length


# ------------------------------------------------------------------------------------------ bad inputs
@pytest.mark.parametrize("units, message", [
    (torch.tensor([[1, 2, 20]]), "outside this vocoder's table of 20 units"),
    (torch.tensor([[1, -2, 3]]), "outside this vocoder's table"),
    (torch.zeros(1, 0, dtype=torch.long), "empty unit sequence"),
    (torch.tensor([[1, 2], [-1, -1]]), "empty unit sequence"),
    (torch.tensor([[1.0, 2.0]]), "integer ids"),
])
def test_bad_units(fairseq, units, message):
    vocoder, _ = fairseq
    with pytest.raises(InputError, match=message):
        vocoder(units)


def test_bad_conditioning(fairseq, resynthesis):
    single, _ = fairseq
    vocoder, io = resynthesis
    code, f0, spkr = io["code"], io["f0"], io["spkr"]
    cases = [
        (lambda: vocoder(code, speaker=200, f0=f0), "speaker id 200 does not exist: this vocoder has 200"),
        (lambda: vocoder(code, speaker=-1, f0=f0), "speaker id -1 does not exist"),
        (lambda: vocoder(code, f0=f0), "multi-speaker: pass speaker="),
        (lambda: vocoder(code, speaker=1.5, f0=f0), "must be integers"),
        (lambda: vocoder(code, speaker=torch.tensor([1, 2, 3]), f0=f0), "3 speaker values for 1"),
        (lambda: vocoder(code, speaker=spkr, f0=f0[..., :60]), "do not line up"),
        (lambda: vocoder(code, speaker=spkr, f0=f0[..., :8]), "at least 16 F0 frames"),
        (lambda: vocoder(code, speaker=spkr, f0=f0[..., :0]), "f0 is empty"),
        (lambda: vocoder(code, speaker=spkr), "conditioned on F0"),
        (lambda: vocoder(code, speaker=spkr, f0=f0.expand(2, 1, 64)), r"f0 must be \(1, 1, frames\)"),
        (lambda: vocoder(code, speaker=spkr, f0=f0, dur_prediction=True), "no duration predictor"),
        (lambda: vocoder(code, speaker=spkr, f0=f0, style=1), "no style table"),
        (lambda: vocoder(code, speaker=spkr, f0=f0, f0_stats=torch.zeros(1, 2)), "no F0 statistics"),
        (lambda: single(code, f0=f0), "takes no F0"),
        (lambda: single(code, speaker=0), "single-speaker"),
    ]
    for call, message in cases:
        with pytest.raises(InputError, match=message):
            call()


def test_padding_inside_a_row_is_dropped_as_fairseq_does(fairseq, resynthesis):
    vocoder, io = fairseq
    full = io["code_full"]
    with_gaps = torch.cat([full[:, :5], torch.tensor([[-1, -1]]), full[:, 5:], torch.tensor([[-1]])], dim=1)
    with torch.no_grad():
        assert torch.equal(vocoder(with_gaps), vocoder(full))
    sr_vocoder, sr_io = resynthesis
    padded = torch.cat([sr_io["code"], torch.tensor([[-1, -1]])], dim=1)
    with torch.no_grad():  # the padded columns' F0 frames are dropped with them
        f0_padded = torch.cat([sr_io["f0"], sr_io["f0"][..., :8]], -1)
        assert torch.equal(sr_vocoder(padded, speaker=sr_io["spkr"], f0=f0_padded),
                           sr_vocoder(sr_io["code"], speaker=sr_io["spkr"], f0=sr_io["f0"]))
    gappy = torch.cat([sr_io["code"][:, :4], torch.tensor([[-1]]), sr_io["code"][:, 4:]], dim=1)
    with pytest.raises(InputError, match="with F0, padding"):
        sr_vocoder(gappy, speaker=sr_io["spkr"], f0=sr_io["f0"])


def test_speaker_vector_of_wrong_size(tmp_path, convert):
    config = {**BASE, **VARIANTS["speaker_vectors"]}
    ours = converted(randomise(ReferenceCodeGenerator(config)), tmp_path, convert)
    with pytest.raises(InputError, match=r"vector per utterance"):
        ours(torch.tensor([[1, 2]]), speaker=torch.randn(1, 4))


def test_dur_prediction_with_f0_takes_one_utterance(tmp_path, convert):
    config = {**BASE, **VARIANTS["raw_f0_and_stats"], "f0_feats": False, "model_in_dim": 9,
              "dur_predictor_params": {"encoder_embed_dim": 8, "var_pred_hidden_dim": 4, "var_pred_kernel_size": 3,
                                       "var_pred_dropout": 0.5}}
    ours = converted(randomise(ReferenceCodeGenerator(config)), tmp_path, convert)
    with pytest.raises(InputError, match="one utterance at a time"):
        ours(torch.ones(2, 3, dtype=torch.long), dur_prediction=True, f0=torch.ones(2, 6))


# ------------------------------------------------------------------------------------------ converters
def test_converters_refuse_wrong_files(tmp_path):
    orig = RESYNTHESIS.original
    with pytest.raises(ConversionError, match="F0 VQ-VAE: use the 'f0_vqvae' converter"):
        hifigan_format.convert([orig / "f0_vq" / "g_00400000", orig / "config.json"])
    with pytest.raises(ConversionError, match="vocoder checkpoint, not an F0 VQ-VAE"):
        f0_vqvae_format.convert([orig / "g_00400000", orig / "f0_vq" / "config.json"])
    with pytest.raises(ConversionError, match="not a HiFi-GAN vocoder config"):
        hifigan_format.convert([orig / "g_00400000", orig / "f0_vq" / "config.json"])
    with pytest.raises(ConversionError, match="lacks the F0 VQ-VAE group"):
        f0_vqvae_format.convert([orig / "f0_vq" / "g_00400000", orig / "config.json"])
    with pytest.raises(ConversionError, match="is not a JSON config"):
        hifigan_format.convert([orig / "config.json", orig / "g_00400000"])
    with pytest.raises(ConversionError, match="a checkpoint and its config.json"):
        hifigan_format.convert([orig / "g_00400000"])


def test_converter_reports_unmapped_keys_and_config_mismatch(tmp_path):
    state = torch.load(FAIRSEQ.original / "g_00500000", weights_only=True)["generator"]
    torch.save({"generator": {**state, "mpd.convs.0.weight": torch.zeros(1)}}, tmp_path / "extra")
    config = FAIRSEQ.original / "config.json"
    with pytest.raises(ConversionError, match="not covered by the rename table: mpd.convs.0.weight"):
        hifigan_format.convert([tmp_path / "extra", config])
    raw = json.loads(config.read_text())
    (tmp_path / "no_dur.json").write_text(json.dumps({k: v for k, v in raw.items() if k != "dur_predictor_params"}))
    with pytest.raises(ConversionError, match="has no dur_predictor_params"):
        hifigan_format.convert([FAIRSEQ.original / "g_00500000", tmp_path / "no_dur.json"])
    (tmp_path / "wide.json").write_text(json.dumps({**raw, "embedding_dim": 32, "model_in_dim": 32}))
    with pytest.raises(ConversionError, match="does not match"):
        hifigan_format.convert([FAIRSEQ.original / "g_00500000", tmp_path / "wide.json"])


def test_fairseq_hub_archive(tmp_path, fairseq):
    vocoder, io = fairseq
    archive = tmp_path / "unit_hifigan_test.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(FAIRSEQ.original / "g_00500000", arcname="unit_hifigan_test/model.pt")
        tar.add(FAIRSEQ.original / "config.json", arcname="unit_hifigan_test/config.json")
    from_archive = hifigan_format.convert([archive])
    with torch.no_grad():
        assert torch.equal(from_archive(io["code_full"]), vocoder(io["code_full"]))
    with tarfile.open(tmp_path / "empty.tar", "w") as tar:
        tar.add(FAIRSEQ.original / "config.json", arcname="config.json")
    with pytest.raises(ConversionError, match=r"lacks \['model.pt'\]"):
        hifigan_format.convert([tmp_path / "empty.tar"])


# ------------------------------------------------------------------------------------------ registry
def test_every_released_vocoder_is_registered_with_a_card():
    names = [w.name for w in WEIGHTS]
    assert len(set(names)) == len(names) >= 25
    cards = Path(__file__).resolve().parents[1] / "model_cards"
    for w in WEIGHTS:
        assert w.converter == "hifigan" and w.entry_point == "hifigan_unit_vocoder"
        assert find("hifigan_unit_vocoder", **w.kwargs) is w
        assert (cards / f"{w.name}.md").is_file(), f"no model card for {w.name}"
        assert all(f.sha256 is None or len(f.sha256) == 64 for f in w.source_files)
    textless = find("hifigan_unit_vocoder", variant="expresso_hubert_km500").source_files[0]
    assert textless.sha256.startswith("d50f4704")
    with pytest.raises(InputError, match="was never released"):
        hubconf.hifigan_unit_vocoder(variant="speech_resynthesis_lj_hubert100")
    with pytest.raises(InputError, match="no F0 VQ-VAE was ever released"):
        hubconf.f0_vqvae()


# ------------------------------------------------------------------------------------------ F0
def test_f0_normalisation_reproduces_the_fixture_input():
    io = RESYNTHESIS.io
    stats = F0Stats.load(RESYNTHESIS.original / "f0_stats.th")
    mean, std = stats.of(2)
    assert (mean, std) == (io["f0_mean"].item(), io["f0_std"].item())
    assert stats.of(9) == (stats.mean, stats.std)  # speakers the file lacks get the global pair
    normalised = normalize_f0(io["f0_raw"], mean, std)
    torch.testing.assert_close(normalised, io["f0"], atol=1e-6, rtol=0)
    assert torch.equal(normalised == 0, io["f0_raw"] == 0)


def test_f0_stats_file_of_another_kind(tmp_path):
    torch.save({"mean": 1.0}, tmp_path / "stats.th")
    with pytest.raises(InputError, match="not a speech-resynthesis f0_stats file"):
        F0Stats.load(tmp_path / "stats.th")


def test_median_fill_and_rescaling():
    f0 = torch.tensor([0.0, 100.0, 120.0, 0.0, 140.0, 150.0])
    filled = normalize_f0(f0, mean=100.0, std=20.0, fill_median=True)
    assert filled.tolist() == pytest.approx([1.5, 0.0, 1.0, 1.5, 2.0, 2.5])  # unvoiced -> voiced median 130
    voiced = f0[f0 != 0]
    moved = rescale_f0(f0, mean=200.0, std=10.0)
    assert moved[f0 == 0].eq(0).all()
    torch.testing.assert_close(moved[f0 != 0].mean(), torch.tensor(200.0))
    torch.testing.assert_close(moved[f0 != 0].std(), torch.tensor(10.0))
    assert torch.equal(moved[f0 != 0].argsort(), voiced.argsort())


def test_yaapt_frame_rate_and_voicing():
    wav, rate = load(FLAC)
    clip = peak_normalize(wav[0, 16000:16000 + 8000])
    assert clip.abs().max().item() == pytest.approx(0.95)
    f0 = yaapt_f0(clip, rate)
    hop = samples_per_frame(rate)
    assert hop == 80 and f0.shape == (8000 // hop,)  # 200 frames/s
    voiced = f0[f0 > 0]
    assert 0 < voiced.numel() < f0.numel()  # speech has voiced and unvoiced frames
    assert 60 < voiced.median() < 300  # a male reader: F0 in the speech range
    t = torch.arange(8000) / rate
    tone = sum(torch.sin(2 * math.pi * 150 * k * t) / k for k in (1, 2, 3))
    f0_tone = yaapt_f0(peak_normalize(tone), rate)
    assert (f0_tone[10:-10] - 150).abs().max() < 5
    assert not yaapt_f0(torch.zeros(8000), rate).any()  # silence is unvoiced
    with pytest.raises(AudioError, match="mono audio"):
        yaapt_f0(torch.zeros(2, 8000), rate)


def test_trim_and_voice_conversion(resynthesis):
    vocoder, io = resynthesis
    hubert_rate = dataclasses.replace(vocoder.config, code_hop_size=320)  # 50 Hz units, as released configs
    units, f0 = trim_to_f0(torch.arange(18) % 12, torch.ones(70), hubert_rate, f0_hop_length=80)
    assert units.shape[-1] == 16 and f0.shape[-1] == 64  # whole F0 VQ-VAE frames of 16 x 80 samples
    with pytest.raises(InputError, match="less than"):
        trim_to_f0(torch.arange(3), torch.ones(12), hubert_rate, f0_hop_length=80)
    stats = F0Stats.load(RESYNTHESIS.original / "f0_stats.th")
    with torch.no_grad():
        converted_wav = voice_convert(vocoder, io["code"], io["f0"], int(io["spkr_vc"]), f0_stats=stats)
    RESYNTHESIS.assert_close("wav_vc", converted_wav)


# ------------------------------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def converted_dirs(tmp_path_factory, convert):
    root = tmp_path_factory.mktemp("vocoders")
    # The fixture's tiny generator makes 16 samples per unit; declaring 50 Hz units (320 samples, 4 F0 frames of
    # 80 samples each) lets the CLI line units and F0 up the way speech-resynthesis' inference.py does.
    config = json.loads((RESYNTHESIS.original / "config.json").read_text())
    (root / "resynthesis.json").write_text(json.dumps({**config, "code_hop_size": 320}))
    return {"fairseq": convert("hifigan", FAIRSEQ.original / "g_00500000", FAIRSEQ.original / "config.json"),
            "resynthesis": convert("hifigan", RESYNTHESIS.original / "g_00400000", root / "resynthesis.json")}


def test_vocode_cli_text_and_json_lines(tmp_path, converted_dirs, fairseq):
    vocoder, io = fairseq
    full = io["code_full"][0].tolist()
    (tmp_path / "units.txt").write_text(f"a|{' '.join(map(str, full))}\nb|{' '.join(map(str, full[:7]))}\n")
    (tmp_path / "units.jsonl").write_text(json.dumps({"name": "c", "units": full[3:]}) + "\n")
    for path in ("units.txt", "units.jsonl"):
        assert cli(["vocode", str(tmp_path / path), "-o", str(tmp_path / "wavs"), "--weights",
                    str(converted_dirs["fairseq"]), "--batch-size", "2"]) == 0
    with torch.no_grad():
        for name, units in (("a", full), ("b", full[:7]), ("c", full[3:])):
            wav, rate = load(tmp_path / "wavs" / f"{name}.wav")
            assert rate == 16000
            torch.testing.assert_close(wav[0], vocoder(torch.tensor(units))[0, 0], atol=PCM16_ATOL, rtol=0)
    assert cli(["vocode", str(tmp_path / "units.txt"), "-o", str(tmp_path / "dur"), "--weights",
                str(converted_dirs["fairseq"]), "--dur-prediction"]) == 0
    wav, _ = load(tmp_path / "dur" / "a.wav")
    with torch.no_grad():
        torch.testing.assert_close(wav[0], vocoder(io["code_dedup"], dur_prediction=True)[0, 0], atol=PCM16_ATOL,
                                   rtol=0)


def pcm16(tolerance: dict) -> dict:
    """A case's tolerance widened by the 16-bit PCM rounding of the written .wav files."""
    return {**tolerance, "atol": tolerance["atol"] + PCM16_ATOL}


def test_vocode_cli_voice_conversion_with_f0(tmp_path, converted_dirs, resynthesis):
    vocoder, io = resynthesis
    line = {"name": "utt", "units": io["code"][0].tolist() + [5, 5], "speaker": 2,
            "f0": io["f0_raw"].flatten().tolist() + [0.0] * 7}
    (tmp_path / "units.jsonl").write_text(json.dumps(line) + "\n")
    args = ["vocode", str(tmp_path / "units.jsonl"), "-o", str(tmp_path / "out"), "--weights",
            str(converted_dirs["resynthesis"]), "--f0-stats", str(RESYNTHESIS.original / "f0_stats.th")]
    assert cli([*args, "--vc", str(int(io["spkr_vc"]))]) == 0
    wav, _ = load(tmp_path / "out" / f"utt_{int(io['spkr_vc'])}.wav")
    torch.testing.assert_close(wav[0], io["wav_vc"].flatten(), **pcm16(RESYNTHESIS.tolerance("wav_vc")))
    assert cli(args) == 0
    wav, _ = load(tmp_path / "out" / "utt.wav")
    torch.testing.assert_close(wav[0], io["wav"].flatten(), **pcm16(RESYNTHESIS.tolerance("wav")))
    assert cli(args[:-2]) == 2  # speaker-normalised F0 needs the statistics


def test_vocode_cli_bad_units_files(tmp_path, converted_dirs, capsys):
    weights = ["--weights", str(converted_dirs["fairseq"])]
    for text, message in (("a|1 2\na|3 4\n", "appears twice"), ("a|1 x\n", "units must be integers"),
                          ("{\"name\": \"a\"}\n", 'needs "units"'), ("{bad json\n", "not valid JSON"),
                          ("a|\n", "empty units"), ("\n", "holds no utterances"), ("a|1 99\n", "outside"),
                          ("../a|1 2\n", "outside the output folder"),
                          ('{"id": "", "units": [1]}\n', "outside the output folder")):
        (tmp_path / "u.txt").write_text(text)
        assert cli(["vocode", str(tmp_path / "u.txt"), "-o", str(tmp_path / "o"), *weights]) == 2
        assert message in capsys.readouterr().err
    assert cli(["vocode", str(tmp_path / "missing.txt"), "-o", str(tmp_path / "o"), *weights]) == 2
    assert "no units file" in capsys.readouterr().err
